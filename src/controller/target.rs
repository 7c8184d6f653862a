//! From an object's spec to the bucket it names and the credentials that reach it.

use k8s_openapi::api::core::v1::Secret;
use kube::Api;

use super::reconcile::{Error, Halt};
use super::{Context, CorsStore};
use crate::api::{BucketCors, PutChecksum};
use crate::reason::Reason;
use crate::s3::{BucketTarget, Checksum, Credentials};
use crate::status::Outcome;

pub const ACCESS_KEY_ID: &str = "AWS_ACCESS_KEY_ID";
pub const SECRET_ACCESS_KEY: &str = "AWS_SECRET_ACCESS_KEY";
pub const SESSION_TOKEN: &str = "AWS_SESSION_TOKEN";

/// The bucket `obj` names, without credentials: enough to tell which bucket it is.
pub fn bucket_of<S>(obj: &BucketCors, ctx: &Context<S>) -> BucketTarget {
    let spec = &obj.spec;
    BucketTarget {
        bucket: spec.bucket.clone(),
        endpoint: spec
            .endpoint
            .clone()
            .or_else(|| ctx.settings.default_endpoint.clone()),
        region: spec.region.clone(),
        force_path_style: spec.force_path_style.unwrap_or(false),
        expected_bucket_owner: spec.expected_bucket_owner.clone(),
        credentials: None,
        checksum: match spec.put_checksum {
            Some(PutChecksum::Crc32) => Checksum::Crc32,
            Some(PutChecksum::ContentMd5) => Checksum::ContentMd5,
            None => ctx.settings.put_checksum,
        },
    }
}

/// The bucket with its credentials, read from the Secret in the object's own namespace.
pub async fn resolve<S: CorsStore>(
    obj: &BucketCors,
    ctx: &Context<S>,
) -> Result<BucketTarget, Halt> {
    let mut target = bucket_of(obj, ctx);
    if let Some(secret_ref) = &obj.spec.credentials_secret_ref {
        // The namespace is always the object's own: a BucketCors can never name another's Secret.
        let namespace = obj.metadata.namespace.as_deref().unwrap_or("default");
        let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
        let missing = |what: String| Halt::Outcome(Outcome::new(Reason::CredentialsNotFound, what));
        let secret = match secrets.get_opt(&secret_ref.name).await {
            Ok(Some(secret)) => secret,
            Ok(None) => {
                return Err(missing(format!(
                    "Secret {namespace}/{} not found",
                    secret_ref.name
                )));
            }
            Err(kube::Error::Api(status)) if status.code == 403 => {
                return Err(missing(format!(
                    "the operator may not read Secret {namespace}/{}: {}",
                    secret_ref.name, status.message
                )));
            }
            Err(source) => {
                return Err(Halt::Api(Error::ReadSecret {
                    namespace: namespace.to_owned(),
                    name: secret_ref.name.clone(),
                    source,
                }));
            }
        };
        let read = |key: &str| -> Option<String> {
            let bytes = secret.data.as_ref()?.get(key)?;
            let value = String::from_utf8(bytes.0.clone()).ok()?;
            // A trailing newline from `echo` into a file is a classic; keys never hold spaces.
            let value = value.trim();
            (!value.is_empty()).then(|| value.to_owned())
        };
        let required = |key: &str| {
            read(key).ok_or_else(|| {
                missing(format!(
                    "Secret {namespace}/{} has no non-empty key {key}",
                    secret_ref.name
                ))
            })
        };
        target.credentials = Some(Credentials {
            access_key_id: required(ACCESS_KEY_ID)?,
            secret_access_key: required(SECRET_ACCESS_KEY)?,
            session_token: read(SESSION_TOKEN),
        });
    }
    Ok(target)
}

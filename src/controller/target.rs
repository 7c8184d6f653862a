//! From an object's spec to the bucket it names, the identity it may act with (its grant), and
//! the credentials that reach it.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, ResourceExt};

use super::reconcile::{Error, Halt};
use super::{Context, CorsStore};
use crate::api::{BucketCors, PutChecksum, SecretRef};
use crate::profiles;
use crate::reason::Reason;
use crate::s3::{BucketTarget, Checksum, Credentials, Owner, RoleSession};
use crate::status::Outcome;
use crate::tenancy::{ClusterBucketStore, Denial, session_name};

pub const ACCESS_KEY_ID: &str = "AWS_ACCESS_KEY_ID";
pub const SECRET_ACCESS_KEY: &str = "AWS_SECRET_ACCESS_KEY";
pub const SESSION_TOKEN: &str = "AWS_SESSION_TOKEN";

/// The identity an object may act with, as its grant says.
#[derive(Clone, Debug)]
pub enum Access {
    /// Through an administrator's store that grants its namespace the bucket.
    Store(Arc<ClusterBucketStore>),
    /// With the Secret it names, toward an endpoint the policy allows (checked again on every
    /// connection when `guarded`).
    Own { guarded: bool },
    /// With the operator's own identity: single-tenant mode only.
    Ambient,
}

impl Denial {
    /// The outcome a denied pass reports.
    pub fn outcome(&self) -> Outcome {
        match self {
            Denial::NotPermitted(m) => Outcome::new(Reason::NotPermitted, m.clone()),
            Denial::EndpointNotAllowed(m) => Outcome::new(Reason::EndpointNotAllowed, m.clone()),
        }
    }
}

/// The bucket `obj` names, reached as `access` says, without credentials: enough to tell which
/// bucket it is.
pub fn bucket_of<S>(obj: &BucketCors, ctx: &Context<S>, access: &Access) -> BucketTarget {
    let spec = &obj.spec;
    let mut target = BucketTarget::new(spec.bucket.clone());
    let (named, choice) = match access {
        Access::Store(store) => (store.spec.profile, store.spec.put_checksum),
        Access::Own { .. } | Access::Ambient => (spec.store_profile, spec.put_checksum),
    };
    match access {
        Access::Store(store) => {
            let s = &store.spec;
            target.endpoint = s
                .endpoint
                .clone()
                .or_else(|| ctx.settings.default_endpoint.clone());
            target.region = spec.region.clone().or_else(|| s.region.clone());
            target.force_path_style = s.force_path_style.unwrap_or(false);
        }
        Access::Own { guarded } => {
            target.guarded = *guarded;
            own_place(&mut target, obj, ctx);
        }
        Access::Ambient => own_place(&mut target, obj, ctx),
    }
    let profile = profiles::resolve(named, target.endpoint.as_deref());
    target.profile = profile.kind;
    // A store's requests spend the store's budget; an object's own identity's spend the
    // budget of its Secret (set when it is read), else the operator's own.
    if let Access::Store(store) = access {
        target.owner = Owner::Store(store.name_any());
    }
    // The store's own budget, else the operator's.
    target.budget = match access {
        Access::Store(store) => store.spec.request_budget.map(Into::into),
        Access::Own { .. } | Access::Ambient => None,
    }
    .or(ctx.settings.store_budget);
    // The object's (or store's) own choice, else what the store is documented to need, else
    // the operator's default.
    target.checksum = match choice.or(profile.put_checksum) {
        Some(PutChecksum::Crc32) => Checksum::Crc32,
        Some(PutChecksum::ContentMd5) => Checksum::ContentMd5,
        None => ctx.settings.put_checksum,
    };
    // A store that does not take `x-amz-expected-bucket-owner` is not sent it: the owner check
    // is then not made (the README says so).
    target.expected_bucket_owner = spec
        .expected_bucket_owner
        .clone()
        .filter(|_| profile.expected_bucket_owner);
    target
}

/// What `obj`'s rules break of what the store it reaches (with `profile`) is documented to
/// take. A profile the spec names, or the one its own endpoint tells, was checked with the
/// spec; the one a store or the operator's default endpoint brings is checked here.
pub fn refused(
    obj: &BucketCors,
    profile: &profiles::Profile,
) -> Vec<crate::constraints::FieldError> {
    match (&obj.spec.endpoint, obj.spec.store_profile) {
        (None, None) => profiles::check(profile, &obj.spec.rules),
        _ => Vec::new(),
    }
}

/// Whether the store `obj` reaches through `access` could take its rules at all: it has a
/// bucket CORS API and documents no limit the rules break.
pub fn within_profile<S>(obj: &BucketCors, ctx: &Context<S>, access: &Access) -> bool {
    let profile = profiles::named(bucket_of(obj, ctx, access).profile);
    profile.no_cors_api.is_none() && refused(obj, profile).is_empty()
}

fn own_place<S>(target: &mut BucketTarget, obj: &BucketCors, ctx: &Context<S>) {
    let spec = &obj.spec;
    target.endpoint = spec
        .endpoint
        .clone()
        .or_else(|| ctx.settings.default_endpoint.clone());
    target.region = spec.region.clone();
    target.force_path_style = spec.force_path_style.unwrap_or(false);
}

/// The bucket with its credentials: the store's (a Secret in the operator's namespace, or the
/// operator's own identity), or the object's own Secret, in its own namespace.
pub async fn resolve<S: CorsStore>(
    obj: &BucketCors,
    ctx: &Context<S>,
    access: &Access,
) -> Result<BucketTarget, Halt> {
    let mut target = bucket_of(obj, ctx, access);
    let secret = match access {
        Access::Store(store) => store
            .spec
            .credentials
            .as_ref()
            .and_then(|c| c.secret_ref.as_ref())
            .map(|r| (ctx.settings.tenancy.secrets_namespace.as_str(), r)),
        // The namespace is always the object's own: a BucketCors can never name another's Secret.
        Access::Own { .. } | Access::Ambient => obj
            .spec
            .credentials_secret_ref
            .as_ref()
            .map(|r| (obj.metadata.namespace.as_deref().unwrap_or("default"), r)),
    };
    if let Some((namespace, secret_ref)) = secret {
        let credentials = read_secret(ctx, namespace, secret_ref).await?;
        if !matches!(access, Access::Store(_)) {
            target.owner = Owner::Secret {
                namespace: namespace.to_owned(),
                name: secret_ref.name.clone(),
                access_key_id: credentials.access_key_id.clone(),
            };
        }
        target.credentials = Some(credentials);
    }
    if let Access::Store(store) = access
        && let Some(role) = store
            .spec
            .credentials
            .as_ref()
            .and_then(|c| c.assume_role.as_ref())
    {
        target.assume_role = Some(RoleSession {
            role_arn: role.role_arn.clone(),
            external_id: role.external_id.clone(),
            session_name: session_name(
                obj.metadata.namespace.as_deref().unwrap_or("default"),
                obj.metadata.name.as_deref().unwrap_or_default(),
            ),
        });
    }
    Ok(target)
}

async fn read_secret<S>(
    ctx: &Context<S>,
    namespace: &str,
    secret_ref: &SecretRef,
) -> Result<Credentials, Halt> {
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
            // A store's Secret is the administrator's to fix; an object's own, its namespace's.
            let grant = if namespace == ctx.settings.tenancy.secrets_namespace {
                String::new()
            } else {
                format!(
                    "; an admin of namespace {namespace} grants it with a RoleBinding there to the ClusterRole <release>-read-secrets that the operator's Helm chart ships (get on Secrets) for the operator's ServiceAccount, or the object goes through a ClusterBucketStore (spec.storeRef)"
                )
            };
            return Err(missing(format!(
                "the operator may not read Secret {namespace}/{} ({}){grant}",
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
    credentials_in(secret.data.as_ref())
        .map_err(|problem| missing(format!("Secret {namespace}/{} {problem}", secret_ref.name)))
}

/// The credentials in a Secret's data, or what is wrong with them: which key is missing or
/// holds what no request can carry. Never a value: they are secret.
pub(super) fn credentials_in(
    data: Option<&std::collections::BTreeMap<String, k8s_openapi::ByteString>>,
) -> Result<Credentials, String> {
    let read = |key: &str| -> Result<Option<String>, String> {
        let Some(bytes) = data.and_then(|d| d.get(key)) else {
            return Ok(None);
        };
        // A trailing newline from `echo` into a file is a classic; keys never hold spaces.
        let value = String::from_utf8_lossy(&bytes.0);
        let value = value.trim();
        if !value.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!(
                "has a key {key} that is not printable ASCII: it cannot be sent in a request"
            ));
        }
        Ok((!value.is_empty()).then(|| value.to_owned()))
    };
    let required = |key: &str| read(key)?.ok_or_else(|| format!("has no non-empty key {key}"));
    Ok(Credentials {
        access_key_id: required(ACCESS_KEY_ID)?,
        secret_access_key: required(SECRET_ACCESS_KEY)?,
        session_token: read(SESSION_TOKEN)?,
    })
}

//! Reading and writing one bucket's CORS configuration. `sdk` is the only place that knows the
//! AWS SDK; the rest of the operator sees the `CorsStore` trait.

mod budget;
mod cache;
mod guard;
mod sdk;

use std::fmt;
use std::future::Future;

pub use sdk::{PreflightAnswer, SdkStore};

pub use budget::{Budget, TokenBucket};

use crate::api::StoreProfile;
use crate::cors::{self, CorsRule};
use crate::reason::Reason;

/// Static credentials for one store, as read from a Secret. `Debug` never shows the secret parts.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// An IAM role and the session to assume it as.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RoleSession {
    pub role_arn: String,
    pub external_id: Option<String>,
    pub session_name: String,
}

/// Whose request budget, retry quota and clients a target's requests use: an identity the
/// tenant cannot choose. Never the access key id or role alone: a tenant chooses those.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum Owner {
    /// The operator's own identity without a store (single-tenant mode), per endpoint.
    #[default]
    Operator,
    /// A `ClusterBucketStore`, by name: only an administrator makes one.
    Store(String),
    /// An object's own Secret, in its namespace, with the access key id it holds.
    Secret {
        namespace: String,
        name: String,
        access_key_id: String,
    },
}

impl Owner {
    /// Whether a tenant makes as many of these as it likes (by rotating Secrets): those are
    /// kept apart from the stores', in a bounded cache of their own.
    pub fn is_tenants(&self) -> bool {
        matches!(self, Owner::Secret { .. })
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Namespace, Secret and store names hold no `/` or space: no two owners read the same.
        match self {
            Owner::Operator => f.write_str("operator"),
            Owner::Store(name) => write!(f, "store {name}"),
            Owner::Secret {
                namespace,
                name,
                access_key_id,
            } => write!(f, "secret {namespace}/{name} key {access_key_id}"),
        }
    }
}

/// One bucket on one store, with everything needed to reach it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BucketTarget {
    pub bucket: String,
    /// Endpoint URL; AWS S3 when absent.
    pub endpoint: Option<String>,
    /// Region; the store's default when absent.
    pub region: Option<String>,
    pub force_path_style: bool,
    /// Sent with every request when present.
    pub expected_bucket_owner: Option<String>,
    /// The store's ambient credentials (the AWS default chain) when absent.
    pub credentials: Option<Credentials>,
    /// A role to assume with the ambient credentials instead (when `credentials` is absent).
    pub assume_role: Option<RoleSession>,
    /// The integrity check sent with PutBucketCors.
    pub checksum: Checksum,
    /// Every connection passes the store's endpoint policy (the object named its own
    /// endpoint and credentials); an administrator's store is not guarded.
    pub guarded: bool,
    /// The store's profile (`crate::profiles`): named by the object or its store, else
    /// chosen from the endpoint's host.
    pub profile: StoreProfile,
    /// The requests per second this store (this endpoint, for this owner) is sent at most,
    /// retries included; none: no limit.
    pub budget: Option<Budget>,
    /// Whose budget the requests spend.
    pub owner: Owner,
}

/// How a PutBucketCors body is protected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Checksum {
    /// The SDK's flexible checksum, `x-amz-checksum-crc32`.
    #[default]
    Crc32,
    /// `Content-MD5` alone, for stores that refuse the flexible checksum headers.
    ContentMd5,
}

impl BucketTarget {
    pub fn new(bucket: impl Into<String>) -> Self {
        BucketTarget {
            bucket: bucket.into(),
            endpoint: None,
            region: None,
            force_path_style: false,
            expected_bucket_owner: None,
            credentials: None,
            assume_role: None,
            checksum: Checksum::default(),
            guarded: false,
            profile: StoreProfile::Aws,
            budget: None,
            owner: Owner::Operator,
        }
    }

    /// The budget, retry quota and client cache this target's requests use: its owner and
    /// its endpoint.
    pub fn budget_key(&self) -> String {
        format!(
            "{} at {}",
            self.owner,
            canonical_endpoint(self.endpoint.as_deref())
        )
    }

    /// The endpoint and bucket that identify the bucket across objects: two targets with the
    /// same key are the same bucket, however their endpoints are spelled.
    pub fn key(&self) -> String {
        format!(
            "{}/{}",
            canonical_endpoint(self.endpoint.as_deref()),
            self.bucket
        )
    }
}

/// One spelling per store address: scheme and host in lower case, the scheme's default port
/// and a trailing `/` dropped, and every AWS S3 endpoint (none, the global one, a regional,
/// dual-stack or FIPS one) as `aws`, since a bucket name is global on AWS.
pub fn canonical_endpoint(endpoint: Option<&str>) -> String {
    let Some(endpoint) = endpoint else {
        return "aws".to_owned();
    };
    let (scheme, rest) = endpoint.split_once("://").unwrap_or(("https", endpoint));
    let scheme = scheme.to_ascii_lowercase();
    let (authority, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
    let path = path.trim_end_matches('/');
    let authority = authority.to_ascii_lowercase();
    let default_port = if scheme == "http" { ":80" } else { ":443" };
    let authority = authority.strip_suffix(default_port).unwrap_or(&authority);
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    };
    let aws = (host.ends_with(".amazonaws.com") || host.ends_with(".amazonaws.com.cn"))
        && host.starts_with("s3")
        && authority == host
        && path.is_empty()
        && scheme == "https";
    if aws {
        "aws".to_owned()
    } else {
        format!("{scheme}://{authority}{path}")
    }
}

/// The S3 operations the operator uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    GetBucketCors,
    PutBucketCors,
    DeleteBucketCors,
    /// A browser's `OPTIONS` request, sent to check what the store answers.
    Preflight,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::GetBucketCors => "GetBucketCors",
            Operation::PutBucketCors => "PutBucketCors",
            Operation::DeleteBucketCors => "DeleteBucketCors",
            Operation::Preflight => "OPTIONS",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an S3 call failed, in the terms of the Ready condition.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum S3Error {
    #[error("bucket {bucket:?} does not exist")]
    BucketNotFound { bucket: String },
    #[error("{operation} on bucket {bucket:?} was denied: {message}")]
    AccessDenied {
        operation: Operation,
        bucket: String,
        message: String,
    },
    #[error(
        "the store does not implement {operation}: {message}{}",
        advised(advice)
    )]
    Unsupported {
        operation: Operation,
        message: String,
        /// What to do instead, from the profile of the store (or of the server that named
        /// itself in its answer).
        advice: Option<&'static str>,
    },
    #[error("the store rejected {operation} on bucket {bucket:?}: {code}: {message}")]
    Rejected {
        operation: Operation,
        bucket: String,
        code: String,
        message: String,
    },
    #[error("{operation} on bucket {bucket:?} failed: {message}")]
    Unavailable {
        operation: Operation,
        bucket: String,
        message: String,
    },
    #[error("{operation} on bucket {bucket:?} was not sent: {message}")]
    EndpointNotAllowed {
        operation: Operation,
        bucket: String,
        message: String,
    },
}

fn advised(advice: &Option<&'static str>) -> String {
    advice.map(|a| format!("; {a}")).unwrap_or_default()
}

impl S3Error {
    /// This error, with `profile`'s advice when the store does not implement the call and no
    /// advice was found in its answer.
    pub fn advised_by(self, profile: &crate::profiles::Profile) -> Self {
        match self {
            S3Error::Unsupported {
                operation,
                message,
                advice: None,
            } => S3Error::Unsupported {
                operation,
                message,
                advice: profile.not_implemented_advice,
            },
            other => other,
        }
    }

    pub fn reason(&self) -> Reason {
        match self {
            S3Error::BucketNotFound { .. } => Reason::BucketNotFound,
            S3Error::AccessDenied { .. } => Reason::AccessDenied,
            S3Error::Unsupported { .. } => Reason::Unsupported,
            S3Error::Rejected { .. } => Reason::Rejected,
            S3Error::Unavailable { .. } => Reason::Unavailable,
            S3Error::EndpointNotAllowed { .. } => Reason::EndpointNotAllowed,
        }
    }
}

/// The largest CORS configuration the operator keeps from a store's answer: S3's own limit for
/// one configuration, 64 KB of XML, measured as [`cors::config_xml_len`] measures the body of a
/// PutBucketCors carrying the rules (so it bounds their count and every string in them). What
/// a pass compares and what `status.previousConfiguration` records stay within it; a larger
/// answer is refused whole (see [`kept`]).
pub const MAX_KEPT_CONFIG_BYTES: usize = cors::MAX_CONFIG_BYTES;

/// The rules of `bucket`'s configuration as a store answered them, converted one by one while
/// they fit in [`MAX_KEPT_CONFIG_BYTES`]. A larger configuration is `Rejected`
/// (`AnswerTooLarge`), with its size, and none of it is kept: the operator cannot record it to
/// put it back, so it must not write over it either.
pub fn kept(
    bucket: &str,
    answer: impl Iterator<Item = CorsRule>,
) -> Result<Vec<CorsRule>, S3Error> {
    let empty = cors::config_xml_len(&[]);
    let mut size = empty;
    let mut rules = Vec::new();
    for rule in answer {
        size += cors::config_xml_len(std::slice::from_ref(&rule)) - empty;
        if size <= MAX_KEPT_CONFIG_BYTES {
            rules.push(rule);
        } else if !rules.is_empty() {
            rules = Vec::new();
        }
    }
    if size <= MAX_KEPT_CONFIG_BYTES {
        return Ok(rules);
    }
    Err(S3Error::Rejected {
        operation: Operation::GetBucketCors,
        bucket: bucket.to_owned(),
        code: "AnswerTooLarge".into(),
        message: format!(
            "the bucket's CORS configuration is {size} bytes of XML, more than the {MAX_KEPT_CONFIG_BYTES} S3 allows one; the operator keeps none of it and writes nothing over it, since it could not put it back"
        ),
    })
}

/// Get, put and delete the CORS configuration of one bucket.
pub trait CorsStore: Send + Sync + 'static {
    /// The bucket's rules in the order the store returns them; no configuration is empty.
    fn get_cors(
        &self,
        target: &BucketTarget,
    ) -> impl Future<Output = Result<Vec<CorsRule>, S3Error>> + Send;

    /// Replaces the bucket's configuration with `rules` (never empty).
    fn put_cors(
        &self,
        target: &BucketTarget,
        rules: &[CorsRule],
    ) -> impl Future<Output = Result<(), S3Error>> + Send;

    /// Removes the bucket's configuration; succeeds when there was none.
    fn delete_cors(
        &self,
        target: &BucketTarget,
    ) -> impl Future<Output = Result<(), S3Error>> + Send;

    /// Sends a browser's preflight (`OPTIONS` with `Origin`, `Access-Control-Request-Method`
    /// and, when `request_headers` is not empty, `Access-Control-Request-Headers`) for object
    /// `key` of the target's bucket, where the target's S3 calls go (same endpoint, addressing
    /// style, HTTP client and endpoint policy), unsigned, once, without retries, and returns
    /// what the store answered, whatever the status. A store that cannot answers Unsupported.
    fn preflight(
        &self,
        target: &BucketTarget,
        key: &str,
        origin: &str,
        method: &str,
        request_headers: &[&str],
    ) -> impl Future<Output = Result<PreflightAnswer, S3Error>> + Send {
        let _ = (key, origin, method, request_headers);
        let bucket = target.bucket.clone();
        async move {
            Err(S3Error::Unsupported {
                operation: Operation::Preflight,
                message: format!("this store sends no preflight for bucket {bucket:?}"),
                advice: None,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_secrets() {
        let credentials = Credentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG".into(),
            session_token: Some("FwoGZXIvYXdzEJr".into()),
        };
        let mut target = BucketTarget::new("b");
        target.credentials = Some(credentials);
        let shown = format!("{target:?}");
        assert!(shown.contains("AKIDEXAMPLE"));
        assert!(!shown.contains("wJalrXUtnFEMI"), "{shown}");
        assert!(!shown.contains("FwoGZXIvYXdzEJr"), "{shown}");
    }

    #[test]
    fn one_store_address_has_one_key_however_it_is_spelled() {
        let key = |endpoint: &str| {
            let mut target = BucketTarget::new("b");
            target.endpoint = Some(endpoint.to_owned());
            target.key()
        };
        for same in [
            "http://localhost:9000",
            "http://LOCALHOST:9000/",
            "HTTP://localhost:9000//",
        ] {
            assert_eq!(key(same), "http://localhost:9000/b", "{same}");
        }
        assert_eq!(key("http://minio:80"), key("http://minio"));
        assert_eq!(key("https://minio:443/"), key("https://minio"));
        assert_ne!(key("http://minio:443"), key("http://minio"));
        assert_ne!(key("https://minio"), key("http://minio"));
        assert_eq!(key("https://[::1]:443/s3/"), "https://[::1]/s3/b");
        assert_eq!(key("https://[::1]:9000"), "https://[::1]:9000/b");
        for aws in [
            "https://s3.amazonaws.com",
            "https://s3.eu-west-1.amazonaws.com/",
            "https://S3.EU-WEST-1.AMAZONAWS.COM:443",
            "https://s3-eu-west-1.amazonaws.com",
            "https://s3.dualstack.eu-west-1.amazonaws.com",
            "https://s3-fips.us-east-1.amazonaws.com",
            "https://s3.cn-north-1.amazonaws.com.cn",
        ] {
            assert_eq!(key(aws), "aws/b", "{aws}");
        }
        assert_eq!(BucketTarget::new("b").key(), "aws/b");
        // Look-alikes are other stores.
        assert_ne!(key("https://s3.amazonaws.com.example.org"), "aws/b");
        assert_ne!(key("http://s3.amazonaws.com"), "aws/b");
    }

    #[test]
    fn an_answer_is_kept_up_to_what_s3_allows_one_configuration() {
        let rule = |origin_len: usize| {
            CorsRule::new([format!("https://{}", "a".repeat(origin_len))], ["GET"])
        };
        // One rule of a 65,451-character origin: 65,536 bytes of XML, the limit.
        let largest = cors::config_xml_len(&[rule(0)]);
        let at_limit = rule(MAX_KEPT_CONFIG_BYTES - largest);
        assert_eq!(
            cors::config_xml_len(std::slice::from_ref(&at_limit)),
            MAX_KEPT_CONFIG_BYTES
        );
        assert_eq!(
            kept("b", [at_limit.clone()].into_iter()),
            Ok(vec![at_limit])
        );
        assert_eq!(kept("b", std::iter::empty()), Ok(vec![]));

        let over = rule(MAX_KEPT_CONFIG_BYTES - largest + 1);
        let err = kept("b", [over].into_iter()).unwrap_err();
        assert_eq!(err.reason(), Reason::Rejected);
        assert!(err.to_string().contains("AnswerTooLarge"), "{err}");
        assert!(
            err.to_string()
                .contains("65537 bytes of XML, more than the 65536"),
            "{err}"
        );

        // Many small rules: refused by their sum, whatever each one's size.
        let many = std::iter::repeat_n(CorsRule::new(["*"], ["GET"]), 12_000);
        let err = kept("b", many).unwrap_err();
        assert!(
            err.to_string()
                .contains("bytes of XML, more than the 65536"),
            "{err}"
        );
    }

    #[test]
    fn the_key_identifies_endpoint_and_bucket() {
        let mut a = BucketTarget::new("b");
        a.endpoint = Some("http://127.0.0.1:9000/".into());
        let mut b = a.clone();
        b.endpoint = Some("http://127.0.0.1:9000".into());
        b.region = Some("other".into());
        assert_eq!(a.key(), b.key());
        assert_eq!(BucketTarget::new("b").key(), "aws/b");
    }
}

//! The `CorsStore` on the AWS SDK for Rust.

use std::error::Error as StdError;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_s3::Client;
use aws_sdk_s3::config::retry::RetryPartition;
use aws_sdk_s3::config::{Region, SharedCredentialsProvider};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::types::{CorsConfiguration, CorsRule as SdkCorsRule};
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;

use aws_smithy_runtime_api::client::http::SharedHttpClient;
use aws_smithy_types::body::SdkBody;

use super::budget::{self, Budget, TokenBucket};
use super::cache::Recent;
use super::guard;
use super::{
    BucketTarget, Checksum, CorsStore, Credentials, Operation, Owner, RoleSession, S3Error,
};
use crate::cors::CorsRule;
use crate::tenancy::EndpointPolicy;

// Region used for custom endpoints when nothing else names one; S3-compatible stores
// generally accept any region in the signature.
const FALLBACK_REGION: &str = "us-east-1";
// Bounded so that rotating Secrets cannot grow the caches without end: a tenant's own
// identities evict the least recently used of theirs, never a store's.
const MAX_OWN_IDENTITIES: usize = 512;
// Stores' clients: one per store, region and (for a role) object's session.
const MAX_ADMINISTERED_CLIENTS: usize = 4096;

#[derive(Clone, PartialEq, Eq, Hash)]
struct ClientKey {
    guarded: bool,
    endpoint: Option<String>,
    region: String,
    force_path_style: bool,
    credentials: Option<Credentials>,
    assume_role: Option<RoleSession>,
    budget: Option<Budget>,
    owner: Owner,
    /// The owner at the endpoint: one request budget and one retry quota each.
    budget_key: String,
}

/// One cache for what administrators made (stores, the operator's own identity) and one for
/// the identities tenants bring, so that the second, however it churns, leaves the first be.
struct ByOwner<K, V> {
    administered: Recent<K, V>,
    tenants: Recent<K, V>,
}

impl<K: std::hash::Hash + Eq + Clone, V: Clone> ByOwner<K, V> {
    fn new(administered: usize, tenants: usize) -> Self {
        ByOwner {
            administered: Recent::new(administered),
            tenants: Recent::new(tenants),
        }
    }

    fn get_or_insert_with(&mut self, owner: &Owner, key: K, make: impl FnOnce() -> V) -> V {
        let cache = if owner.is_tenants() {
            &mut self.tenants
        } else {
            &mut self.administered
        };
        cache.get_or_insert_with(key, make)
    }
}

/// S3 through the AWS SDK. One SDK client per (endpoint, region, addressing style,
/// credentials), built on first use and reused.
pub struct SdkStore {
    shared: SdkConfig,
    default_region: Option<String>,
    clients: Mutex<ByOwner<ClientKey, Client>>,
    // One request budget per owner at an endpoint, shared by its clients. The administered
    // ones are never evicted: there are as many as stores (and endpoints the operator's own
    // identity reaches).
    budgets: Mutex<ByOwner<String, Arc<TokenBucket>>>,
    // The HTTP clients: both cap answers; the guarded one's DNS answers pass the policy.
    plain_http: SharedHttpClient,
    guarded_http: SharedHttpClient,
    // Assumes roles with the ambient credentials.
    sts: aws_sdk_sts::Client,
}

impl SdkStore {
    /// A store whose ambient credentials and region come from the AWS default chains
    /// (environment, web identity / IRSA, Pod Identity, profile, IMDS).
    pub async fn from_env(default_region: Option<String>, policy: EndpointPolicy) -> Self {
        let shared = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(RetryConfig::standard().with_max_attempts(3))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .operation_attempt_timeout(Duration::from_secs(20))
                    .operation_timeout(Duration::from_secs(60))
                    .build(),
            )
            .load()
            .await;
        Self::with_policy(shared, default_region, policy)
    }

    pub fn new(shared: SdkConfig, default_region: Option<String>) -> Self {
        Self::with_policy(shared, default_region, EndpointPolicy::default())
    }

    /// A store whose guarded targets connect only where `policy` allows.
    pub fn with_policy(
        shared: SdkConfig,
        default_region: Option<String>,
        policy: EndpointPolicy,
    ) -> Self {
        SdkStore {
            sts: aws_sdk_sts::Client::new(&shared),
            shared,
            default_region,
            clients: Mutex::new(ByOwner::new(MAX_ADMINISTERED_CLIENTS, MAX_OWN_IDENTITIES)),
            budgets: Mutex::new(ByOwner::new(usize::MAX, MAX_OWN_IDENTITIES)),
            plain_http: guard::plain(),
            guarded_http: guard::guarded(Arc::new(policy)),
        }
    }

    /// The token bucket of `key`'s owner at its endpoint, made on first use, with `key`'s
    /// budget from now on: every client of one owner takes its budget from the same place
    /// (the store's spec, or the operator's setting), so a changed one is the owner's own.
    fn budget_of(&self, key: &ClientKey, budget: Budget) -> Arc<TokenBucket> {
        let mut budgets = self.budgets.lock().expect("budget cache poisoned");
        let bucket = budgets.get_or_insert_with(&key.owner, key.budget_key.clone(), || {
            Arc::new(TokenBucket::new(budget))
        });
        bucket.set_budget(budget);
        bucket
    }

    /// Number of SDK clients cached.
    pub fn cached_clients(&self) -> usize {
        let clients = self.clients.lock().expect("client cache poisoned");
        clients.administered.len() + clients.tenants.len()
    }

    fn client(&self, target: &BucketTarget) -> Client {
        let region = target
            .region
            .clone()
            .or_else(|| self.default_region.clone())
            .or_else(|| self.shared.region().map(|r| r.to_string()))
            .unwrap_or_else(|| FALLBACK_REGION.to_owned());
        let key = ClientKey {
            guarded: target.guarded,
            force_path_style: target.force_path_style
                || target.endpoint.as_deref().is_some_and(needs_path_style),
            endpoint: target.endpoint.clone(),
            region,
            credentials: target.credentials.clone(),
            assume_role: target.assume_role.clone(),
            budget: target.budget,
            owner: target.owner.clone(),
            budget_key: target.budget_key(),
        };
        let owner = key.owner.clone();
        let mut clients = self.clients.lock().expect("client cache poisoned");
        clients.get_or_insert_with(&owner, key.clone(), || self.build_client(&key))
    }

    fn build_client(&self, key: &ClientKey) -> Client {
        let mut config = aws_sdk_s3::config::Builder::from(&self.shared)
            .region(Region::new(key.region.clone()))
            .force_path_style(key.force_path_style);
        if let Some(endpoint) = &key.endpoint {
            config = config.endpoint_url(endpoint);
        }
        let http = if key.guarded {
            self.guarded_http.clone()
        } else {
            self.plain_http.clone()
        };
        config = config.http_client(match key.budget {
            Some(budget) => budget::budgeted(http, self.budget_of(key, budget)),
            None => http,
        });
        // The SDK's retry quota is per partition: one per owner at an endpoint, so that a store
        // that throttles spends its own retries, not every other store's.
        config = config.retry_partition(RetryPartition::new(format!(
            "bucketcors {}",
            key.budget_key
        )));
        if let Some(c) = &key.credentials {
            let credentials = aws_credential_types::Credentials::new(
                &c.access_key_id,
                &c.secret_access_key,
                c.session_token.clone(),
                None,
                "BucketCorsSecret",
            );
            config = config.credentials_provider(SharedCredentialsProvider::new(credentials));
        } else if let Some(role) = &key.assume_role {
            config = config.credentials_provider(SharedCredentialsProvider::new(AssumedRole {
                sts: self.sts.clone(),
                role: role.clone(),
            }));
        }
        Client::from_conf(config.build())
    }
}

/// Credentials of a role assumed with the ambient ones; the client's identity cache keeps them
/// until they expire.
#[derive(Debug)]
struct AssumedRole {
    sts: aws_sdk_sts::Client,
    role: RoleSession,
}

impl aws_credential_types::provider::ProvideCredentials for AssumedRole {
    fn provide_credentials<'a>(
        &'a self,
    ) -> aws_credential_types::provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        use aws_credential_types::provider::error::CredentialsError;
        aws_credential_types::provider::future::ProvideCredentials::new(async move {
            let answer = self
                .sts
                .assume_role()
                .role_arn(&self.role.role_arn)
                .set_external_id(self.role.external_id.clone())
                .role_session_name(&self.role.session_name)
                .send()
                .await
                .map_err(|err| {
                    // STS's words name the operator's own role and the store's: they go to
                    // the operator's log, and the tenant reads only that it failed.
                    tracing::warn!(
                        role_arn = %self.role.role_arn,
                        session = %self.role.session_name,
                        error = %causes(&err),
                        "AssumeRole failed"
                    );
                    CredentialsError::provider_error(
                        "the operator could not assume the role of this object's ClusterBucketStore (its log says why)",
                    )
                })?;
            let c = answer.credentials().ok_or_else(|| {
                CredentialsError::provider_error("AssumeRole answered without credentials")
            })?;
            Ok(aws_credential_types::Credentials::new(
                c.access_key_id(),
                c.secret_access_key(),
                Some(c.session_token().to_owned()),
                std::time::SystemTime::try_from(*c.expiration()).ok(),
                "BucketCorsAssumeRole",
            ))
        })
    }
}

/// Virtual-hosted addressing cannot work when the endpoint's host is an IP address or
/// localhost: there is no DNS name to put the bucket in.
fn needs_path_style(endpoint: &str) -> bool {
    let rest = endpoint
        .split_once("://")
        .map_or(endpoint, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or(rest);
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => authority
            .rsplit_once(':')
            .map_or(authority, |(host, _)| host),
    };
    host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok()
}

/// What a store answered to a real preflight ([`SdkStore::preflight`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreflightAnswer {
    /// The URL the `OPTIONS` went to.
    pub url: String,
    pub status: u16,
    /// The response's headers, names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
}

impl PreflightAnswer {
    /// The value of header `name` (lower case), if the store sent it.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Turns the GetBucketCors request the SDK built (its endpoint, addressing style and HTTP
/// client are the target's) into an unsigned browser preflight for `key`, and keeps the answer.
#[derive(Debug)]
struct Preflight {
    key: String,
    origin: String,
    method: String,
    request_headers: Option<String>,
    sent_to: Mutex<String>,
    answer: Arc<Mutex<Option<PreflightAnswer>>>,
}

impl aws_smithy_runtime_api::client::interceptors::Intercept for Preflight {
    fn name(&self) -> &'static str {
        "Preflight"
    }

    fn modify_before_transmit(
        &self,
        context: &mut aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextMut<'_>,
        _: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
        _: &mut aws_smithy_types::config_bag::ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        let request = context.request_mut();
        // `…/bucket?cors` (path style) or `…/?cors` (virtual host): the same place, one key down.
        let uri = request.uri().to_owned();
        let base = uri.split('?').next().unwrap_or(&uri).trim_end_matches('/');
        let key: String = self
            .key
            .trim_start_matches('/')
            .split('/')
            .map(encode_path_segment)
            .collect::<Vec<_>>()
            .join("/");
        let url = format!("{base}/{key}");
        request.set_uri(url.clone())?;
        *self.sent_to.lock().expect("preflight URL poisoned") = url;
        request.set_method("OPTIONS")?;
        // A browser's preflight carries no credentials: drop the signature and the SDK's own
        // headers, keep Host.
        let headers = request.headers_mut();
        let drop: Vec<String> = headers
            .iter()
            .map(|(name, _)| name.to_ascii_lowercase())
            .filter(|name| {
                name == "authorization"
                    || name.starts_with("x-amz-")
                    || name.starts_with("amz-sdk-")
                    || name == "user-agent"
            })
            .collect();
        for name in drop {
            headers.remove(name);
        }
        // Checked, not assumed: a value that cannot be a header fails this preflight alone.
        headers.try_insert("Origin", self.origin.clone())?;
        headers.try_insert("Access-Control-Request-Method", self.method.clone())?;
        if let Some(requested) = &self.request_headers {
            headers.try_insert("Access-Control-Request-Headers", requested.clone())?;
        }
        *request.body_mut() = SdkBody::empty();
        Ok(())
    }

    fn read_before_deserialization(
        &self,
        context: &aws_smithy_runtime_api::client::interceptors::context::BeforeDeserializationInterceptorContextRef<'_>,
        _: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
        _: &mut aws_smithy_types::config_bag::ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        let response = context.response();
        let url = self.sent_to.lock().expect("preflight URL poisoned").clone();
        let answer = PreflightAnswer {
            url,
            status: response.status().as_u16(),
            headers: response
                .headers()
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.to_owned()))
                .collect(),
        };
        *self.answer.lock().expect("preflight answer poisoned") = Some(answer);
        Ok(())
    }
}

// Percent-encodes one path segment of an object key (RFC 3986 unreserved characters stay).
fn encode_path_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The longest a preflight may take: it is a check, not a write.
const PREFLIGHT_TIMEOUT: Duration = Duration::from_secs(5);

impl CorsStore for SdkStore {
    async fn get_cors(&self, target: &BucketTarget) -> Result<Vec<CorsRule>, S3Error> {
        let result = self
            .client(target)
            .get_bucket_cors()
            .bucket(&target.bucket)
            .set_expected_bucket_owner(target.expected_bucket_owner.clone())
            .send()
            .await;
        match result {
            Ok(output) => super::kept(&target.bucket, output.cors_rules().iter().map(from_sdk)),
            // The SDK does not model this code; it is how S3 says "no configuration".
            Err(err) if err.code() == Some("NoSuchCORSConfiguration") => Ok(Vec::new()),
            Err(err) => Err(classify(Operation::GetBucketCors, &target.bucket, err)),
        }
    }

    async fn put_cors(&self, target: &BucketTarget, rules: &[CorsRule]) -> Result<(), S3Error> {
        let configuration = CorsConfiguration::builder()
            .set_cors_rules(Some(rules.iter().map(to_sdk).collect()))
            .build()
            .map_err(|e| S3Error::Rejected {
                operation: Operation::PutBucketCors,
                bucket: target.bucket.clone(),
                code: "InvalidRequest".into(),
                message: e.to_string(),
            })?;
        let put = self
            .client(target)
            .put_bucket_cors()
            .bucket(&target.bucket)
            .set_expected_bucket_owner(target.expected_bucket_owner.clone())
            .cors_configuration(configuration);
        let sent = match target.checksum {
            Checksum::Crc32 => put.send().await,
            Checksum::ContentMd5 => put.customize().mutate_request(use_content_md5).send().await,
        };
        sent.map(drop)
            .map_err(|err| classify(Operation::PutBucketCors, &target.bucket, err))
    }

    async fn preflight(
        &self,
        target: &BucketTarget,
        key: &str,
        origin: &str,
        method: &str,
        request_headers: &[&str],
    ) -> Result<PreflightAnswer, S3Error> {
        let answer = Arc::new(Mutex::new(None));
        let interceptor = Preflight {
            key: key.to_owned(),
            origin: origin.to_owned(),
            method: method.to_owned(),
            request_headers: (!request_headers.is_empty()).then(|| request_headers.join(", ")),
            sent_to: Mutex::default(),
            answer: answer.clone(),
        };
        let sent = self
            .client(target)
            .get_bucket_cors()
            .bucket(&target.bucket)
            .customize()
            .config_override(
                aws_sdk_s3::config::Builder::default()
                    .retry_config(RetryConfig::disabled())
                    .timeout_config(
                        TimeoutConfig::builder()
                            .operation_timeout(PREFLIGHT_TIMEOUT)
                            .build(),
                    ),
            )
            .interceptor(interceptor)
            .send()
            .await;
        let answered = answer.lock().expect("preflight answer poisoned").take();
        match (answered, sent) {
            (Some(answer), _) => Ok(answer),
            (None, Err(err)) => Err(classify(Operation::Preflight, &target.bucket, err)),
            (None, Ok(_)) => Err(S3Error::Unavailable {
                operation: Operation::Preflight,
                bucket: target.bucket.clone(),
                message: "no answer was recorded".into(),
            }),
        }
    }

    async fn delete_cors(&self, target: &BucketTarget) -> Result<(), S3Error> {
        self.client(target)
            .delete_bucket_cors()
            .bucket(&target.bucket)
            .set_expected_bucket_owner(target.expected_bucket_owner.clone())
            .send()
            .await
            .map(drop)
            .or_else(|err| match err.code() {
                // Already gone: what the caller asked for holds.
                Some("NoSuchCORSConfiguration") => Ok(()),
                _ => Err(classify(Operation::DeleteBucketCors, &target.bucket, err)),
            })
    }
}

// The legacy integrity check: an MD5 of the body in Content-MD5, and none of the flexible
// checksum headers that some S3-compatible stores refuse.
fn use_content_md5(request: &mut aws_smithy_runtime_api::http::Request) {
    use md5::{Digest, Md5};
    let digest = request.body().bytes().map(Md5::digest);
    let headers = request.headers_mut();
    let flexible: Vec<String> = headers
        .iter()
        .map(|(name, _)| name.to_ascii_lowercase())
        .filter(|name| {
            name.starts_with("x-amz-checksum-") || name == "x-amz-sdk-checksum-algorithm"
        })
        .collect();
    for name in flexible {
        headers.remove(name);
    }
    if let Some(digest) = digest {
        headers.insert("Content-MD5", aws_smithy_types::base64::encode(digest));
    }
}

fn from_sdk(rule: &SdkCorsRule) -> CorsRule {
    CorsRule {
        id: rule.id().map(str::to_owned),
        allowed_origins: rule.allowed_origins().to_vec(),
        allowed_methods: rule.allowed_methods().to_vec(),
        allowed_headers: rule.allowed_headers().to_vec(),
        expose_headers: rule.expose_headers().to_vec(),
        max_age_seconds: rule.max_age_seconds(),
    }
}

fn to_sdk(rule: &CorsRule) -> SdkCorsRule {
    // Empty lists are left out rather than sent as nothing: some stores reject empty elements.
    let non_empty = |list: &Vec<String>| (!list.is_empty()).then(|| list.clone());
    SdkCorsRule::builder()
        .set_id(rule.id.clone().filter(|id| !id.is_empty()))
        .set_allowed_origins(Some(rule.allowed_origins.clone()))
        .set_allowed_methods(Some(rule.allowed_methods.clone()))
        .set_allowed_headers(non_empty(&rule.allowed_headers))
        .set_expose_headers(non_empty(&rule.expose_headers))
        .set_max_age_seconds(rule.max_age_seconds)
        .build()
        .expect("allowed origins and methods are always set")
}

fn classify<E, R>(operation: Operation, bucket: &str, err: SdkError<E, R>) -> S3Error
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
    R: std::fmt::Debug + HasStatus + 'static,
{
    let bucket = bucket.to_owned();
    let code = err.code().map(str::to_owned);
    let status = err.raw_response().map(HasStatus::status);
    if !matches!(err, SdkError::ServiceError(_)) {
        if guard::too_large(&err) {
            // A broken or hostile endpoint, not a passing fault: looked at again at resync.
            return S3Error::Rejected {
                operation,
                bucket,
                code: "AnswerTooLarge".into(),
                message: guard::TooLarge.to_string(),
            };
        }
        if let Some(message) = guard::refusal(&err) {
            return S3Error::EndpointNotAllowed {
                operation,
                bucket,
                message,
            };
        }
        return S3Error::Unavailable {
            operation,
            bucket,
            message: causes(&err),
        };
    }
    let message = err
        .message()
        .map(str::to_owned)
        .unwrap_or_else(|| causes(&err));
    // The store's own code leads the message (e.g. "SlowDown: Please reduce your request rate.").
    let coded = |message: String| match &code {
        Some(code) => format!("{code}: {message}"),
        None => message,
    };
    let region = bucket_region(err.raw_response());
    match (status, code.as_deref()) {
        (_, Some("NoSuchBucket")) => S3Error::BucketNotFound { bucket },
        // The bucket is in another region than the request was signed for: say which, so
        // that the fix (spec.region) is in the status rather than a redirect followed on
        // every pass.
        (Some(301 | 400), Some("PermanentRedirect" | "AuthorizationHeaderMalformed"))
            if region.is_some() =>
        {
            let region = region.unwrap_or_default();
            S3Error::Rejected {
                operation,
                bucket,
                code: code.unwrap_or_default(),
                message: format!("the bucket is in {region}: set spec.region to {region}"),
            }
        }
        // A new bucket's DNS name is still spreading: it goes away by itself.
        (Some(307), _) | (_, Some("TemporaryRedirect")) => S3Error::Unavailable {
            operation,
            bucket,
            message: coded(message),
        },
        (Some(403), _) | (_, Some("AccessDenied")) => S3Error::AccessDenied {
            operation,
            bucket,
            message: coded(message),
        },
        (Some(501), _) | (_, Some("NotImplemented")) => S3Error::Unsupported {
            operation,
            // A store that names itself in its answers (`Server: MinIO`) gets its advice.
            message: coded(message),
            advice: err
                .raw_response()
                .and_then(|r| r.header("server"))
                .and_then(crate::profiles::for_server_header)
                .and_then(|p| p.not_implemented_advice),
        },
        (
            _,
            Some(
                "SlowDown" | "Throttling" | "RequestTimeout" | "ServiceUnavailable"
                | "InternalError",
            ),
        ) => S3Error::Unavailable {
            operation,
            bucket,
            message: coded(message),
        },
        (Some(status), _) if status >= 500 => S3Error::Unavailable {
            operation,
            bucket,
            message: coded(message),
        },
        (Some(404), None) => S3Error::BucketNotFound { bucket },
        (status, code) => S3Error::Rejected {
            operation,
            bucket,
            code: code
                .map(str::to_owned)
                .or_else(|| status.map(|s| format!("HTTP {s}")))
                .unwrap_or_else(|| "Unknown".into()),
            message,
        },
    }
}

/// The error and its causes, as people read them ("dispatch failure: io error: connection
/// refused"), without the SDK's debug dump.
fn causes(err: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

/// The HTTP status of a raw response; a seam so that error mapping is tested without a server.
pub trait HasStatus {
    fn status(&self) -> u16;
    /// The value of response header `name`, when it is there and text.
    fn header(&self, name: &str) -> Option<&str>;
}

impl HasStatus for aws_smithy_runtime_api::http::Response {
    fn status(&self) -> u16 {
        self.status().as_u16()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers().get(name)
    }
}

/// Where AWS says a bucket lives when a request went to the wrong region: the
/// `x-amz-bucket-region` header of its 301 PermanentRedirect or 400
/// AuthorizationHeaderMalformed answer. Only a plausible region name is repeated.
fn bucket_region<R: HasStatus>(response: Option<&R>) -> Option<String> {
    let region = response?.header("x-amz-bucket-region")?;
    (crate::constraints::REGION.holds)(region).then(|| region.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offline_store() -> SdkStore {
        let shared = SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .build();
        SdkStore::new(shared, None)
    }

    const ENDPOINT: &str = "http://127.0.0.1:9000";
    const ROLE: &str = "arn:aws:iam::123456789012:role/team-cors";

    /// A target on `ENDPOINT` as a store with a budget of one request a second.
    fn through_store(name: &str) -> BucketTarget {
        let mut target = BucketTarget::new("b");
        target.endpoint = Some(ENDPOINT.to_owned());
        target.owner = Owner::Store(name.to_owned());
        target.budget = Some(Budget {
            per_second: 1,
            burst: 1,
        });
        target
    }

    /// A target on `ENDPOINT` with a tenant's Secret holding `access_key_id`, at the
    /// operator's default budget.
    fn own(namespace: &str, access_key_id: &str) -> BucketTarget {
        let mut target = BucketTarget::new("b");
        target.endpoint = Some(ENDPOINT.to_owned());
        target.credentials = Some(Credentials {
            access_key_id: access_key_id.to_owned(),
            secret_access_key: "forged".to_owned(),
            session_token: None,
        });
        target.owner = Owner::Secret {
            namespace: namespace.to_owned(),
            name: "creds".to_owned(),
            access_key_id: access_key_id.to_owned(),
        };
        target.budget = Some(Budget {
            per_second: 200,
            burst: 200,
        });
        target
    }

    /// The token bucket `target`'s requests take from (built with its client).
    fn bucket(store: &SdkStore, target: &BucketTarget) -> Arc<TokenBucket> {
        store.client(target);
        let mut budgets = store.budgets.lock().unwrap();
        let key = target.budget_key();
        budgets.get_or_insert_with(&target.owner, key.clone(), || panic!("no budget for {key}"))
    }

    /// Whether the bucket is spent at `at`: a request then would wait. Asked at one instant
    /// throughout a test, so that however long the test runs nothing refills.
    fn spent(bucket: &TokenBucket, at: std::time::Instant) -> bool {
        bucket.take_at(at) > Duration::from_millis(500)
    }

    #[tokio::test]
    async fn a_tenant_whose_key_id_names_the_operator_or_a_role_spends_a_budget_of_its_own() {
        let store = offline_store();
        let mut with_role = through_store("role-store");
        with_role.assume_role = Some(RoleSession {
            role_arn: ROLE.to_owned(),
            external_id: None,
            session_name: "bucketcors.team.web".to_owned(),
        });
        for (granted, forged) in [
            (through_store("ambient-store"), own("team", "ambient")),
            (with_role, own("team", ROLE)),
        ] {
            let granted_bucket = bucket(&store, &granted);
            let forged_bucket = bucket(&store, &forged);
            assert!(!Arc::ptr_eq(&granted_bucket, &forged_bucket));
            assert_ne!(granted.budget_key(), forged.budget_key());
            // The tenant's client, at another budget, left the store's as its spec says: one
            // request goes, the next waits a second.
            let at = std::time::Instant::now();
            assert!(!spent(&granted_bucket, at));
            assert!(spent(&granted_bucket, at));
        }
        // Two namespaces with the same key id are two owners too.
        assert_ne!(own("a", "AKID").budget_key(), own("b", "AKID").budget_key());
    }

    #[tokio::test]
    async fn six_hundred_identities_leave_a_stores_budget_and_client_alone() {
        let store = offline_store();
        let granted = through_store("web");
        let before = bucket(&store, &granted);
        let at = std::time::Instant::now();
        assert!(!spent(&before, at));
        for i in 0..600 {
            store.client(&own("churn", &format!("AKID{i:04}")));
        }
        let after = bucket(&store, &granted);
        assert!(Arc::ptr_eq(&before, &after), "the store's budget was reset");
        assert!(spent(&after, at), "the store's budget forgot what it lent");
        let clients = store.clients.lock().unwrap();
        assert_eq!(clients.tenants.len(), MAX_OWN_IDENTITIES);
        assert_eq!(clients.administered.len(), 1, "the store's client is kept");
        let budgets = store.budgets.lock().unwrap();
        assert_eq!(budgets.tenants.len(), MAX_OWN_IDENTITIES);
    }

    #[test]
    fn ip_and_localhost_endpoints_need_path_style() {
        for endpoint in [
            "http://127.0.0.1:9000",
            "http://localhost:9000/",
            "https://[::1]:8443",
            "http://10.0.0.5",
            "LOCALHOST",
        ] {
            assert!(needs_path_style(endpoint), "{endpoint}");
        }
        for endpoint in ["https://s3.nl-ams.scw.cloud", "https://minio.internal:9000"] {
            assert!(!needs_path_style(endpoint), "{endpoint}");
        }
    }

    use aws_sdk_s3::operation::put_bucket_cors::PutBucketCorsError;
    use aws_smithy_runtime_api::http::{Response, StatusCode};
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::error::ErrorMetadata;

    // The store's answers moto cannot be made to give, built as the SDK builds them.
    fn answer(status: u16, code: &str, message: &str) -> S3Error {
        let meta = ErrorMetadata::builder().code(code).message(message).build();
        let raw = Response::new(StatusCode::try_from(status).unwrap(), SdkBody::empty());
        let err = SdkError::service_error(PutBucketCorsError::generic(meta), raw);
        classify(Operation::PutBucketCors, "b", err)
    }

    #[test]
    fn store_answers_map_to_their_reasons() {
        use crate::reason::Reason::*;
        let cases = [
            (403, "AccessDenied", "Access Denied", AccessDenied),
            (403, "InvalidAccessKeyId", "no such key", AccessDenied),
            (
                501,
                "NotImplemented",
                "A header you provided implies functionality that is not implemented",
                Unsupported,
            ),
            (
                503,
                "SlowDown",
                "Please reduce your request rate.",
                Unavailable,
            ),
            (
                500,
                "InternalError",
                "We encountered an internal error.",
                Unavailable,
            ),
            (502, "BadGateway", "", Unavailable),
            (
                400,
                "MalformedXML",
                "The XML you provided was not well-formed",
                Rejected,
            ),
            (
                400,
                "InvalidRequest",
                "Found unsupported HTTP method in CORS config.",
                Rejected,
            ),
            (
                404,
                "NoSuchBucket",
                "The specified bucket does not exist",
                BucketNotFound,
            ),
            (
                301,
                "PermanentRedirect",
                "The bucket is in another region",
                Rejected,
            ),
        ];
        for (status, code, message, reason) in cases {
            let err = answer(status, code, message);
            assert_eq!(err.reason(), reason, "{status} {code}: {err}");
            // A missing bucket is said in our words; every other answer keeps the store's.
            if reason != BucketNotFound {
                assert!(
                    err.to_string().contains(message),
                    "the message is kept: {err}"
                );
            }
        }
    }

    #[test]
    fn rejections_keep_the_stores_code_and_message_verbatim() {
        let err = answer(
            400,
            "MalformedXML",
            "The XML you provided was not well-formed",
        );
        assert_eq!(
            err,
            S3Error::Rejected {
                operation: Operation::PutBucketCors,
                bucket: "b".into(),
                code: "MalformedXML".into(),
                message: "The XML you provided was not well-formed".into(),
            }
        );
    }

    #[test]
    fn unavailable_messages_lead_with_the_stores_code() {
        let err = answer(503, "SlowDown", "Please reduce your request rate.");
        assert_eq!(
            err.to_string(),
            r#"PutBucketCors on bucket "b" failed: SlowDown: Please reduce your request rate."#
        );
    }

    #[test]
    fn timeouts_are_unavailable() {
        let err: SdkError<PutBucketCorsError, Response> =
            SdkError::timeout_error("operation timed out");
        assert_eq!(
            classify(Operation::PutBucketCors, "b", err).reason(),
            crate::reason::Reason::Unavailable
        );
    }

    #[test]
    fn rules_survive_the_sdk_types_unchanged() {
        let rule = CorsRule::new(["https://a.example.com"], ["GET", "PUT"])
            .id("app")
            .allowed_headers(["*"])
            .expose_headers(["ETag"])
            .max_age(0);
        assert_eq!(from_sdk(&to_sdk(&rule)), rule);
        let bare = CorsRule::new(["*"], ["GET"]);
        assert_eq!(from_sdk(&to_sdk(&bare)), bare);
    }
}

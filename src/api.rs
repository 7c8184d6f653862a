//! The `BucketCors` custom resource (bucketcors.dev/v1alpha1). User-facing `///` docs here
//! become `kubectl explain`.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use crate::cors::{CorsRule, Expectation};

/// API group of the resource.
pub const GROUP: &str = "bucketcors.dev";
/// Finalizer that lets the operator clean the bucket up before the object goes.
pub const FINALIZER: &str = "bucketcors.dev/cleanup";

/// Desired CORS configuration of one S3 bucket.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "bucketcors.dev",
    version = "v1alpha1",
    kind = "BucketCors",
    plural = "bucketcors",
    singular = "bucketcors",
    shortname = "bcors",
    namespaced,
    status = "BucketCorsStatus",
    derive = "PartialEq",
    doc = "Keeps the CORS configuration of an S3 bucket equal to the rules it declares.",
    printcolumn = r#"{"name":"Bucket","type":"string","jsonPath":".spec.bucket"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Rules","type":"integer","jsonPath":".status.ruleCount"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct BucketCorsSpec {
    /// Name of the bucket (not an access-point alias: S3 does not let access points change a
    /// bucket's CORS configuration). Cannot be changed after creation.
    #[schemars(length(min = 1))]
    pub bucket: String,

    /// Region of the bucket, e.g. `eu-west-1` or `nl-ams`. When absent: the operator's
    /// `--default-region`, then the AWS SDK's region chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,

    /// The ClusterBucketStore to act through: its endpoint, identity and region. An
    /// administrator's store must grant this namespace the bucket. With a store, `endpoint`,
    /// `forcePathStyle`, `putChecksum`, `storeProfile` and `credentialsSecretRef` come from it and may not be
    /// set here. Cannot be changed after creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_ref: Option<StoreRef>,

    /// S3 endpoint URL for S3-compatible stores, e.g. `https://s3.nl-ams.scw.cloud`. When
    /// absent: the operator's `--default-endpoint`, then AWS S3. Cannot be changed after creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,

    /// Address buckets as `endpoint/bucket` instead of `bucket.endpoint`. Needed by stores
    /// without virtual-hosted-style addressing. Always used when the endpoint host is an IP
    /// address or `localhost`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force_path_style: Option<bool>,

    /// Secret in this object's namespace holding the keys `AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY` and optionally `AWS_SESSION_TOKEN`: the object acts with its own
    /// identity, toward an endpoint the operator's endpoint policy allows. Without it (and
    /// without `storeRef`) the object is NotPermitted, unless the operator runs single-tenant
    /// and lends it its own AWS identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretRef>,

    /// AWS account ID expected to own the bucket. Sent with every S3 request; S3 answers
    /// 403 (AccessDenied) when the bucket belongs to another account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_bucket_owner: Option<String>,

    /// What happens to the bucket's CORS configuration when this object is deleted: `Delete`
    /// removes it, `Retain` leaves it as it is, `Restore` puts back the configuration the bucket
    /// had before the operator first wrote to it (see `status.previousConfiguration`).
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,

    /// How PutBucketCors proves its body is intact: `CRC32` (the AWS SDK's default
    /// `x-amz-checksum-crc32`) or `ContentMD5` (the legacy `Content-MD5` header, for
    /// S3-compatible stores that refuse the former). Default: the operator's `--put-checksum`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub put_checksum: Option<PutChecksum>,

    /// Which store serves the bucket (`CloudflareR2`, `BackblazeB2`, `Wasabi`, `MinIO`, ...),
    /// when its endpoint's host does not tell: its documented limits are checked before any
    /// call, the headers it does not take are not sent, and what it does by itself is not
    /// fought. Default: chosen from the endpoint's host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_profile: Option<StoreProfile>,

    /// `Full` makes the bucket match and puts it back when changed by other means.
    /// `ObserveOnly` never writes; it reports differences as Ready=False, reason Drifted.
    #[serde(default)]
    pub management_policy: ManagementPolicy,

    /// The CORS rules, in order: S3 answers with the first rule that matches a request.
    /// At most 100. An empty list means the bucket must have no CORS configuration.
    #[schemars(length(max = 100))]
    pub rules: Vec<CorsRule>,

    /// Requests the rules must allow or refuse, checked against `rules` as S3 would answer
    /// their preflight, before anything is written. A spec that breaks one of its
    /// expectations is not written: the object reports Ready=False, reason ExpectationFailed,
    /// naming the expectation and the rule that decided it. At most 50.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50))]
    pub expectations: Vec<Expectation>,

    /// Live verification, off when absent: after each write and at each resync the operator
    /// sends the first expectations (at most 5) to the bucket as real browser preflights and
    /// reports what the store answered in the `Verified` condition, so that a store that keeps
    /// the rules but does not apply them (or applies them late) shows. Ready is not affected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<Verify>,
}

/// How expectations are checked on the live bucket.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Verify {
    /// Send the expectations as real preflights (`OPTIONS`, unsigned, as a browser sends
    /// them) to the bucket, where its S3 calls go.
    pub live: bool,
    /// The object key the preflights ask about; `index.html` when absent. At most 1024
    /// characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub key: Option<String>,
}

/// A reference to a ClusterBucketStore.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StoreRef {
    /// Name of the ClusterBucketStore.
    #[schemars(length(min = 1))]
    pub name: String,
}

/// A reference to a Secret in the same namespace as the BucketCors.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SecretRef {
    /// Name of the Secret.
    #[schemars(length(min = 1))]
    pub name: String,
}

/// What happens to the bucket's CORS configuration when the BucketCors is deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DeletionPolicy {
    /// Remove the bucket's CORS configuration.
    #[default]
    Delete,
    /// Leave the bucket's CORS configuration as it is.
    Retain,
    /// Put back the configuration recorded in `status.previousConfiguration` (remove the
    /// configuration when the bucket had none; do nothing when the operator never wrote).
    Restore,
}

/// The integrity check sent with PutBucketCors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PutChecksum {
    /// `x-amz-checksum-crc32`, the AWS SDK's default.
    #[serde(rename = "CRC32")]
    Crc32,
    /// `Content-MD5` only, for stores that refuse the flexible checksum headers.
    #[serde(rename = "ContentMD5")]
    ContentMd5,
}

/// Which S3 implementation serves a bucket: the operator applies what that store documents
/// (its limits, the headers it takes, what it does after a delete). When not named: chosen from
/// the endpoint's host (`*.r2.cloudflarestorage.com` is CloudflareR2, and so on), else Generic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum StoreProfile {
    #[serde(rename = "AWS")]
    Aws,
    CloudflareR2,
    BackblazeB2,
    Wasabi,
    DigitalOceanSpaces,
    #[serde(rename = "MinIO")]
    MinIo,
    Scaleway,
    #[serde(rename = "OVHcloud")]
    OvhCloud,
    #[serde(rename = "IONOS")]
    Ionos,
    Storj,
    #[serde(rename = "CephRGW")]
    CephRgw,
    Garage,
    /// AWS's rules only.
    Generic,
}

/// Whether the operator writes to the bucket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ManagementPolicy {
    /// Make the bucket match the spec and keep it so.
    #[default]
    Full,
    /// Never write; report differences.
    ObserveOnly,
}

/// Observed state of a BucketCors.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BucketCorsStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// When the operator last wrote the bucket or saw its outcome change (RFC 3339). Checks
    /// that find the bucket still in sync leave it alone, so an idle object costs no API writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<String>,

    /// Number of rules the bucket holds as far as the operator last saw.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_count: Option<i32>,

    /// The bucket's CORS configuration as it was just before the operator first wrote to it
    /// (empty rules: it had none). Used by `deletionPolicy: Restore`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_configuration: Option<PreviousConfiguration>,

    /// Present while this object holds its bucket: of all the objects that could write the
    /// same bucket, it is the one that does. Written before its first write to the bucket and
    /// read back after an operator restart; removed when the object stops competing for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holding: Option<Holding>,

    /// Current state. `Ready` is True when the bucket matches the spec. Beside it, kstatus's
    /// `Reconciling` is True while a cause that may go away by itself is retried, and `Stalled`
    /// is True while the object waits for a change someone must make; neither is there
    /// otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// The bucket an object holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Holding {
    /// The bucket, as the operator names it: its store's endpoint (or `aws`) and its name.
    pub bucket: String,
    /// Since when (RFC 3339).
    pub since: String,
}

/// A bucket's CORS configuration recorded before the operator replaced it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PreviousConfiguration {
    /// The rules the bucket held, in order; empty when it had no configuration.
    pub rules: Vec<ObservedRule>,
    /// When they were recorded (RFC 3339).
    pub recorded_at: String,
}

/// A CORS rule as the bucket held it, kept exactly as the store returned it. Stores accept
/// what S3 refuses (Garage takes `PATCH` and empty lists), so unlike a rule of the spec nothing
/// here is constrained: a record must never fail for what it records.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObservedRule {
    /// The rule's identifier, if it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Its allowed origins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_origins: Vec<String>,
    /// Its allowed methods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_methods: Vec<String>,
    /// Its allowed headers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_headers: Vec<String>,
    /// Its expose headers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expose_headers: Vec<String>,
    /// Its max age, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age_seconds: Option<i32>,
}

impl From<CorsRule> for ObservedRule {
    fn from(rule: CorsRule) -> Self {
        ObservedRule {
            id: rule.id,
            allowed_origins: rule.allowed_origins,
            allowed_methods: rule.allowed_methods,
            allowed_headers: rule.allowed_headers,
            expose_headers: rule.expose_headers,
            max_age_seconds: rule.max_age_seconds,
        }
    }
}

impl From<ObservedRule> for CorsRule {
    fn from(rule: ObservedRule) -> Self {
        CorsRule {
            id: rule.id,
            allowed_origins: rule.allowed_origins,
            allowed_methods: rule.allowed_methods,
            allowed_headers: rule.allowed_headers,
            expose_headers: rule.expose_headers,
            max_age_seconds: rule.max_age_seconds,
        }
    }
}

impl PreviousConfiguration {
    /// The recorded rules, as rules to put back.
    pub fn cors_rules(&self) -> Vec<CorsRule> {
        self.rules.iter().cloned().map(CorsRule::from).collect()
    }
}

/// A standard Kubernetes condition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Type of the condition: `Ready`, `Reconciling` or `Stalled`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// One word saying why: InSync, Applied, Drifted, InvalidSpec, Conflict,
    /// CredentialsNotFound, BucketNotFound, AccessDenied, Unsupported, Rejected, Unavailable,
    /// NotPersisted, NotPermitted, EndpointNotAllowed, ExpectationFailed.
    pub reason: String,
    /// What happened, for people.
    pub message: String,
    /// When `status` last changed (RFC 3339).
    pub last_transition_time: String,
    /// The `metadata.generation` this condition describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

impl BucketCors {
    /// The Ready condition, when there is one.
    pub fn ready_condition(&self) -> Option<&Condition> {
        self.status
            .as_ref()?
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
    }

    /// Whether the Ready condition is True.
    pub fn is_ready(&self) -> bool {
        self.ready_condition().is_some_and(|c| c.status == "True")
    }
}

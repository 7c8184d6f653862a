//! Who may act on which bucket: the cluster-scoped `ClusterBucketStore` that administrators
//! make (an endpoint, an identity, the namespaces it serves and the buckets it grants), and
//! the endpoint policy for objects that bring their own credentials. Pure: the controller
//! feeds it the store and the namespace's labels from its caches.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::api::{Condition, PutChecksum, SecretRef, StoreProfile};

/// An S3 store and what it grants: administrators make one per store and identity, and say
/// which namespaces may use it for which buckets. BucketCors objects name it in
/// `spec.storeRef`.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "bucketcors.dev",
    version = "v1alpha1",
    kind = "ClusterBucketStore",
    plural = "clusterbucketstores",
    singular = "clusterbucketstore",
    shortname = "cbstore",
    status = "ClusterBucketStoreStatus",
    derive = "PartialEq",
    doc = "An S3 store, the identity the operator uses on it, and which namespaces may use it for which buckets.",
    printcolumn = r#"{"name":"Endpoint","type":"string","jsonPath":".spec.endpoint"}"#,
    printcolumn = r#"{"name":"Buckets","type":"string","jsonPath":".spec.buckets"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterBucketStoreSpec {
    /// S3 endpoint URL, e.g. `https://s3.nl-ams.scw.cloud`. When absent: the operator's
    /// `--default-endpoint`, then AWS S3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,

    /// Region of the store's buckets unless a BucketCors names another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,

    /// Address buckets as `endpoint/bucket` instead of `bucket.endpoint`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force_path_style: Option<bool>,

    /// How PutBucketCors proves its body is intact: `CRC32` or `ContentMD5`. Default: the
    /// operator's `--put-checksum`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub put_checksum: Option<PutChecksum>,

    /// Which S3 implementation this is (`CloudflareR2`, `BackblazeB2`, `Wasabi`, `MinIO`, ...),
    /// when the endpoint's host does not tell: the objects it serves get that store's
    /// documented limits and handling. Default: chosen from the endpoint's host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<StoreProfile>,

    /// How many requests a second the operator sends this store at most, retries included,
    /// for all the objects it serves together. Default: the operator's
    /// `--store-requests-per-second` (200).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_budget: Option<RequestBudget>,

    /// The identity the operator acts with on this store. When absent: the operator's own
    /// (environment, IRSA / web identity, Pod Identity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<StoreCredentials>,

    /// Which namespaces may use this store: a namespace may when any condition names it or
    /// selects it by its labels. No condition: no namespace may.
    #[serde(default)]
    pub conditions: Vec<StoreCondition>,

    /// Names of the buckets this store may be used for, as globs (`*` any run of characters,
    /// `?` one), e.g. `team-a-*`. At least one.
    #[schemars(length(min = 1))]
    pub buckets: Vec<String>,
}

/// A store's request budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestBudget {
    /// Requests a second, on average.
    #[schemars(range(min = 1, max = 100000))]
    pub per_second: u32,
    /// Requests that may go at once after a quiet time. Default: `perSecond`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100000))]
    pub burst: Option<u32>,
}

impl From<RequestBudget> for crate::s3::Budget {
    fn from(b: RequestBudget) -> Self {
        crate::s3::Budget {
            per_second: b.per_second.max(1),
            burst: b.burst.unwrap_or(b.per_second).max(1),
        }
    }
}

/// The identity of a store.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StoreCredentials {
    /// Secret in the operator's own namespace holding `AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY` and optionally `AWS_SESSION_TOKEN`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretRef>,
    /// An IAM role the operator assumes with its own identity (STS AssumeRole), with a session
    /// name that names the BucketCors it acts for, so that CloudTrail says which object did
    /// what.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assume_role: Option<AssumeRole>,
}

/// An IAM role to assume.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AssumeRole {
    /// ARN of the role, e.g. `arn:aws:iam::111122223333:role/team-a-cors`.
    #[schemars(length(min = 20, max = 2048))]
    pub role_arn: String,
    /// The external ID the role's trust policy asks for, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
}

/// The STS session name for the object `namespace/name`: `bucketcors.NAMESPACE.NAME`, in the
/// characters STS allows and at most 64 of them (a long one keeps its start and a hash).
pub fn session_name(namespace: &str, name: &str) -> String {
    use std::hash::{Hash, Hasher};
    let full = format!("bucketcors.{namespace}.{name}");
    let clean: String = full
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "+=,.@-_".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    if clean.len() <= 64 {
        return clean;
    }
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    full.hash(&mut hasher);
    format!("{}-{:08x}", &clean[..55], hasher.finish() as u32)
}

/// Namespaces a store serves: those named, and those whose labels the selector matches.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StoreCondition {
    /// Namespaces by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// Namespaces by label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
}

/// Observed state of a ClusterBucketStore.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterBucketStoreStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` is True when the store's spec is valid.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// Why an object may not act.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Denial {
    /// No store grants it (or the store it names does not).
    NotPermitted(String),
    /// It names its own endpoint, and the endpoint policy refuses it.
    EndpointNotAllowed(String),
}

impl Denial {
    /// Store `store` does not serve `namespace`, or does not exist: the same words for both,
    /// so that a namespace learns nothing of stores that are not its own.
    pub fn not_served(store: &str, namespace: &str, labels_unknown: bool) -> Denial {
        let unknown = if labels_unknown {
            "; this namespace's labels are not known yet, so no selector matches it"
        } else {
            ""
        };
        Denial::NotPermitted(format!(
            "no ClusterBucketStore {store:?} grants namespace {namespace:?}: it does not exist or does not serve this namespace{unknown}"
        ))
    }
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Denial::NotPermitted(m) | Denial::EndpointNotAllowed(m) => f.write_str(m),
        }
    }
}

impl ClusterBucketStore {
    /// Whether the store serves `namespace`: it names it, or a selector matches its labels.
    /// Labels not known yet (`None`) match no selector.
    pub fn serves(&self, namespace: &str, labels: Option<&BTreeMap<String, String>>) -> bool {
        self.spec.conditions.iter().any(|c| {
            c.namespaces.iter().any(|n| n == namespace)
                || c.namespace_selector
                    .as_ref()
                    .zip(labels)
                    .is_some_and(|(s, labels)| selector_matches(s, labels))
        })
    }

    /// Whether namespace `namespace`, with labels `labels`, may use this store for `bucket`.
    /// A namespace it does not serve learns only that (`Denial::not_served`); one it serves
    /// learns whether it is valid and which buckets it grants. Labels not known yet (`None`)
    /// match no selector: the object waits for them, and is looked at again as soon as they
    /// are known.
    pub fn grants(
        &self,
        namespace: &str,
        labels: Option<&BTreeMap<String, String>>,
        bucket: &str,
    ) -> Result<(), Denial> {
        let name = self.metadata.name.as_deref().unwrap_or_default();
        if !self.serves(namespace, labels) {
            return Err(Denial::not_served(name, namespace, labels.is_none()));
        }
        if let Err(problem) = self.spec.problems() {
            return Err(Denial::NotPermitted(format!(
                "ClusterBucketStore {name:?} is not valid: {problem}"
            )));
        }
        if !self.spec.buckets.iter().any(|g| glob_matches(g, bucket)) {
            return Err(Denial::NotPermitted(format!(
                "ClusterBucketStore {name:?} does not grant bucket {bucket:?} (it grants {})",
                self.spec.buckets.join(", ")
            )));
        }
        Ok(())
    }
}

impl ClusterBucketStoreSpec {
    /// What makes the store unusable, in words; the store's Ready condition says the same.
    pub fn problems(&self) -> Result<(), String> {
        if let Some(StoreCredentials {
            secret_ref: Some(_),
            assume_role: Some(_),
        }) = &self.credentials
        {
            return Err("spec.credentials: name a secretRef or an assumeRole, not both".into());
        }
        if self.buckets.is_empty() {
            return Err("spec.buckets: at least one bucket name or glob is required".into());
        }
        for (i, c) in self.conditions.iter().enumerate() {
            if let Some(s) = &c.namespace_selector {
                for (j, e) in s.match_expressions.iter().flatten().enumerate() {
                    let field =
                        format!("spec.conditions[{i}].namespaceSelector.matchExpressions[{j}]");
                    match e.operator.as_str() {
                        "In" | "NotIn" if e.values.as_ref().is_none_or(Vec::is_empty) => {
                            return Err(format!("{field}: operator {} needs values", e.operator));
                        }
                        "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
                        other => {
                            return Err(format!(
                                "{field}: unknown operator {other:?} (In, NotIn, Exists, DoesNotExist)"
                            ));
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// Whether `labels` satisfy a Kubernetes label selector (`matchLabels` and every
/// `matchExpressions` requirement). An empty selector matches every namespace, as in
/// Kubernetes; an unknown operator matches none.
pub fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let labels_match = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    labels_match
        && selector
            .match_expressions
            .iter()
            .flatten()
            .all(|e| requirement_matches(e, labels))
}

fn requirement_matches(req: &LabelSelectorRequirement, labels: &BTreeMap<String, String>) -> bool {
    let value = labels.get(&req.key);
    let values = req.values.as_deref().unwrap_or_default();
    match req.operator.as_str() {
        "In" => value.is_some_and(|v| values.contains(v)),
        "NotIn" => value.is_none_or(|v| !values.contains(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        _ => false,
    }
}

/// Shell-style glob: `*` matches any run of characters (none included), `?` exactly one.
pub fn glob_matches(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    // Greedy with one backtrack point: linear in practice, no recursion.
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ni));
                pi += 1;
            }
            Some(&c) if c == '?' || c == n[ni] => {
                pi += 1;
                ni += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    pi = sp + 1;
                    ni = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Where objects that bring their own credentials may send requests. Stores are made by
/// administrators and are not subject to it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EndpointPolicy {
    /// `http://` endpoints are allowed (by default only `https://`).
    pub allow_http: bool,
    /// Address ranges allowed although they are in a refused range.
    pub allowed: Vec<Cidr>,
}

/// An address range, `10.0.0.0/8` or `fd00::/8`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl std::str::FromStr for Cidr {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let (addr, prefix) = text.split_once('/').unwrap_or((text, ""));
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{text:?} is not an address range like 10.0.0.0/8"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = if prefix.is_empty() {
            max
        } else {
            prefix
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{text:?}: the prefix length must be 0 to {max}"))?
        };
        Ok(Cidr { addr, prefix })
    }
}

impl Cidr {
    /// Whether `ip` is in the range, as written or as the IPv4 address it stands for
    /// (`::ffff:10.0.0.1` and `64:ff9b::10.0.0.1` are in `10.0.0.0/8`).
    fn contains(&self, ip: IpAddr) -> bool {
        self.holds(ip) || self.holds(canonical(ip))
    }

    fn holds(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// An IPv6 address that stands for an IPv4 address is that address: IPv4-mapped
/// (`::ffff:127.0.0.1`, RFC 4291) and the NAT64 well-known prefix (`64:ff9b::127.0.0.1`,
/// RFC 6052), which a NAT64 gateway turns into the IPv4 address inside.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => inner_ipv4(v6).map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn inner_ipv4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4);
    }
    let bits = u128::from(v6);
    // 64:ff9b::/96: the last 32 bits are the IPv4 address.
    (bits >> 32 == 0x0064_ff9b_0000_0000_0000_0000).then(|| Ipv4Addr::from(bits as u32))
}

/// The range an address is refused for, if it is in one: every address that is not a global
/// unicast address of the Internet. That is the machine (loopback), the cloud's metadata
/// (link-local), private networks, multicast, and every block of IANA's special-purpose
/// address registries, which `iprfc` carries as tables generated from them:
/// <https://www.iana.org/assignments/iana-ipv4-special-registry/> (0.0.0.0/8, 100.64.0.0/10,
/// 192.0.0.0/24, the documentation blocks, 198.18.0.0/15, 240.0.0.0/4, the broadcast address...)
/// and <https://www.iana.org/assignments/iana-ipv6-special-registry/> (64:ff9b:1::/48,
/// 2001::/23 with Teredo, 2001:db8::/32, 2002::/16 6to4, 3fff::/20, fc00::/7...). IPv6 beyond
/// 2000::/3 is refused too: IANA's IPv6 address space registry allocates global unicast
/// addresses from 2000::/3 only (<https://www.iana.org/assignments/ipv6-address-space/>), the
/// rest is reserved, deprecated (site-local fec0::/10, IPv4-compatible ::/96) or local. An
/// IPv6 address that stands for an IPv4 address (IPv4-mapped, NAT64) is judged by that address.
pub fn refused_range(ip: IpAddr) -> Option<&'static str> {
    match canonical(ip) {
        IpAddr::V4(v4) => refused_v4(v4),
        IpAddr::V6(v6) => refused_v6(v6),
    }
}

const SPECIAL: &str = "special-purpose (IANA registry)";
const LINK_LOCAL: &str = "link-local (cloud metadata)";

fn refused_v4(v4: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = v4.octets();
    Some(if v4.is_loopback() {
        "loopback"
    } else if v4.is_link_local() {
        LINK_LOCAL
    } else if v4.is_private() || (a == 100 && (64..128).contains(&b)) {
        "private"
    } else if v4.is_multicast() {
        "multicast"
    } else if iprfc::RFC6890.contains(&IpAddr::V4(v4)) {
        SPECIAL
    } else {
        return None;
    })
}

fn refused_v6(v6: Ipv6Addr) -> Option<&'static str> {
    let first = v6.segments()[0];
    Some(if v6.is_loopback() {
        "loopback"
    } else if first & 0xffc0 == 0xfe80 {
        LINK_LOCAL
    } else if first & 0xfe00 == 0xfc00 {
        "private"
    } else if v6.is_multicast() {
        "multicast"
    } else if first & 0xffc0 == 0xfec0 {
        "site-local"
    } else if !v6.is_unspecified() && u128::from(v6) >> 32 == 0 {
        "IPv4-compatible"
    } else if iprfc::RFC6890.contains(&IpAddr::V6(v6)) {
        SPECIAL
    } else if first & 0xe000 != 0x2000 {
        "reserved (not global unicast)"
    } else {
        return None;
    })
}

impl EndpointPolicy {
    /// Checks an endpoint URL before any connection: its scheme, and its host when it is an
    /// address. The host is read as the SDK reads it (the URL standard's parser), so every
    /// spelling of an address is one: `2130706433`, `0x7f000001`, `0177.0.0.1` and `127.1`
    /// are 127.0.0.1. A host name is checked again on every connection, against what it
    /// resolves to.
    pub fn check_url(&self, endpoint: &str) -> Result<(), Denial> {
        let refuse = |why: &str| {
            Err(Denial::EndpointNotAllowed(format!(
                "spec.endpoint: {endpoint:?} {why}"
            )))
        };
        let Ok(url) = url::Url::parse(endpoint) else {
            return refuse("is not an http(s) URL");
        };
        match url.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            "http" => {
                return refuse(
                    "is plain http; the operator allows only https endpoints for objects with their own credentials",
                );
            }
            _ => return refuse("is not an http(s) URL"),
        }
        let ip = match url.host() {
            Some(url::Host::Ipv4(v4)) => IpAddr::V4(v4),
            Some(url::Host::Ipv6(v6)) => IpAddr::V6(v6),
            Some(url::Host::Domain(_)) => return Ok(()),
            None => return refuse("has no host"),
        };
        self.check_ip(ip).or_else(|why| refuse(&why))
    }

    /// Whether a connection may go to `ip`.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), String> {
        let shown = match canonical(ip) {
            inner if inner != ip => format!("{ip}, which stands for {inner}"),
            _ => ip.to_string(),
        };
        match refused_range(ip) {
            Some(range) if !self.allowed.iter().any(|c| c.contains(ip)) => Err(format!(
                "is in the {range} range ({shown}), which the operator does not send requests to unless an administrator allows it"
            )),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::api::ObjectMeta;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn store(conditions: Vec<StoreCondition>, buckets: &[&str]) -> ClusterBucketStore {
        ClusterBucketStore {
            metadata: ObjectMeta {
                name: Some("team-a".into()),
                ..ObjectMeta::default()
            },
            spec: ClusterBucketStoreSpec {
                endpoint: None,
                region: None,
                force_path_style: None,
                put_checksum: None,
                profile: None,
                request_budget: None,
                credentials: None,
                conditions,
                buckets: buckets.iter().map(|b| (*b).to_owned()).collect(),
            },
            status: None,
        }
    }

    fn by_name(ns: &str) -> StoreCondition {
        StoreCondition {
            namespaces: vec![ns.into()],
            namespace_selector: None,
        }
    }

    fn by_labels(pairs: &[(&str, &str)]) -> StoreCondition {
        StoreCondition {
            namespaces: vec![],
            namespace_selector: Some(LabelSelector {
                match_labels: Some(labels(pairs)),
                match_expressions: None,
            }),
        }
    }

    #[test]
    fn session_names_name_the_object_within_what_sts_allows() {
        assert_eq!(session_name("team-a", "web"), "bucketcors.team-a.web");
        let long = session_name("a-namespace-with-a-long-name", &"x".repeat(60));
        assert_eq!(long.len(), 64, "{long}");
        assert!(
            long.starts_with("bucketcors.a-namespace-with-a-long-name.xxx"),
            "{long}"
        );
        assert_ne!(
            long,
            session_name("a-namespace-with-a-long-name", &"x".repeat(61))
        );
    }

    #[test]
    fn globs_match_as_in_a_shell() {
        let cases = [
            ("team-a-*", "team-a-x", true),
            ("team-a-*", "team-a-", true),
            ("team-a-*", "team-b-x", false),
            ("*", "anything", true),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("*-logs-*", "x-logs-y", true),
            ("*-logs-*", "x-log-y", false),
            ("exact", "exact", true),
            ("exact", "exactly", false),
            ("a*b*c", "aXbYbZc", true),
            ("a*b*c", "aXbYbZ", false),
        ];
        for (pattern, name, want) in cases {
            assert_eq!(glob_matches(pattern, name), want, "{pattern} vs {name}");
        }
    }

    #[test]
    fn a_store_grants_only_its_namespaces_and_buckets_and_says_which_it_failed() {
        let s = store(
            vec![by_name("team-a"), by_labels(&[("team", "a")])],
            &["team-a-*"],
        );
        let none = BTreeMap::new();
        assert_eq!(s.grants("team-a", Some(&none), "team-a-x"), Ok(()));
        assert_eq!(
            s.grants("other", Some(&labels(&[("team", "a")])), "team-a-x"),
            Ok(())
        );
        assert_eq!(
            s.grants("team-b", Some(&labels(&[("team", "b")])), "team-a-x"),
            Err(Denial::NotPermitted(
                r#"no ClusterBucketStore "team-a" grants namespace "team-b": it does not exist or does not serve this namespace"#.into()
            ))
        );
        assert_eq!(
            s.grants("team-a", Some(&none), "team-b-x"),
            Err(Denial::NotPermitted(
                r#"ClusterBucketStore "team-a" does not grant bucket "team-b-x" (it grants team-a-*)"#
                    .into()
            ))
        );
    }

    #[test]
    fn labels_not_known_yet_match_no_selector_and_names_still_do() {
        let not_in = LabelSelector {
            match_labels: None,
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "team".into(),
                operator: "DoesNotExist".into(),
                values: None,
            }]),
        };
        let s = store(
            vec![
                by_name("named"),
                StoreCondition {
                    namespaces: vec![],
                    namespace_selector: Some(not_in),
                },
            ],
            &["*"],
        );
        // Known and without the label: the selector matches.
        assert_eq!(s.grants("other", Some(&BTreeMap::new()), "b"), Ok(()));
        // Not known yet: it does not, and the denial says why.
        assert_eq!(
            s.grants("other", None, "b"),
            Err(Denial::NotPermitted(
                r#"no ClusterBucketStore "team-a" grants namespace "other": it does not exist or does not serve this namespace; this namespace's labels are not known yet, so no selector matches it"#.into()
            ))
        );
        assert_eq!(s.grants("named", None, "b"), Ok(()));
    }

    #[test]
    fn a_store_without_conditions_serves_no_namespace() {
        let s = store(vec![], &["*"]);
        assert!(s.grants("default", Some(&BTreeMap::new()), "b").is_err());
        // A condition naming nothing serves nothing either.
        let s = store(vec![StoreCondition::default()], &["*"]);
        assert!(s.grants("default", Some(&BTreeMap::new()), "b").is_err());
    }

    #[test]
    fn selector_expressions_follow_kubernetes() {
        let req = |key: &str, op: &str, values: &[&str]| LabelSelector {
            match_labels: None,
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: key.into(),
                operator: op.into(),
                values: Some(values.iter().map(|v| (*v).to_owned()).collect()),
            }]),
        };
        let l = labels(&[("team", "a"), ("tier", "web")]);
        assert!(selector_matches(&req("team", "In", &["a", "b"]), &l));
        assert!(!selector_matches(&req("team", "In", &["b"]), &l));
        assert!(selector_matches(&req("team", "NotIn", &["b"]), &l));
        assert!(selector_matches(&req("missing", "NotIn", &["b"]), &l));
        assert!(selector_matches(&req("tier", "Exists", &[]), &l));
        assert!(!selector_matches(&req("tier", "DoesNotExist", &[]), &l));
        assert!(!selector_matches(&req("tier", "Gt", &["1"]), &l));
        assert!(selector_matches(&LabelSelector::default(), &l));
        // A namespace it serves (by name) learns that it is not valid.
        let bad = store(
            vec![StoreCondition {
                namespaces: vec!["x".into()],
                namespace_selector: Some(req("team", "In", &[])),
            }],
            &["*"],
        );
        assert_eq!(
            bad.grants("x", Some(&l), "b"),
            Err(Denial::NotPermitted(
                r#"ClusterBucketStore "team-a" is not valid: spec.conditions[0].namespaceSelector.matchExpressions[0]: operator In needs values"#.into()
            ))
        );
    }

    #[test]
    fn the_endpoint_policy_refuses_plain_http_and_inner_addresses_unless_allowed() {
        let strict = EndpointPolicy::default();
        assert_eq!(strict.check_url("https://s3.nl-ams.scw.cloud"), Ok(()));
        assert_eq!(strict.check_url("https://52.95.0.1:9000/"), Ok(()));
        for refused in [
            "http://s3.example.com",
            "ftp://s3.example.com",
            "s3.example.com",
            "https://127.0.0.1:9000",
            "https://169.254.169.254/latest",
            "https://10.0.0.5",
            "https://172.20.1.1",
            "https://192.168.1.1",
            "https://100.64.0.1",
            "https://0.0.0.0",
            "https://[::1]:9000",
            "https://[fe80::1]",
            "https://[fd00::1]",
            "https://[::ffff:127.0.0.1]",
            "https://user@127.0.0.1",
        ] {
            let denial = strict.check_url(refused).expect_err(refused);
            assert!(matches!(denial, Denial::EndpointNotAllowed(_)), "{refused}");
            assert!(denial.to_string().contains(refused), "{denial}");
        }
        let open = EndpointPolicy {
            allow_http: true,
            allowed: vec!["127.0.0.1/32".parse().unwrap(), "fd00::/8".parse().unwrap()],
        };
        assert_eq!(open.check_url("http://127.0.0.1:9000"), Ok(()));
        assert_eq!(open.check_url("https://[fd00::1]"), Ok(()));
        assert!(open.check_url("http://127.0.0.2:9000").is_err());
        assert!(open.check_url("http://[::1]:9000").is_err());
    }

    /// Each row: a range, an address in it, and the range the refusal names.
    fn refused_in(rows: &[(&str, &str, &str)]) {
        let strict = EndpointPolicy::default();
        for (range, address, named) in rows {
            let ip: IpAddr = address.parse().unwrap();
            assert_eq!(refused_range(ip), Some(*named), "{range}: {address}");
            let why = strict.check_ip(ip).expect_err(address);
            assert!(
                why.contains(named) && why.contains(&ip.to_string()),
                "{why}"
            );
        }
    }

    #[test]
    fn every_block_of_the_iana_ipv4_special_purpose_registry_is_refused() {
        refused_in(&[
            ("0.0.0.0/8 this network", "0.1.2.3", SPECIAL),
            ("0.0.0.0/32 this host", "0.0.0.0", SPECIAL),
            ("10.0.0.0/8 private", "10.1.2.3", "private"),
            ("100.64.0.0/10 shared (CGNAT)", "100.127.255.254", "private"),
            ("127.0.0.0/8 loopback", "127.255.0.1", "loopback"),
            ("169.254.0.0/16 link-local", "169.254.169.254", LINK_LOCAL),
            ("172.16.0.0/12 private", "172.31.0.1", "private"),
            (
                "192.0.0.0/24 IETF protocol assignments",
                "192.0.0.8",
                SPECIAL,
            ),
            ("192.0.0.9/32 port control anycast", "192.0.0.9", SPECIAL),
            ("192.0.2.0/24 documentation", "192.0.2.10", SPECIAL),
            ("192.31.196.0/24 AS112", "192.31.196.1", SPECIAL),
            ("192.52.193.0/24 AMT", "192.52.193.1", SPECIAL),
            ("192.88.99.0/24 6to4 relay anycast", "192.88.99.1", SPECIAL),
            ("192.168.0.0/16 private", "192.168.1.1", "private"),
            (
                "192.175.48.0/24 AS112 direct delegation",
                "192.175.48.1",
                SPECIAL,
            ),
            ("198.18.0.0/15 benchmarking", "198.19.255.254", SPECIAL),
            ("198.51.100.0/24 documentation", "198.51.100.1", SPECIAL),
            ("203.0.113.0/24 documentation", "203.0.113.7", SPECIAL),
            ("224.0.0.0/4 multicast", "239.255.255.250", "multicast"),
            ("240.0.0.0/4 reserved", "240.0.0.1", SPECIAL),
            ("240.0.0.0/4 reserved, top", "255.255.255.254", SPECIAL),
            ("255.255.255.255/32 broadcast", "255.255.255.255", SPECIAL),
        ]);
    }

    #[test]
    fn every_block_of_the_iana_ipv6_special_purpose_registry_is_refused() {
        refused_in(&[
            ("::1/128 loopback", "::1", "loopback"),
            ("::/128 unspecified", "::", SPECIAL),
            (
                "64:ff9b:1::/48 local-use NAT64",
                "64:ff9b:1::808:808",
                SPECIAL,
            ),
            ("100::/64 discard-only", "100::1", SPECIAL),
            ("100:0:0:1::/64 dummy prefix", "100:0:0:1::1", SPECIAL),
            ("2001::/23 IETF protocol assignments", "2001:2::1", SPECIAL),
            (
                "2001::/32 Teredo",
                "2001:0:4136:e378:8000:63bf:3fff:fdd2",
                SPECIAL,
            ),
            ("2001:20::/28 ORCHIDv2", "2001:20::1", SPECIAL),
            ("2001:db8::/32 documentation", "2001:db8::1", SPECIAL),
            ("2002::/16 6to4", "2002:c000:204::1", SPECIAL),
            (
                "2002::/16 6to4 of a public address",
                "2002:808:808::1",
                SPECIAL,
            ),
            ("2620:4f:8000::/48 AS112", "2620:4f:8000::1", SPECIAL),
            ("3fff::/20 documentation", "3fff::1", SPECIAL),
            ("fc00::/7 unique local", "fd00::1", "private"),
            ("fe80::/10 link-local", "fe80::1", LINK_LOCAL),
        ]);
    }

    #[test]
    fn ipv6_beyond_global_unicast_is_refused() {
        refused_in(&[
            ("fec0::/10 site-local (deprecated)", "fec0::1", "site-local"),
            ("ff00::/8 multicast", "ff02::1", "multicast"),
            ("::/96 IPv4-compatible", "::127.0.0.1", "IPv4-compatible"),
            (
                "::/96 IPv4-compatible of a public address",
                "::8.8.8.8",
                "IPv4-compatible",
            ),
            (
                "::/8 reserved",
                "::1:0:0:1",
                "reserved (not global unicast)",
            ),
            (
                "4000::/3 reserved",
                "4000::1",
                "reserved (not global unicast)",
            ),
            (
                "e000::/4 reserved",
                "e000::1",
                "reserved (not global unicast)",
            ),
        ]);
        // 5f00::/16 (SRv6 SIDs) is refused, by the registry or by being beyond 2000::/3.
        assert!(refused_range("5f00::1".parse().unwrap()).is_some());
    }

    #[test]
    fn an_ipv6_address_that_stands_for_an_ipv4_address_is_judged_by_it() {
        refused_in(&[
            (
                "::ffff:0:0/96 mapped loopback",
                "::ffff:127.0.0.1",
                "loopback",
            ),
            ("::ffff:0:0/96 mapped private", "::ffff:10.0.0.1", "private"),
            (
                "64:ff9b::/96 NAT64 of loopback",
                "64:ff9b::127.0.0.1",
                "loopback",
            ),
            (
                "64:ff9b::/96 NAT64 of metadata",
                "64:ff9b::a9fe:a9fe",
                LINK_LOCAL,
            ),
            (
                "64:ff9b::/96 NAT64 of benchmarking",
                "64:ff9b::198.18.0.1",
                SPECIAL,
            ),
        ]);
        let why = EndpointPolicy::default()
            .check_ip("64:ff9b::7f00:1".parse().unwrap())
            .unwrap_err();
        assert!(
            why.contains("(64:ff9b::7f00:1, which stands for 127.0.0.1)"),
            "{why}"
        );
        // A public address inside is a public address (a NAT64 gateway reaches it).
        for public in ["::ffff:8.8.8.8", "64:ff9b::8.8.8.8"] {
            assert_eq!(refused_range(public.parse().unwrap()), None, "{public}");
        }
        // An allowed IPv4 range allows its addresses in both IPv6 forms.
        let policy = EndpointPolicy {
            allow_http: false,
            allowed: vec!["10.20.0.0/16".parse().unwrap()],
        };
        for inside in ["10.20.0.1", "::ffff:10.20.0.1", "64:ff9b::10.20.0.1"] {
            assert_eq!(policy.check_ip(inside.parse().unwrap()), Ok(()), "{inside}");
        }
        assert!(
            policy
                .check_ip("64:ff9b::10.21.0.1".parse().unwrap())
                .is_err()
        );
    }

    #[test]
    fn global_unicast_addresses_next_to_refused_ranges_pass() {
        for address in [
            "8.8.8.8",
            "52.95.0.1",
            "1.0.0.0",
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "126.255.255.255",
            "128.0.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.255",
            "192.0.3.0",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
            "2a05:d07a:a0ff::1",
            "2600:1f18::1",
            "2001:200::1",
            "2001:dba::1",
            "2003::1",
            "3ffe:ffff::1",
        ] {
            assert_eq!(refused_range(address.parse().unwrap()), None, "{address}");
        }
    }

    #[test]
    fn every_spelling_of_an_address_in_a_url_is_that_address() {
        let strict = EndpointPolicy {
            allow_http: true,
            allowed: vec![],
        };
        for (url, named) in [
            ("http://2130706433/", "(127.0.0.1)"),
            ("http://0x7f000001:9000", "(127.0.0.1)"),
            ("http://0x7F.0.0.1", "(127.0.0.1)"),
            ("http://0177.0.0.1", "(127.0.0.1)"),
            ("http://017700000001", "(127.0.0.1)"),
            ("http://127.1", "(127.0.0.1)"),
            ("http://127.0.1", "(127.0.0.1)"),
            ("http://169.16689662/latest", "(169.254.169.254)"),
            ("HTTP://LOCALHOST.0x7f000001", "not an http(s) URL"),
            ("http://[::ffff:7f00:1]", "(::ffff:127.0.0.1, "),
            ("http://[0:0:0:0:0:ffff:127.0.0.1]", "(::ffff:127.0.0.1, "),
            ("http://[::127.0.0.1]", "IPv4-compatible"),
            ("http://[64:ff9b::127.0.0.1]", "which stands for 127.0.0.1"),
            ("http://[2002:7f00:1::]", SPECIAL),
            ("https://user:pw@0x7f000001", "(127.0.0.1)"),
        ] {
            let denial = strict.check_url(url).expect_err(url);
            assert!(matches!(denial, Denial::EndpointNotAllowed(_)), "{url}");
            let text = denial.to_string();
            assert!(text.contains(named), "{url}: {text}");
            assert!(text.starts_with("spec.endpoint: "), "{text}");
        }
        // Names stay names: they are checked where the connection is made.
        for url in ["https://s3.example.com", "https://0x7f000001.example.com"] {
            assert_eq!(strict.check_url(url), Ok(()), "{url}");
        }
    }

    #[test]
    fn address_ranges_parse_and_refuse_nonsense_with_the_value() {
        assert!(
            "10.0.0.0/8"
                .parse::<Cidr>()
                .unwrap()
                .contains("10.9.8.7".parse().unwrap())
        );
        assert!(
            !"10.0.0.0/8"
                .parse::<Cidr>()
                .unwrap()
                .contains("11.0.0.1".parse().unwrap())
        );
        assert!(
            "0.0.0.0/0"
                .parse::<Cidr>()
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        assert!(
            "127.0.0.2"
                .parse::<Cidr>()
                .unwrap()
                .contains("127.0.0.2".parse().unwrap())
        );
        assert_eq!(
            "10.0.0.0/33".parse::<Cidr>(),
            Err(r#""10.0.0.0/33": the prefix length must be 0 to 32"#.into())
        );
        assert_eq!(
            "ten/8".parse::<Cidr>(),
            Err(r#""ten/8" is not an address range like 10.0.0.0/8"#.into())
        );
    }
}

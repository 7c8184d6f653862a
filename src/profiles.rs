//! What each S3-compatible store accepts in a CORS configuration and how it behaves, beyond
//! AWS's own rules, from the store's documentation. A profile is chosen from the endpoint's host
//! unless the object or its store names one. A spec its store would refuse is refused before any
//! call, naming the store and the documented limit; the headers a store does not take are not
//! sent; what a store does on its own (a default configuration after a delete) is not fought.
//! Pure.

use crate::api::{PutChecksum, StoreProfile};
use crate::constraints::FieldError;
use crate::cors::CorsRule;

/// One store's documented CORS behaviour.
#[derive(Debug, PartialEq, Eq)]
pub struct Profile {
    /// The name the object or the store gives it.
    pub kind: StoreProfile,
    /// How messages name the store.
    pub name: &'static str,
    /// The largest `maxAgeSeconds`, when the store caps it.
    pub max_age_seconds: Option<i32>,
    /// Origins must be a scheme and host (and port), with no path.
    pub origin_without_path: bool,
    /// A `*` in an origin only at the start of its host name (`https://*.example.com`, `*`).
    pub wildcard_only_at_host_start: bool,
    /// The store has no bucket CORS API: every pass is Unsupported, with this advice, and no
    /// call is made.
    pub no_cors_api: Option<&'static str>,
    /// Added to an Unsupported outcome (the store answered NotImplemented).
    pub not_implemented_advice: Option<&'static str>,
    /// The integrity check PutBucketCors carries when neither the object nor its store chose
    /// one: the store refuses the SDK's default `x-amz-checksum-crc32`.
    pub put_checksum: Option<PutChecksum>,
    /// `x-amz-expected-bucket-owner` is sent (when the spec names an owner).
    pub expected_bucket_owner: bool,
    /// Deleting the configuration brings the store's default back: "no rules" means that
    /// default, not a delete on every pass.
    pub default_after_delete: bool,
    /// How long a written configuration may take to show in a read back: the store's
    /// documented figure, else a few seconds. A read back that still shows the bucket as it
    /// was before the write is tried again within this time before the write is called unkept.
    pub propagation: std::time::Duration,
    /// How the store changes a configuration between a write and a read back; the diff treats
    /// each as equal (origins, methods and headers are sets, header names case-insensitive).
    pub read_back: &'static [ReadBack],
    /// Where the facts come from.
    pub source: &'static str,
}

/// One way a store changes the rules it was given when it answers GetBucketCors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadBack {
    /// Duplicate methods of a rule come back once (Backblaze B2).
    MergesDuplicateMethods,
    /// A rule's origins come back sorted (Ceph RGW).
    SortsOrigins,
    /// A rule's methods come back in the store's own order (Ceph RGW).
    ReordersMethods,
    /// Allowed header names come back lower-cased.
    LowercasesHeaders,
}

impl ReadBack {
    /// `rules` as a store with this behaviour returns them.
    pub fn apply(self, rules: &[CorsRule]) -> Vec<CorsRule> {
        let mut rules = rules.to_vec();
        for rule in &mut rules {
            match self {
                ReadBack::MergesDuplicateMethods => {
                    let mut seen = Vec::new();
                    rule.allowed_methods.retain(|m| {
                        let new = !seen.contains(m);
                        seen.push(m.clone());
                        new
                    });
                }
                ReadBack::SortsOrigins => rule.allowed_origins.sort(),
                ReadBack::ReordersMethods => rule.allowed_methods.reverse(),
                ReadBack::LowercasesHeaders => {
                    for header in &mut rule.allowed_headers {
                        *header = header.to_ascii_lowercase();
                    }
                }
            }
        }
        rules
    }
}

const GENERIC: Profile = Profile {
    kind: StoreProfile::Generic,
    name: "generic S3",
    max_age_seconds: None,
    origin_without_path: false,
    wildcard_only_at_host_start: false,
    no_cors_api: None,
    not_implemented_advice: None,
    put_checksum: None,
    expected_bucket_owner: true,
    default_after_delete: false,
    propagation: std::time::Duration::from_secs(5),
    read_back: &[],
    source: "https://docs.aws.amazon.com/AmazonS3/latest/API/API_CORSRule.html",
};

pub const AWS: Profile = Profile {
    kind: StoreProfile::Aws,
    name: "AWS S3",
    ..GENERIC
};

pub const R2: Profile = Profile {
    kind: StoreProfile::CloudflareR2,
    name: "Cloudflare R2",
    max_age_seconds: Some(86400),
    origin_without_path: true,
    // "x-amz-expected-bucket-owner" is listed as not implemented for the bucket operations.
    expected_bucket_owner: false,
    // "does not include a path component and must only be comprised of a
    // `scheme://host[:port]`"; MaxAgeSeconds "the maximum value (86400)". R2 refused
    // A change to an R2 bucket's CORS policy is reported to take up to 30 s to apply.
    propagation: std::time::Duration::from_secs(30),
    // `x-amz-checksum-crc32` with 501 in January 2025, and has taken CRC32 since: the
    // compatibility page lists it as implemented, so the SDK's default stays.
    source: "https://developers.cloudflare.com/r2/buckets/cors/, https://developers.cloudflare.com/api/resources/r2/subresources/buckets/subresources/cors and https://developers.cloudflare.com/r2/api/s3/api/",
    ..GENERIC
};

pub const B2: Profile = Profile {
    kind: StoreProfile::BackblazeB2,
    name: "Backblaze B2",
    max_age_seconds: Some(86400),
    // "Unsupported header 'x-amz-checksum-crc32' received for this API call" (B2's list of
    // unsupported features named the flexible checksum headers); Content-MD5 is taken.
    put_checksum: Some(PutChecksum::ContentMd5),
    read_back: &[ReadBack::MergesDuplicateMethods],
    // MaxAgeSeconds: "will accept a range of [0, 86400]"; duplicate methods are merged.
    source: "https://www.backblaze.com/docs/cloud-storage-enable-cors-with-the-s3-compatible-api, https://www.backblaze.com/docs/cloud-storage-s3-compatible-api and https://github.com/stonith404/pingvin-share/issues/798",
    ..GENERIC
};

pub const SPACES: Profile = Profile {
    kind: StoreProfile::DigitalOceanSpaces,
    name: "DigitalOcean Spaces",
    wildcard_only_at_host_start: true,
    // "optionally include a wildcard character (*) at the start of the hostname".
    source: "https://docs.digitalocean.com/products/spaces/how-to/configure-cors/",
    ..GENERIC
};

pub const WASABI: Profile = Profile {
    kind: StoreProfile::Wasabi,
    name: "Wasabi",
    // "Wasabi maintains a default CORS configuration. [...] If you delete a custom CORS
    // configuration, the default configuration is used."
    default_after_delete: true,
    source: "https://docs.wasabi.com/docs/cross-origin-resource-sharing-cors",
    ..GENERIC
};

pub const MINIO: Profile = Profile {
    kind: StoreProfile::MinIo,
    name: "MinIO",
    // The community edition answers NotImplemented to the bucket CORS operations; a maintainer:
    // "Cors Bucket API is available as part of our AiStor products. It is unavailable for
    // community releases, you need to use global cors settings".
    not_implemented_advice: Some(
        "MinIO's community edition has no bucket CORS: set MINIO_API_CORS_ALLOW_ORIGIN on the server (it applies to every bucket)",
    ),
    source: "https://github.com/minio/minio/issues/21332 and https://github.com/minio/minio/issues/20995",
    ..GENERIC
};

pub const SCALEWAY: Profile = Profile {
    kind: StoreProfile::Scaleway,
    name: "Scaleway Object Storage",
    // An empty AllowedOrigin answers 500 InternalError: refused before the call by AWS's own
    // rule (no empty origin), so nothing more here.
    source: "https://github.com/scaleway/terraform-provider-scaleway/pull/838",
    ..GENERIC
};

pub const OVH: Profile = Profile {
    kind: StoreProfile::OvhCloud,
    name: "OVHcloud Object Storage",
    // The flexible checksum headers the AWS SDKs send by default since 2025 are refused.
    put_checksum: Some(PutChecksum::ContentMd5),
    // Endpoints: s3.<region>.io.cloud.ovh.net, and the older s3.<region>.perf.cloud.ovh.net.
    source: "https://github.com/earth-mover/icechunk/pull/2115 (third-party report)",
    ..GENERIC
};

pub const IONOS: Profile = Profile {
    kind: StoreProfile::Ionos,
    name: "IONOS Object Storage",
    // GetBucketCors, PutBucketCors, DeleteBucketCors: "The x-amz-expected-bucket-owner header
    // isn't supported."
    expected_bucket_owner: false,
    source: "https://docs.ionos.com/sections-test/api/ionos-object-storage/ionos-object-storage-for-user-owned-buckets/cors",
    ..GENERIC
};

pub const STORJ: Profile = Profile {
    kind: StoreProfile::Storj,
    name: "Storj",
    no_cors_api: Some(
        "Storj's S3 gateway has no bucket CORS API; its linksharing service answers CORS itself",
    ),
    // GetBucketCors and DeleteBucketCors: "No".
    source: "https://storj.dev/dcs/api/s3/s3-compatibility",
    ..GENERIC
};

pub const RGW: Profile = Profile {
    kind: StoreProfile::CephRgw,
    name: "Ceph RGW",
    read_back: &[ReadBack::SortsOrigins, ReadBack::ReordersMethods],
    // Found by this project's compatibility suite against a real RGW (tests/it/compat.rs).
    source: "tests/it/compat.rs (run against Ceph RGW)",
    ..GENERIC
};

pub const GARAGE: Profile = Profile {
    kind: StoreProfile::Garage,
    name: "Garage",
    // Found by this project's compatibility suite against a real Garage (tests/it/compat.rs).
    source: "tests/it/compat.rs (run against Garage)",
    ..GENERIC
};

/// Every profile, for tables and lookups.
pub const ALL: [&Profile; 13] = [
    &AWS, &R2, &B2, &WASABI, &SPACES, &MINIO, &SCALEWAY, &OVH, &IONOS, &STORJ, &RGW, &GARAGE,
    &GENERIC,
];

/// The profile a name stands for.
pub fn named(kind: StoreProfile) -> &'static Profile {
    ALL.into_iter()
        .find(|p| p.kind == kind)
        .expect("every StoreProfile has a profile")
}

/// The profile that applies: the one named (by the object, or its store), else the one the
/// endpoint's host tells.
pub fn resolve(named_profile: Option<StoreProfile>, endpoint: Option<&str>) -> &'static Profile {
    named_profile.map_or_else(|| for_endpoint(endpoint), named)
}

/// The profile for a store that says who it is in its answers (`Server: MinIO`), when its
/// endpoint told nothing.
pub fn for_server_header(server: &str) -> Option<&'static Profile> {
    server
        .trim()
        .to_ascii_lowercase()
        .starts_with("minio")
        .then_some(&MINIO)
}

/// The profile for an endpoint, from its host: AWS when there is none.
pub fn for_endpoint(endpoint: Option<&str>) -> &'static Profile {
    let Some(endpoint) = endpoint else {
        return &AWS;
    };
    let rest = endpoint
        .split_once("://")
        .map_or(endpoint, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or(rest);
    let host = authority
        .rsplit_once(':')
        .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
        .map_or(authority, |(host, _)| host)
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let labels: Vec<&str> = host.split('.').collect();
    let ends = |suffix: &str| host == suffix || host.ends_with(&format!(".{suffix}"));
    let s3_region_of = |domain: &str| {
        // s3.<region>.<domain>
        labels.len() == domain.split('.').count() + 2 && labels[0] == "s3" && ends(domain)
    };
    // s3-<region>.<domain> or s3.<region>.<domain>
    let s3_host_of = |domain: &str| {
        s3_region_of(domain)
            || (labels.len() == domain.split('.').count() + 1
                && labels[0].starts_with("s3-")
                && ends(domain))
    };
    if ends("amazonaws.com") || ends("amazonaws.com.cn") {
        &AWS
    } else if ends("r2.cloudflarestorage.com") {
        &R2
    } else if s3_region_of("backblazeb2.com") {
        &B2
    } else if ends("wasabisys.com") {
        &WASABI
    } else if ends("digitaloceanspaces.com") {
        &SPACES
    } else if s3_region_of("scw.cloud") {
        &SCALEWAY
    } else if s3_region_of("io.cloud.ovh.net") || s3_region_of("perf.cloud.ovh.net") {
        &OVH
    } else if s3_host_of("ionoscloud.com") || s3_host_of("profitbricks.com") {
        &IONOS
    } else if host == "gateway.storjshare.io" {
        &STORJ
    } else {
        &GENERIC
    }
}

/// What `profile`'s store would refuse in `rules` that AWS's own rules allow, each error naming
/// the store and its documented limit.
pub fn check(profile: &Profile, rules: &[CorsRule]) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        let field = |name: &str| format!("spec.rules[{i}].{name}");
        if let (Some(max), Some(age)) = (profile.max_age_seconds, rule.max_age_seconds)
            && age > max
        {
            errors.push(FieldError::new(
                field("maxAgeSeconds"),
                Some(&age.to_string()),
                format!(
                    "is more than {} allows: maxAgeSeconds up to {max}",
                    profile.name
                ),
            ));
        }
        for (j, origin) in rule.allowed_origins.iter().enumerate() {
            let at = format!("{}[{j}]", field("allowedOrigins"));
            if profile.origin_without_path && origin != "*" && has_path(origin) {
                errors.push(FieldError::new(
                    at.clone(),
                    Some(origin),
                    format!(
                        "has a path; {} allows an origin only as scheme://host[:port]",
                        profile.name
                    ),
                ));
            }
            if profile.wildcard_only_at_host_start && !wildcard_at_host_start(origin) {
                errors.push(FieldError::new(
                    at,
                    Some(origin),
                    format!(
                        "has a '*' that is not at the start of the host name, which {} refuses",
                        profile.name
                    ),
                ));
            }
        }
    }
    errors
}

fn has_path(origin: &str) -> bool {
    let rest = origin.split_once("://").map_or(origin, |(_, rest)| rest);
    rest.contains('/')
}

fn wildcard_at_host_start(origin: &str) -> bool {
    match origin.find('*') {
        None => true,
        Some(_) if origin == "*" => true,
        Some(at) => {
            let host_start = origin.find("://").map_or(0, |i| i + 3);
            at == host_start
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_store_is_chosen_from_its_endpoints_host() {
        let cases: [(Option<&str>, &str); 23] = [
            (None, "AWS S3"),
            (Some("https://s3.eu-west-1.amazonaws.com"), "AWS S3"),
            (Some("https://s3.cn-north-1.amazonaws.com.cn"), "AWS S3"),
            (
                Some("https://0123abcd.r2.cloudflarestorage.com"),
                "Cloudflare R2",
            ),
            (
                Some("https://0123abcd.eu.r2.cloudflarestorage.com/"),
                "Cloudflare R2",
            ),
            (
                Some("https://s3.us-west-004.backblazeb2.com"),
                "Backblaze B2",
            ),
            (Some("https://backblazeb2.com"), "generic S3"),
            (Some("https://s3.eu-central-2.wasabisys.com"), "Wasabi"),
            (
                Some("https://ams3.digitaloceanspaces.com"),
                "DigitalOcean Spaces",
            ),
            (
                Some("https://s3.fr-par.scw.cloud"),
                "Scaleway Object Storage",
            ),
            (
                Some("https://S3.NL-AMS.SCW.CLOUD:443"),
                "Scaleway Object Storage",
            ),
            (Some("https://scw.cloud"), "generic S3"),
            (Some("https://gateway.storjshare.io"), "Storj"),
            (Some("http://127.0.0.1:9000"), "generic S3"),
            (
                Some("https://evil-r2.cloudflarestorage.com.example"),
                "generic S3",
            ),
            (Some("https://minio.internal:9000"), "generic S3"),
            (
                Some("https://s3.gra.io.cloud.ovh.net"),
                "OVHcloud Object Storage",
            ),
            (
                Some("https://s3.sbg.perf.cloud.ovh.net"),
                "OVHcloud Object Storage",
            ),
            (Some("https://ovh.net"), "generic S3"),
            (
                Some("https://s3.eu-central-3.ionoscloud.com"),
                "IONOS Object Storage",
            ),
            (
                Some("https://s3-eu-central-1.ionoscloud.com"),
                "IONOS Object Storage",
            ),
            (
                Some("https://s3-de-central.profitbricks.com"),
                "IONOS Object Storage",
            ),
            (Some("https://api.ionoscloud.com"), "generic S3"),
        ];
        for (endpoint, name) in cases {
            assert_eq!(for_endpoint(endpoint).name, name, "{endpoint:?}");
        }
    }

    fn messages(profile: &Profile, rules: &[CorsRule]) -> Vec<String> {
        check(profile, rules)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn what_a_store_refuses_is_named_with_its_limit() {
        let long = [CorsRule::new(["https://app.example.com"], ["GET"]).max_age(86401)];
        assert_eq!(
            messages(&R2, &long),
            [
                "spec.rules[0].maxAgeSeconds: \"86401\" is more than Cloudflare R2 allows: maxAgeSeconds up to 86400"
            ]
        );
        assert_eq!(messages(&B2, &long).len(), 1);
        assert!(messages(&AWS, &long).is_empty());
        assert!(messages(&GENERIC, &long).is_empty());
        let at_limit = [CorsRule::new(["https://app.example.com"], ["GET"]).max_age(86400)];
        assert!(messages(&R2, &at_limit).is_empty());

        let path = [CorsRule::new(["https://app.example.com/app", "*"], ["GET"])];
        assert_eq!(
            messages(&R2, &path),
            [
                "spec.rules[0].allowedOrigins[0]: \"https://app.example.com/app\" has a path; Cloudflare R2 allows an origin only as scheme://host[:port]"
            ]
        );
        assert!(messages(&AWS, &path).is_empty());

        let wildcards = [CorsRule::new(
            [
                "https://*.example.com",
                "*",
                "https://app.*.com",
                "https://example.com",
            ],
            ["GET"],
        )];
        assert_eq!(
            messages(&SPACES, &wildcards),
            [
                "spec.rules[0].allowedOrigins[2]: \"https://app.*.com\" has a '*' that is not at the start of the host name, which DigitalOcean Spaces refuses"
            ]
        );
        assert!(messages(&AWS, &wildcards).is_empty());

        // A store without the API is not a spec problem: the pass reports it Unsupported.
        let any = [CorsRule::new(["*"], ["GET"])];
        assert!(messages(&STORJ, &any).is_empty());
        assert!(STORJ.no_cors_api.is_some());
    }

    #[test]
    fn a_named_profile_wins_over_the_host_and_every_name_has_one() {
        for profile in ALL {
            assert_eq!(named(profile.kind), profile);
            assert_eq!(
                resolve(
                    Some(profile.kind),
                    Some("https://0123.r2.cloudflarestorage.com")
                ),
                profile
            );
        }
        assert_eq!(
            resolve(None, Some("https://0123.r2.cloudflarestorage.com")),
            &R2
        );
        assert_eq!(resolve(None, None), &AWS);
        // Names as the API spells them.
        let spelled: Vec<String> = ALL
            .iter()
            .map(|p| {
                serde_json::to_value(p.kind)
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(
            spelled,
            [
                "AWS",
                "CloudflareR2",
                "BackblazeB2",
                "Wasabi",
                "DigitalOceanSpaces",
                "MinIO",
                "Scaleway",
                "OVHcloud",
                "IONOS",
                "Storj",
                "CephRGW",
                "Garage",
                "Generic"
            ]
        );
    }

    #[test]
    fn what_each_store_takes_and_does_by_itself() {
        // (profile, checksum it needs, sends expected owner, default after delete, no API,
        // advice on NotImplemented)
        type Row = (
            &'static Profile,
            Option<PutChecksum>,
            bool,
            bool,
            bool,
            bool,
        );
        let table: [Row; 13] = [
            (&AWS, None, true, false, false, false),
            (&R2, None, false, false, false, false),
            (
                &B2,
                Some(PutChecksum::ContentMd5),
                true,
                false,
                false,
                false,
            ),
            (&WASABI, None, true, true, false, false),
            (&SPACES, None, true, false, false, false),
            (&MINIO, None, true, false, false, true),
            (&SCALEWAY, None, true, false, false, false),
            (
                &OVH,
                Some(PutChecksum::ContentMd5),
                true,
                false,
                false,
                false,
            ),
            (&IONOS, None, false, false, false, false),
            (&STORJ, None, true, false, true, false),
            (&RGW, None, true, false, false, false),
            (&GARAGE, None, true, false, false, false),
            (&GENERIC, None, true, false, false, false),
        ];
        for (profile, checksum, owner, default, no_api, advice) in table {
            assert_eq!(profile.put_checksum, checksum, "{}", profile.name);
            assert_eq!(profile.expected_bucket_owner, owner, "{}", profile.name);
            assert_eq!(profile.default_after_delete, default, "{}", profile.name);
            assert_eq!(profile.no_cors_api.is_some(), no_api, "{}", profile.name);
            assert_eq!(
                profile.not_implemented_advice.is_some(),
                advice,
                "{}",
                profile.name
            );
            assert!(!profile.source.is_empty());
        }
        assert_eq!(for_server_header("MinIO"), Some(&MINIO));
        assert_eq!(for_server_header(" minio/RELEASE.2025 "), Some(&MINIO));
        assert_eq!(for_server_header("AmazonS3"), None);
    }

    #[test]
    fn what_a_store_changes_on_the_way_back_is_no_difference() {
        let rules = [CorsRule::new(
            ["https://b.example.com", "https://a.example.com"],
            ["PUT", "GET", "GET", "HEAD"],
        )
        .allowed_headers(["Content-Type", "X-Amz-Date"])];
        for profile in ALL {
            for read_back in profile.read_back {
                let back = read_back.apply(&rules);
                assert_ne!(back, rules, "{read_back:?} changes something");
                assert_eq!(
                    crate::cors::diff(&rules, &back),
                    crate::cors::Plan::NoChange,
                    "{}: {read_back:?}",
                    profile.name
                );
            }
        }
        let back = ReadBack::LowercasesHeaders.apply(&rules);
        assert_eq!(
            crate::cors::diff(&rules, &back),
            crate::cors::Plan::NoChange
        );
        assert_eq!(
            ReadBack::MergesDuplicateMethods.apply(&rules)[0].allowed_methods,
            ["PUT", "GET", "HEAD"]
        );
    }
}

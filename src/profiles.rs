//! What each S3-compatible store accepts in a CORS configuration, beyond AWS's own rules, from
//! the store's documentation. A profile is chosen from the endpoint's host; a spec its store
//! would refuse is refused before any call, naming the store and the documented limit. Pure.

use crate::constraints::FieldError;
use crate::cors::CorsRule;

/// One store's documented CORS behaviour.
#[derive(Debug, PartialEq, Eq)]
pub struct Profile {
    /// How messages name the store.
    pub name: &'static str,
    /// The largest `maxAgeSeconds`, when the store caps it.
    pub max_age_seconds: Option<i32>,
    /// Origins must be a scheme and host (and port), with no path.
    pub origin_without_path: bool,
    /// A `*` in an origin only at the start of its host name (`https://*.example.com`, `*`).
    pub wildcard_only_at_host_start: bool,
    /// The bucket CORS API exists (MinIO community and Storj have none); the advice otherwise.
    pub no_cors_api: Option<&'static str>,
    /// Where the facts come from.
    pub source: &'static str,
}

const GENERIC: Profile = Profile {
    name: "generic S3",
    max_age_seconds: None,
    origin_without_path: false,
    wildcard_only_at_host_start: false,
    no_cors_api: None,
    source: "https://docs.aws.amazon.com/AmazonS3/latest/API/API_CORSRule.html",
};

pub const AWS: Profile = Profile {
    name: "AWS S3",
    ..GENERIC
};

pub const R2: Profile = Profile {
    name: "Cloudflare R2",
    max_age_seconds: Some(86400),
    origin_without_path: true,
    // "does not include a path component and must only be comprised of a
    // `scheme://host[:port]`"; MaxAgeSeconds "the maximum value (86400)".
    source: "https://developers.cloudflare.com/r2/buckets/cors/ and https://developers.cloudflare.com/api/resources/r2/subresources/buckets/subresources/cors",
    ..GENERIC
};

pub const B2: Profile = Profile {
    name: "Backblaze B2",
    max_age_seconds: Some(86400),
    // MaxAgeSeconds: "will accept a range of [0, 86400]".
    source: "https://www.backblaze.com/docs/cloud-storage-enable-cors-with-the-s3-compatible-api",
    ..GENERIC
};

pub const SPACES: Profile = Profile {
    name: "DigitalOcean Spaces",
    wildcard_only_at_host_start: true,
    // "optionally include a wildcard character (*) at the start of the hostname".
    source: "https://docs.digitalocean.com/products/spaces/how-to/configure-cors/",
    ..GENERIC
};

pub const WASABI: Profile = Profile {
    name: "Wasabi",
    source: "https://docs.wasabi.com/docs/cross-origin-resource-sharing-cors",
    ..GENERIC
};

pub const SCALEWAY: Profile = Profile {
    name: "Scaleway Object Storage",
    source: "https://www.scaleway.com/en/docs/storage/object/concepts/",
    ..GENERIC
};

pub const STORJ: Profile = Profile {
    name: "Storj",
    no_cors_api: Some(
        "Storj's S3 gateway has no bucket CORS API; its linksharing service answers CORS itself",
    ),
    // GetBucketCors and DeleteBucketCors: "No".
    source: "https://storj.dev/dcs/api/s3/s3-compatibility",
    ..GENERIC
};

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
    if let Some(advice) = profile.no_cors_api {
        errors.push(FieldError::new(
            "spec.endpoint",
            None,
            format!("is {}: {advice}", profile.name),
        ));
        return errors;
    }
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
        let cases: [(Option<&str>, &str); 16] = [
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

        let any = [CorsRule::new(["*"], ["GET"])];
        assert_eq!(
            messages(&STORJ, &any),
            [
                "spec.endpoint: is Storj: Storj's S3 gateway has no bucket CORS API; its linksharing service answers CORS itself"
            ]
        );
    }
}

//! Every constraint on a single string of the spec, defined once: the CEL rule the API server
//! enforces at admission, the message users see, and the same check in Rust for the controller
//! (defence in depth, and clusters without CEL). A property test evaluates both on the same
//! inputs and proves they agree.

use std::fmt;

// Values longer than this are cut in messages so that an error stays readable in an Event.
const SHOWN_VALUE_CHARS: usize = 80;

/// One broken constraint: which field, which value, and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// Path of the field in the object, e.g. `spec.rules[2].allowedOrigins[0]`.
    pub field: String,
    /// The offending value, when there is one to show.
    pub value: Option<String>,
    /// What S3 requires.
    pub problem: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, value: Option<&str>, problem: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            value: value.map(shorten),
            problem: problem.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(value) => write!(f, "{}: {:?} {}", self.field, value, self.problem),
            None => write!(f, "{}: {}", self.field, self.problem),
        }
    }
}

fn shorten(value: &str) -> String {
    if value.chars().count() <= SHOWN_VALUE_CHARS {
        value.to_owned()
    } else {
        let head: String = value.chars().take(SHOWN_VALUE_CHARS).collect();
        format!("{head}… ({} characters)", value.chars().count())
    }
}

/// A constraint on one string field.
pub struct StringRule {
    /// CEL expression over `self` (the string), as it appears in the CRD.
    pub cel: &'static str,
    /// What the user is told when the rule fails; says what is allowed.
    pub message: &'static str,
    /// The same check in Rust.
    pub holds: fn(&str) -> bool,
}

/// Origins and allowed headers: S3 allows at most one `*` in each.
// `[^*]*` rather than `.*`: RE2's `.` stops at a line break, so `.*` would let `*\n*` through.
pub const AT_MOST_ONE_WILDCARD: StringRule = StringRule {
    cel: "!self.matches('[*][^*]*[*]')",
    message: "may contain at most one '*' wildcard",
    holds: |s| s.matches('*').count() <= 1,
};

/// Expose headers: S3 allows no wildcard.
pub const NO_WILDCARD: StringRule = StringRule {
    cel: "!self.contains('*')",
    message: "may not contain '*': S3 allows no wildcard in expose headers",
    holds: |s| !s.contains('*'),
};

/// Bucket names: 3 to 63 characters, lower-case letters, digits, dots and hyphens, starting
/// and ending with a letter or digit.
pub const BUCKET_NAME: StringRule = StringRule {
    cel: "self.matches('^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$')",
    message: "must be an S3 bucket name: 3 to 63 characters of lower-case letters, digits, '.' and '-', starting and ending with a letter or digit",
    holds: |s| {
        let bytes = s.as_bytes();
        (3..=63).contains(&bytes.len())
            && bytes
                .iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'.' || *b == b'-')
            && bytes[0].is_ascii_alphanumeric()
            && bytes[bytes.len() - 1].is_ascii_alphanumeric()
    },
};

/// Access-point aliases look like bucket names, but S3 serves no PutBucketCors or
/// DeleteBucketCors through an access point: AWS's S3 user guide, "Access point
/// compatibility", lists GetBucketCors and no bucket write among the operations access points
/// accept. An alias would be read and never written, so it is refused up front.
pub const NOT_AN_ACCESS_POINT_ALIAS: StringRule = StringRule {
    cel: "!self.endsWith('-s3alias') && !self.endsWith('--ol-s3')",
    message: "is an access-point alias; S3 does not let access points change a bucket's CORS configuration: name the bucket itself",
    holds: |s| !s.ends_with("-s3alias") && !s.ends_with("--ol-s3"),
};

/// Endpoints: an http or https URL with a host (name, IPv4 or bracketed IPv6), an optional
/// port and path, and no query, fragment, user info or white space.
// The path is printable ASCII but `?` and `#`, spelled as ranges: RE2's `\s` (the API
// server's) is ASCII-only while Rust's is Unicode, so a class with `\s` would not mean one thing.
pub const ENDPOINT_URL: StringRule = StringRule {
    cel: r"self.matches('^https?://([A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?|\\[[0-9A-Fa-f:.]+\\])(:[0-9]{1,5})?(/[\\x21-\\x22\\x24-\\x3e\\x40-\\x7e]*)?$')",
    message: "must be an http:// or https:// URL with a host and optional port and path, e.g. https://s3.nl-ams.scw.cloud",
    holds: endpoint_holds,
};

/// Regions: a plausible region name such as `eu-west-1`, `nl-ams` or `auto`.
pub const REGION: StringRule = StringRule {
    cel: "self.matches('^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$')",
    message: "must be a region name such as eu-west-1 or nl-ams: letters, digits, '-' and '_', at most 64 characters",
    holds: |s| {
        let bytes = s.as_bytes();
        (1..=64).contains(&bytes.len())
            && bytes[0].is_ascii_alphanumeric()
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
    },
};

/// Every string that the operator sends in a request (a header, a URL, an XML body) or shows
/// in a message: no control character. A line break, carriage return or NUL cannot be sent in
/// an HTTP header, and would forge lines in a log or an Event.
// `\p{Cc}` is the same class in RE2 (the API server's) and Rust: U+0000-001F and U+007F-009F.
pub const NO_CONTROL: StringRule = StringRule {
    cel: r"!self.matches('\\p{Cc}')",
    message: "may not contain control characters (line breaks, tabs, NUL and the like)",
    holds: |s| !s.chars().any(char::is_control),
};

/// The key that live preflights ask about: a path in the bucket, without control characters
/// and without `.` or `..` segments, which would name another place than the key.
pub const OBJECT_KEY: StringRule = StringRule {
    cel: r"!self.matches('\\p{Cc}') && !self.matches('(^|/)[.][.]?(/|$)')",
    message: "must be an object key without control characters and without '.' or '..' path segments",
    holds: |s| (NO_CONTROL.holds)(s) && !s.split('/').any(|part| part == "." || part == ".."),
};

/// Names of Kubernetes objects (Secrets, ClusterBucketStores): a DNS-1123 subdomain.
pub const OBJECT_NAME: StringRule = StringRule {
    cel: "size(self) <= 253 && self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')",
    message: "must be a Kubernetes object name: lower-case letters, digits, '-' and '.', starting and ending with a letter or digit, at most 253 characters",
    holds: object_name_holds,
};

/// Longest Kubernetes object name.
pub const MAX_OBJECT_NAME_LEN: usize = 253;

fn object_name_holds(s: &str) -> bool {
    let label = |l: &str| {
        let b = l.as_bytes();
        !b.is_empty()
            && b.iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
            && b[0] != b'-'
            && b[b.len() - 1] != b'-'
    };
    s.len() <= MAX_OBJECT_NAME_LEN && s.split('.').all(label)
}

/// Every string rule with a short name, for tests that check them all.
pub const STRING_RULES: [(&str, &StringRule); 9] = [
    ("at most one wildcard", &AT_MOST_ONE_WILDCARD),
    ("no wildcard", &NO_WILDCARD),
    ("bucket name", &BUCKET_NAME),
    ("not an access-point alias", &NOT_AN_ACCESS_POINT_ALIAS),
    ("endpoint", &ENDPOINT_URL),
    ("region", &REGION),
    ("no control characters", &NO_CONTROL),
    ("object key", &OBJECT_KEY),
    ("object name", &OBJECT_NAME),
];

/// `value` of `field`, checked against `rule`: the error to report when it breaks it.
pub fn check(field: &str, value: &str, rule: &StringRule) -> Option<FieldError> {
    (!(rule.holds)(value)).then(|| FieldError::new(field, Some(value), rule.message))
}

/// Checks the bucket, endpoint and region of a spec (the rules are `cors::validate_rules`').
pub fn validate_target(
    bucket: &str,
    endpoint: Option<&str>,
    region: Option<&str>,
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if !(BUCKET_NAME.holds)(bucket) {
        errors.push(FieldError::new(
            "spec.bucket",
            Some(bucket),
            BUCKET_NAME.message,
        ));
    } else if !(NOT_AN_ACCESS_POINT_ALIAS.holds)(bucket) {
        errors.push(FieldError::new(
            "spec.bucket",
            Some(bucket),
            NOT_AN_ACCESS_POINT_ALIAS.message,
        ));
    }
    if let Some(endpoint) = endpoint {
        if endpoint.len() > MAX_ENDPOINT_LEN {
            errors.push(FieldError::new(
                "spec.endpoint",
                Some(endpoint),
                format!("is longer than {MAX_ENDPOINT_LEN} characters"),
            ));
        } else if !(ENDPOINT_URL.holds)(endpoint) {
            errors.push(FieldError::new(
                "spec.endpoint",
                Some(endpoint),
                ENDPOINT_URL.message,
            ));
        }
    }
    if let Some(region) = region
        && !(REGION.holds)(region)
    {
        errors.push(FieldError::new("spec.region", Some(region), REGION.message));
    }
    errors
}

/// Immutability, as a CEL transition rule.
pub const IMMUTABLE: &str = "self == oldSelf";

// Bounds the API server needs to estimate the cost of the CEL rules above; generous for
// real configurations, which S3 caps at 64 KB in all (an origin is at most
// `https://` + a 253-character host + `:65535`). The server's estimate of the wildcard rule is
// rules (100) x entries x ~387 for a 320-character entry (it counts 4 bytes per character),
// which must stay under its per-rule budget of 10,000,000: 7.7 million here, a margin of 22 %.
// Judged by a real API server in tests/it/server_side.rs, not by our own estimate.
/// Most entries in one rule's origin or header list.
pub const MAX_LIST_ITEMS: usize = 200;
/// Longest origin or header name.
pub const MAX_VALUE_LEN: usize = 320;
/// Longest endpoint URL.
pub const MAX_ENDPOINT_LEN: usize = 2048;

fn endpoint_holds(s: &str) -> bool {
    let Some(rest) = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
    else {
        return false;
    };
    let (authority, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
    if !path
        .chars()
        .all(|c| c.is_ascii_graphic() && c != '?' && c != '#')
    {
        return false;
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let Some((inside, after)) = v6.split_once(']') else {
            return false;
        };
        if inside.is_empty()
            || !inside
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        {
            return false;
        }
        match after.strip_prefix(':') {
            Some(port) => ("v6", Some(port)),
            None if after.is_empty() => ("v6", None),
            None => return false,
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let host_ok = host == "v6" && authority.starts_with('[')
        || !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
            && host.as_bytes()[0].is_ascii_alphanumeric()
            && host.as_bytes()[host.len() - 1].is_ascii_alphanumeric();
    let port_ok =
        port.is_none_or(|p| (1..=5).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()));
    host_ok && port_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names() {
        for ok in ["abc", "my-bucket.example", "web-assets", "a1b"] {
            assert!((BUCKET_NAME.holds)(ok), "{ok}");
            assert!((NOT_AN_ACCESS_POINT_ALIAS.holds)(ok), "{ok}");
        }
        for alias in [
            "my-ap-abcdefghijklmnop-s3alias",
            "my-olap-abcdefghijklmnop--ol-s3",
        ] {
            assert!((BUCKET_NAME.holds)(alias), "{alias}");
            assert!(!(NOT_AN_ACCESS_POINT_ALIAS.holds)(alias), "{alias}");
        }
        for bad in [
            "ab",
            "My-Bucket",
            "-bucket",
            "bucket-",
            "bucket_name",
            "b c d",
            &"a".repeat(64),
            "",
            "bücket",
        ] {
            assert!(!(BUCKET_NAME.holds)(bad), "{bad}");
        }
    }

    #[test]
    fn endpoints() {
        for ok in [
            "https://s3.nl-ams.scw.cloud",
            "http://127.0.0.1:9000",
            "http://localhost:9000/",
            "https://[::1]:8443/s3",
            "https://minio",
        ] {
            assert!((ENDPOINT_URL.holds)(ok), "{ok}");
        }
        for bad in [
            "s3.amazonaws.com",
            "ftp://host",
            "https://",
            "https://host:port",
            "https://host:123456",
            "https://host/?x=1",
            "https://user@host",
            "https://-host",
            "https://host name",
            "https://[::1",
            "https://[]",
        ] {
            assert!(!(ENDPOINT_URL.holds)(bad), "{bad}");
        }
    }

    #[test]
    fn regions() {
        for ok in ["us-east-1", "nl-ams", "auto", "default", "EU"] {
            assert!((REGION.holds)(ok), "{ok}");
        }
        for bad in ["", "-x", "eu west", "eu.west", &"r".repeat(65)] {
            assert!(!(REGION.holds)(bad), "{bad}");
        }
    }

    #[test]
    fn control_characters_keys_and_names() {
        for bad in ["a\u{1}", "GET\n", "a\rb", "\t", "x\u{7f}", "x\u{85}"] {
            assert!(!(NO_CONTROL.holds)(bad), "{bad:?}");
            assert!(!(OBJECT_KEY.holds)(bad), "{bad:?}");
        }
        assert!((NO_CONTROL.holds)("https://ü.example"));
        for ok in ["index.html", "a/b.c/d", "...", "a/.x", ".well-known/x"] {
            assert!((OBJECT_KEY.holds)(ok), "{ok}");
        }
        for bad in [".", "..", "a/../b", "a/./b", "../x", "x/.."] {
            assert!(!(OBJECT_KEY.holds)(bad), "{bad}");
        }
        for ok in ["s3-credentials", "a", "a.b-c", "0x"] {
            assert!((OBJECT_NAME.holds)(ok), "{ok}");
        }
        for bad in [
            "",
            "A",
            "a/b",
            "-a",
            "a-",
            "a..b",
            ".a",
            "a_b",
            "a\nb",
            &"a".repeat(254),
        ] {
            assert!(!(OBJECT_NAME.holds)(bad), "{bad:?}");
        }
    }

    #[test]
    fn wildcards() {
        assert!((AT_MOST_ONE_WILDCARD.holds)("https://*.example.com"));
        assert!(!(AT_MOST_ONE_WILDCARD.holds)("https://*.*.example.com"));
        assert!((NO_WILDCARD.holds)("ETag"));
        assert!(!(NO_WILDCARD.holds)("x-amz-*"));
    }
}

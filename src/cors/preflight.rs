//! What S3 answers to a cross-origin request, given a bucket's CORS rules: both the preflight
//! (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) and the actual request that
//! follows it. Pure: it says what a configuration allows without asking a store.
//!
//! # The algorithm (AWS S3)
//!
//! Following the S3 User Guide ("How does Amazon S3 evaluate the CORS configuration on a
//! bucket?") and the CORS configuration reference:
//!
//! 1. A preflight must carry `Origin` and `Access-Control-Request-Method`; without either S3
//!    answers 400 ([`CorsDecision::BadRequest`]), except on a bucket with no CORS configuration,
//!    where a preflight with an `Origin` but no `Access-Control-Request-Method` gets 403 ("CORS
//!    is not enabled for this bucket", [`CorsDecision::Denied`]). An actual request without
//!    `Origin` is not a cross-origin request and gets no CORS headers ([`CorsDecision::Denied`]).
//!    An actual (non-`OPTIONS`) request that carries `Access-Control-Request-Method` is matched
//!    on that header's method rather than its own ([`CorsRequest::request_method_header`]).
//! 2. The rules are tried in order and the **first** rule that matches is used; later rules are
//!    not looked at, even when they are more specific. A rule matches when all of these hold:
//!    - the `Origin` matches one of its `AllowedOrigin`s, case-sensitively. An `AllowedOrigin`
//!      may hold one `*`, which stands for any run of characters, the empty one included: `*`
//!      alone matches every origin (`null` too), `https://*.example.com` matches
//!      `https://a.example.com` and `https://a.b.example.com` but not `http://a.example.com`;
//!    - the method (a preflight's `Access-Control-Request-Method`, an actual request's own
//!      method) is one of its `AllowedMethod`s, exactly: `get` is not `GET`;
//!    - for a preflight, every header named in `Access-Control-Request-Headers` matches one of
//!      its `AllowedHeader`s, case-insensitively, with the same `*` wildcard (`x-amz-*`; `*`
//!      alone allows any header). All of them must match the *same* rule. A preflight that
//!      requests no header passes this test, even against a rule without `AllowedHeader`s.
//! 3. No rule matches ([`CorsDecision::Denied`]): a preflight is refused with 403 `AccessDenied`
//!    ("CORSResponse: This CORS request is not allowed…"); an actual request is served or
//!    refused on its own merits, but without CORS headers, so the browser hides the response.
//!    A bucket without CORS configuration is the empty list of rules: every request is denied.
//! 4. A rule matches ([`CorsDecision::Allowed`]); the response carries
//!    ([`CorsResponseHeaders`], rendered by [`CorsResponseHeaders::header_pairs`]):
//!    - `Access-Control-Allow-Origin`: `*` when the rule allows the origin only through an
//!      `AllowedOrigin` that is exactly `*`; otherwise the request's `Origin`, echoed;
//!    - `Access-Control-Allow-Credentials: true` whenever the origin is echoed (never with `*`,
//!      which browsers refuse for credentialed requests anyway);
//!    - `Access-Control-Allow-Methods`: all of the rule's `AllowedMethod`s, joined with `", "`
//!      (not only the requested one);
//!    - `Access-Control-Allow-Headers`: for a preflight that requested headers, those headers
//!      lower-cased (AWS answers `content-type, x-amz-date` to `Content-Type, X-Amz-Date`),
//!      joined with `", "`;
//!    - `Access-Control-Expose-Headers`: the rule's `ExposeHeader`s joined with `", "`, when it
//!      has any;
//!    - `Access-Control-Max-Age`: the rule's `MaxAgeSeconds`, when set (absent is not 0);
//!    - `Vary: Origin, Access-Control-Request-Headers, Access-Control-Request-Method`.
//!
//! ## `Access-Control-Allow-Origin: *` and credentials
//!
//! For a rule that allows the origin through a bare `*`, this module answers `*` without
//! `Access-Control-Allow-Credentials`, which is what AWS sends. It takes no "credentials" input:
//! a preflight never carries credentials (the Fetch standard forbids it), so S3 cannot know
//! whether the actual request will, and its answer to the preflight cannot depend on it. The
//! consequence for users: a page that calls S3 with credentials (`fetch(…, {credentials:
//! "include"})`) must be allowed by a rule that names its origin, or a pattern such as
//! `https://*.example.com`, because browsers refuse `*` for credentialed requests.
//!
//! When one rule lists both `*` and a specific origin (or pattern) that matches, the specific
//! match wins: the origin is echoed with credentials. The order of `AllowedOrigin`s inside a rule
//! is not significant (stores reorder them, and [`super::diff`] compares them as a set), so the
//! answer must not depend on it.
//!
//! # Known divergences of S3-compatible stores
//!
//! Ceph RGW (from its `rgw_op.cc`, `rgw_cors.cc` and `rgw_rest_s3.cc`):
//! - it answers a preflight with the request's `Origin` echoed even when the rule allows it
//!   through `*` (for actual requests, recent releases send `*` when the rule has `*` and the
//!   request carries no `Authorization` header, and echo the origin otherwise);
//! - `Access-Control-Allow-Methods` holds only the requested method, not the rule's list;
//! - it sends no `Access-Control-Allow-Credentials` with an echoed origin (`bucketcors explain
//!   --live` shows it; `tests/it/cli.rs`);
//! - `Access-Control-Expose-Headers` (and, in most releases, `Access-Control-Allow-Headers`) is
//!   joined with `","`, without a space;
//! - `Access-Control-Allow-Headers` holds the requested headers as the request spelled them
//!   (`Content-Type`), where AWS lower-cases them (`content-type`);
//! - on a bucket without CORS configuration, a preflight without
//!   `Access-Control-Request-Method` gets 400, where AWS answers 403 (Garage does the same);
//! - when nothing matches (or the bucket has no CORS configuration) it answers 403
//!   `AccessDenied`, with its generic error body rather than AWS's `CORSResponse:` message;
//! - it selects the first rule whose `AllowedOrigin` matches, and then requires the method (and,
//!   in recent releases, the requested headers) to match *that* rule: it never falls through to
//!   a later rule with the same origin. Rules `[{A, GET}, {A, PUT}]` let a `PUT` preflight from
//!   `A` through on AWS (rule 1) and not on RGW;
//! - older releases do not refuse a preflight whose requested headers are not allowed; they
//!   leave those headers out of `Access-Control-Allow-Headers`.
//!
//! Garage 2.5.0 (from its `src/api/common/cors.rs`, cross-checked by `tests/it/preflight.rs`):
//! - requested headers are compared with `AllowedHeader` case-sensitively (one `*` wildcard
//!   works): `Content-Type` is not allowed by `content-type`;
//! - it never sends `Access-Control-Max-Age` or `Access-Control-Allow-Credentials`;
//! - `Access-Control-Allow-Methods`, `-Allow-Headers` and `-Expose-Headers` are the rule's
//!   lists joined with `", "` (the last two sent empty when the rule has none), not the
//!   requested method and headers;
//! - an `AllowedMethod` of `*` matches any method (AWS refuses `*` as a method);
//! - it applies CORS to a preflight only for a bucket with a global alias: for any other bucket
//!   name (including one made with S3's CreateBucket, which gets a key-local alias) it allows
//!   every origin, method and header;
//! - on a bucket without CORS configuration, a preflight without
//!   `Access-Control-Request-Method` gets 400, where AWS answers 403;
//! - when nothing matches it answers 403 ("This CORS request is not allowed.").
//!
//! Neither store is checked here for an actual request that carries
//! `Access-Control-Request-Method` (AWS matches it on that header's method).

use super::rule::CorsRule;

/// The `Vary` header AWS sends with CORS responses, one field name per element.
pub const CORS_VARY: [&str; 3] = [
    "Origin",
    "Access-Control-Request-Headers",
    "Access-Control-Request-Method",
];

/// A cross-origin request as S3 sees it: a preflight, or the actual request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CorsRequest<'a> {
    /// The `Origin` header; `None` when the request has none. `"null"` is an origin like any
    /// other.
    pub origin: Option<&'a str>,
    /// For a preflight, its `Access-Control-Request-Method` (`None` when absent); for an actual
    /// request, its method.
    pub method: Option<&'a str>,
    /// For a preflight, the header names of `Access-Control-Request-Headers` (see
    /// [`parse_request_headers`]). Ignored for an actual request.
    pub request_headers: Vec<&'a str>,
    /// An `OPTIONS` preflight rather than the actual request.
    pub preflight: bool,
    /// For an actual request, its `Access-Control-Request-Method` header, if it carries one:
    /// AWS then matches the rules on that method instead of the request's own.
    pub request_method_header: Option<&'a str>,
}

impl<'a> CorsRequest<'a> {
    /// A preflight from `origin` asking whether it may use `method`; add the headers it asks
    /// for with [`CorsRequest::request_headers`].
    pub fn preflight(origin: &'a str, method: &'a str) -> Self {
        CorsRequest {
            origin: Some(origin),
            method: Some(method),
            request_headers: Vec::new(),
            preflight: true,
            request_method_header: None,
        }
    }

    /// An actual request from `origin` with `method`.
    pub fn actual(origin: &'a str, method: &'a str) -> Self {
        CorsRequest {
            preflight: false,
            ..CorsRequest::preflight(origin, method)
        }
    }

    /// An actual request that also carries `Access-Control-Request-Method: method`.
    pub fn request_method_header(mut self, method: &'a str) -> Self {
        self.request_method_header = Some(method);
        self
    }

    /// The header names the preflight asks for, one per item.
    pub fn request_headers<H: IntoIterator<Item = &'a str>>(mut self, headers: H) -> Self {
        self.request_headers = headers.into_iter().collect();
        self
    }

    /// The header names the preflight asks for, from the raw value of
    /// `Access-Control-Request-Headers` (`"content-type, x-amz-date"`).
    pub fn request_headers_value(mut self, value: &'a str) -> Self {
        self.request_headers = parse_request_headers(value);
        self
    }
}

/// What S3 does with a [`CorsRequest`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CorsDecision {
    /// Rule number `rule` (0-based, in configuration order) matched; the response carries
    /// `headers`.
    Allowed {
        rule: usize,
        headers: CorsResponseHeaders,
    },
    /// No rule matched. A preflight gets 403 `AccessDenied`; an actual request gets no CORS
    /// headers (as does an actual request without `Origin`).
    Denied,
    /// Not a valid preflight: S3 answers 400 without looking at the rules.
    BadRequest(BadPreflight),
}

/// Why a preflight is not valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadPreflight {
    /// No `Origin` header.
    MissingOrigin,
    /// No `Access-Control-Request-Method` header.
    MissingRequestMethod,
}

impl CorsDecision {
    pub fn is_allowed(&self) -> bool {
        matches!(self, CorsDecision::Allowed { .. })
    }

    /// The index of the rule that matched, if one did.
    pub fn matched_rule(&self) -> Option<usize> {
        match self {
            CorsDecision::Allowed { rule, .. } => Some(*rule),
            _ => None,
        }
    }

    /// The CORS headers of the response, if a rule matched.
    pub fn headers(&self) -> Option<&CorsResponseHeaders> {
        match self {
            CorsDecision::Allowed { headers, .. } => Some(headers),
            _ => None,
        }
    }

    /// The HTTP status S3 gives a preflight with this outcome: 200, 403 or 400. (The status of
    /// an actual request does not depend on CORS.)
    pub fn preflight_status(&self) -> u16 {
        match self {
            CorsDecision::Allowed { .. } => 200,
            CorsDecision::Denied => 403,
            CorsDecision::BadRequest(_) => 400,
        }
    }
}

/// The CORS headers of a response, as AWS S3 sends them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CorsResponseHeaders {
    /// `Access-Control-Allow-Origin`: `*`, or the request's origin.
    pub allow_origin: String,
    /// `Access-Control-Allow-Methods`: the matched rule's methods, in its order.
    pub allow_methods: Vec<String>,
    /// `Access-Control-Allow-Headers`: the headers the preflight asked for, lower-cased. Empty for an actual
    /// request or a preflight that asked for none, and then not sent.
    pub allow_headers: Vec<String>,
    /// `Access-Control-Expose-Headers`: the matched rule's expose headers; not sent when empty.
    pub expose_headers: Vec<String>,
    /// `Access-Control-Max-Age`: the matched rule's `MaxAgeSeconds`; not sent when `None`.
    pub max_age_seconds: Option<i32>,
    /// `Access-Control-Allow-Credentials: true`, sent when the origin is echoed.
    pub allow_credentials: bool,
    /// `Vary`: always [`CORS_VARY`].
    pub vary: Vec<&'static str>,
}

impl CorsResponseHeaders {
    /// The headers as (name, value) pairs, in the format AWS uses: lists joined with `", "`,
    /// absent ones left out.
    pub fn header_pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = vec![
            ("Access-Control-Allow-Origin", self.allow_origin.clone()),
            (
                "Access-Control-Allow-Methods",
                self.allow_methods.join(", "),
            ),
        ];
        if !self.allow_headers.is_empty() {
            pairs.push((
                "Access-Control-Allow-Headers",
                self.allow_headers.join(", "),
            ));
        }
        if !self.expose_headers.is_empty() {
            pairs.push((
                "Access-Control-Expose-Headers",
                self.expose_headers.join(", "),
            ));
        }
        if let Some(seconds) = self.max_age_seconds {
            pairs.push(("Access-Control-Max-Age", seconds.to_string()));
        }
        if self.allow_credentials {
            pairs.push(("Access-Control-Allow-Credentials", "true".to_owned()));
        }
        pairs.push(("Vary", self.vary.join(", ")));
        pairs
    }
}

/// What S3 answers to `request` on a bucket holding `rules`, in order.
pub fn evaluate(rules: &[CorsRule], request: &CorsRequest<'_>) -> CorsDecision {
    let method = match request.request_method_header {
        Some(header) if !request.preflight => Some(header),
        _ => request.method,
    };
    let (origin, method) = match (request.origin, method) {
        (Some(origin), Some(method)) => (origin, method),
        // AWS looks for a configuration before it checks the preflight's method.
        (Some(_), None) if request.preflight && rules.is_empty() => return CorsDecision::Denied,
        (None, _) if request.preflight => {
            return CorsDecision::BadRequest(BadPreflight::MissingOrigin);
        }
        (_, None) if request.preflight => {
            return CorsDecision::BadRequest(BadPreflight::MissingRequestMethod);
        }
        _ => return CorsDecision::Denied,
    };
    let requested: Vec<&str> = if request.preflight {
        request
            .request_headers
            .iter()
            .map(|h| trim_ows(h))
            .filter(|h| !h.is_empty())
            .collect()
    } else {
        Vec::new()
    };
    for (index, rule) in rules.iter().enumerate() {
        if let Some(echo) = origin_match(rule, origin)
            && rule.allowed_methods.iter().any(|m| m == method)
            && requested.iter().all(|h| header_allowed(rule, h))
        {
            return CorsDecision::Allowed {
                rule: index,
                headers: CorsResponseHeaders {
                    allow_origin: if echo {
                        origin.to_owned()
                    } else {
                        "*".to_owned()
                    },
                    allow_methods: rule.allowed_methods.clone(),
                    allow_headers: requested.iter().map(|h| h.to_ascii_lowercase()).collect(),
                    expose_headers: rule.expose_headers.clone(),
                    max_age_seconds: rule.max_age_seconds,
                    allow_credentials: echo,
                    vary: CORS_VARY.to_vec(),
                },
            };
        }
    }
    CorsDecision::Denied
}

/// Why one rule does not match a request: each part of it that fails.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mismatch {
    /// No `AllowedOrigin` of the rule matches the request's `Origin` (or it has none).
    Origin,
    /// The method is not one of the rule's `AllowedMethod`s (or the request has none).
    Method,
    /// A header the preflight asks for matches none of the rule's `AllowedHeader`s.
    Header(String),
}

/// Every reason `rule` does not match `request`, in the order origin, method, headers; empty
/// when it matches. The same tests as [`evaluate`] applies to each rule.
pub fn mismatches(rule: &CorsRule, request: &CorsRequest<'_>) -> Vec<Mismatch> {
    let mut why = Vec::new();
    if request.origin.and_then(|o| origin_match(rule, o)).is_none() {
        why.push(Mismatch::Origin);
    }
    let method = match request.request_method_header {
        Some(header) if !request.preflight => Some(header),
        _ => request.method,
    };
    if !method.is_some_and(|m| rule.allowed_methods.iter().any(|a| a == m)) {
        why.push(Mismatch::Method);
    }
    if request.preflight {
        for header in request.request_headers.iter().map(|h| trim_ows(h)) {
            if !header.is_empty() && !header_allowed(rule, header) {
                why.push(Mismatch::Header(header.to_owned()));
            }
        }
    }
    why
}

/// Whether `rule` allows `origin`: `Some(true)` through a specific origin or pattern (the
/// origin is echoed), `Some(false)` only through a bare `*`, `None` not at all.
fn origin_match(rule: &CorsRule, origin: &str) -> Option<bool> {
    let mut any = false;
    for allowed in &rule.allowed_origins {
        if allowed == "*" {
            any = true;
        } else if wildcard_match(allowed, origin, false) {
            return Some(true);
        }
    }
    any.then_some(false)
}

fn header_allowed(rule: &CorsRule, header: &str) -> bool {
    rule.allowed_headers
        .iter()
        .any(|allowed| wildcard_match(allowed, header, true))
}

/// Splits the value of `Access-Control-Request-Headers` into header names: on commas, each
/// trimmed of spaces and tabs, empty ones dropped.
pub fn parse_request_headers(value: &str) -> Vec<&str> {
    value
        .split(',')
        .map(trim_ows)
        .filter(|h| !h.is_empty())
        .collect()
}

// HTTP's optional white space: spaces and horizontal tabs.
fn trim_ows(s: &str) -> &str {
    s.trim_matches([' ', '\t'])
}

/// Whether `value` matches `pattern`, where each `*` in the pattern stands for any run of
/// characters, possibly empty, and everything else is literal. S3 allows one `*`; a pattern with
/// several is read the same way (literal segments separated by `*`). With `case_insensitive`,
/// ASCII letters compare without regard to case (as HTTP header names do).
///
/// Linear in the lengths of both strings: the first segment must be a prefix, the last a suffix,
/// and each middle segment is taken at its leftmost occurrence after the previous one, which is
/// optimal for `*`-only patterns.
pub fn wildcard_match(pattern: &str, value: &str, case_insensitive: bool) -> bool {
    if case_insensitive {
        matches_folded(&pattern.to_ascii_lowercase(), &value.to_ascii_lowercase())
    } else {
        matches_folded(pattern, value)
    }
}

fn matches_folded(pattern: &str, value: &str) -> bool {
    let mut segments = pattern.split('*');
    // `split` always yields at least one segment.
    let first = segments.next().unwrap_or_default();
    let Some(last) = segments.next_back() else {
        return pattern == value;
    };
    let Some(rest) = value.strip_prefix(first) else {
        return false;
    };
    let Some(mut middle) = rest.strip_suffix(last) else {
        return false;
    };
    for segment in segments {
        match middle.find(segment) {
            Some(at) => middle = &middle[at + segment.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const APP: &str = "https://app.example.com";

    #[test]
    fn the_first_matching_rule_wins_even_if_a_later_one_is_more_specific() {
        let rules = [
            CorsRule::new(["*"], ["GET"]),
            CorsRule::new([APP], ["GET"])
                .expose_headers(["ETag"])
                .max_age(3000),
        ];
        let decision = evaluate(&rules, &CorsRequest::preflight(APP, "GET"));
        assert_eq!(
            decision,
            CorsDecision::Allowed {
                rule: 0,
                headers: CorsResponseHeaders {
                    allow_origin: "*".into(),
                    allow_methods: vec!["GET".into()],
                    allow_headers: vec![],
                    expose_headers: vec![],
                    max_age_seconds: None,
                    allow_credentials: false,
                    vary: CORS_VARY.to_vec(),
                },
            }
        );
    }

    #[test]
    fn a_rule_that_fails_on_method_or_headers_hands_over_to_the_next() {
        let rules = [
            CorsRule::new([APP], ["PUT"]).allowed_headers(["content-type"]),
            CorsRule::new([APP], ["GET", "PUT"]).allowed_headers(["*"]),
        ];
        let cases = [
            (CorsRequest::preflight(APP, "PUT"), Some(0)),
            (CorsRequest::preflight(APP, "GET"), Some(1)),
            (
                CorsRequest::preflight(APP, "PUT").request_headers(["Content-Type"]),
                Some(0),
            ),
            (
                CorsRequest::preflight(APP, "PUT").request_headers(["x-amz-date"]),
                Some(1),
            ),
            (CorsRequest::preflight(APP, "DELETE"), None),
        ];
        for (request, expected) in cases {
            assert_eq!(
                evaluate(&rules, &request).matched_rule(),
                expected,
                "{request:?}"
            );
        }
    }

    #[test]
    fn origins_match_exactly_or_through_one_wildcard() {
        // (AllowedOrigin, request Origin, allowed)
        let cases = [
            ("https://*.example.com", "https://a.example.com", true),
            ("https://*.example.com", "https://a.b.example.com", true),
            ("https://*.example.com", "https://.example.com", true),
            ("https://*.example.com", "https://example.com", false),
            ("https://*.example.com", "http://a.example.com", false),
            (
                "https://*.example.com",
                "https://a.example.com.evil.org",
                false,
            ),
            ("https://*.example.com", "https://a.example.com:8443", false),
            ("*.example.com", "https://a.example.com", true),
            ("*.example.com", "http://a.example.com", true),
            ("https://app.example.*", "https://app.example.org", true),
            ("https://app.example.*", "http://app.example.org", false),
            ("http://localhost:*", "http://localhost:5173", true),
            ("http://localhost:*", "https://localhost:5173", false),
            ("*", "https://anything.example", true),
            ("*", "null", true),
            ("*", "", true),
            ("null", "null", true),
            ("https://*", "null", false),
            (APP, APP, true),
            (APP, "https://APP.example.com", false),
            (APP, "https://app.example.com/", false),
            (APP, "https://app.example.com:443", false),
            (APP, "http://app.example.com", false),
        ];
        for (allowed, origin, expected) in cases {
            let rules = [CorsRule::new([allowed], ["GET"])];
            let decision = evaluate(&rules, &CorsRequest::preflight(origin, "GET"));
            assert_eq!(decision.is_allowed(), expected, "{allowed:?} vs {origin:?}");
        }
    }

    #[test]
    fn methods_match_exactly() {
        let rules = [CorsRule::new(["*"], ["GET", "PUT"])];
        for (method, expected) in [
            ("GET", true),
            ("PUT", true),
            ("get", false),
            ("Put", false),
            ("POST", false),
            ("OPTIONS", false),
            ("PATCH", false),
            ("", false),
            (" GET", false),
        ] {
            for request in [
                CorsRequest::preflight(APP, method),
                CorsRequest::actual(APP, method),
            ] {
                assert_eq!(
                    evaluate(&rules, &request).is_allowed(),
                    expected,
                    "{request:?}"
                );
            }
        }
    }

    #[test]
    fn requested_headers_match_case_insensitively_with_wildcards() {
        let listed = CorsRule::new(["*"], ["PUT"]).allowed_headers(["Content-Type", "x-amz-*"]);
        let none = CorsRule::new(["*"], ["PUT"]);
        let any = CorsRule::new(["*"], ["PUT"]).allowed_headers(["*"]);
        // (rule, requested headers, allowed)
        let cases: [(&CorsRule, &[&str], bool); 14] = [
            (&listed, &[], true),
            (&listed, &["content-type"], true),
            (&listed, &["CONTENT-TYPE"], true),
            (&listed, &["X-Amz-Date", "x-amz-meta-owner"], true),
            (&listed, &["x-amz-"], true),
            (&listed, &["x-amz"], false),
            (&listed, &["authorization"], false),
            (&listed, &["content-type", "authorization"], false),
            (&listed, &["content-type-x"], false),
            (&none, &[], true),
            (&none, &["content-type"], false),
            (&any, &["authorization", "x-anything"], true),
            (&any, &[], true),
            (&listed, &["", "  "], true),
        ];
        for (rule, headers, expected) in cases {
            let request =
                CorsRequest::preflight(APP, "PUT").request_headers(headers.iter().copied());
            assert_eq!(
                evaluate(std::slice::from_ref(rule), &request).is_allowed(),
                expected,
                "{:?} vs {headers:?}",
                rule.allowed_headers
            );
        }
    }

    #[test]
    fn every_requested_header_must_match_the_same_rule() {
        let rules = [
            CorsRule::new([APP], ["PUT"]).allowed_headers(["content-type"]),
            CorsRule::new([APP], ["PUT"]).allowed_headers(["x-amz-date"]),
        ];
        let both =
            CorsRequest::preflight(APP, "PUT").request_headers(["content-type", "x-amz-date"]);
        assert_eq!(evaluate(&rules, &both), CorsDecision::Denied);
        let one = CorsRequest::preflight(APP, "PUT").request_headers(["x-amz-date"]);
        assert_eq!(evaluate(&rules, &one).matched_rule(), Some(1));
    }

    #[test]
    fn expose_headers_and_max_age_come_from_the_matched_rule() {
        let rules = [
            CorsRule::new(["https://other.example.com"], ["GET"])
                .expose_headers(["x-other"])
                .max_age(10),
            CorsRule::new([APP], ["GET", "HEAD"])
                .allowed_headers(["*"])
                .expose_headers(["ETag", "x-amz-request-id"])
                .max_age(3000),
            CorsRule::new(["*"], ["GET"]).max_age(0),
        ];
        let request = CorsRequest::preflight(APP, "GET").request_headers_value("Range, x-amz-date");
        let decision = evaluate(&rules, &request);
        assert_eq!(decision.matched_rule(), Some(1));
        assert_eq!(
            decision.headers().unwrap().header_pairs(),
            vec![
                ("Access-Control-Allow-Origin", APP.to_owned()),
                ("Access-Control-Allow-Methods", "GET, HEAD".to_owned()),
                (
                    "Access-Control-Allow-Headers",
                    "range, x-amz-date".to_owned()
                ),
                (
                    "Access-Control-Expose-Headers",
                    "ETag, x-amz-request-id".to_owned()
                ),
                ("Access-Control-Max-Age", "3000".to_owned()),
                ("Access-Control-Allow-Credentials", "true".to_owned()),
                (
                    "Vary",
                    "Origin, Access-Control-Request-Headers, Access-Control-Request-Method"
                        .to_owned()
                ),
            ]
        );
        // Max-Age 0 is sent; absent is not.
        let zero = evaluate(&rules, &CorsRequest::preflight("https://x.example", "GET"));
        assert_eq!(zero.headers().unwrap().max_age_seconds, Some(0));
        let pairs = zero.headers().unwrap().header_pairs();
        assert!(pairs.contains(&("Access-Control-Max-Age", "0".to_owned())));
    }

    #[test]
    fn allow_origin_is_star_only_for_a_bare_star_and_credentials_follow_the_echo() {
        // (AllowedOrigins, request Origin, Allow-Origin, Allow-Credentials)
        let cases: [(&[&str], &str, &str, bool); 6] = [
            (&["*"], APP, "*", false),
            (&["*"], "null", "*", false),
            (&[APP], APP, APP, true),
            (&["https://*.example.com"], APP, APP, true),
            (&["*", APP], APP, APP, true),
            (&[APP, "*"], "https://b.example.org", "*", false),
        ];
        for (origins, origin, allow_origin, credentials) in cases {
            let rules = [CorsRule::new(origins.iter().copied(), ["GET"])];
            for request in [
                CorsRequest::preflight(origin, "GET"),
                CorsRequest::actual(origin, "GET"),
            ] {
                let decision = evaluate(&rules, &request);
                let headers = decision.headers().expect("allowed");
                assert_eq!(
                    headers.allow_origin, allow_origin,
                    "{origins:?} {request:?}"
                );
                assert_eq!(
                    headers.allow_credentials, credentials,
                    "{origins:?} {request:?}"
                );
            }
        }
    }

    #[test]
    fn an_actual_request_gets_no_allow_headers_and_ignores_requested_ones() {
        let rules = [CorsRule::new([APP], ["GET"]).expose_headers(["ETag"])];
        let request = CorsRequest::actual(APP, "GET").request_headers(["x-not-allowed"]);
        let decision = evaluate(&rules, &request);
        let headers = decision.headers().expect("allowed");
        assert!(headers.allow_headers.is_empty());
        assert_eq!(headers.expose_headers, ["ETag"]);
        assert!(
            !headers
                .header_pairs()
                .iter()
                .any(|(name, _)| *name == "Access-Control-Allow-Headers")
        );
    }

    #[test]
    fn no_matching_rule_denies() {
        let rules = [CorsRule::new([APP], ["GET"])];
        let cases = [
            (
                &rules[..],
                CorsRequest::preflight("https://evil.example", "GET"),
            ),
            (
                &rules[..],
                CorsRequest::actual("https://evil.example", "GET"),
            ),
            (&[][..], CorsRequest::preflight(APP, "GET")),
            (&[][..], CorsRequest::actual(APP, "GET")),
        ];
        for (rules, request) in cases {
            let decision = evaluate(rules, &request);
            assert_eq!(decision, CorsDecision::Denied, "{request:?}");
            assert_eq!(decision.preflight_status(), 403);
            assert_eq!(decision.headers(), None);
        }
    }

    #[test]
    fn a_preflight_without_origin_or_request_method_is_a_bad_request() {
        let rules = [CorsRule::new(["*"], ["GET"]).allowed_headers(["*"])];
        let no_method = CorsRequest {
            method: None,
            ..CorsRequest::preflight(APP, "GET")
        };
        let no_origin = CorsRequest {
            origin: None,
            ..CorsRequest::preflight(APP, "GET")
        };
        let neither = CorsRequest {
            preflight: true,
            ..CorsRequest::default()
        };
        let cases = [
            (no_method, BadPreflight::MissingRequestMethod),
            (no_origin, BadPreflight::MissingOrigin),
            (neither, BadPreflight::MissingOrigin),
        ];
        for (request, bad) in cases {
            let decision = evaluate(&rules, &request);
            assert_eq!(decision, CorsDecision::BadRequest(bad));
            assert_eq!(decision.preflight_status(), 400);
        }
        // With no configuration at all, AWS says so (403) before it misses the method; a
        // preflight without Origin is still a bad request.
        let no_method = CorsRequest {
            method: None,
            ..CorsRequest::preflight(APP, "GET")
        };
        assert_eq!(evaluate(&[], &no_method), CorsDecision::Denied);
        assert_eq!(evaluate(&[], &no_method).preflight_status(), 403);
        let no_origin = CorsRequest {
            origin: None,
            ..CorsRequest::preflight(APP, "GET")
        };
        assert_eq!(
            evaluate(&[], &no_origin),
            CorsDecision::BadRequest(BadPreflight::MissingOrigin)
        );
        // An actual request without Origin is simply not a CORS request.
        let plain = CorsRequest {
            origin: None,
            ..CorsRequest::actual(APP, "GET")
        };
        assert_eq!(evaluate(&rules, &plain), CorsDecision::Denied);
    }

    #[test]
    fn allow_headers_echo_the_requested_headers_lower_cased() {
        let rules = [CorsRule::new(["*"], ["PUT"]).allowed_headers(["content-type", "x-amz-*"])];
        let request =
            CorsRequest::preflight(APP, "PUT").request_headers_value("Content-Type,X-Amz-Date");
        let decision = evaluate(&rules, &request);
        assert_eq!(
            decision.headers().unwrap().allow_headers,
            ["content-type", "x-amz-date"]
        );
    }

    #[test]
    fn an_actual_request_with_a_request_method_header_is_matched_on_that_method() {
        let rules = [CorsRule::new([APP], ["PUT"])];
        assert_eq!(
            evaluate(&rules, &CorsRequest::actual(APP, "GET")),
            CorsDecision::Denied
        );
        let carried = CorsRequest::actual(APP, "GET").request_method_header("PUT");
        assert_eq!(evaluate(&rules, &carried).matched_rule(), Some(0));
        let other = CorsRequest::actual(APP, "PUT").request_method_header("GET");
        assert_eq!(evaluate(&rules, &other), CorsDecision::Denied);
        // A preflight's method is its Access-Control-Request-Method already.
        let preflight = CorsRequest::preflight(APP, "PUT").request_method_header("GET");
        assert_eq!(evaluate(&rules, &preflight).matched_rule(), Some(0));
    }

    #[test]
    fn request_headers_are_split_on_commas_and_trimmed() {
        let cases: [(&str, &[&str]); 10] = [
            ("", &[]),
            (",", &[]),
            (" , ,\t,", &[]),
            ("content-type", &["content-type"]),
            ("content-type, x-amz-date", &["content-type", "x-amz-date"]),
            ("content-type,x-amz-date", &["content-type", "x-amz-date"]),
            (" a ,b,, ,c ", &["a", "b", "c"]),
            ("a,\tb\t", &["a", "b"]),
            ("X-Amz-Date, X-Amz-Date", &["X-Amz-Date", "X-Amz-Date"]),
            ("a b, c", &["a b", "c"]),
        ];
        for (value, expected) in cases {
            assert_eq!(parse_request_headers(value), expected, "{value:?}");
        }
    }

    #[test]
    fn each_rule_says_why_it_does_not_match() {
        let rules = [
            CorsRule::new(["https://other.example"], ["GET"]),
            CorsRule::new([APP], ["PUT"]),
            CorsRule::new([APP], ["GET"]).allowed_headers(["content-type"]),
            CorsRule::new(["*"], ["GET"]).allowed_headers(["*"]),
        ];
        let request =
            CorsRequest::preflight(APP, "GET").request_headers_value("Content-Type, X-Trace");
        let why: Vec<Vec<Mismatch>> = rules.iter().map(|r| mismatches(r, &request)).collect();
        assert_eq!(
            why,
            [
                vec![
                    Mismatch::Origin,
                    Mismatch::Header("Content-Type".into()),
                    Mismatch::Header("X-Trace".into())
                ],
                vec![
                    Mismatch::Method,
                    Mismatch::Header("Content-Type".into()),
                    Mismatch::Header("X-Trace".into())
                ],
                vec![Mismatch::Header("X-Trace".into())],
                vec![]
            ]
        );
        assert_eq!(evaluate(&rules, &request).matched_rule(), Some(3));
    }

    #[test]
    fn wildcard_patterns_are_literal_segments_between_stars() {
        // (pattern, value, case-insensitive, matches)
        let cases = [
            ("", "", false, true),
            ("", "a", false, false),
            ("*", "", false, true),
            ("**", "abc", false, true),
            ("a*", "a", false, true),
            ("*a", "a", false, true),
            ("a*a", "a", false, false),
            ("a*a", "aa", false, true),
            ("a*b*c", "abc", false, true),
            ("a*b*c", "axxbyyc", false, true),
            ("a*b*c", "acb", false, false),
            ("a*b*b*c", "abbc", false, true),
            ("a*b*b*c", "abc", false, false),
            ("*.*.*", "a.b", false, false),
            ("X-Amz-*", "x-amz-date", false, false),
            ("X-Amz-*", "x-amz-date", true, true),
            ("x-amz-*", "X-AMZ-DATE", true, true),
            ("é*", "éa", false, true),
            ("*é", "aé", false, true),
            ("É*", "éa", true, false),
        ];
        for (pattern, value, ci, expected) in cases {
            assert_eq!(
                wildcard_match(pattern, value, ci),
                expected,
                "{pattern:?} vs {value:?} (case-insensitive: {ci})"
            );
        }
    }

    #[test]
    fn wildcard_matching_stays_linear_on_adversarial_input() {
        // Backtracking would try every split of the value among the stars.
        let value = "a".repeat(200_000);
        let started = std::time::Instant::now();
        assert!(!wildcard_match(
            &format!("{}b*", "a*".repeat(5_000)),
            &value,
            false
        ));
        assert!(wildcard_match(
            &format!("{}a", "a*".repeat(5_000)),
            &value,
            true
        ));
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
    }

    // A reference matcher by backtracking: obviously right, exponential, for small inputs only.
    fn naive_match(pattern: &[char], value: &[char]) -> bool {
        match pattern.split_first() {
            None => value.is_empty(),
            Some(('*', rest)) => (0..=value.len()).any(|i| naive_match(rest, &value[i..])),
            Some((c, rest)) => value.first() == Some(c) && naive_match(rest, &value[1..]),
        }
    }

    fn naive(pattern: &str, value: &str, case_insensitive: bool) -> bool {
        let fold = |s: &str| -> Vec<char> {
            if case_insensitive {
                s.to_ascii_lowercase().chars().collect()
            } else {
                s.chars().collect()
            }
        };
        naive_match(&fold(pattern), &fold(value))
    }

    fn reference_evaluate(rules: &[CorsRule], request: &CorsRequest<'_>) -> Option<usize> {
        let (origin, method) = (request.origin?, request.method?);
        rules.iter().position(|rule| {
            rule.allowed_origins.iter().any(|o| naive(o, origin, false))
                && rule.allowed_methods.iter().any(|m| m == method)
                && (!request.preflight
                    || request
                        .request_headers
                        .iter()
                        .map(|h| trim_ows(h))
                        .filter(|h| !h.is_empty())
                        .all(|h| rule.allowed_headers.iter().any(|a| naive(a, h, true))))
        })
    }

    // Small alphabets, weighted so that generated origins, methods and headers often meet, plus
    // arbitrary strings for the rest.
    fn allowed_origin() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => Just("*".to_owned()),
            3 => "https://[ab]\\.example\\.com",
            2 => "https://[ab*]{0,2}\\.example\\.com",
            1 => Just("null".to_owned()),
            1 => any::<String>(),
        ]
    }

    fn request_origin() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => "https://[ab]{0,2}\\.example\\.com",
            1 => Just("null".to_owned()),
            1 => any::<String>(),
        ]
    }

    fn method() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => proptest::sample::select(&["GET", "PUT"][..]).prop_map(str::to_owned),
            1 => proptest::sample::select(&super::super::METHODS[..]).prop_map(str::to_owned),
            1 => Just("get".to_owned()),
            1 => any::<String>(),
        ]
    }

    fn allowed_header() -> impl Strategy<Value = String> {
        prop_oneof![
            2 => Just("*".to_owned()),
            2 => Just("Content-Type".to_owned()),
            3 => "[xX]-[aA]m[zZ]-[ab*]{0,2}",
            2 => "[aAb*]{0,2}",
            1 => any::<String>(),
        ]
    }

    fn request_header() -> impl Strategy<Value = String> {
        prop_oneof![
            2 => Just("content-type".to_owned()),
            3 => "[xX]-[aA]m[zZ]-[ab]{0,2}",
            2 => "[ \t]{0,1}[aAb]{0,2}[ \t]{0,1}",
            1 => any::<String>(),
        ]
    }

    fn arb_rule() -> impl Strategy<Value = CorsRule> {
        (
            proptest::collection::vec(allowed_origin(), 0..3),
            proptest::collection::vec(method(), 0..3),
            proptest::collection::vec(allowed_header(), 0..3),
            proptest::collection::vec(allowed_header(), 0..2),
            proptest::option::of(any::<i32>()),
        )
            .prop_map(|(origins, methods, allowed, expose, max_age)| CorsRule {
                id: None,
                allowed_origins: origins,
                allowed_methods: methods,
                allowed_headers: allowed,
                expose_headers: expose,
                max_age_seconds: max_age,
            })
    }

    proptest! {
        #[test]
        fn evaluate_never_panics_and_allows_only_what_the_first_matching_rule_allows(
            rules in proptest::collection::vec(arb_rule(), 0..4),
            origin in proptest::option::weighted(0.9, request_origin()),
            method in proptest::option::weighted(0.9, method()),
            headers in proptest::collection::vec(request_header(), 0..3),
            preflight in any::<bool>(),
        ) {
            let request = CorsRequest {
                origin: origin.as_deref(),
                method: method.as_deref(),
                request_headers: headers.iter().map(String::as_str).collect(),
                preflight,
                request_method_header: None,
            };
            let decision = evaluate(&rules, &request);
            prop_assert_eq!(decision.matched_rule(), reference_evaluate(&rules, &request));
            if origin.is_some() && method.is_some() {
                let first_match = rules.iter().position(|r| mismatches(r, &request).is_empty());
                prop_assert_eq!(decision.matched_rule(), first_match);
            }
            match &decision {
                CorsDecision::Allowed { rule, headers } => {
                    let (origin, method) = (origin.as_deref().unwrap(), method.as_deref().unwrap());
                    let rule = &rules[*rule];
                    prop_assert!(rule.allowed_methods.iter().any(|m| m == method));
                    prop_assert!(rule.allowed_origins.iter().any(|o| wildcard_match(o, origin, false)));
                    prop_assert_eq!(&headers.allow_methods, &rule.allowed_methods);
                    prop_assert_eq!(headers.max_age_seconds, rule.max_age_seconds);
                    let specific = rule.allowed_origins.iter().any(|o| o != "*" && naive(o, origin, false));
                    prop_assert_eq!(headers.allow_credentials, specific);
                    if specific {
                        prop_assert_eq!(&headers.allow_origin, origin);
                    } else {
                        prop_assert_eq!(headers.allow_origin.as_str(), "*");
                        prop_assert!(rule.allowed_origins.iter().any(|o| o == "*"));
                    }
                    let requested: Vec<String> = if preflight {
                        request.request_headers.iter().map(|h| trim_ows(h)).filter(|h| !h.is_empty()).map(str::to_ascii_lowercase).collect()
                    } else {
                        Vec::new()
                    };
                    prop_assert_eq!(&headers.allow_headers, &requested);
                    prop_assert_eq!(decision.preflight_status(), 200);
                }
                CorsDecision::Denied => prop_assert!((origin.is_some() && (method.is_some() || rules.is_empty())) || !preflight),
                CorsDecision::BadRequest(_) => prop_assert!(preflight && (origin.is_none() || method.is_none())),
            }
        }

        #[test]
        fn wildcard_match_agrees_with_backtracking(
            pattern in prop_oneof!["[ab*]{0,8}", "[ab*Aé]{0,8}"],
            value in prop_oneof!["[ab]{0,8}", "[abAé]{0,10}"],
            case_insensitive in any::<bool>(),
        ) {
            prop_assert_eq!(
                wildcard_match(&pattern, &value, case_insensitive),
                naive(&pattern, &value, case_insensitive)
            );
        }

        #[test]
        fn wildcard_match_never_panics(pattern in any::<String>(), value in any::<String>(), ci in any::<bool>()) {
            let _ = wildcard_match(&pattern, &value, ci);
            prop_assert!(wildcard_match(&pattern.replace('*', ""), &pattern.replace('*', ""), ci));
            prop_assert!(wildcard_match("*", &value, ci));
        }

        #[test]
        fn parsed_request_headers_round_trip(names in proptest::collection::vec("[A-Za-z0-9-]{1,8}", 0..5), sep in "[ \t]{0,2},[ \t]{0,2}") {
            let value = names.join(&sep);
            prop_assert_eq!(parse_request_headers(&value), names.iter().map(String::as_str).collect::<Vec<_>>());
        }
    }
}

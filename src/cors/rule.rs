use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The HTTP methods S3 accepts in a CORS rule.
pub const METHODS: [&str; 5] = ["GET", "PUT", "HEAD", "POST", "DELETE"];

/// One CORS rule. S3 answers a cross-origin request with the first rule whose origin,
/// method and requested headers all match, so the order of rules matters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CorsRule {
    /// Optional identifier of the rule, at most 255 characters. S3 stores it but does not use it
    /// to match requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 255))]
    pub id: Option<String>,

    /// Origins allowed to make cross-origin requests, for example `https://app.example.com`.
    /// Each may contain at most one `*` wildcard (`https://*.example.com`, or `*` for any origin).
    #[schemars(length(min = 1))]
    pub allowed_origins: Vec<String>,

    /// HTTP methods the allowed origins may use: GET, PUT, HEAD, POST or DELETE.
    #[schemars(length(min = 1))]
    #[schemars(extend("items" = {"type": "string", "enum": ["GET", "PUT", "HEAD", "POST", "DELETE"]}))]
    pub allowed_methods: Vec<String>,

    /// Headers a preflight request may ask for in `Access-Control-Request-Headers`. Each may
    /// contain at most one `*` wildcard; `*` allows any header. Matched case-insensitively.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_headers: Vec<String>,

    /// Response headers the browser lets scripts read, for example `ETag`. No wildcards.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expose_headers: Vec<String>,

    /// How long, in seconds, a browser may cache the preflight response. Absent means S3 sends
    /// no `Access-Control-Max-Age`, which is not the same as 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 2147483647))]
    pub max_age_seconds: Option<i32>,
}

impl CorsRule {
    /// A rule allowing `origins` to use `methods`; refine it with the builder methods.
    pub fn new<O, M>(origins: O, methods: M) -> Self
    where
        O: IntoIterator,
        O::Item: Into<String>,
        M: IntoIterator,
        M::Item: Into<String>,
    {
        CorsRule {
            allowed_origins: origins.into_iter().map(Into::into).collect(),
            allowed_methods: methods.into_iter().map(Into::into).collect(),
            ..CorsRule::default()
        }
    }

    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    pub fn allowed_headers<H: IntoIterator<Item: Into<String>>>(mut self, headers: H) -> Self {
        self.allowed_headers = headers.into_iter().map(Into::into).collect();
        self
    }

    pub fn expose_headers<H: IntoIterator<Item: Into<String>>>(mut self, headers: H) -> Self {
        self.expose_headers = headers.into_iter().map(Into::into).collect();
        self
    }

    pub fn max_age(mut self, seconds: i32) -> Self {
        self.max_age_seconds = Some(seconds);
        self
    }
}

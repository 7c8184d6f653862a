//! The pure core: what a CORS rule is, which rules S3 accepts, and what must be written to
//! make a bucket match a spec. No Kubernetes, no network.

mod diff;
mod expect;
mod preflight;
mod rule;
mod validate;

pub use crate::constraints::FieldError;
pub use diff::{Plan, describe_drift, diff, normalise};
pub use expect::{Expectation, MAX_EXPECTATIONS, check_expectations, validate_expectations};
pub use preflight::{
    BadPreflight, CORS_VARY, CorsDecision, CorsRequest, CorsResponseHeaders, Mismatch, evaluate,
    mismatches, parse_request_headers, wildcard_match,
};
pub use rule::{CorsRule, METHODS};
pub use validate::{
    DUPLICATE_ID_MESSAGE, MAX_CONFIG_BYTES, MAX_ID_LEN, MAX_RULES, UNIQUE_IDS_CEL, config_xml_len,
    validate_rules,
};

//! Expectations: requests a spec declares beside its rules, each with whether S3 must allow it.
//! Checked with the preflight evaluator against the rules, before anything is written, so a
//! configuration that breaks its own expectations never reaches the bucket: a unit test for
//! CORS that lives next to the rules.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::preflight::{CorsRequest, Mismatch, evaluate, mismatches};
use super::rule::CorsRule;
use crate::constraints::{FieldError, MAX_LIST_ITEMS, MAX_VALUE_LEN};

/// At most this many expectations in one spec.
pub const MAX_EXPECTATIONS: usize = 50;
/// Longest name of an expectation (as long as a rule's ID).
pub const MAX_NAME_LEN: usize = 255;
/// Longest method of an expectation.
pub const MAX_METHOD_LEN: usize = 32;

/// A preflight request and whether the rules must allow it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Expectation {
    /// Optional name, shown in messages, at most 255 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 255))]
    pub name: Option<String>,

    /// The request's `Origin`, for example `https://app.example.com`.
    #[schemars(length(min = 1, max = 320))]
    pub origin: String,

    /// The method the preflight asks for (`Access-Control-Request-Method`), for example `PUT`.
    /// Compared exactly, as S3 does: `put` is not `PUT`.
    #[schemars(length(min = 1, max = 32))]
    pub method: String,

    /// The headers the preflight asks for (`Access-Control-Request-Headers`), for example
    /// `content-type`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 200))]
    pub headers: Vec<String>,

    /// Whether the rules must allow the request (`true`) or refuse it (`false`).
    pub allowed: bool,
}

impl Expectation {
    /// A preflight from `origin` for `method` that must be allowed (`allowed`) or refused.
    pub fn new(origin: impl Into<String>, method: impl Into<String>, allowed: bool) -> Self {
        Expectation {
            origin: origin.into(),
            method: method.into(),
            allowed,
            ..Expectation::default()
        }
    }

    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    pub fn headers<H: IntoIterator<Item: Into<String>>>(mut self, headers: H) -> Self {
        self.headers = headers.into_iter().map(Into::into).collect();
        self
    }

    /// The preflight this expectation describes.
    pub fn request(&self) -> CorsRequest<'_> {
        CorsRequest::preflight(&self.origin, &self.method)
            .request_headers(self.headers.iter().map(String::as_str))
    }

    // `spec.expectations[2] "uploads" (preflight PUT from "https://app.example.com" with
    // headers [content-type])`
    fn describe(&self, index: usize) -> String {
        let mut text = format!("spec.expectations[{index}]");
        if let Some(name) = self.name.as_deref().filter(|n| !n.is_empty()) {
            text.push_str(&format!(" {name:?}"));
        }
        text.push_str(&format!(
            " (preflight {} from {:?}",
            self.method, self.origin
        ));
        if !self.headers.is_empty() {
            text.push_str(&format!(" with headers [{}]", self.headers.join(", ")));
        }
        text.push(')');
        text
    }
}

/// Checks every expectation against `rules`, as S3 would answer its preflight. `Ok` when each
/// is allowed or refused as it says; otherwise one message per failing expectation, naming it
/// (index, name, origin, method, headers), what it expected, and the rule that decided: the
/// rule that allows a request expected to be refused, or for a request expected to be allowed,
/// why each rule does not match it.
pub fn check_expectations(
    rules: &[CorsRule],
    expectations: &[Expectation],
) -> Result<(), Vec<String>> {
    let failures: Vec<String> = expectations
        .iter()
        .enumerate()
        .filter_map(|(index, expectation)| check_one(rules, index, expectation))
        .collect();
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures)
    }
}

fn check_one(rules: &[CorsRule], index: usize, expectation: &Expectation) -> Option<String> {
    let request = expectation.request();
    let decision = evaluate(rules, &request);
    let what = expectation.describe(index);
    match (expectation.allowed, decision.matched_rule()) {
        (true, Some(_)) | (false, None) => None,
        (false, Some(rule)) => Some(format!(
            "{what} is expected to be refused, but {} allows it",
            rule_name(rules, rule)
        )),
        (true, None) if rules.is_empty() => Some(format!(
            "{what} is expected to be allowed, but is refused: the spec has no rules"
        )),
        (true, None) => {
            let reasons = rules
                .iter()
                .enumerate()
                .map(|(i, rule)| {
                    let why = mismatches(rule, &request)
                        .iter()
                        .map(|m| explain(rule, expectation, m))
                        .collect::<Vec<_>>()
                        .join(", ");
                    format!("{}: {why}", rule_name(rules, i))
                })
                .collect::<Vec<_>>()
                .join("; ");
            Some(format!(
                "{what} is expected to be allowed, but no rule matches it: {reasons}"
            ))
        }
    }
}

// `rule 2` or `rule 2 (id "uploads")`: 1-based, in the order of spec.rules.
fn rule_name(rules: &[CorsRule], index: usize) -> String {
    match rules[index].id.as_deref().filter(|id| !id.is_empty()) {
        Some(id) => format!("rule {} (id {id:?})", index + 1),
        None => format!("rule {}", index + 1),
    }
}

fn explain(rule: &CorsRule, expectation: &Expectation, mismatch: &Mismatch) -> String {
    match mismatch {
        Mismatch::Origin => format!(
            "origin {:?} is not in allowedOrigins [{}]",
            expectation.origin,
            rule.allowed_origins.join(", ")
        ),
        Mismatch::Method => format!(
            "method {} is not in allowedMethods [{}]",
            expectation.method,
            rule.allowed_methods.join(", ")
        ),
        Mismatch::Header(header) if rule.allowed_headers.is_empty() => {
            format!("header {header} is not allowed: the rule has no allowedHeaders")
        }
        Mismatch::Header(header) => format!(
            "header {header} is not in allowedHeaders [{}]",
            rule.allowed_headers.join(", ")
        ),
    }
}

/// The structural checks of `spec.expectations` the CRD schema also makes, for the controller
/// (and clusters that skip admission), each error naming the field and the value.
pub fn validate_expectations(expectations: &[Expectation]) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if expectations.len() > MAX_EXPECTATIONS {
        errors.push(FieldError::new(
            "spec.expectations",
            None,
            format!(
                "has {} expectations; at most {MAX_EXPECTATIONS} are allowed",
                expectations.len()
            ),
        ));
    }
    for (index, e) in expectations.iter().enumerate() {
        let at = format!("spec.expectations[{index}]");
        if let Some(name) = &e.name {
            bounded(&format!("{at}.name"), name, 0, MAX_NAME_LEN, &mut errors);
        }
        bounded(
            &format!("{at}.origin"),
            &e.origin,
            1,
            MAX_VALUE_LEN,
            &mut errors,
        );
        bounded(
            &format!("{at}.method"),
            &e.method,
            1,
            MAX_METHOD_LEN,
            &mut errors,
        );
        if e.headers.len() > MAX_LIST_ITEMS {
            errors.push(FieldError::new(
                format!("{at}.headers"),
                None,
                format!(
                    "has {} entries; at most {MAX_LIST_ITEMS} are allowed",
                    e.headers.len()
                ),
            ));
        }
        for (i, header) in e.headers.iter().enumerate() {
            bounded(
                &format!("{at}.headers[{i}]"),
                header,
                1,
                MAX_VALUE_LEN,
                &mut errors,
            );
        }
    }
    errors
}

// Between `min` and `max` characters, none a control character: each becomes a header of the
// live preflight or part of a message.
fn bounded(field: &str, value: &str, min: usize, max: usize, errors: &mut Vec<FieldError>) {
    let len = value.chars().count();
    if len < min {
        errors.push(FieldError::new(field, None, "is an empty string"));
    } else if len > max {
        errors.push(FieldError::new(
            field,
            Some(value),
            format!("is {len} characters long; at most {max} are allowed"),
        ));
    } else {
        errors.extend(crate::constraints::check(
            field,
            value,
            &crate::constraints::NO_CONTROL,
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const APP: &str = "https://app.example.com";
    const EVIL: &str = "https://evil.example";

    fn rules() -> Vec<CorsRule> {
        vec![
            CorsRule::new([APP], ["GET", "HEAD"]).id("read"),
            CorsRule::new([APP], ["PUT"]).allowed_headers(["content-type", "x-amz-*"]),
        ]
    }

    #[test]
    fn expectations_met_pass() {
        let expectations = [
            Expectation::new(APP, "GET", true).name("read"),
            Expectation::new(APP, "PUT", true).headers(["Content-Type", "x-amz-date"]),
            Expectation::new(EVIL, "GET", false),
            Expectation::new(APP, "DELETE", false),
            Expectation::new(APP, "PUT", false).headers(["authorization"]),
        ];
        assert_eq!(check_expectations(&rules(), &expectations), Ok(()));
        assert_eq!(check_expectations(&rules(), &[]), Ok(()));
        assert_eq!(
            check_expectations(&[], &[Expectation::new(APP, "GET", false)]),
            Ok(())
        );
    }

    #[test]
    fn an_unexpected_allow_names_the_rule_that_matched() {
        let mut rules = rules();
        rules.insert(1, CorsRule::new(["*"], ["GET", "DELETE"]).id("anyone"));
        let expectations = [
            Expectation::new(APP, "GET", true),
            Expectation::new(EVIL, "DELETE", false).name("no deletes from elsewhere"),
        ];
        let errors = check_expectations(&rules, &expectations).unwrap_err();
        assert_eq!(
            errors,
            [
                r#"spec.expectations[1] "no deletes from elsewhere" (preflight DELETE from "https://evil.example") is expected to be refused, but rule 2 (id "anyone") allows it"#
            ]
        );
        // Without an id, the rule is named by its 1-based position only.
        let errors = check_expectations(
            &[CorsRule::new(["*"], ["PUT"])],
            &[Expectation::new(EVIL, "PUT", false)],
        )
        .unwrap_err();
        assert_eq!(
            errors,
            [
                r#"spec.expectations[0] (preflight PUT from "https://evil.example") is expected to be refused, but rule 1 allows it"#
            ]
        );
    }

    #[test]
    fn an_unexpected_deny_says_why_for_each_rule() {
        let errors = check_expectations(
            &rules(),
            &[Expectation::new(APP, "PUT", true)
                .name("upload")
                .headers(["content-type", "x-upload-token"])],
        )
        .unwrap_err();
        assert_eq!(
            errors,
            [concat!(
                r#"spec.expectations[0] "upload" (preflight PUT from "https://app.example.com" with headers [content-type, x-upload-token]) "#,
                "is expected to be allowed, but no rule matches it: ",
                r#"rule 1 (id "read"): method PUT is not in allowedMethods [GET, HEAD], header content-type is not allowed: the rule has no allowedHeaders, header x-upload-token is not allowed: the rule has no allowedHeaders; "#,
                "rule 2: header x-upload-token is not in allowedHeaders [content-type, x-amz-*]",
            )]
        );
        let errors =
            check_expectations(&rules(), &[Expectation::new(EVIL, "GET", true)]).unwrap_err();
        assert_eq!(
            errors,
            [concat!(
                r#"spec.expectations[0] (preflight GET from "https://evil.example") is expected to be allowed, but no rule matches it: "#,
                r#"rule 1 (id "read"): origin "https://evil.example" is not in allowedOrigins [https://app.example.com]; "#,
                r#"rule 2: origin "https://evil.example" is not in allowedOrigins [https://app.example.com], method GET is not in allowedMethods [PUT]"#,
            )]
        );
        let errors = check_expectations(&[], &[Expectation::new(APP, "GET", true)]).unwrap_err();
        assert_eq!(
            errors,
            [
                r#"spec.expectations[0] (preflight GET from "https://app.example.com") is expected to be allowed, but is refused: the spec has no rules"#
            ]
        );
    }

    #[test]
    fn methods_are_exact_and_headers_case_insensitive_as_in_s3() {
        let errors = check_expectations(
            &rules(),
            &[
                Expectation::new(APP, "get", true),
                Expectation::new(APP, "PUT", true).headers(["X-Amz-Meta-Owner"]),
            ],
        )
        .unwrap_err();
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].contains("method get is not in allowedMethods [GET, HEAD]"),
            "{errors:?}"
        );
    }

    #[test]
    fn every_failing_expectation_is_reported_in_order() {
        let expectations = [
            Expectation::new(EVIL, "GET", true).name("a"),
            Expectation::new(APP, "GET", true).name("met"),
            Expectation::new(APP, "HEAD", false).name("b"),
            Expectation::new(APP, "POST", true).name("c"),
        ];
        let errors = check_expectations(&rules(), &expectations).unwrap_err();
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors[0].starts_with(r#"spec.expectations[0] "a""#));
        assert!(errors[1].starts_with(r#"spec.expectations[2] "b""#));
        assert!(errors[1].ends_with(r#"but rule 1 (id "read") allows it"#));
        assert!(errors[2].starts_with(r#"spec.expectations[3] "c""#));
    }

    #[test]
    fn the_readme_example_says_what_the_readme_shows() {
        let expectations = [
            Expectation::new(APP, "PUT", true)
                .name("the app uploads")
                .headers(["Content-Type"]),
            Expectation::new(EVIL, "GET", false).name("no one else reads"),
        ];
        let rule = |origin: &str| {
            CorsRule::new([origin], ["GET", "PUT"])
                .id("app")
                .allowed_headers(["content-type"])
        };
        assert_eq!(check_expectations(&[rule(APP)], &expectations), Ok(()));
        assert_eq!(
            check_expectations(&[rule("*")], &expectations),
            Err(vec![
                r#"spec.expectations[1] "no one else reads" (preflight GET from "https://evil.example") is expected to be refused, but rule 1 (id "app") allows it"#.to_owned()
            ])
        );
    }

    #[test]
    fn structural_errors_name_the_field_and_the_value() {
        let mut expectations = vec![
            Expectation::new(APP, "GET", true),
            Expectation::new("", "GET", true),
            Expectation::new(APP, "x".repeat(33), true)
                .headers(["", "ok"])
                .name("n".repeat(256)),
        ];
        let errors: Vec<String> = validate_expectations(&expectations)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            errors,
            [
                "spec.expectations[1].origin: is an empty string".to_owned(),
                format!(
                    "spec.expectations[2].name: {:?} is 256 characters long; at most 255 are allowed",
                    format!("{}… (256 characters)", "n".repeat(80))
                ),
                format!(
                    "spec.expectations[2].method: {:?} is 33 characters long; at most 32 are allowed",
                    "x".repeat(33)
                ),
                "spec.expectations[2].headers[0]: is an empty string".to_owned(),
            ]
        );
        expectations.truncate(1);
        expectations.resize(MAX_EXPECTATIONS + 1, Expectation::new(APP, "GET", true));
        let errors = validate_expectations(&expectations);
        assert_eq!(
            errors[0].to_string(),
            "spec.expectations: has 51 expectations; at most 50 are allowed"
        );
        assert!(validate_expectations(&expectations[..MAX_EXPECTATIONS]).is_empty());
    }
}

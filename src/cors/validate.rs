//! The constraints S3 puts on a CORS configuration, checked before anything reaches S3.

use super::rule::{CorsRule, METHODS};
use crate::constraints::{
    AT_MOST_ONE_WILDCARD, FieldError, MAX_LIST_ITEMS, MAX_VALUE_LEN, NO_CONTROL, NO_WILDCARD,
    StringRule,
};

/// At most this many rules in one configuration.
pub const MAX_RULES: usize = 100;
/// At most this many characters in a rule's ID.
pub const MAX_ID_LEN: usize = 255;
/// At most this many bytes in the configuration's XML as sent to S3.
pub const MAX_CONFIG_BYTES: usize = 64 * 1024;

/// Said of a rule whose id an earlier rule already has.
pub const DUPLICATE_ID_MESSAGE: &str = "is the id of an earlier rule; rule ids must be unique";
/// The same constraint in CEL, on the list of rules.
pub const UNIQUE_IDS_CEL: &str = "self.all(r, !has(r.id) || r.id == '' || self.filter(x, has(x.id) && x.id == r.id).size() == 1)";

/// Checks `rules` against every constraint S3 puts on a CORS configuration and returns all the
/// broken ones, each naming the field (under `spec.rules`) and the value.
pub fn validate_rules(rules: &[CorsRule]) -> Result<(), Vec<FieldError>> {
    let mut errors = Vec::new();
    if rules.len() > MAX_RULES {
        errors.push(FieldError::new(
            "spec.rules",
            None,
            format!("has {} rules; S3 allows at most {MAX_RULES}", rules.len()),
        ));
    }
    for (index, rule) in rules.iter().enumerate() {
        validate_rule(&format!("spec.rules[{index}]"), rule, &mut errors);
        // Ids name rules in messages and drift reports, so two rules may not share one.
        if let Some(id) = rule.id.as_deref().filter(|id| !id.is_empty())
            && rules[..index].iter().any(|r| r.id.as_deref() == Some(id))
        {
            errors.push(FieldError::new(
                format!("spec.rules[{index}].id"),
                Some(id),
                DUPLICATE_ID_MESSAGE,
            ));
        }
    }
    let size = config_xml_len(rules);
    if size > MAX_CONFIG_BYTES {
        errors.push(FieldError::new(
            "spec.rules",
            None,
            format!("serialize to {size} bytes of XML; S3 allows at most {MAX_CONFIG_BYTES}"),
        ));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

fn validate_rule(at: &str, rule: &CorsRule, errors: &mut Vec<FieldError>) {
    if let Some(id) = &rule.id {
        let len = id.chars().count();
        if len > MAX_ID_LEN {
            errors.push(FieldError::new(
                format!("{at}.id"),
                Some(id),
                format!("is {len} characters long; S3 allows at most {MAX_ID_LEN}"),
            ));
        }
        errors.extend(crate::constraints::check(
            &format!("{at}.id"),
            id,
            &NO_CONTROL,
        ));
    }

    if rule.allowed_origins.is_empty() {
        errors.push(FieldError::new(
            format!("{at}.allowedOrigins"),
            None,
            "is empty; S3 requires at least one origin",
        ));
    }
    list(
        &format!("{at}.allowedOrigins"),
        &rule.allowed_origins,
        &AT_MOST_ONE_WILDCARD,
        errors,
    );

    if rule.allowed_methods.is_empty() {
        errors.push(FieldError::new(
            format!("{at}.allowedMethods"),
            None,
            "is empty; S3 requires at least one method",
        ));
    }
    for (i, method) in rule.allowed_methods.iter().enumerate() {
        if !METHODS.contains(&method.as_str()) {
            errors.push(FieldError::new(
                format!("{at}.allowedMethods[{i}]"),
                Some(method),
                "is not a method S3 accepts (GET, PUT, HEAD, POST, DELETE)",
            ));
        }
    }

    list(
        &format!("{at}.allowedHeaders"),
        &rule.allowed_headers,
        &AT_MOST_ONE_WILDCARD,
        errors,
    );
    list(
        &format!("{at}.exposeHeaders"),
        &rule.expose_headers,
        &NO_WILDCARD,
        errors,
    );

    if let Some(max_age) = rule.max_age_seconds
        && max_age < 0
    {
        errors.push(FieldError::new(
            format!("{at}.maxAgeSeconds"),
            Some(&max_age.to_string()),
            "is negative; S3 requires 0 to 2147483647",
        ));
    }
}

// Origin and header lists: bounded, no empty strings, each value passing `rule`.
fn list(field: &str, values: &[String], rule: &StringRule, errors: &mut Vec<FieldError>) {
    if values.len() > MAX_LIST_ITEMS {
        errors.push(FieldError::new(
            field,
            None,
            format!(
                "has {} entries; at most {MAX_LIST_ITEMS} are allowed",
                values.len()
            ),
        ));
    }
    for (i, value) in values.iter().enumerate() {
        let field = format!("{field}[{i}]");
        if value.is_empty() {
            errors.push(FieldError::new(field, None, "is an empty string"));
        } else if value.chars().count() > MAX_VALUE_LEN {
            errors.push(FieldError::new(
                field,
                Some(value),
                format!("is longer than {MAX_VALUE_LEN} characters"),
            ));
        } else if !(rule.holds)(value) {
            errors.push(FieldError::new(field, Some(value), rule.message));
        } else if !(NO_CONTROL.holds)(value) {
            errors.push(FieldError::new(field, Some(value), NO_CONTROL.message));
        }
    }
}

/// Length in bytes of the XML body of a PutBucketCors request carrying `rules`, which is what
/// S3's 64 KB limit applies to.
pub fn config_xml_len(rules: &[CorsRule]) -> usize {
    const ROOT_OPEN: &str =
        r#"<CORSConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">"#;
    const ROOT_CLOSE: &str = "</CORSConfiguration>";
    fn element(tag: &str, text: &str) -> usize {
        // <tag>text</tag>
        2 * tag.len() + 5 + escaped_len(text)
    }
    let mut len = ROOT_OPEN.len() + ROOT_CLOSE.len();
    for rule in rules {
        len += element("CORSRule", "");
        if let Some(id) = &rule.id {
            len += element("ID", id);
        }
        len += rule
            .allowed_headers
            .iter()
            .map(|h| element("AllowedHeader", h))
            .sum::<usize>();
        len += rule
            .allowed_methods
            .iter()
            .map(|m| element("AllowedMethod", m))
            .sum::<usize>();
        len += rule
            .allowed_origins
            .iter()
            .map(|o| element("AllowedOrigin", o))
            .sum::<usize>();
        len += rule
            .expose_headers
            .iter()
            .map(|h| element("ExposeHeader", h))
            .sum::<usize>();
        if let Some(max_age) = rule.max_age_seconds {
            len += element("MaxAgeSeconds", &max_age.to_string());
        }
    }
    len
}

// As the AWS SDK's XML writer escapes (aws-smithy-xml's `escape`): the five entities, and
// line ends as hexadecimal character references.
fn escaped_len(text: &str) -> usize {
    text.chars()
        .map(|c| match c {
            '&' => "&amp;".len(),
            '<' | '>' => "&lt;".len(),
            '"' | '\'' => "&quot;".len(),
            '\r' => "&#xD;".len(),
            '\n' => "&#xA;".len(),
            '\u{85}' => "&#x85;".len(),
            '\u{2028}' => "&#x2028;".len(),
            c => c.len_utf8(),
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule() -> CorsRule {
        CorsRule::new(["https://app.example.com"], ["GET"])
    }

    fn fields(rules: &[CorsRule]) -> Vec<String> {
        validate_rules(rules)
            .unwrap_err()
            .into_iter()
            .map(|e| e.field)
            .collect()
    }

    #[test]
    fn the_s3_documentation_sample_is_valid() {
        let rules = [
            CorsRule::new(["*"], ["GET"])
                .allowed_headers(["*"])
                .max_age(3000),
            CorsRule::new(["http://www.example.com"], ["PUT", "POST", "DELETE"])
                .allowed_headers(["*"])
                .expose_headers(["x-amz-server-side-encryption", "x-amz-request-id"])
                .max_age(3000),
        ];
        assert_eq!(validate_rules(&rules), Ok(()));
    }

    #[test]
    fn no_rules_is_valid() {
        assert_eq!(validate_rules(&[]), Ok(()));
    }

    #[test]
    fn errors_name_the_rule_the_field_and_the_value() {
        let rules = [
            rule(),
            CorsRule::new(["https://*.*.example.com"], ["PATCH"]),
        ];
        let errors = validate_rules(&rules).unwrap_err();
        let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            messages,
            [
                r#"spec.rules[1].allowedOrigins[0]: "https://*.*.example.com" may contain at most one '*' wildcard"#,
                r#"spec.rules[1].allowedMethods[0]: "PATCH" is not a method S3 accepts (GET, PUT, HEAD, POST, DELETE)"#,
            ]
        );
    }

    #[test]
    fn one_hundred_rules_pass_and_one_hundred_and_one_fail() {
        assert_eq!(validate_rules(&vec![rule(); 100]), Ok(()));
        assert_eq!(fields(&vec![rule(); 101]), ["spec.rules"]);
    }

    #[test]
    fn each_constraint_names_its_field() {
        let cases: Vec<(CorsRule, &str)> = vec![
            (rule().id("x".repeat(256)), "spec.rules[0].id"),
            (
                CorsRule::new(Vec::<String>::new(), ["GET"]),
                "spec.rules[0].allowedOrigins",
            ),
            (
                CorsRule::new([""], ["GET"]),
                "spec.rules[0].allowedOrigins[0]",
            ),
            (
                CorsRule::new(["*"], Vec::<String>::new()),
                "spec.rules[0].allowedMethods",
            ),
            (
                CorsRule::new(["*"], ["GET", "get"]),
                "spec.rules[0].allowedMethods[1]",
            ),
            (
                rule().allowed_headers(["x-*-*"]),
                "spec.rules[0].allowedHeaders[0]",
            ),
            (
                rule().allowed_headers([""]),
                "spec.rules[0].allowedHeaders[0]",
            ),
            (
                rule().expose_headers(["*"]),
                "spec.rules[0].exposeHeaders[0]",
            ),
            (
                rule().expose_headers(["ETag", "x-amz-*"]),
                "spec.rules[0].exposeHeaders[1]",
            ),
            (rule().max_age(-1), "spec.rules[0].maxAgeSeconds"),
        ];
        for (rule, field) in cases {
            assert_eq!(fields(std::slice::from_ref(&rule)), [field], "{rule:?}");
        }
    }

    #[test]
    fn rule_ids_are_unique_but_may_be_left_out() {
        let rules = [
            rule().id("a"),
            rule(),
            rule().id(""),
            rule().id("b"),
            rule(),
            rule().id("a"),
        ];
        assert_eq!(fields(&rules), ["spec.rules[5].id"]);
    }

    #[test]
    fn limits_are_inclusive() {
        let rule = rule()
            .id("x".repeat(255))
            .allowed_headers(["x-*"])
            .max_age(i32::MAX)
            .max_age(0);
        assert_eq!(validate_rules(&[rule]), Ok(()));
    }

    #[test]
    fn a_configuration_over_64_kb_is_refused() {
        let big = rule().allowed_headers((0..200).map(|i| format!("x-{}-{i:05}", "h".repeat(110))));
        assert!(config_xml_len(std::slice::from_ref(&big)) < MAX_CONFIG_BYTES);
        let rules = vec![big; 3];
        assert!(config_xml_len(&rules) > MAX_CONFIG_BYTES);
        assert_eq!(fields(&rules), ["spec.rules"]);
    }

    #[test]
    fn xml_length_matches_a_hand_written_body() {
        let rules = [rule().id("a&b").max_age(5)];
        let body = concat!(
            r#"<CORSConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">"#,
            "<CORSRule><ID>a&amp;b</ID><AllowedMethod>GET</AllowedMethod>",
            "<AllowedOrigin>https://app.example.com</AllowedOrigin>",
            "<MaxAgeSeconds>5</MaxAgeSeconds></CORSRule></CORSConfiguration>"
        );
        assert_eq!(config_xml_len(&rules), body.len());
    }

    #[test]
    fn long_values_are_shortened_in_messages() {
        let error = FieldError::new("spec.bucket", Some(&"b".repeat(500)), "is too long");
        assert!(error.to_string().len() < 150, "{error}");
        assert!(error.to_string().contains("(500 characters)"));
    }

    mod properties {
        use super::*;
        use crate::cors::{diff, normalise};
        use proptest::prelude::*;

        // Strings that hit the edges: wildcards, empties, non-ASCII, long ones.
        fn text() -> impl Strategy<Value = String> {
            prop_oneof![
                4 => "[a-z*:/.-]{0,8}",
                1 => any::<String>(),
                1 => Just(String::new()),
                1 => "[a-z]{310,330}",
            ]
        }

        fn arb_rule() -> impl Strategy<Value = CorsRule> {
            (
                proptest::option::of(prop_oneof![Just("a".to_owned()), Just("b".to_owned()), "[a-z]{250,260}", any::<String>()]),
                proptest::collection::vec(text(), 0..4),
                proptest::collection::vec(prop_oneof![4 => proptest::sample::select(&METHODS[..]).prop_map(str::to_owned), 1 => text()], 0..4),
                proptest::collection::vec(text(), 0..4),
                proptest::collection::vec(text(), 0..3),
                proptest::option::of(any::<i32>()),
            )
                .prop_map(|(id, allowed_origins, allowed_methods, allowed_headers, expose_headers, max_age_seconds)| CorsRule {
                    id,
                    allowed_origins,
                    allowed_methods,
                    allowed_headers,
                    expose_headers,
                    max_age_seconds,
                })
        }

        /// The constraints, stated once more independently of the code under test: those of S3
        /// (DESIGN.md) and the operator's own bounds.
        fn acceptable(rules: &[CorsRule]) -> bool {
            let stars = |s: &String| s.chars().filter(|c| *c == '*').count();
            let sane = |s: &String| !s.is_empty() && s.chars().count() <= 320;
            let ids: Vec<&str> = rules
                .iter()
                .filter_map(|r| r.id.as_deref())
                .filter(|i| !i.is_empty())
                .collect();
            let unique = ids.iter().enumerate().all(|(i, id)| !ids[..i].contains(id));
            rules.len() <= 100
                && unique
                && config_xml_len(rules) <= 65536
                && rules.iter().all(|r| {
                    r.id.as_ref().is_none_or(|id| id.chars().count() <= 255)
                        && !r.allowed_origins.is_empty()
                        && r.allowed_origins.len() <= 200
                        && r.allowed_origins.iter().all(|o| sane(o) && stars(o) <= 1)
                        && !r.allowed_methods.is_empty()
                        && r.allowed_methods
                            .iter()
                            .all(|m| ["GET", "PUT", "HEAD", "POST", "DELETE"].contains(&m.as_str()))
                        && r.allowed_headers.len() <= 200
                        && r.allowed_headers.iter().all(|h| sane(h) && stars(h) <= 1)
                        && r.expose_headers.len() <= 200
                        && r.expose_headers.iter().all(|h| sane(h) && stars(h) == 0)
                        && r.max_age_seconds.is_none_or(|m| m >= 0)
                })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            #[test]
            fn validation_accepts_exactly_the_acceptable(rules in proptest::collection::vec(arb_rule(), 0..4)) {
                prop_assert_eq!(validate_rules(&rules).is_ok(), acceptable(&rules), "{:?}", validate_rules(&rules));
            }

            #[test]
            fn every_error_names_a_field_under_spec_rules(rules in proptest::collection::vec(arb_rule(), 0..4)) {
                for error in validate_rules(&rules).err().unwrap_or_default() {
                    prop_assert!(error.field.starts_with("spec.rules"), "{}", error);
                    prop_assert!(error.to_string().chars().count() < 400, "{}", error);
                }
            }

            #[test]
            fn nothing_panics_on_any_input(desired in proptest::collection::vec(arb_rule(), 0..5), observed in proptest::collection::vec(arb_rule(), 0..5)) {
                let _ = validate_rules(&desired);
                let normal = normalise(&observed);
                prop_assert_eq!(normalise(&normal), normal.clone());
                prop_assert!(!diff(&observed, &normal).writes());
                let _ = diff(&desired, &observed);
                let _ = crate::cors::describe_drift(&desired, &observed);
            }
        }
    }
}

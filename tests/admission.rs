//! The admission rules in the CRD (CEL, evaluated here by kube's client-side CEL engine) and
//! the controller's checks agree, and the CRD's rules compile and stay within kube's estimate
//! of the cost budget. Fast checks without a server: the real API server's verdict (its own
//! cost estimate, RE2) is tested in tests/it/server_side.rs.

use bucketcors::admission;
use bucketcors::api::BucketCors;
use bucketcors::constraints::{self, StringRule};
use kube::core::cel::{Validator, compile_schema, estimate_rule_cost};
use proptest::prelude::*;
use serde_json::{Value, json};

fn crd_schema() -> Value {
    let crd = serde_json::to_value(admission::crd()).unwrap();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

/// Whether the CEL rule of `rule` accepts `value`, as the API server would decide.
fn cel_accepts(rule: &StringRule, value: &str) -> bool {
    let schema = json!({
        "type": "object",
        "properties": {"v": {"type": "string", "x-kubernetes-validations": [{"rule": rule.cel}]}}
    });
    Validator::new()
        .validate(&schema, &json!({ "v": value }), None)
        .is_ok()
}

fn interesting_string() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9.*-]{0,12}",
        "(https?://)?[a-zA-Z0-9.:*\\[\\]/_ -]{0,20}",
        "https?://[a-z0-9.-]{0,10}(:[0-9]{0,6})?(/[a-z?#]{0,4})?",
        "https?://\\[[0-9a-f:]{0,8}\\](:[0-9]{1,5})?",
        any::<String>(),
    ]
}

const RULES: [(&str, &StringRule); 9] = constraints::STRING_RULES;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn cel_and_the_controller_agree_on_every_string_rule(value in interesting_string()) {
        for (name, rule) in RULES {
            prop_assert_eq!(
                cel_accepts(rule, &value),
                (rule.holds)(&value),
                "{} disagrees on {:?}", name, value
            );
        }
    }
}

#[test]
fn cel_and_the_controller_agree_on_chosen_edge_cases() {
    let cases = [
        "",
        "*",
        "**",
        "https://*.example.com",
        "https://*.*.example.com",
        "abc",
        "ab",
        "a.b",
        "-ab",
        "ab-",
        "ABC",
        &"a".repeat(63),
        &"a".repeat(64),
        "http://127.0.0.1:9000",
        "https://[::1]:8443/p",
        "https://host:",
        "https://host:99999",
        "https://h/p?q",
        "http://h/p#f",
        "https://h/p q",
        "https://user@host",
        "eu-west-1",
        "eu west",
        "x_y",
        &"r".repeat(64),
        &"r".repeat(65),
        "é",
        "https://é.example",
        "https://[::1]x",
        // Where regular expression engines differ: `.` and line breaks, Unicode white space.
        "*\n*",
        "https://*\r\n*.example.com",
        "https://h/p\u{a0}",
        "https://h/p\u{2028}",
        "https://h/\u{85}",
        "https://h/p\tq",
        "https://h/é",
    ];
    for value in cases {
        for (name, rule) in RULES {
            assert_eq!(
                cel_accepts(rule, value),
                (rule.holds)(value),
                "{name} disagrees on {value:?}"
            );
        }
    }
}

fn object(spec: Value) -> Value {
    json!({"apiVersion": "bucketcors.dev/v1alpha1", "kind": "BucketCors", "metadata": {"name": "x"}, "spec": spec})
}

fn good_spec() -> Value {
    json!({
        "bucket": "web-assets",
        "endpoint": "https://s3.nl-ams.scw.cloud",
        "region": "nl-ams",
        "rules": [{"allowedOrigins": ["https://*.example.com"], "allowedMethods": ["GET"],
                   "allowedHeaders": ["x-amz-*"], "exposeHeaders": ["ETag"]}]
    })
}

#[test]
fn a_good_object_passes_the_crds_cel_rules_and_the_controller() {
    let schema = crd_schema();
    Validator::new()
        .validate(&schema, &object(good_spec()), None)
        .unwrap();
    let obj: BucketCors = serde_json::from_value(object(good_spec())).unwrap();
    admission::validate(&obj.spec).unwrap();
}

#[test]
fn cel_errors_name_the_field_and_say_what_is_allowed() {
    let mut spec = good_spec();
    spec["rules"][0]["allowedOrigins"] =
        json!(["https://ok.example.com", "https://*.*.example.com"]);
    spec["rules"][0]["exposeHeaders"] = json!(["x-amz-*"]);
    let errors = Validator::new()
        .validate(&crd_schema(), &object(spec.clone()), None)
        .unwrap_err();
    let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(errors.len(), 2, "{shown:?}");
    assert!(
        shown
            .iter()
            .any(|e| e.contains("allowedOrigins[1]") && e.contains("at most one '*'")),
        "{shown:?}"
    );
    assert!(
        shown
            .iter()
            .any(|e| e.contains("exposeHeaders[0]") && e.contains("no wildcard")),
        "{shown:?}"
    );

    let obj: BucketCors = serde_json::from_value(object(spec)).unwrap();
    let fields: Vec<String> = admission::validate(&obj.spec)
        .unwrap_err()
        .into_iter()
        .map(|e| e.field)
        .collect();
    assert_eq!(
        fields,
        [
            "spec.rules[0].allowedOrigins[1]",
            "spec.rules[0].exposeHeaders[0]"
        ]
    );
}

#[test]
fn rule_ids_must_be_unique_in_cel_and_in_the_controller() {
    let mut spec = good_spec();
    let rule = spec["rules"][0].clone();
    let mut second = rule.clone();
    second["id"] = json!("same");
    let mut third = rule.clone();
    third["id"] = json!("same");
    spec["rules"] = json!([rule, second, third]);
    let errors = Validator::new()
        .validate(&crd_schema(), &object(spec.clone()), None)
        .unwrap_err();
    assert!(
        errors
            .iter()
            .any(|e| e.message.contains("rule ids must be unique")),
        "{errors:?}"
    );
    let obj: BucketCors = serde_json::from_value(object(spec)).unwrap();
    let fields: Vec<String> = admission::validate(&obj.spec)
        .unwrap_err()
        .into_iter()
        .map(|e| e.field)
        .collect();
    assert_eq!(fields, ["spec.rules[2].id"]);
}

#[test]
fn bucket_and_endpoint_cannot_change_after_creation() {
    let schema = crd_schema();
    let old = object(good_spec());
    let validator = Validator::new();

    let mut moved = good_spec();
    moved["bucket"] = json!("other-bucket");
    let err = validator
        .validate(&schema, &object(moved), Some(&old))
        .unwrap_err();
    assert!(
        err.iter()
            .any(|e| e.message.contains("bucket is immutable")),
        "{err:?}"
    );

    let mut elsewhere = good_spec();
    elsewhere["endpoint"] = json!("https://s3.fr-par.scw.cloud");
    let err = validator
        .validate(&schema, &object(elsewhere), Some(&old))
        .unwrap_err();
    assert!(
        err.iter()
            .any(|e| e.message.contains("endpoint is immutable")),
        "{err:?}"
    );

    let mut dropped = good_spec();
    dropped.as_object_mut().unwrap().remove("endpoint");
    let err = validator
        .validate(&schema, &object(dropped), Some(&old))
        .unwrap_err();
    assert!(
        err.iter()
            .any(|e| e.message.contains("cannot be added or removed")),
        "{err:?}"
    );

    // Everything else may change.
    let mut edited = good_spec();
    edited["rules"][0]["allowedMethods"] = json!(["GET", "PUT"]);
    edited["region"] = json!("fr-par");
    validator
        .validate(&schema, &object(edited), Some(&old))
        .unwrap();
}

/// Every `x-kubernetes-validations` rule in the CRD with the schema node that holds it.
fn rules_in(node: &Value, found: &mut Vec<(String, Value)>) {
    match node {
        Value::Object(map) => {
            if let Some(Value::Array(rules)) = map.get("x-kubernetes-validations") {
                for rule in rules {
                    found.push((rule["rule"].as_str().unwrap().to_owned(), node.clone()));
                }
            }
            map.values().for_each(|v| rules_in(v, found));
        }
        Value::Array(items) => items.iter().for_each(|v| rules_in(v, found)),
        _ => {}
    }
}

#[test]
fn every_cel_rule_compiles_and_is_within_the_cost_budget() {
    let mut found = Vec::new();
    rules_in(&crd_schema(), &mut found);
    assert_eq!(found.len(), 30, "the CRD has 30 CEL rules");
    for (rule, node) in found {
        let compiled = compile_schema(&node);
        assert!(
            compiled.compilation_errors().is_empty(),
            "{rule}: {:?}",
            compiled.compilation_errors()
        );
        let warnings = estimate_rule_cost(&rule, &compiled);
        assert!(warnings.is_empty(), "{rule}: {warnings:?}");
    }
}

//! `bucketcors validate`: every check a BucketCors (or ClusterBucketStore) meets between
//! `kubectl apply` and the bucket, run offline on manifests:
//! - **schema**: the CRD's structural schema, as the API server applies it with strict field
//!   validation (types, required fields, enums, bounds, unknown fields);
//! - **cel**: the CRD's own CEL rules, in kube's CEL engine, with the rules' messages;
//! - **operator**: what the controller checks before any S3 call (`admission::validate`, and
//!   a store's own checks).

use std::collections::HashMap;

use serde::Serialize;
use serde_json::Value;

use super::documents::Document;
use crate::admission;
use crate::api::BucketCors;
use crate::tenancy::ClusterBucketStore;

pub const API_GROUP: &str = "bucketcors.dev";
pub const API_VERSION: &str = "bucketcors.dev/v1alpha1";

/// One thing wrong with a document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The field, as a path from the document's root (`spec.rules[0].allowedMethods[1]`);
    /// empty for the whole document.
    pub field: String,
    pub message: String,
    /// Which check found it: `schema`, `cel` or `operator`.
    pub check: &'static str,
}

/// The verdict on one document of ours.
#[derive(Clone, Debug, Serialize)]
pub struct Verdict {
    pub file: String,
    pub line: usize,
    pub kind: String,
    pub name: String,
    pub valid: bool,
    pub problems: Vec<Problem>,
}

/// Whether a document is ours to check; other kinds are ignored.
pub fn is_ours(doc: &Document) -> bool {
    doc.api_group() == API_GROUP
}

/// Checks one of our documents.
pub fn check(doc: &Document) -> Verdict {
    let mut problems = Vec::new();
    let kind = doc.kind().to_owned();
    let api_version = doc.value["apiVersion"].as_str().unwrap_or_default();
    if api_version != API_VERSION {
        problems.push(Problem {
            field: "apiVersion".into(),
            message: format!("{api_version:?} is not served; use {API_VERSION}"),
            check: "schema",
        });
    }
    let crd = match kind.as_str() {
        "BucketCors" => Some(admission::crd()),
        "ClusterBucketStore" => Some(admission::store_crd()),
        _ => {
            problems.push(Problem {
                field: "kind".into(),
                message: format!(
                    "{kind:?} is not a kind of {API_GROUP}: BucketCors or ClusterBucketStore"
                ),
                check: "schema",
            });
            None
        }
    };
    if let Some(crd) = crd {
        let crd = serde_json::to_value(crd).expect("the CRD serializes");
        let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        let namespaced = crd["spec"]["scope"] == "Namespaced";
        problems.extend(metadata(&doc.value, namespaced));
        let mut structural = Vec::new();
        walk(schema, &doc.value, "", &mut structural, true);
        let schema_failed = !structural.is_empty();
        problems.extend(structural);
        if let Err(errors) = kube::core::cel::Validator::new().validate(schema, &doc.value, None) {
            for e in errors.iter() {
                problems.push(Problem {
                    field: e.field_path.clone(),
                    message: e.message.clone(),
                    check: "cel",
                });
            }
        }
        problems.extend(operator(&kind, &doc.value, schema_failed));
    }
    dedupe(&mut problems);
    Verdict {
        file: doc.file.clone(),
        line: doc.line,
        kind,
        name: doc.object_name(),
        valid: problems.is_empty(),
        problems,
    }
}

/// The ClusterBucketStores among `docs` that parse, by name: what a BucketCors naming one in
/// its `storeRef` is checked against.
pub fn stores(docs: &[Document]) -> HashMap<String, ClusterBucketStore> {
    docs.iter()
        .filter(|d| is_ours(d) && d.kind() == "ClusterBucketStore")
        .filter_map(|d| serde_json::from_value::<ClusterBucketStore>(d.value.clone()).ok())
        .filter_map(|store| Some((store.metadata.name.clone()?, store)))
        .collect()
}

/// [`check`], and for a valid BucketCors whose `storeRef` names one of `stores`: what that
/// store's profile refuses (the operator checks it when a pass reaches the store).
pub fn check_among(doc: &Document, stores: &HashMap<String, ClusterBucketStore>) -> Verdict {
    let mut verdict = check(doc);
    if !verdict.valid || doc.kind() != "BucketCors" {
        return verdict;
    }
    let Ok(obj) = serde_json::from_value::<BucketCors>(doc.value.clone()) else {
        return verdict;
    };
    let Some(store) = obj
        .spec
        .store_ref
        .as_ref()
        .and_then(|r| stores.get(&r.name))
    else {
        return verdict;
    };
    let profile = crate::profiles::resolve(store.spec.profile, store.spec.endpoint.as_deref());
    for e in crate::profiles::check(profile, &obj.spec.rules) {
        let text = e.to_string();
        let message = text
            .strip_prefix(&format!("{}: ", e.field))
            .unwrap_or(&text)
            .to_owned();
        verdict.problems.push(Problem {
            field: e.field.clone(),
            message: format!(
                "{message} (through ClusterBucketStore {})",
                store.metadata.name.as_deref().unwrap_or_default()
            ),
            check: "operator",
        });
    }
    verdict.valid = verdict.problems.is_empty();
    verdict
}

fn dedupe(problems: &mut Vec<Problem>) {
    let mut seen = std::collections::HashSet::new();
    problems.retain(|p| seen.insert((p.field.clone(), p.message.clone())));
}

fn metadata(object: &Value, namespaced: bool) -> Vec<Problem> {
    let mut problems = Vec::new();
    let meta = &object["metadata"];
    let name = meta["name"].as_str().unwrap_or_default();
    let problem = |field: &str, message: String| Problem {
        field: field.into(),
        message,
        check: "schema",
    };
    if name.is_empty() && meta["generateName"].as_str().is_none_or(str::is_empty) {
        problems.push(problem(
            "metadata.name",
            "Required value: name or generateName is required".into(),
        ));
    } else if !name.is_empty() && !dns_subdomain(name) {
        problems.push(problem(
            "metadata.name",
            format!("Invalid value: {name:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"),
        ));
    }
    if !namespaced && meta.get("namespace").is_some_and(|n| !n.is_null()) {
        problems.push(problem(
            "metadata.namespace",
            "a ClusterBucketStore is cluster-scoped and has no namespace".into(),
        ));
    }
    problems
}

fn dns_subdomain(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn operator(kind: &str, object: &Value, schema_failed: bool) -> Vec<Problem> {
    let problem = |field: String, message: String| Problem {
        field,
        message,
        check: "operator",
    };
    match kind {
        "BucketCors" => match serde_path_to_error::deserialize::<_, BucketCors>(object.clone()) {
            Ok(obj) => match admission::validate(&obj.spec) {
                // What the operator checks next, before any write: the spec's expectations.
                Ok(()) => {
                    match crate::cors::check_expectations(&obj.spec.rules, &obj.spec.expectations) {
                        Ok(()) => Vec::new(),
                        Err(failures) => failures
                            .into_iter()
                            .map(|failure| {
                                let field = failure
                                    .split_once(' ')
                                    .map_or("spec.expectations", |(f, _)| f)
                                    .to_owned();
                                problem(field, failure)
                            })
                            .collect(),
                    }
                }
                Err(errors) => errors
                    .iter()
                    .map(|e| {
                        let text = e.to_string();
                        let message = text
                            .strip_prefix(&format!("{}: ", e.field))
                            .unwrap_or(&text)
                            .to_owned();
                        problem(e.field.clone(), message)
                    })
                    .collect(),
            },
            // The schema check has said it better.
            Err(_) if schema_failed => Vec::new(),
            Err(err) => vec![problem(err.path().to_string(), err.inner().to_string())],
        },
        "ClusterBucketStore" => {
            match serde_path_to_error::deserialize::<_, ClusterBucketStore>(object.clone()) {
                Ok(store) => match store.spec.problems() {
                    Ok(()) => Vec::new(),
                    Err(message) => vec![problem("spec".into(), message)],
                },
                Err(_) if schema_failed => Vec::new(),
                Err(err) => vec![problem(err.path().to_string(), err.inner().to_string())],
            }
        }
        _ => Vec::new(),
    }
}

fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn shown(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 80 {
        format!("{}…", text.chars().take(80).collect::<String>())
    } else {
        text
    }
}

/// The structural schema's checks, in the API server's words.
fn walk(schema: &Value, value: &Value, path: &str, out: &mut Vec<Problem>, root: bool) {
    let mut fail = |message: String| {
        out.push(Problem {
            field: path.to_owned(),
            message,
            check: "schema",
        });
    };
    if value.is_null() {
        if !schema["nullable"].as_bool().unwrap_or(false) && !root {
            fail("Invalid value: \"null\": must not be null".into());
        }
        return;
    }
    if let Some(expected) = schema["type"].as_str() {
        let actual = type_name(value);
        let fits = expected == actual || (expected == "number" && actual == "integer");
        if !fits {
            fail(format!(
                "Invalid value: \"{actual}\": {path} in body must be of type {expected}: {}",
                shown(value)
            ));
            return;
        }
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        let list: Vec<String> = allowed.iter().map(Value::to_string).collect();
        fail(format!(
            "Unsupported value: {}: supported values: {}",
            shown(value),
            list.join(", ")
        ));
    }
    match value {
        Value::String(s) => {
            let len = s.chars().count() as u64;
            if let Some(max) = schema["maxLength"].as_u64()
                && len > max
            {
                fail(format!("Too long: may not be more than {max} bytes"));
            }
            if let Some(min) = schema["minLength"].as_u64()
                && len < min
            {
                fail(format!(
                    "Invalid value: {}: {path} in body should be at least {min} chars long",
                    shown(value)
                ));
            }
        }
        Value::Number(n) => {
            if schema["type"] == "integer" && !(n.is_i64() || n.is_u64()) {
                fail(format!(
                    "Invalid value: {n}: {path} in body must be of type integer"
                ));
            }
            if let (Some(v), Some(max)) = (n.as_f64(), schema["maximum"].as_f64())
                && v > max
            {
                fail(format!(
                    "Invalid value: {n}: {path} in body should be less than or equal to {max}"
                ));
            }
            if let (Some(v), Some(min)) = (n.as_f64(), schema["minimum"].as_f64())
                && v < min
            {
                fail(format!(
                    "Invalid value: {n}: {path} in body should be greater than or equal to {min}"
                ));
            }
            if schema["format"] == "int32" && n.as_i64().is_some_and(|v| i32::try_from(v).is_err())
            {
                fail(format!(
                    "Invalid value: {n}: {path} in body must be a 32-bit integer"
                ));
            }
        }
        Value::Array(items) => {
            if let Some(max) = schema["maxItems"].as_u64()
                && items.len() as u64 > max
            {
                fail(format!(
                    "Too many: {}: must have at most {max} items",
                    items.len()
                ));
            }
            if let Some(min) = schema["minItems"].as_u64()
                && (items.len() as u64) < min
            {
                fail(format!(
                    "Invalid value: {}: {path} in body should have at least {min} items",
                    items.len()
                ));
            }
            for (i, item) in items.iter().enumerate() {
                walk(&schema["items"], item, &format!("{path}[{i}]"), out, false);
            }
        }
        Value::Object(map) => {
            let properties = schema["properties"].as_object();
            for key in schema["required"].as_array().into_iter().flatten() {
                if let Some(key) = key.as_str()
                    && !map.contains_key(key)
                {
                    out.push(Problem {
                        field: child(path, key),
                        message: "Required value".into(),
                        check: "schema",
                    });
                }
            }
            let preserve = schema["x-kubernetes-preserve-unknown-fields"] == true;
            for (key, item) in map {
                // The API server's own fields are checked elsewhere (metadata) or not at all.
                if root && matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                match properties.and_then(|p| p.get(key)) {
                    Some(sub) => walk(sub, item, &child(path, key), out, false),
                    None if schema["additionalProperties"].is_object() => walk(
                        &schema["additionalProperties"],
                        item,
                        &child(path, key),
                        out,
                        false,
                    ),
                    None if preserve || properties.is_none() => {}
                    None => out.push(Problem {
                        field: child(path, key),
                        message: format!("unknown field {:?}", child(path, key)),
                        check: "schema",
                    }),
                }
            }
        }
        Value::Bool(_) | Value::Null => {}
    }
}

/// The verdicts as text, one line per problem (`FILE:LINE: KIND NAME: FIELD: MESSAGE`).
pub fn render_text(verdicts: &[Verdict]) -> String {
    let mut out = String::new();
    for v in verdicts {
        for p in &v.problems {
            let field = if p.field.is_empty() {
                String::new()
            } else {
                format!("{}: ", p.field)
            };
            out.push_str(&format!(
                "{}:{}: {} {}: {field}{} ({})\n",
                v.file, v.line, v.kind, v.name, p.message, p.check
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::documents::split;

    fn verdict(yaml: &str) -> Verdict {
        let docs = split("t.yaml", yaml).unwrap();
        check(&docs[0])
    }

    const GOOD: &str = "apiVersion: bucketcors.dev/v1alpha1\nkind: BucketCors\nmetadata:\n  name: site\nspec:\n  bucket: my-site\n  rules:\n    - allowedOrigins: [\"https://app.example.com\"]\n      allowedMethods: [GET]\n";

    #[test]
    fn a_good_manifest_passes_every_check() {
        let v = verdict(GOOD);
        assert!(v.valid, "{:?}", v.problems);
        assert_eq!(v.name, "site");
    }

    #[test]
    fn each_check_names_the_field() {
        let unknown = GOOD.replace("  bucket: my-site", "  bucket: my-site\n  colour: blue");
        let v = verdict(&unknown);
        assert_eq!(
            v.problems,
            [Problem {
                field: "spec.colour".into(),
                message: "unknown field \"spec.colour\"".into(),
                check: "schema"
            }]
        );
        let method = GOOD.replace("[GET]", "[PATCH]");
        let v = verdict(&method);
        assert!(
            v.problems.iter().any(|p| p.check == "schema"
                && p.field == "spec.rules[0].allowedMethods[0]"
                && p.message.starts_with("Unsupported value: \"PATCH\"")),
            "{:?}",
            v.problems
        );
        let bucket = GOOD.replace("my-site", "My_Site");
        let v = verdict(&bucket);
        let checks: Vec<_> = v
            .problems
            .iter()
            .map(|p| (p.check, p.field.as_str()))
            .collect();
        assert!(checks.contains(&("cel", "spec.bucket")), "{checks:?}");
        assert!(checks.contains(&("operator", "spec.bucket")), "{checks:?}");
        let no_name = GOOD.replace("  name: site\n", "  labels: {}\n");
        assert_eq!(verdict(&no_name).problems[0].field, "metadata.name");
        let expectation = format!(
            "{GOOD}  expectations:\n    - origin: https://app.example.com\n      method: PUT\n      allowed: true\n"
        );
        let v = verdict(&expectation);
        assert_eq!(v.problems.len(), 1, "{:?}", v.problems);
        assert_eq!(
            (v.problems[0].check, v.problems[0].field.as_str()),
            ("operator", "spec.expectations[0]")
        );
        let version = GOOD.replace("v1alpha1", "v1");
        assert_eq!(verdict(&version).problems[0].field, "apiVersion");
    }

    #[test]
    fn an_object_through_a_store_given_beside_it_gets_the_stores_limits() {
        let yaml = "apiVersion: bucketcors.dev/v1alpha1\nkind: ClusterBucketStore\nmetadata:\n  name: r2\nspec:\n  endpoint: https://0123abcd.r2.cloudflarestorage.com\n  buckets: [\"web-*\"]\n---\napiVersion: bucketcors.dev/v1alpha1\nkind: BucketCors\nmetadata:\n  name: site\n  namespace: web\nspec:\n  bucket: web-site\n  storeRef: {name: r2}\n  rules:\n    - allowedOrigins: [\"https://app.example.com\"]\n      allowedMethods: [GET]\n      maxAgeSeconds: 604800\n";
        let docs = split("t.yaml", yaml).unwrap();
        let stores = stores(&docs);
        assert_eq!(stores.len(), 1);
        let v = check_among(&docs[1], &stores);
        assert!(!v.valid);
        assert_eq!(
            v.problems,
            [Problem {
                field: "spec.rules[0].maxAgeSeconds".into(),
                message: "\"604800\" is more than Cloudflare R2 allows: maxAgeSeconds up to 86400 (through ClusterBucketStore r2)".into(),
                check: "operator"
            }]
        );
        // Alone, the object cannot know its store's limits.
        assert!(check(&docs[1]).valid);
        assert!(check_among(&docs[1], &HashMap::new()).valid);
    }
}

//! What is refused before anything reaches S3: the CRD with its admission rules (the
//! structural schema plus CEL from `constraints`), and the same checks run by the controller.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use serde_json::{Value, json};

use crate::api::{BucketCors, BucketCorsSpec};
use crate::constraints::{self, FieldError, StringRule};
use crate::cors;
use crate::tenancy::ClusterBucketStore;

/// Everything wrong with `spec`, each error naming the field and the value.
pub fn validate(spec: &BucketCorsSpec) -> Result<(), Vec<FieldError>> {
    let mut errors = constraints::validate_target(
        &spec.bucket,
        spec.endpoint.as_deref(),
        spec.region.as_deref(),
    );
    if let Some(secret) = &spec.credentials_secret_ref {
        errors.extend(object_name("spec.credentialsSecretRef.name", &secret.name));
    }
    if let Some(key) = spec.verify.as_ref().and_then(|v| v.key.as_deref()) {
        errors.extend(constraints::check(
            "spec.verify.key",
            key,
            &constraints::OBJECT_KEY,
        ));
    }
    if let Some(owner) = &spec.expected_bucket_owner {
        errors.extend(owner_error(owner));
    }
    if spec.store_ref.is_some() {
        for (field, set) in store_fields(spec) {
            if set {
                errors.push(FieldError::new(
                    format!("spec.{field}"),
                    None,
                    WITH_STORE_REF,
                ));
            }
        }
    }
    if let Some(store) = &spec.store_ref {
        errors.extend(object_name("spec.storeRef.name", &store.name));
    }
    if let Err(rule_errors) = cors::validate_rules(&spec.rules) {
        errors.extend(rule_errors);
    }
    // What the store the endpoint names documents it refuses, beyond AWS's rules. (An object
    // with a storeRef names no endpoint of its own.)
    if spec.store_ref.is_none() {
        let profile = crate::profiles::resolve(spec.store_profile, spec.endpoint.as_deref());
        errors.extend(crate::profiles::check(profile, &spec.rules));
    }
    errors.extend(cors::validate_expectations(&spec.expectations));
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

fn owner_error(owner: &str) -> Option<FieldError> {
    let field = "spec.expectedBucketOwner";
    let len = owner.chars().count();
    if len > MAX_OWNER_LEN {
        return Some(FieldError::new(
            field,
            Some(owner),
            format!("is {len} characters long; at most {MAX_OWNER_LEN} are allowed"),
        ));
    }
    constraints::check(field, owner, &constraints::NO_CONTROL)
}

fn object_name(field: &str, name: &str) -> Option<FieldError> {
    if name.is_empty() {
        return Some(FieldError::new(field, None, "is an empty string"));
    }
    constraints::check(field, name, &constraints::OBJECT_NAME)
}

// What a store says and an object that names one may not say again.
const WITH_STORE_REF: &str = "may not be set with spec.storeRef: the ClusterBucketStore says it";

fn store_fields(spec: &BucketCorsSpec) -> [(&'static str, bool); 5] {
    [
        ("endpoint", spec.endpoint.is_some()),
        ("forcePathStyle", spec.force_path_style.is_some()),
        ("putChecksum", spec.put_checksum.is_some()),
        ("storeProfile", spec.store_profile.is_some()),
        (
            "credentialsSecretRef",
            spec.credentials_secret_ref.is_some(),
        ),
    ]
}

/// The CustomResourceDefinition, with the admission rules of `constraints` in its schema.
pub fn crd() -> CustomResourceDefinition {
    let mut crd = serde_json::to_value(BucketCors::crd()).expect("the CRD serializes");
    let spec = &mut crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    add_rules(spec);
    serde_json::from_value(crd).expect("the CRD deserializes")
}

/// The ClusterBucketStore CRD.
pub fn store_crd() -> CustomResourceDefinition {
    let mut crd = serde_json::to_value(ClusterBucketStore::crd()).expect("the CRD serializes");
    let spec = &mut crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    let fields = &mut spec["properties"];
    fields["endpoint"]["maxLength"] = json!(constraints::MAX_ENDPOINT_LEN);
    fields["endpoint"]["x-kubernetes-validations"] =
        json!([string_rule(&constraints::ENDPOINT_URL)]);
    fields["region"]["maxLength"] = json!(64);
    fields["region"]["x-kubernetes-validations"] = json!([string_rule(&constraints::REGION)]);
    fields["buckets"]["maxItems"] = json!(100);
    fields["buckets"]["items"]["minLength"] = json!(1);
    fields["buckets"]["items"]["maxLength"] = json!(63);
    serde_json::from_value(crd).expect("the CRD deserializes")
}

fn add_rules(spec: &mut Value) {
    let mut spec_rules = vec![
        json!({
            "rule": "has(self.endpoint) == has(oldSelf.endpoint)",
            "message": "endpoint cannot be added or removed after creation; create a new BucketCors instead",
        }),
        json!({
            "rule": "has(self.storeRef) == has(oldSelf.storeRef)",
            "message": "storeRef cannot be added or removed after creation; create a new BucketCors instead",
        }),
    ];
    for (field, _) in store_fields(&empty_spec()) {
        spec_rules.push(json!({
            "rule": format!("!has(self.storeRef) || !has(self.{field})"),
            "message": format!("spec.{field}: {WITH_STORE_REF}"),
        }));
    }
    spec["x-kubernetes-validations"] = Value::Array(spec_rules);
    let fields = &mut spec["properties"];
    // Published without `nullable`, so that kubectl can see (and refuse) unknown fields in it,
    // such as a `namespace`: a Secret in another namespace can never be named.
    fields["credentialsSecretRef"]
        .as_object_mut()
        .expect("credentialsSecretRef is in the schema")
        .remove("nullable");
    fields["storeRef"]
        .as_object_mut()
        .expect("storeRef is in the schema")
        .remove("nullable");
    fields["storeRef"]["x-kubernetes-validations"] = json!([immutable("storeRef")]);
    fields["storeRef"]["properties"]["name"]["maxLength"] = json!(253);
    fields["bucket"]["minLength"] = json!(3);
    fields["bucket"]["maxLength"] = json!(63);
    fields["bucket"]["x-kubernetes-validations"] = json!([
        immutable("bucket"),
        string_rule(&constraints::BUCKET_NAME),
        string_rule(&constraints::NOT_AN_ACCESS_POINT_ALIAS),
    ]);
    fields["endpoint"]["maxLength"] = json!(constraints::MAX_ENDPOINT_LEN);
    fields["endpoint"]["x-kubernetes-validations"] = json!([
        immutable("endpoint"),
        string_rule(&constraints::ENDPOINT_URL),
    ]);
    fields["region"]["maxLength"] = json!(64);
    fields["region"]["x-kubernetes-validations"] = json!([string_rule(&constraints::REGION)]);

    fields["rules"]["x-kubernetes-validations"] = json!([{
        "rule": cors::UNIQUE_IDS_CEL,
        "message": "rule ids must be unique",
    }]);
    let rule = &mut fields["rules"]["items"]["properties"];
    for (list, check) in [
        ("allowedOrigins", &constraints::AT_MOST_ONE_WILDCARD),
        ("allowedHeaders", &constraints::AT_MOST_ONE_WILDCARD),
        ("exposeHeaders", &constraints::NO_WILDCARD),
    ] {
        rule[list]["maxItems"] = json!(constraints::MAX_LIST_ITEMS);
        let items = &mut rule[list]["items"];
        items["minLength"] = json!(1);
        items["maxLength"] = json!(constraints::MAX_VALUE_LEN);
        items["x-kubernetes-validations"] =
            json!([string_rule(check), string_rule(&constraints::NO_CONTROL)]);
    }

    rule["id"]["x-kubernetes-validations"] = json!([string_rule(&constraints::NO_CONTROL)]);
    add_request_rules(fields);
}

/// The rules of the fields that become parts of requests (headers, paths) or name objects.
fn add_request_rules(fields: &mut Value) {
    let expectation = &mut fields["expectations"]["items"]["properties"];
    expectation["headers"]["items"]["minLength"] = json!(1);
    expectation["headers"]["items"]["maxLength"] = json!(constraints::MAX_VALUE_LEN);
    // Each becomes a header of the live preflight, or part of a message.
    for field in ["name", "origin", "method"] {
        expectation[field]["x-kubernetes-validations"] =
            json!([string_rule(&constraints::NO_CONTROL)]);
    }
    expectation["headers"]["items"]["x-kubernetes-validations"] =
        json!([string_rule(&constraints::NO_CONTROL)]);
    fields["verify"]["properties"]["key"]["x-kubernetes-validations"] =
        json!([string_rule(&constraints::OBJECT_KEY)]);
    fields["expectedBucketOwner"]["maxLength"] = json!(MAX_OWNER_LEN);
    fields["expectedBucketOwner"]["x-kubernetes-validations"] =
        json!([string_rule(&constraints::NO_CONTROL)]);
    for reference in ["credentialsSecretRef", "storeRef"] {
        let name = &mut fields[reference]["properties"]["name"];
        name["maxLength"] = json!(constraints::MAX_OBJECT_NAME_LEN);
        name["x-kubernetes-validations"] = json!([string_rule(&constraints::OBJECT_NAME)]);
    }
}

/// Longest `expectedBucketOwner`: an AWS account id is 12 digits; other stores' owners are
/// user names.
const MAX_OWNER_LEN: usize = 256;

fn empty_spec() -> BucketCorsSpec {
    serde_json::from_value(json!({"bucket": "", "rules": []})).expect("a minimal spec")
}

fn string_rule(rule: &StringRule) -> Value {
    json!({ "rule": rule.cel, "message": rule.message })
}

fn immutable(field: &str) -> Value {
    json!({
        "rule": constraints::IMMUTABLE,
        "message": format!("{field} is immutable; create a new BucketCors for another {field}"),
    })
}

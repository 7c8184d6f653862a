//! The checked-in CRD is the one the code generates.

#[test]
fn crds_bucketcors_yaml_is_what_bucketcors_crd_prints() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/crds/bucketcors.yaml");
    let checked_in = std::fs::read_to_string(path).expect("crds/bucketcors.yaml exists");
    assert!(
        checked_in == bucketcors::crd_yaml(),
        "crds/bucketcors.yaml is stale: run `make crd` and commit the result"
    );
}

#[test]
fn crds_clusterbucketstore_yaml_is_what_bucketcors_crd_prints() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/crds/clusterbucketstore.yaml");
    let checked_in = std::fs::read_to_string(path).expect("crds/clusterbucketstore.yaml exists");
    assert!(
        checked_in == bucketcors::store_crd_yaml(),
        "crds/clusterbucketstore.yaml is stale: run `make crd` and commit the result"
    );
    for expected in [
        "name: clusterbucketstores.bucketcors.dev",
        "- cbstore",
        "scope: Cluster",
        "status: {}",
    ] {
        assert!(checked_in.contains(expected), "CRD lacks {expected:?}");
    }
}

#[test]
fn the_crd_names_match_the_design() {
    let yaml = bucketcors::crd_yaml();
    for expected in [
        "name: bucketcors.bucketcors.dev",
        "plural: bucketcors",
        "- bcors",
        "scope: Namespaced",
        "name: v1alpha1",
        "status: {}",
    ] {
        assert!(yaml.contains(expected), "CRD lacks {expected:?}");
    }
}

/// Every field of the spec, at every depth, with the description `kubectl explain` shows.
#[test]
fn every_spec_field_has_a_description_for_kubectl_explain() {
    fn walk(path: &str, node: &serde_json::Value, missing: &mut Vec<String>) {
        if let Some(properties) = node["properties"].as_object() {
            for (name, field) in properties {
                let path = format!("{path}.{name}");
                if field["description"].as_str().is_none_or(str::is_empty) {
                    missing.push(path.clone());
                }
                walk(&path, field, missing);
            }
        }
        if node["items"].is_object() {
            walk(&format!("{path}[]"), &node["items"], missing);
        }
    }
    let mut missing = Vec::new();
    for crd in [
        bucketcors::admission::crd(),
        bucketcors::admission::store_crd(),
    ] {
        let crd = serde_json::to_value(crd).unwrap();
        let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
        let kind = crd["spec"]["names"]["kind"].as_str().unwrap().to_owned();
        walk(&format!("{kind}.spec"), spec, &mut missing);
    }
    let crd = serde_json::to_value(bucketcors::admission::crd()).unwrap();
    let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    assert!(
        missing.is_empty(),
        "fields without a description: {missing:?}"
    );
    assert!(spec["properties"]["rules"]["items"]["properties"]["allowedOrigins"].is_object());
}

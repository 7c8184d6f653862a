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

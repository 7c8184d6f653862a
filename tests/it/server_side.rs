//! The CRD judged by a modern API server (the apiextensions-apiserver that serves BucketCors,
//! see support/cluster.rs) rather than by our own estimates: both copies of the CRD fit its
//! CEL cost budget, the transition rules refuse a change of bucket or endpoint and accept
//! everything else, and the controller's string checks agree with the server's CEL, whose
//! regular expressions are Go's RE2 (`.` stops at a line break, `\s` is ASCII only).

use bucketcors::api::BucketCors;
use bucketcors::constraints::STRING_RULES;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::TestRunner;
use serde_json::{Value, json};

use crate::support::cluster::Cluster;
use crate::support::harness::Harness;
use crate::support::process::repo_root;

fn dry_run() -> PostParams {
    PostParams {
        dry_run: true,
        ..PostParams::default()
    }
}

/// The message of an API error, or a panic naming what else came back.
fn api_message(result: Result<impl std::fmt::Debug, kube::Error>) -> Option<String> {
    match result {
        Ok(_) => None,
        Err(kube::Error::Api(e)) => Some(e.message),
        Err(other) => panic!("not an answer of the API server: {other}"),
    }
}

/// `crd` moved to group `<prefix>.bucketcors.dev`, so that it can be created beside the
/// installed one: the schema, which is what the server judges, is untouched.
fn renamed(mut crd: Value, prefix: &str) -> CustomResourceDefinition {
    let group = format!("{prefix}.bucketcors.dev");
    crd["metadata"]["name"] = json!(format!("bucketcors.{group}"));
    crd["spec"]["group"] = json!(group);
    serde_json::from_value(crd).unwrap()
}

fn read_yaml(path: &str) -> Value {
    let text = std::fs::read_to_string(repo_root().join(path)).unwrap();
    serde_saphyr::from_str(&text).unwrap()
}

/// The chart's CRD as templates/crd.yaml renders it by default: files/crd.yaml with the
/// keep annotation (scripts/chart-check.sh proves the rendering is exactly that).
fn chart_crd() -> Value {
    let mut crd = read_yaml("charts/bucketcors/files/crd.yaml");
    crd["metadata"]["annotations"] = json!({"helm.sh/resource-policy": "keep"});
    crd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_crd_copies_fit_the_cel_cost_budget_of_a_modern_api_server() {
    let cluster = Cluster::shared();
    let api: Api<CustomResourceDefinition> = Api::all(cluster.crd_server_client().await);
    for (prefix, name, crd) in [
        (
            "repo",
            "crds/bucketcors.yaml",
            read_yaml("crds/bucketcors.yaml"),
        ),
        ("chart", "the chart's CRD", chart_crd()),
    ] {
        if let Some(refusal) = api_message(api.create(&dry_run(), &renamed(crd, prefix)).await) {
            panic!("{} refuses {name}: {refusal}", cluster.crd_server_version);
        }
    }

    // The server does judge the cost: the bounds the CRD had before (256 entries of 512
    // characters) exceed the budget.
    let mut crd = read_yaml("crds/bucketcors.yaml");
    let rule = &mut crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
        ["rules"]["items"]["properties"];
    for list in ["allowedOrigins", "allowedHeaders"] {
        rule[list]["maxItems"] = json!(256);
        rule[list]["items"]["maxLength"] = json!(512);
    }
    let refusal = api_message(api.create(&dry_run(), &renamed(crd, "old")).await)
        .expect("the old bounds are refused");
    assert!(
        refusal.contains("estimated rule cost exceeds budget"),
        "{refusal}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_server_refuses_a_new_bucket_or_endpoint_and_takes_every_other_change() {
    // Through the core API server, as kubectl and the operator reach BucketCors.
    let h = Harness::without_controller().await;
    let rules = json!([{"allowedOrigins": ["https://app.example.com"], "allowedMethods": ["GET"]}]);
    let with_endpoint =
        json!({"bucket": "immutable-a", "endpoint": "https://s3.example.com", "rules": rules});
    let without_endpoint = json!({"bucket": "immutable-b", "rules": rules});
    for (name, spec) in [("with", &with_endpoint), ("without", &without_endpoint)] {
        let obj: BucketCors = serde_json::from_value(json!({
            "apiVersion": "bucketcors.dev/v1alpha1", "kind": "BucketCors",
            "metadata": {"name": name}, "spec": spec,
        }))
        .unwrap();
        h.api.create(&PostParams::default(), &obj).await.unwrap();
    }
    let cases = [
        (
            "with",
            json!({"bucket": "immutable-c"}),
            Some("bucket is immutable"),
        ),
        (
            "with",
            json!({"endpoint": "https://s3.other.example.com"}),
            Some("endpoint is immutable"),
        ),
        (
            "with",
            json!({"endpoint": null}),
            Some("endpoint cannot be added or removed"),
        ),
        (
            "without",
            json!({"endpoint": "https://s3.example.com"}),
            Some("endpoint cannot be added or removed"),
        ),
        (
            "with",
            json!({"rules": [{"allowedOrigins": ["*"], "allowedMethods": ["GET", "HEAD"]}]}),
            None,
        ),
        (
            "with",
            json!({"region": "eu-west-1", "deletionPolicy": "Retain"}),
            None,
        ),
        (
            "without",
            json!({"managementPolicy": "ObserveOnly", "rules": []}),
            None,
        ),
    ];
    let mut problems = Vec::new();
    for (name, change, refused_with) in cases {
        let patch = Patch::Merge(json!({ "spec": change }));
        let verdict = api_message(h.api.patch(name, &PatchParams::default(), &patch).await);
        match (refused_with, verdict) {
            (None, None) => {}
            (Some(message), Some(refusal)) if refusal.contains(message) => {}
            (expected, got) => problems.push(format!(
                "{name} {change}: expected {expected:?}, got {got:?}"
            )),
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    let kept = h.api.get("with").await.unwrap();
    assert_eq!(kept.spec.bucket, "immutable-a");
    assert_eq!(
        kept.spec.endpoint.as_deref(),
        Some("https://s3.example.com")
    );
    assert_eq!(kept.spec.region.as_deref(), Some("eu-west-1"));
}

const PROBE_GROUP: &str = "probes.bucketcors.test";

/// A CRD whose fields each carry exactly one of the string rules and nothing else, so that
/// the server's verdict on a field is that rule's verdict.
fn probe_crd() -> CustomResourceDefinition {
    let properties: serde_json::Map<String, Value> = STRING_RULES
        .iter()
        .enumerate()
        .map(|(i, (_, rule))| {
            (
                format!("r{i}"),
                json!({
                    "type": "string",
                    "maxLength": 512,
                    "x-kubernetes-validations": [{"rule": rule.cel, "message": format!("rule r{i} fails")}],
                }),
            )
        })
        .collect();
    serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("stringprobes.{PROBE_GROUP}")},
        "spec": {
            "group": PROBE_GROUP,
            "scope": "Cluster",
            "names": {"plural": "stringprobes", "singular": "stringprobe", "kind": "StringProbe"},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": properties}
                }}}
            }]
        }
    }))
    .unwrap()
}

/// Strings where the engines could part: line breaks, Unicode white space, non-ASCII, and the
/// shapes of origins, headers, endpoints, buckets and regions.
fn sample_strings() -> Vec<String> {
    let chosen = [
        "",
        "*",
        "**",
        "*\n*",
        "a*\r\n*b",
        "https://*.example.com",
        "https://*.*.example.com",
        "https://h/p",
        "https://h/p\u{a0}",
        "https://h/p\u{2028}",
        "https://h/\u{85}",
        "https://h/p\tq",
        "https://h/p q",
        "https://h/é",
        "https://h/\u{3000}x",
        "https://h/%20",
        "https://h/p\u{b}",
        "https://h/p\u{c}",
        "https://h/~!$&'()*+,;=:@",
        "https://[::1]:9/x",
        "https://bücher.example",
        "eu-west-1",
        "eu_west",
        "\u{1680}",
        "web-assets",
        "a.b-c",
        "ABC",
        "x-amz-*",
        "ETag",
        "https://a.example\u{1}",
        "GET\n",
        "x\u{7f}",
        "x\u{9f}",
        "..",
        ".",
        "a/../b",
        "a/./b",
        "a/..b",
        ".well-known/x",
        "s3-credentials",
        "a..b",
        "a.-b",
    ];
    let strategy = proptest::prop_oneof![
        "[a-z0-9.*-]{0,12}",
        "(https?://)?[a-zA-Z0-9.:*\\[\\]/_ -]{0,20}",
        "https?://[a-z0-9.-]{1,10}(:[0-9]{0,6})?(/[a-z?#\\s\u{a0}\u{2028}\u{85}é]{0,6})?",
        "[*a\\s\u{a0}\u{2028}\u{85}\r\n]{0,6}",
        "[a./\u{1}\u{7f}-]{0,8}",
        proptest::arbitrary::any::<String>(),
    ];
    let mut runner = TestRunner::deterministic();
    let mut strings: Vec<String> = chosen.iter().map(|s| (*s).to_owned()).collect();
    for _ in 0..250 {
        strings.push(strategy.new_tree(&mut runner).unwrap().current());
    }
    // The schema's bound, not a rule, would refuse longer strings; and NUL is not text.
    strings.retain(|s| s.chars().count() <= 512 && !s.contains('\0'));
    strings
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controllers_string_checks_agree_with_the_api_servers_cel() {
    let cluster = Cluster::shared();
    let client = cluster.crd_server_client().await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = probe_crd();
    match crds.create(&PostParams::default(), &crd).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => panic!("the probe CRD is refused: {e}"),
    }
    let established = kube::runtime::wait::await_condition(
        crds,
        crd.metadata.name.as_deref().unwrap(),
        kube::runtime::wait::conditions::is_crd_established(),
    );
    tokio::time::timeout(std::time::Duration::from_secs(30), established)
        .await
        .expect("the probe CRD is established in time")
        .unwrap();
    let resource = ApiResource {
        group: PROBE_GROUP.into(),
        version: "v1".into(),
        api_version: format!("{PROBE_GROUP}/v1"),
        kind: "StringProbe".into(),
        plural: "stringprobes".into(),
    };
    let probes: Api<DynamicObject> = Api::all_with(client, &resource);

    let strings = sample_strings();
    let mut disagreements = Vec::new();
    let mut refusals = 0;
    for value in &strings {
        let spec: serde_json::Map<String, Value> = (0..STRING_RULES.len())
            .map(|i| (format!("r{i}"), json!(value)))
            .collect();
        let mut probe = DynamicObject::new("probe", &resource);
        probe.data = json!({ "spec": spec });
        let refusal = api_message(probes.create(&dry_run(), &probe).await).unwrap_or_default();
        for (i, (name, rule)) in STRING_RULES.iter().enumerate() {
            let server_accepts = !refusal.contains(&format!("rule r{i} fails"));
            refusals += usize::from(!server_accepts);
            if server_accepts != (rule.holds)(value) {
                disagreements.push(format!(
                    "{name}: {value:?}: the server {} it, the controller {}",
                    if server_accepts { "accepts" } else { "refuses" },
                    if server_accepts { "refuses" } else { "accepts" },
                ));
            }
        }
    }
    assert!(
        disagreements.is_empty(),
        "{} disagreement(s) with {}:\n{}",
        disagreements.len(),
        cluster.crd_server_version,
        disagreements.join("\n")
    );
    // Both verdicts occurred, so the comparison had something to compare.
    let verdicts = strings.len() * STRING_RULES.len();
    assert!(
        refusals > verdicts / 10 && refusals < verdicts,
        "{refusals} refusals of {verdicts}"
    );
}

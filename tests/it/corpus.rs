//! Bad manifests (tests/fixtures/invalid) against each layer of defence: the API server's
//! structural schema and CEL rules (the modern CRD server that serves BucketCors, reached
//! through the core API server as every client reaches it), the CRD's CEL rules in kube's
//! client-side CEL engine, and the controller's own checks. Each fixture says which layers must
//! refuse it, and every refusal must name the field; the other layers must accept. Where CEL
//! refuses, the API server must answer with the rule's own message. Good manifests (the
//! examples and tests/fixtures/valid) pass every layer.

use std::collections::BTreeSet;
use std::path::Path;

use bucketcors::admission;
use bucketcors::api::BucketCors;
use bucketcors::cors;
use kube::core::cel::Validator;
use serde_json::Value;

use crate::support::cluster::Cluster;
use crate::support::harness::Harness;
use crate::support::process::repo_root;

#[derive(Debug)]
struct Fixture {
    file: String,
    rejected_by: BTreeSet<String>,
    mentions: String,
    manifest: String,
    object: Value,
}

fn fixtures() -> Vec<Fixture> {
    fixtures_in("tests/fixtures/invalid")
}

fn fixtures_in(dir: &str) -> Vec<Fixture> {
    let dir = repo_root().join(dir);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files.iter().map(|path| parse(path)).collect()
}

fn parse(path: &Path) -> Fixture {
    let manifest = std::fs::read_to_string(path).unwrap();
    let header = |key: &str| {
        manifest
            .lines()
            .find_map(|l| l.strip_prefix(&format!("# {key}: ")))
            .unwrap_or_else(|| panic!("{} has no '# {key}:' line", path.display()))
            .to_owned()
    };
    Fixture {
        file: path.file_name().unwrap().to_string_lossy().into_owned(),
        rejected_by: header("rejected-by")
            .split_whitespace()
            .map(str::to_owned)
            .collect(),
        mentions: header("mentions"),
        object: serde_saphyr::from_str(&manifest).unwrap(),
        manifest,
    }
}

/// The controller: the typed object must deserialize, then pass `admission::validate`.
fn controller(object: &Value) -> Result<(), String> {
    let obj: BucketCors = serde_path_to_error::deserialize(object.clone())
        .map_err(|e| format!("{}: {}", e.path(), e.inner()))?;
    admission::validate(&obj.spec).map_err(|errors| {
        errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    })
}

/// A good manifest also meets its own `expectations`, as the controller checks them.
fn expectations(object: &Value) -> Result<(), String> {
    let obj: BucketCors = serde_json::from_value(object.clone()).map_err(|e| e.to_string())?;
    cors::check_expectations(&obj.spec.rules, &obj.spec.expectations)
        .map_err(|failures| failures.join("; "))
}

fn cel(schema: &Value, object: &Value) -> Result<(), String> {
    Validator::new()
        .validate(schema, object, None)
        .map_err(|errors| {
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        })
}

/// The messages of the CEL rules `object` breaks, as kube's engine reports them.
fn cel_messages(schema: &Value, object: &Value) -> Vec<String> {
    match Validator::new().validate(schema, object, None) {
        Ok(()) => Vec::new(),
        Err(errors) => errors.iter().map(|e| e.message.clone()).collect(),
    }
}

/// `bucketcors validate -f FILE`: refused (with its output) or accepted.
fn validate_command(path: &Path) -> Result<(), String> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bucketcors"))
        .args(["validate", "-f"])
        .arg(path)
        .output()
        .expect("bucketcors runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    match out.status.code() {
        Some(0) if text.is_empty() => Ok(()),
        Some(1) if !text.is_empty() => Err(text),
        other => panic!(
            "validate {} exited {other:?}: {text}{}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

fn api_server(cluster: &Cluster, namespace: &str, manifest: &str) -> Result<(), String> {
    let (ok, output) = cluster.kubectl_with_input(
        &[
            "apply",
            "--dry-run=server",
            "--validate=true",
            "-n",
            namespace,
            "-f",
            "-",
        ],
        manifest,
    );
    if ok { Ok(()) } else { Err(output) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_manifest_is_refused_by_the_layers_it_names() {
    let h = Harness::start().await;
    let crd = serde_json::to_value(admission::crd()).unwrap();
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    let fixtures = fixtures();
    assert!(
        fixtures.len() >= 40,
        "the corpus has {} manifests",
        fixtures.len()
    );

    // The server that judges CEL here must evaluate it: one that drops the rules would
    // accept every CEL case and prove nothing.
    assert!(
        h.cluster.has_cel(),
        "BucketCors is served by {}, which does not evaluate CEL",
        h.cluster.crd_server_version
    );

    let mut problems = Vec::new();
    let mut refused_by_server_cel = 0;
    let mut validated = 0;
    for f in &fixtures {
        let expects = |layer: &str| f.rejected_by.contains(layer);
        let server_verdict = api_server(h.cluster, &h.namespace, &f.manifest);
        // `bucketcors validate` refuses what any layer refuses, naming the field, and with the
        // CEL rules' own messages.
        let path = repo_root().join("tests/fixtures/invalid").join(&f.file);
        match validate_command(&path) {
            Ok(()) => problems.push(format!("{}: bucketcors validate accepted it", f.file)),
            Err(out) => {
                if !out.contains(&f.mentions) {
                    problems.push(format!(
                        "{}: bucketcors validate refused it without naming {:?}: {out}",
                        f.file, f.mentions
                    ));
                }
                for message in cel_messages(schema, &f.object) {
                    if !out.contains(&message) {
                        problems.push(format!(
                            "{}: bucketcors validate did not give the CEL message {message:?}: {out}",
                            f.file
                        ));
                    }
                }
                validated += 1;
            }
        }
        if expects("cel") && !expects("schema") {
            // Only CEL can refuse it: the server's answer must carry each broken rule's message.
            let output = server_verdict.as_ref().err().cloned().unwrap_or_default();
            let messages = cel_messages(schema, &f.object);
            if messages.is_empty() {
                problems.push(format!(
                    "{}: kube's CEL engine found no broken rule",
                    f.file
                ));
            }
            for message in messages {
                if output.contains(&message) {
                    refused_by_server_cel += 1;
                } else {
                    problems.push(format!(
                        "{}: the API server did not answer with the CEL message {message:?}: {output}",
                        f.file
                    ));
                }
            }
        }
        let verdicts = [
            (
                "api server",
                expects("schema") || expects("cel"),
                server_verdict,
            ),
            ("cel", expects("cel"), cel(schema, &f.object)),
            ("controller", expects("controller"), controller(&f.object)),
        ];
        for (layer, must_refuse, verdict) in verdicts {
            match (must_refuse, verdict) {
                (true, Ok(())) => problems.push(format!("{}: {layer} accepted it", f.file)),
                (false, Err(e)) => problems.push(format!("{}: {layer} refused it: {e}", f.file)),
                (true, Err(e)) if !e.contains(&f.mentions) => problems.push(format!(
                    "{}: {layer} refused it without naming {:?}: {e}",
                    f.file, f.mentions
                )),
                _ => {}
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
    assert_eq!(
        validated,
        fixtures.len(),
        "bucketcors validate refused every fixture"
    );
    assert!(
        refused_by_server_cel >= 10,
        "only {refused_by_server_cel} CEL refusals came from the API server"
    );
}

/// The BucketCors documents of the examples, as (file, manifest) pairs.
fn example_bucketcors() -> Vec<(String, Value)> {
    let mut found = Vec::new();
    for dir in ["examples", "examples/stores"] {
        let mut files: Vec<_> = std::fs::read_dir(repo_root().join(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .collect();
        files.sort();
        for path in files {
            let text = std::fs::read_to_string(&path).unwrap();
            let docs: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap();
            for doc in docs {
                if doc["kind"] == "BucketCors" {
                    found.push((
                        format!("{dir}/{}", path.file_name().unwrap().display()),
                        doc,
                    ));
                }
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_example_and_good_manifest_passes_every_layer() {
    let h = Harness::start().await;
    let crd = serde_json::to_value(admission::crd()).unwrap();
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    let mut manifests = example_bucketcors();
    assert!(manifests.len() >= 4, "examples: {manifests:?}");
    for f in fixtures_in("tests/fixtures/valid") {
        manifests.push((f.file, f.object));
    }
    let mut problems = Vec::new();
    for (file, mut object) in manifests {
        // The examples name their own namespaces; the test's namespace stands in for them.
        if let Some(meta) = object["metadata"].as_object_mut() {
            meta.remove("namespace");
        }
        let manifest = serde_json::to_string(&object).unwrap();
        for (layer, verdict) in [
            ("api server", api_server(h.cluster, &h.namespace, &manifest)),
            ("cel", cel(schema, &object)),
            ("controller", controller(&object)),
            ("expectations", expectations(&object)),
        ] {
            if let Err(e) = verdict {
                problems.push(format!("{file}: {layer} refused it: {e}"));
            }
        }
    }
    // `bucketcors validate` accepts them too (ClusterBucketStores of the examples included).
    for dir in ["examples", "examples/stores", "tests/fixtures/valid"] {
        if let Err(out) = validate_command(&repo_root().join(dir)) {
            problems.push(format!("{dir}: bucketcors validate refused: {out}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

//! Bad manifests (tests/fixtures/invalid) against each layer of defence: the API server's
//! structural schema (a real API server), the CRD's CEL rules (kube's CEL engine, and the API
//! server too when it evaluates CEL) and the controller's own checks. Each fixture says which
//! layers must refuse it, and every refusal must name the field; the other layers must accept.

use std::collections::BTreeSet;
use std::path::Path;

use bucketcors::admission;
use bucketcors::api::BucketCors;
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
    let dir = repo_root().join("tests/fixtures/invalid");
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

    let mut problems = Vec::new();
    for f in &fixtures {
        let expects = |layer: &str| f.rejected_by.contains(layer);
        let server_expected = expects("schema") || (expects("cel") && h.cluster.has_cel());
        let verdicts = [
            (
                "api server",
                server_expected,
                api_server(h.cluster, &h.namespace, &f.manifest),
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
}

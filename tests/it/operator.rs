//! The `bucketcors` binary as a cluster runs it: health and metrics endpoints, logs that
//! never show secrets, leader election across two replicas, and the Helm chart's RBAC proven
//! sufficient and no wider.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bucketcors::cors::CorsRule;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, PostParams};
use serde_json::Value;

use crate::support::harness::{Harness, PROMPTLY, bucket_cors, eventually, put_behind_the_back};
use crate::support::moto::Moto;
use crate::support::operator::{OperatorProcess, sample};
use crate::support::process::repo_root;
use crate::support::unique_name;

const SECRET_VALUE: &str = "wJalrXUtnFEMI-never-log-me";

fn rules(origin: &str) -> Vec<CorsRule> {
    vec![CorsRule::new([origin], ["GET"])]
}

fn log_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "bucketcors-{}-{}.log",
        unique_name(name),
        std::process::id()
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_process_serves_health_and_metrics_and_never_logs_secrets() {
    let h = Harness::without_controller().await;
    let moto = Moto::shared();
    let bucket = moto.new_bucket("proc").await;
    let mut op = OperatorProcess::start(
        &h.cluster.kubeconfig,
        &["--namespace", &h.namespace, "--resync-interval", "2s"],
        &[],
        log_path("metrics"),
    );
    eventually("/readyz to be ok", PROMPTLY, || async {
        op.get_health("/readyz").is_some_and(|(s, _)| s == 200)
    })
    .await;

    h.create_credentials_secret("creds", "AKIAPROCESSTEST", SECRET_VALUE)
        .await;
    let spec = h.spec_with_secret(&bucket, rules("https://a.example.com"), "creds");
    h.create("web", spec).await;
    h.wait_reason("web", "Applied").await;
    put_behind_the_back(&moto.client(), &bucket, "https://evil.example.com").await;
    eventually("the drift to be corrected", PROMPTLY, || async {
        bucket_cors(&moto.client(), &bucket).await == rules("https://a.example.com")
    })
    .await;
    h.wait_reason("web", "InSync").await;
    // A pass is counted after its status write: wait until the scrape shows it.
    eventually("the InSync pass to be counted", PROMPTLY, || async {
        sample(
            &op.scrape(),
            "bucketcors_reconciliations_total",
            r#"{reason="InSync"}"#,
        )
        .is_some_and(|v| v >= 1.0)
    })
    .await;

    let metrics = op.scrape();
    let value = |metric: &str, labels: &str| sample(&metrics, metric, labels).unwrap_or(0.0);
    assert_eq!(
        value(
            "bucketcors_s3_requests_total",
            r#"{operation="PutBucketCors",outcome="ok"}"#
        ),
        2.0,
        "{metrics}"
    );
    assert!(
        value(
            "bucketcors_s3_requests_total",
            r#"{operation="GetBucketCors",outcome="ok"}"#
        ) >= 3.0
    );
    assert!(value("bucketcors_reconciliations_total", r#"{reason="Applied"}"#) >= 2.0);
    assert!(value("bucketcors_reconciliations_total", r#"{reason="InSync"}"#) >= 1.0);
    assert_eq!(
        value(
            "bucketcors_drift_corrections_total",
            r#"{reason="changed"}"#
        ),
        1.0
    );
    assert_eq!(value("bucketcors_managed_objects", ""), 1.0);
    assert_eq!(value("bucketcors_ready_objects", ""), 1.0);
    assert!(value("bucketcors_reconcile_duration_seconds_count", "") >= 3.0);
    assert!(
        !metrics.contains(&bucket),
        "metric labels never carry object or bucket names"
    );
    assert_eq!(value("bucketcors_objects", r#"{reason="InSync"}"#), 1.0);
    assert_eq!(
        value("bucketcors_objects", r#"{reason="InvalidSpec"}"#),
        0.0
    );
    promtool_check_metrics(&metrics);
    same_shape_as_the_fixture(&metrics);
    let open_metrics = op.scrape_open_metrics();
    assert!(
        open_metrics.ends_with("# EOF\n")
            && open_metrics.contains("# TYPE bucketcors_reconciliations counter"),
        "Prometheus gets OpenMetrics: {open_metrics}"
    );

    op.terminate();
    let logs = op.logs();
    assert!(logs.contains(r#""message":"reconciled""#), "{logs}");
    assert!(
        logs.contains(&bucket) && logs.contains(r#""plan":"put 1 rule(s)""#),
        "{logs}"
    );
    assert!(
        logs.contains("stopped"),
        "a clean shutdown on SIGTERM: {logs}"
    );
    assert!(!logs.contains(SECRET_VALUE), "a secret value was logged");
    // The harness runs it single-tenant; it says so, as a warning, at start.
    assert!(
        logs.lines().any(|l| l.contains(r#""level":"WARN""#)
            && l.contains("single-tenant mode: every object without a store acts with the operator's own AWS identity")),
        "{logs}"
    );
}

/// `promtool check metrics` on a real scrape: it must report no problem at all. Without
/// promtool on PATH the test fails (scripts/tools.sh installs it; make test runs it first).
fn promtool_check_metrics(metrics: &str) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) => panic!(
            "promtool check metrics could not run: {e} (scripts/tools.sh installs promtool; make test runs it first)"
        ),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.trim().is_empty(),
        "promtool check metrics found problems ({}):\n{report}\nin:\n{metrics}",
        out.status
    );
}

/// The metric families (# TYPE lines) and, for each sample, its name and label names.
fn shape(metrics: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut families = BTreeSet::new();
    let mut samples = BTreeSet::new();
    for line in metrics.lines() {
        if let Some(family) = line.strip_prefix("# TYPE ") {
            families.insert(family.to_owned());
        } else if !line.starts_with('#') && !line.is_empty() {
            let series = line.rsplit_once(' ').map_or(line, |(series, _)| series);
            let (name, labels) = series.split_once('{').unwrap_or((series, ""));
            let names: Vec<_> = labels
                .trim_end_matches('}')
                .split(',')
                .filter_map(|kv| kv.split_once('=').map(|(k, _)| k.trim()))
                .collect();
            samples.insert(format!("{name}{{{}}}", names.join(",")));
        }
    }
    (families, samples)
}

/// tests/monitoring/metrics.txt is a real scrape: the chart's alerts, their promtool tests and
/// the dashboard are checked against its names and labels (scripts/chart-check.sh). This keeps
/// it current: the same families, and no sample of a shape it lacks.
/// BUCKETCORS_UPDATE_METRICS_FIXTURE=1 writes this scrape there instead.
fn same_shape_as_the_fixture(metrics: &str) {
    let path = repo_root().join("tests/monitoring/metrics.txt");
    if std::env::var_os("BUCKETCORS_UPDATE_METRICS_FIXTURE").is_some_and(|v| v == "1") {
        std::fs::write(&path, metrics).unwrap();
    }
    let fixture = std::fs::read_to_string(&path).unwrap();
    let (families, samples) = shape(metrics);
    let (fixture_families, fixture_samples) = shape(&fixture);
    let new: Vec<_> = samples.difference(&fixture_samples).collect();
    assert!(
        families == fixture_families && new.is_empty(),
        "{} is not shaped like a real scrape (families only here {:?}, only there {:?}; \
         samples of new shapes {new:?}): rerun with BUCKETCORS_UPDATE_METRICS_FIXTURE=1, then \
         make chart-check, and fix the alerts or the dashboard it finds stale. The scrape:\n{metrics}",
        path.display(),
        families.difference(&fixture_families).collect::<Vec<_>>(),
        fixture_families.difference(&families).collect::<Vec<_>>(),
    );
}

async fn holder(h: &Harness, lease: &str) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(h.client.clone(), &h.namespace);
    leases
        .get_opt(lease)
        .await
        .unwrap()?
        .spec?
        .holder_identity
        .filter(|h| !h.is_empty())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_leads_and_a_standby_takes_over_when_it_dies() {
    let h = Harness::without_controller().await;
    let moto = Moto::shared();
    let bucket = moto.new_bucket("proc").await;
    let lease_duration = Duration::from_secs(4);
    let start = |identity: &str| {
        OperatorProcess::start(
            &h.cluster.kubeconfig,
            &[
                "--namespace",
                &h.namespace,
                "--resync-interval",
                "2s",
                "--leader-election",
                "--leader-election-namespace",
                &h.namespace,
                "--leader-election-lease",
                "bucketcors",
                "--leader-election-lease-duration",
                "4s",
            ],
            &[("POD_NAME", identity)],
            log_path(identity),
        )
    };
    let mut a = start("op-a");
    let mut b = start("op-b");
    eventually("a leader", PROMPTLY, || async {
        holder(&h, "bucketcors").await.is_some()
    })
    .await;
    // A standby is ready too: it can take over at any time.
    eventually("both replicas ready", PROMPTLY, || async {
        [&a, &b]
            .iter()
            .all(|op| op.get_health("/readyz").is_some_and(|(s, _)| s == 200))
    })
    .await;
    let leader = holder(&h, "bucketcors").await.unwrap();
    let (leading, standby) = if leader == "op-a" {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };

    h.create("web", h.spec(&bucket, rules("https://one.example.com")))
        .await;
    h.wait_reason("web", "Applied").await;
    h.wait_reason("web", "InSync").await;
    assert_eq!(moto.cors_writes(&bucket), 1, "one write for one change");
    assert!(
        !standby.logs().contains(r#""message":"reconciled""#),
        "the standby reconciled"
    );

    leading.kill();
    let killed = Instant::now();
    let updated = h
        .update("web", &h.spec(&bucket, rules("https://two.example.com")))
        .await;
    h.wait_observed("web", updated.metadata.generation).await;
    let took_over = killed.elapsed();
    assert_ne!(
        holder(&h, "bucketcors").await.as_deref(),
        Some(leader.as_str())
    );
    assert!(
        took_over < lease_duration + Duration::from_secs(10),
        "took {took_over:?} to take over a {lease_duration:?} lease"
    );
    assert_eq!(
        bucket_cors(&moto.client(), &bucket).await,
        rules("https://two.example.com")
    );
    assert_eq!(
        moto.cors_writes(&bucket),
        2,
        "no double writes across the hand-over"
    );
    eprintln!("standby took over {took_over:?} after the leader was killed");

    // A graceful stop lets the Lease go at once.
    standby.terminate();
    let stopped = Instant::now();
    eventually("the Lease to be released", PROMPTLY, || async {
        holder(&h, "bucketcors").await.is_none()
    })
    .await;
    assert!(
        stopped.elapsed() < lease_duration,
        "the Lease was left to expire"
    );
}

/// Renders the chart for a release in `namespace` watching only `namespace`. Its resources
/// are named after the namespace, so that the cluster-wide ones of tests running at the same
/// time do not overwrite each other.
fn render_chart(namespace: &str, out: &Path) -> Vec<Value> {
    render_chart_with(
        namespace,
        out,
        &format!(
            "fullnameOverride: bc-{namespace}\nwatchNamespaces: [{namespace}]\nleaderElection:\n  enabled: true\ncrds:\n  install: false\n"
        ),
    )
}

/// Renders the chart with `values` for a release in `namespace`.
pub(crate) fn render_chart_with(namespace: &str, out: &Path, values_yaml: &str) -> Vec<Value> {
    let values = out.with_extension("values.yaml");
    std::fs::write(&values, values_yaml).unwrap();
    let status = std::process::Command::new(repo_root().join("scripts/chart-check.sh"))
        .args([
            "render",
            values.to_str().unwrap(),
            out.to_str().unwrap(),
            "--namespace",
            namespace,
        ])
        .status()
        .unwrap();
    assert!(status.success(), "helm template failed");
    let text = std::fs::read_to_string(out).unwrap();
    text.split("\n---")
        .filter_map(|doc| serde_saphyr::from_str::<Value>(doc).ok())
        .filter(|doc| doc.is_object())
        .collect()
}

/// Applies the ServiceAccount and RBAC documents of `docs` that `wanted` keeps; returns them.
pub(crate) fn apply_access<'a>(
    h: &Harness,
    docs: &'a [Value],
    wanted: impl Fn(&Value) -> bool,
) -> Vec<&'a Value> {
    const ACCESS: [&str; 5] = [
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "ClusterRole",
        "ClusterRoleBinding",
    ];
    let access: Vec<&Value> = docs
        .iter()
        .filter(|d| ACCESS.contains(&d["kind"].as_str().unwrap_or("")) && wanted(d))
        .collect();
    let manifest =
        serde_json::json!({"apiVersion": "v1", "kind": "List", "items": access}).to_string();
    let (ok, output) = h
        .cluster
        .kubectl_with_input(&["apply", "-f", "-"], &manifest);
    assert!(ok, "{output}");
    access
}

/// Applies the chart's ServiceAccount and RBAC (namespaced mode, for the harness's namespace)
/// and returns a kubeconfig that authenticates as that ServiceAccount, as the pod would, with
/// the account's name and the Lease the chart configures.
async fn chart_identity(h: &Harness, dir: &Path) -> (PathBuf, String, String) {
    let docs = render_chart(&h.namespace, &dir.join("render.yaml"));
    // The roles the chart adds to Kubernetes' view, edit and admin are the users', bound to
    // no ServiceAccount of the operator.
    let access = apply_access(h, &docs, |d| !for_users(d));
    // Cluster-wide, namespaced mode needs only the grants: stores and namespaces' labels.
    assert!(
        access.iter().all(|d| d["kind"] != "ClusterRole"
            || d["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.ends_with("-grants"))),
        "namespaced mode needs no other ClusterRole"
    );
    let deployment = docs.iter().find(|d| d["kind"] == "Deployment").unwrap();
    let sa_name = deployment["spec"]["template"]["spec"]["serviceAccountName"]
        .as_str()
        .unwrap()
        .to_owned();
    let lease_arg = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .find_map(|a| a.strip_prefix("--leader-election-lease="))
        .unwrap()
        .to_owned();

    let accounts: Api<ServiceAccount> = Api::namespaced(h.client.clone(), &h.namespace);
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec![],
            expiration_seconds: Some(3600),
            ..Default::default()
        },
        ..Default::default()
    };
    let token = accounts
        .create_token_request(&sa_name, &PostParams::default(), &request)
        .await
        .unwrap()
        .status
        .unwrap()
        .token;
    let mut kubeconfig: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(&h.cluster.kubeconfig).unwrap()).unwrap();
    kubeconfig["users"][0]["user"] = serde_json::json!({ "token": token });
    let sa_kubeconfig = dir.join("kubeconfig");
    std::fs::write(&sa_kubeconfig, serde_json::to_string(&kubeconfig).unwrap()).unwrap();
    (sa_kubeconfig, sa_name, lease_arg)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_charts_rbac_is_enough_to_run_and_no_wider() {
    let h = Harness::without_controller().await;
    let moto = Moto::shared();
    let bucket = moto.new_bucket("proc").await;
    let dir = std::env::temp_dir().join(unique_name("chart"));
    std::fs::create_dir_all(&dir).unwrap();
    let (sa_kubeconfig, sa_name, lease_arg) = chart_identity(&h, &dir).await;

    let mut op = OperatorProcess::start(
        &sa_kubeconfig,
        &[
            "--namespace",
            &h.namespace,
            "--resync-interval",
            "2s",
            "--leader-election",
            "--leader-election-namespace",
            &h.namespace,
            "--leader-election-lease",
            &lease_arg,
        ],
        &[],
        log_path("rbac"),
    );
    h.create_credentials_secret("creds", "AKIAPROCESSTEST", SECRET_VALUE)
        .await;
    let spec = h.spec_with_secret(&bucket, rules("https://a.example.com"), "creds");
    h.create("web", spec).await;
    h.wait_reason("web", "Applied").await;
    assert_eq!(
        bucket_cors(&moto.client(), &bucket).await,
        rules("https://a.example.com")
    );
    h.wait_event("web", |_| true).await;
    h.delete("web").await;
    h.wait_gone("web").await;
    assert_eq!(bucket_cors(&moto.client(), &bucket).await, vec![]);
    op.terminate();
    let logs = op.logs();
    assert!(
        !logs.to_lowercase().contains("forbidden"),
        "the operator hit a permission it lacks: {logs}"
    );

    let who = format!("system:serviceaccount:{}:{sa_name}", h.namespace);
    let can = |verb: &str, resource: &str, namespace: &str| {
        // `kind/status` asks about the subresource (`kind/NAME` would name an object).
        let (resource, subresource) =
            resource.split_once('/').map_or((resource, None), |(r, s)| {
                (r, Some(format!("--subresource={s}")))
            });
        let mut args = vec!["auth", "can-i", "--as", &who, verb, resource];
        args.extend(subresource.as_deref());
        // Cluster-scoped resources are asked about without a namespace.
        if !namespace.is_empty() {
            args.extend(["-n", namespace]);
        }
        let (ok, output) = h.cluster.kubectl_with_input(&args, "");
        // The answer is the first line; kubectl may warn below it.
        (
            ok,
            output.lines().next().unwrap_or_default().trim().to_owned(),
        )
    };
    for (verb, resource, namespace) in [
        ("get", "secrets", h.namespace.as_str()),
        (
            "patch",
            "bucketcors.bucketcors.dev/status",
            h.namespace.as_str(),
        ),
        ("watch", "bucketcors.bucketcors.dev", h.namespace.as_str()),
        ("watch", "clusterbucketstores.bucketcors.dev", ""),
        ("watch", "namespaces", ""),
    ] {
        assert_eq!(
            can(verb, resource, namespace),
            (true, "yes".into()),
            "{verb} {resource}"
        );
    }
    for (verb, resource, namespace) in [
        ("list", "pods", h.namespace.as_str()),
        ("list", "secrets", h.namespace.as_str()),
        ("get", "secrets", "default"),
        ("get", "secrets", "kube-system"),
        ("delete", "bucketcors.bucketcors.dev", h.namespace.as_str()),
        ("list", "bucketcors.bucketcors.dev", "default"),
        ("create", "clusterbucketstores.bucketcors.dev", ""),
        ("update", "clusterbucketstores.bucketcors.dev", ""),
        ("update", "namespaces", ""),
    ] {
        assert_eq!(
            can(verb, resource, namespace).1,
            "no",
            "{who} may {verb} {resource} in {namespace}"
        );
    }
}

/// Whether a rendered ClusterRole is one the chart adds to Kubernetes' user-facing roles.
fn for_users(doc: &Value) -> bool {
    doc["metadata"]["labels"].as_object().is_some_and(|labels| {
        labels
            .keys()
            .any(|k| k.starts_with("rbac.authorization.k8s.io/aggregate-to-"))
    })
}

/// `kubectl auth can-i` as `who`: the first line of the answer. An empty namespace asks about
/// a cluster-scoped resource.
fn can_i(h: &Harness, who: &str, verb: &str, resource: &str, namespace: &str) -> String {
    let mut args = vec!["auth", "can-i", "--as", who, verb, resource];
    if !namespace.is_empty() {
        args.extend(["-n", namespace]);
    }
    let (_, output) = h.cluster.kubectl_with_input(&args, "");
    output.lines().next().unwrap_or_default().trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_the_all_namespaces_install_the_operator_reads_secrets_only_as_its_values_say() {
    let h = Harness::without_controller().await;
    let dir = std::env::temp_dir().join(unique_name("rbac-all"));
    std::fs::create_dir_all(&dir).unwrap();
    for (suffix, tenant_secrets) in [("stores", false), ("secrets", true)] {
        let docs = render_chart_with(
            &h.namespace,
            &dir.join(format!("{suffix}.yaml")),
            &format!(
                "fullnameOverride: bc-{}-{suffix}\ntenancy:\n  tenantSecrets: {tenant_secrets}\ncrds:\n  install: false\n",
                h.namespace
            ),
        );
        apply_access(&h, &docs, |_| true);
        let who = format!(
            "system:serviceaccount:{}:bc-{}-{suffix}",
            h.namespace, h.namespace
        );
        let everywhere = if tenant_secrets { "yes" } else { "no" };
        for (verb, resource, namespace, expected) in [
            ("get", "secrets", h.namespace.as_str(), "yes"),
            ("get", "secrets", "default", everywhere),
            ("get", "secrets", "kube-system", everywhere),
            ("list", "secrets", h.namespace.as_str(), "no"),
            ("watch", "bucketcors.bucketcors.dev", "default", "yes"),
            ("watch", "clusterbucketstores.bucketcors.dev", "", "yes"),
            ("create", "clusterbucketstores.bucketcors.dev", "", "no"),
        ] {
            assert_eq!(
                can_i(&h, &who, verb, resource, namespace),
                expected,
                "tenantSecrets={tenant_secrets}: {verb} {resource} in {namespace:?}"
            );
        }
    }

    // A team that may do anything at all in its namespace cannot make or change a store: a
    // store is cluster-scoped, beyond what a namespace's roles reach.
    let tenant = format!("tenant-{}", h.namespace);
    let binding = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "team-everything", "namespace": h.namespace},
            "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "team-everything", "namespace": h.namespace},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "team-everything"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": tenant}],
        },
    ]})
    .to_string();
    let (ok, output) = h
        .cluster
        .kubectl_with_input(&["apply", "-f", "-"], &binding);
    assert!(ok, "{output}");
    assert_eq!(can_i(&h, &tenant, "create", "secrets", &h.namespace), "yes");
    assert_eq!(
        can_i(
            &h,
            &tenant,
            "create",
            "bucketcors.bucketcors.dev",
            &h.namespace
        ),
        "yes"
    );
    for verb in ["create", "update", "patch", "delete"] {
        assert_eq!(
            can_i(&h, &tenant, verb, "clusterbucketstores.bucketcors.dev", ""),
            "no",
            "a tenant may {verb} stores"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rendered_chart_passes_a_server_side_dry_run() {
    let h = Harness::without_controller().await;
    let dir = std::env::temp_dir().join(unique_name("dry-run"));
    std::fs::create_dir_all(&dir).unwrap();
    // The CRD is installed by the harness already (without CEL, which this API server lacks).
    let docs = render_chart(&h.namespace, &dir.join("render.yaml"));
    let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    assert!(
        kinds.contains(&"Deployment") && kinds.contains(&"Service"),
        "{kinds:?}"
    );
    let manifest =
        serde_json::json!({"apiVersion": "v1", "kind": "List", "items": docs}).to_string();
    let (ok, output) = h
        .cluster
        .kubectl_with_input(&["apply", "--dry-run=server", "-f", "-"], &manifest);
    assert!(ok, "{output}");
    let deployment = format!(
        "deployment.apps/bc-{} created (server dry run)",
        h.namespace
    );
    assert!(output.contains(&deployment), "{output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_loses_its_lease_stops_at_once_and_writes_nothing_more() {
    use crate::support::fault_proxy::{Failure, Fault, FaultProxy};
    use kube::api::{Patch, PatchParams};
    let moto = Moto::shared();
    let proxy = FaultProxy::start(&moto.endpoint()).await;
    let h = Harness::without_controller().await;
    let bucket = moto.new_bucket("lease").await;
    let mut leader = OperatorProcess::start(
        &h.cluster.kubeconfig,
        &[
            "--namespace",
            &h.namespace,
            "--default-endpoint",
            &proxy.endpoint(),
            "--leader-election",
            "--leader-election-namespace",
            &h.namespace,
            "--leader-election-lease-duration",
            "4s",
        ],
        &[("POD_NAME", "op-a")],
        log_path("lease-loser"),
    );
    eventually("op-a to lead", PROMPTLY, || async {
        holder(&h, "bucketcors").await.as_deref() == Some("op-a")
    })
    .await;

    // The leader's Put is in flight (held by the store) when another replica takes the Lease.
    proxy.set(Fault::Writes(Failure::Hang));
    let mut spec = h.spec(&bucket, rules("https://one.example.com"));
    spec.endpoint = None;
    h.create("web", spec).await;
    eventually("the leader's Put to reach the store", PROMPTLY, || async {
        proxy.cors_writes(&bucket) >= 1
    })
    .await;
    // A MicroTime: six fractional digits.
    let now = chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string();
    let theft = Patch::Merge(serde_json::json!({"spec": {
        "holderIdentity": "op-b", "renewTime": now, "acquireTime": now,
        "leaseDurationSeconds": 60,
    }}));
    let leases: Api<Lease> = Api::namespaced(h.client.clone(), &h.namespace);
    leases
        .patch("bucketcors", &PatchParams::default(), &theft)
        .await
        .unwrap();
    let stolen = Instant::now();

    // It stops without waiting for the Put it had in flight, and retries nothing after.
    eventually("op-a to exit", PROMPTLY, || async {
        leader.get_health("/healthz").is_none()
    })
    .await;
    let stopped = stolen.elapsed();
    proxy.set(Fault::Pass);
    leader.terminate();
    assert!(
        stopped < Duration::from_secs(15),
        "op-a went on for {stopped:?} after losing its Lease (its in-flight grace is 20 s)"
    );
    assert!(
        leader
            .logs()
            .contains("lost the leader-election Lease; stopping at once"),
        "{}",
        leader.logs()
    );
    assert_eq!(
        moto.cors_writes(&bucket),
        0,
        "a write landed after the Lease was lost"
    );
    eprintln!("op-a stopped {stopped:?} after its Lease was taken");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_the_operator_may_not_list_does_not_hold_up_the_others() {
    let h = Harness::without_controller().await;
    let moto = Moto::shared();
    let bucket = moto.new_bucket("proc").await;
    let dir = std::env::temp_dir().join(unique_name("refused"));
    std::fs::create_dir_all(&dir).unwrap();
    // The chart grants the harness's namespace only; the other is watched but refused.
    let (sa_kubeconfig, _, _) = chart_identity(&h, &dir).await;
    let refused = Harness::new_namespace("refused").await;
    let mut op = OperatorProcess::start(
        &sa_kubeconfig,
        &[
            "--namespace",
            &h.namespace,
            "--namespace",
            &refused,
            "--resync-interval",
            "2s",
        ],
        &[],
        log_path("refused"),
    );
    h.create("web", h.spec(&bucket, rules("https://a.example.com")))
        .await;
    h.wait_reason("web", "Applied").await;
    assert_eq!(
        bucket_cors(&moto.client(), &bucket).await,
        rules("https://a.example.com")
    );
    eventually("the refusal to be counted", PROMPTLY, || async {
        sample(&op.scrape(), "bucketcors_watch_refused_total", "").is_some_and(|n| n >= 1.0)
    })
    .await;
    op.terminate();
    let logs = op.logs();
    assert!(
        logs.contains("refuses to list BucketCors") && logs.contains(&refused),
        "the refusal is not logged with its namespace: {logs}"
    );
}

/// Grants by namespace selector fail closed: while the operator cannot list Namespaces (its
/// role lacks it), a selector that an unlabelled namespace would satisfy (`DoesNotExist`,
/// `NotIn`) grants nothing, since the namespace's labels are not known; nothing is written.
/// Once the list is allowed the objects are looked at again with the labels, which refuse them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selectors_grant_nothing_while_the_namespaces_labels_are_unknown() {
    let h = Harness::without_controller().await;
    let moto = Moto::shared();
    let dir = std::env::temp_dir().join(unique_name("closed"));
    std::fs::create_dir_all(&dir).unwrap();
    let (sa_kubeconfig, _, _) = chart_identity(&h, &dir).await;
    let grants = format!("bc-{}-grants", h.namespace);
    let namespaces_rule = serde_json::json!({"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]});
    let set_namespace_access = |allowed: bool| {
        let rules: Vec<Value> = serde_json::from_str::<Value>(&h.cluster.kubectl(&[
            "get",
            "clusterrole",
            &grants,
            "-o",
            "jsonpath={.rules}",
        ]))
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["resources"][0] != "namespaces")
        .cloned()
        .chain(allowed.then(|| namespaces_rule.clone()))
        .collect();
        let patch = serde_json::json!({ "rules": rules }).to_string();
        h.cluster.kubectl(&[
            "patch",
            "clusterrole",
            &grants,
            "--type",
            "merge",
            "-p",
            &patch,
        ]);
    };
    set_namespace_access(false);
    h.cluster.kubectl(&[
        "label",
        "namespace",
        &h.namespace,
        "blocked=yes",
        "team=blocked",
    ]);
    let mut buckets = Vec::new();
    for (store, requirement) in [
        (
            "absent",
            r#"{"key": "blocked", "operator": "DoesNotExist"}"#,
        ),
        (
            "not-in",
            r#"{"key": "team", "operator": "NotIn", "values": ["blocked"]}"#,
        ),
    ] {
        let name = format!("{store}-{}", h.namespace);
        let manifest = format!(
            r#"{{"apiVersion": "bucketcors.dev/v1alpha1", "kind": "ClusterBucketStore",
                "metadata": {{"name": "{name}"}},
                "spec": {{"endpoint": "{}", "conditions": [{{"namespaceSelector": {{"matchExpressions": [{requirement}]}}}}],
                          "buckets": ["*"]}}}}"#,
            moto.endpoint()
        );
        let (ok, out) = h
            .cluster
            .kubectl_with_input(&["apply", "-f", "-"], &manifest);
        assert!(ok, "{out}");
        let bucket = moto.new_bucket("closed").await;
        let mut spec = h.spec(&bucket, rules("https://a.example.com"));
        spec.endpoint = None;
        spec.store_ref = Some(bucketcors::api::StoreRef { name });
        h.create(store, spec).await;
        buckets.push((store, bucket));
    }
    let mut op = OperatorProcess::start(
        &sa_kubeconfig,
        &["--namespace", &h.namespace, "--resync-interval", "2s"],
        &[("BUCKETCORS_SINGLE_TENANT", "false")],
        log_path("closed"),
    );
    for (object, _) in &buckets {
        let denied = h.wait_reason(object, "NotPermitted").await;
        let message = &denied.ready_condition().unwrap().message;
        assert!(
            message.contains("labels are not known yet"),
            "{object}: {message}"
        );
    }
    set_namespace_access(true);
    for (object, _) in &buckets {
        h.wait_for(object, "refused by its labels", PROMPTLY, |o| {
            o.ready_condition()
                .is_some_and(|c| c.reason == "NotPermitted" && !c.message.contains("not known yet"))
        })
        .await;
    }
    op.terminate();
    for (object, bucket) in &buckets {
        assert_eq!(moto.cors_writes(bucket), 0, "{object} wrote its bucket");
    }
    for store in ["absent", "not-in"] {
        h.cluster.kubectl(&[
            "delete",
            "clusterbucketstore",
            &format!("{store}-{}", h.namespace),
        ]);
    }
}

//! A real Prometheus (Debian's, as `make test` installs it) scrapes a real operator process,
//! with the chart's alerting rules: the alerts fire for what they are about, and every query
//! of the chart's Grafana dashboard answers with series.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bucketcors::cors::CorsRule;
use serde_json::Value;

use crate::operator::render_chart_with;
use crate::support::harness::{Harness, PROMPTLY, eventually};
use crate::support::moto::Moto;
use crate::support::operator::OperatorProcess;
use crate::support::process::{Tethered, free_port, http_get, repo_root};
use crate::support::unique_name;

/// The job the chart's rules select by default: the metrics Service's name, which is what a
/// ServiceMonitor makes the job label (release "bucketcors").
const JOB: &str = "bucketcors-metrics";

/// `name` on PATH. Missing, the test fails saying how to get it: a test that passed without
/// the tool would prove nothing.
fn tool(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(name))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| {
            panic!("{name} is not on PATH: scripts/tools.sh installs it (make test runs it first)")
        })
}

/// Percent-encodes a query parameter.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `GET path` as HTTP/1.0 (so that the answer is never chunked), parsed as JSON.
fn get_json(port: u16, path: &str) -> Value {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("Prometheus listens");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {response}"))
}

struct Prometheus {
    port: u16,
    _process: Tethered,
}

impl Prometheus {
    fn start(binary: &Path, dir: &Path, target_port: u16, rules: &Path) -> Prometheus {
        let port = free_port();
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
                 rule_files: [{}]\n\
                 scrape_configs:\n\
                 - job_name: {JOB}\n  static_configs: [{{targets: ['127.0.0.1:{target_port}']}}]\n",
                rules.display()
            ),
        )
        .unwrap();
        let process = Tethered::spawn(
            binary,
            &[
                &format!("--config.file={}", config.display()),
                &format!("--storage.tsdb.path={}", dir.join("data").display()),
                &format!("--web.listen-address=127.0.0.1:{port}"),
                "--log.level=warn",
            ],
            &[],
            &dir.join("prometheus.log"),
        );
        Prometheus {
            port,
            _process: process,
        }
    }

    /// The result vector of an instant query (panics on an error answer).
    fn query(&self, promql: &str) -> Vec<Value> {
        let answer = get_json(
            self.port,
            &format!("/api/v1/query?query={}", encode(promql)),
        );
        assert_eq!(answer["status"], "success", "{promql}: {answer}");
        answer["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The label sets of the firing alerts called `alert`.
    fn firing(&self, alert: &str) -> Vec<Value> {
        self.query(&format!(
            r#"ALERTS{{alertname="{alert}", alertstate="firing"}}"#
        ))
        .into_iter()
        .map(|sample| sample["metric"].clone())
        .collect()
    }
}

/// The queries of the chart's dashboard (panels and variables), as Grafana would send them for
/// every namespace and the test's job, except those of metrics the operator does not export.
fn dashboard_queries() -> Vec<(String, String)> {
    let path = repo_root().join("charts/bucketcors/files/dashboard.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            queries.push((
                format!("panel {:?}", panel["title"].as_str().unwrap()),
                target["expr"].as_str().unwrap().to_owned(),
            ));
        }
    }
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        if variable["type"] == "query" {
            let query = variable["query"]["query"].as_str().unwrap();
            // label_values(QUERY, label) asks for the series of QUERY.
            let inner = query
                .strip_prefix("label_values(")
                .and_then(|q| q.rsplit_once(','))
                .map_or(query, |(q, _)| q);
            queries.push((format!("variable {}", variable["name"]), inner.to_owned()));
        }
    }
    queries
        .into_iter()
        // The kubelet's cAdvisor exports the container's memory, not the operator.
        .filter(|(_, q)| !q.contains("container_memory_working_set_bytes"))
        .map(|(where_, q)| {
            let q = q
                .replace("$namespace", ".*")
                .replace("$job", JOB)
                .replace("$__rate_interval", "1m");
            (where_, q)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_operator_fires_the_alerts_and_answers_every_panel() {
    let prometheus_bin = tool("prometheus");
    let h = Harness::without_controller().await;
    let moto = Moto::shared();
    let bucket = moto.new_bucket("prom").await;
    let dir = tempfile::tempdir().unwrap();
    let mut op = OperatorProcess::start(
        &h.cluster.kubeconfig,
        &["--namespace", &h.namespace, "--resync-interval", "2s"],
        &[],
        std::env::temp_dir().join(format!("bucketcors-{}.log", unique_name("prom"))),
    );
    h.create_credentials_secret("creds", "AKIAPROMETHEUS", "prometheus-secret")
        .await;
    let rules = |origin: &str| vec![CorsRule::new([origin], ["GET"])];
    h.create(
        "first",
        h.spec_with_secret(&bucket, rules("https://a.example.com"), "creds"),
    )
    .await;
    h.wait_reason("first", "Applied").await;
    // The same bucket again: Conflict, which only an edit changes (Stalled).
    h.create(
        "second",
        h.spec_with_secret(&bucket, rules("https://b.example.com"), "creds"),
    )
    .await;
    h.wait_reason("second", "Conflict").await;

    // The chart's rules, with every hold-down at 0s so that they fire at the first evaluation.
    let docs = render_chart_with(
        "bucketcors-system",
        &dir.path().join("render.yaml"),
        "metrics:\n  prometheusRule:\n    enabled: true\n    downFor: 0s\n    notReadyFor: 0s\n    stalledFor: 0s\n",
    );
    let rule = docs
        .iter()
        .find(|d| d["kind"] == "PrometheusRule")
        .expect("a PrometheusRule");
    let rules_file = dir.path().join("rules.yaml");
    // JSON is YAML: Prometheus reads the groups as they are.
    std::fs::write(
        &rules_file,
        serde_json::json!({"groups": rule["spec"]["groups"]}).to_string(),
    )
    .unwrap();
    let prom = Prometheus::start(&prometheus_bin, dir.path(), op.metrics_port, &rules_file);
    eventually("Prometheus to be ready", PROMPTLY, || async {
        http_get(prom.port, "/-/ready").is_some_and(|(status, _)| status == 200)
    })
    .await;
    eventually("the operator to be scraped", PROMPTLY, || async {
        prom.query(&format!(r#"up{{job="{JOB}"}} == 1"#)).len() == 1
    })
    .await;
    eventually(
        "BucketCorsStalled (Conflict) and BucketCorsNotReady to fire",
        PROMPTLY,
        || async {
            let stalled = prom.firing("BucketCorsStalled");
            stalled.len() == 1
                && stalled[0]["reason"] == "Conflict"
                && stalled[0]["job"] == JOB
                && prom.firing("BucketCorsNotReady").len() == 1
        },
    )
    .await;
    // Every rule evaluates without error.
    let rules = get_json(prom.port, "/api/v1/rules");
    for group in rules["data"]["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            assert_eq!(rule["health"], "ok", "{rule}");
        }
    }
    // Prometheus asked for OpenMetrics and read every family of the operator's.
    assert!(
        !prom
            .query(r#"bucketcors_reconciliations_total{reason="Applied"}"#)
            .is_empty()
    );

    // Each dashboard query answers with at least one series (rates need two scrapes).
    let queries = dashboard_queries();
    assert!(queries.len() >= 12, "{queries:?}");
    let deadline = Instant::now() + PROMPTLY;
    loop {
        let silent: Vec<_> = queries
            .iter()
            .filter(|(_, q)| prom.query(q).is_empty())
            .collect();
        if silent.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "dashboard queries without a series after {PROMPTLY:?}: {silent:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(prom.firing("BucketCorsOperatorDown").is_empty());
    assert!(prom.firing("BucketCorsOperatorAbsent").is_empty());

    // The operator stops: it is down.
    op.terminate();
    eventually("BucketCorsOperatorDown to fire", PROMPTLY, || async {
        prom.firing("BucketCorsOperatorDown").len() == 1
    })
    .await;
}

//! A real kube-apiserver with etcd on loopback (scripts/control-plane.sh), started once per
//! test run, with the CRD installed. Core resources (Namespaces, Secrets, Events, Leases, RBAC)
//! live on the core API server (v1.20); the group `bucketcors.dev` is served by a modern CRD
//! server (apiextensions-apiserver, 1.30 or newer) behind the core's aggregation layer, so
//! BucketCors gets the CEL, transition rules, server-side apply and finalizers of a current
//! Kubernetes while every client talks to the one core endpoint.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::Value;

use super::process::{Tethered, repo_root, wait_until};

pub struct Cluster {
    pub kubeconfig: PathBuf,
    /// The modern CRD server, reached directly (tests of the CRD itself use it).
    pub crd_server_kubeconfig: PathBuf,
    /// Its version, e.g. `v1.36.4`.
    pub crd_server_version: String,
    /// Its minor version.
    pub crd_server_minor: u32,
    /// The folder control-plane.sh runs in: its kubeconfigs, env and the servers' pid files.
    pub dir: PathBuf,
    /// The kube-apiserver and etcd binaries it runs.
    pub apiserver_bin: PathBuf,
    pub etcd_bin: PathBuf,
    _server: Tethered,
}

/// The oldest CRD server the suite accepts: one that evaluates CEL, transition rules and
/// estimates their cost the way current clusters do.
pub const MIN_CRD_SERVER_MINOR: u32 = 30;

impl Cluster {
    /// The control plane shared by every test in this run.
    pub fn shared() -> &'static Cluster {
        static CLUSTER: OnceLock<Cluster> = OnceLock::new();
        // Started on a thread of its own: the caller may be inside a test's async runtime.
        CLUSTER.get_or_init(|| {
            std::thread::spawn(Cluster::start)
                .join()
                .expect("the control plane starts")
        })
    }

    fn start() -> Cluster {
        let dir = std::env::temp_dir().join(format!("bucketcors-cp-{}", std::process::id()));
        Cluster::start_in(&dir)
    }

    /// A control plane of its own, run in `dir`, with the CRDs installed. Blocks (it starts
    /// a runtime of its own to install them): call it outside an async runtime, or from a
    /// blocking task.
    pub fn start_in(dir: &Path) -> Cluster {
        let script = repo_root().join("scripts/control-plane.sh");
        let built = Command::new(&script)
            .arg("build")
            .stderr(std::process::Stdio::inherit())
            .output()
            .expect("control-plane.sh runs");
        assert!(
            built.status.success(),
            "scripts/control-plane.sh build failed"
        );
        let paths = String::from_utf8_lossy(&built.stdout).into_owned();
        let path_of = |key: &str| {
            paths
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{key}=")))
                .map(PathBuf::from)
                .unwrap_or_else(|| panic!("control-plane.sh build printed no {key}"))
        };
        // Built here, without the start-up deadline below: a cold build takes minutes.
        let built = Command::new(repo_root().join("scripts/crd-server.sh"))
            .arg("build")
            .stdout(std::process::Stdio::null())
            .status()
            .expect("crd-server.sh runs");
        assert!(built.success(), "scripts/crd-server.sh build failed");

        std::fs::create_dir_all(dir).unwrap();
        let server = Tethered::spawn(
            &script,
            &["run", dir.to_str().unwrap()],
            &[],
            &dir.join("control-plane.log"),
        );
        let ready = dir.join("ready");
        wait_until(
            "the control plane to be ready",
            Duration::from_secs(180),
            || ready.exists(),
        );
        let kubeconfig = dir.join("kubeconfig");
        let env = std::fs::read_to_string(dir.join("env")).expect("control-plane.sh writes env");
        let env_value = |key: &str| {
            env.lines()
                .find_map(|l| l.strip_prefix(&format!("{key}=")))
                .unwrap_or_else(|| panic!("control-plane.sh's env has no {key}"))
                .to_owned()
        };
        let crd_server_kubeconfig = PathBuf::from(env_value("CRD_SERVER_KUBECONFIG"));
        let (crd_server_minor, crd_server_version) = server_version(&crd_server_kubeconfig);
        assert!(
            crd_server_minor >= MIN_CRD_SERVER_MINOR,
            "the CRD server is {crd_server_version}; the suite needs 1.{MIN_CRD_SERVER_MINOR} or newer"
        );
        let cluster = Cluster {
            kubeconfig,
            crd_server_kubeconfig,
            crd_server_version,
            crd_server_minor,
            dir: dir.to_path_buf(),
            apiserver_bin: path_of("KUBE_APISERVER"),
            etcd_bin: path_of("ETCD"),
            _server: server,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(cluster.install_crd());
        cluster
    }

    /// The process id of one of its servers (`kube-apiserver`, `etcd`, `crd-server`,
    /// `crd-etcd`), from the pid file control-plane.sh keeps.
    pub fn pid(&self, name: &str) -> Option<u32> {
        std::fs::read_to_string(self.dir.join(format!("{name}.pid")))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Whether the server that serves BucketCors evaluates CEL validation rules (Kubernetes
    /// 1.25 and later).
    pub fn has_cel(&self) -> bool {
        self.crd_server_minor >= 25
    }

    /// A client for the current test's runtime (a client is bound to the runtime it was made on).
    pub async fn client(&self) -> kube::Client {
        client_at(&self.kubeconfig).await
    }

    /// A client of the CRD server itself, bypassing the core API server.
    pub async fn crd_server_client(&self) -> kube::Client {
        client_at(&self.crd_server_kubeconfig).await
    }

    /// Runs kubectl against this cluster and returns what it printed, or panics with its error.
    pub fn kubectl(&self, args: &[&str]) -> String {
        kubectl_at(&self.kubeconfig, args)
    }

    /// Runs kubectl with `stdin` as input; returns (success, stdout + stderr).
    pub fn kubectl_with_input(&self, args: &[&str], stdin: &str) -> (bool, String) {
        use std::io::Write;
        let mut child = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("kubectl runs");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    /// Creates crds/bucketcors.yaml, as it is, on the CRD server, and waits until the core
    /// API server serves BucketCors through aggregation.
    async fn install_crd(&self) {
        let api: Api<CustomResourceDefinition> = Api::all(self.crd_server_client().await);
        for file in ["crds/bucketcors.yaml", "crds/clusterbucketstore.yaml"] {
            let yaml = std::fs::read_to_string(repo_root().join(file)).unwrap();
            let crd: CustomResourceDefinition =
                serde_saphyr::from_str(&yaml).expect("the CRD parses");
            if let Err(e) = api.create(&PostParams::default(), &crd).await {
                panic!(
                    "the CRD server ({}) refuses {file}: {e}",
                    self.crd_server_version
                );
            }
            let name = crd.metadata.name.clone().unwrap();
            let established = kube::runtime::wait::await_condition(
                api.clone(),
                &name,
                kube::runtime::wait::conditions::is_crd_established(),
            );
            tokio::time::timeout(Duration::from_secs(30), established)
                .await
                .expect("the CRD is established in time")
                .unwrap();
        }
        // The core re-checks an APIService with a back-off of up to 30 s; any change to it
        // makes the check run at once.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
            .to_string();
        self.kubectl(&[
            "annotate",
            "apiservice",
            "v1alpha1.bucketcors.dev",
            &format!("bucketcors.dev/recheck={now}"),
            "--overwrite",
        ]);
        let core = self.client().await;
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            match core
                .list_api_group_resources("bucketcors.dev/v1alpha1")
                .await
            {
                Ok(list)
                    if ["bucketcors", "clusterbucketstores"]
                        .iter()
                        .all(|n| list.resources.iter().any(|r| r.name == *n)) =>
                {
                    break;
                }
                outcome => assert!(
                    std::time::Instant::now() < deadline,
                    "the core API server does not serve bucketcors.dev/v1alpha1 through \
                     aggregation after 60 s: {outcome:?}"
                ),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

async fn client_at(kubeconfig: &Path) -> kube::Client {
    let kubeconfig = Kubeconfig::read_from(kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
}

/// (minor, gitVersion) of the server `kubeconfig` points at.
fn server_version(kubeconfig: &Path) -> (u32, String) {
    let version = kubectl_at(kubeconfig, &["version", "-o", "json"]);
    let version: Value = serde_json::from_str(&version).expect("kubectl version prints JSON");
    let minor = version["serverVersion"]["minor"]
        .as_str()
        .and_then(|m| m.trim_end_matches('+').parse().ok())
        .expect("server minor version");
    let git = version["serverVersion"]["gitVersion"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    (minor, git)
}

fn kubectl_at(kubeconfig: &Path, args: &[&str]) -> String {
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .expect("kubectl runs");
    assert!(
        out.status.success(),
        "kubectl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

//! A real kube-apiserver with etcd on loopback (scripts/control-plane.sh), started once per
//! test run, with the CRD installed.

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
    /// Minor version of the API server (20 for the one built from Debian's source).
    pub minor: u32,
    _server: Tethered,
}

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
        let script = repo_root().join("scripts/control-plane.sh");
        let built = Command::new(&script)
            .arg("build")
            .status()
            .expect("control-plane.sh runs");
        assert!(built.success(), "scripts/control-plane.sh build failed");

        let dir = std::env::temp_dir().join(format!("bucketcors-cp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
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
        let version = kubectl_at(&kubeconfig, &["version", "-o", "json"]);
        let version: Value = serde_json::from_str(&version).expect("kubectl version prints JSON");
        let minor = version["serverVersion"]["minor"]
            .as_str()
            .and_then(|m| m.trim_end_matches('+').parse().ok())
            .expect("server minor version");
        let cluster = Cluster {
            kubeconfig,
            minor,
            _server: server,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(cluster.install_crd());
        cluster
    }

    /// Whether the API server evaluates CEL validation rules (Kubernetes 1.25 and later).
    pub fn has_cel(&self) -> bool {
        self.minor >= 25
    }

    /// A client for the current test's runtime (a client is bound to the runtime it was made on).
    pub async fn client(&self) -> kube::Client {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig).unwrap();
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .unwrap();
        kube::Client::try_from(config).unwrap()
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

    async fn install_crd(&self) {
        let yaml = std::fs::read_to_string(repo_root().join("crds/bucketcors.yaml")).unwrap();
        let mut crd: Value = serde_saphyr::from_str(&yaml).expect("the CRD parses");
        if !self.has_cel() {
            // 1.20 knows no CEL: it refuses the field on apply and drops it on create.
            strip_key(&mut crd, "x-kubernetes-validations");
        }
        let crd: CustomResourceDefinition = serde_json::from_value(crd).unwrap();
        let client = self.client().await;
        let api: Api<CustomResourceDefinition> = Api::all(client);
        api.create(&PostParams::default(), &crd)
            .await
            .expect("the API server accepts the CRD");
        let name = crd.metadata.name.clone().unwrap();
        let established = kube::runtime::wait::await_condition(
            api,
            &name,
            kube::runtime::wait::conditions::is_crd_established(),
        );
        tokio::time::timeout(Duration::from_secs(30), established)
            .await
            .expect("the CRD is established in time")
            .unwrap();
    }
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

pub fn strip_key(value: &mut Value, key: &str) {
    match value {
        Value::Object(map) => {
            map.remove(key);
            map.values_mut().for_each(|v| strip_key(v, key));
        }
        Value::Array(items) => items.iter_mut().for_each(|v| strip_key(v, key)),
        _ => {}
    }
}

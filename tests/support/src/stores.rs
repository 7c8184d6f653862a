//! The S3 implementations the compatibility suite runs against, each a real server on
//! loopback started once per run: moto, Ceph RGW (scripts/rgw.sh), Garage (scripts/garage.sh,
//! when its binary is cached) and s3s-fs (scripts/s3s-fs.sh).

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};

use super::moto::Moto;
use super::process::{Tethered, python_env, repo_root, wait_until};

pub struct S3Server {
    pub name: &'static str,
    pub version: String,
    pub endpoint: String,
    pub access_key: String,
    pub secret_key: String,
    // Garage's command line, for buckets with a global alias.
    garage: Option<GarageCli>,
    _server: Option<Tethered>,
}

struct GarageCli {
    bin: String,
    config: String,
}

/// How to build the Garage binary when it is not cached, for skip messages.
const GARAGE_BUILD_HINT: &str =
    "make tools (scripts/garage.sh build, about 7 minutes on 2 cores) caches it";

/// Garage for test `test`. A machine without it fails the test, naming how to get it: a
/// test that passed without its server would prove nothing.
pub fn garage(test: &str) -> &'static S3Server {
    S3Server::garage().unwrap_or_else(|| {
        panic!("{test} needs Garage: no cached Garage binary; {GARAGE_BUILD_HINT}")
    })
}

impl S3Server {
    pub fn moto() -> &'static S3Server {
        static MOTO: OnceLock<S3Server> = OnceLock::new();
        MOTO.get_or_init(|| {
            let version = Command::new(python_env().join("bin/python"))
                .args(["-c", "import moto; print(moto.__version__)"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
                .unwrap_or_default();
            S3Server {
                name: "moto",
                version,
                endpoint: Moto::shared().endpoint(),
                access_key: "testing".into(),
                secret_key: "testing".into(),
                garage: None,
                _server: None,
            }
        })
    }

    pub fn ceph_rgw() -> &'static S3Server {
        static RGW: OnceLock<S3Server> = OnceLock::new();
        RGW.get_or_init(|| {
            let (mut rgw, _) = S3Server::from_script("Ceph RGW", "rgw.sh", "install", "RGW")
                .expect("scripts/rgw.sh install failed");
            // "ceph version 16.2.15 (…) pacific (stable)"
            rgw.version = rgw
                .version
                .split_whitespace()
                .nth(2)
                .unwrap_or_default()
                .to_owned();
            rgw
        })
    }

    pub fn s3s_fs() -> &'static S3Server {
        static S3S: OnceLock<S3Server> = OnceLock::new();
        S3S.get_or_init(|| {
            S3Server::from_script("s3s-fs", "s3s-fs.sh", "build", "S3S")
                .expect("scripts/s3s-fs.sh build failed")
                .0
        })
    }

    /// Garage, when its binary is cached (`make tools` builds it); None otherwise, for a
    /// `cargo test` run on a machine where it was never built.
    pub fn garage() -> Option<&'static S3Server> {
        static GARAGE: OnceLock<Option<S3Server>> = OnceLock::new();
        GARAGE
            .get_or_init(|| {
                let (mut garage, env) =
                    S3Server::from_script("Garage", "garage.sh", "cached", "GARAGE")?;
                garage.garage = Some(GarageCli {
                    bin: env["GARAGE_BIN"].clone(),
                    config: env["GARAGE_CONFIG"].clone(),
                });
                Some(garage)
            })
            .as_ref()
    }

    /// The server `scripts/<script> run` starts after `<script> <prepare>` (which installs,
    /// builds or finds it; None when that fails), with its DIR/env (keys `<PREFIX>_ENDPOINT`,
    /// `_ACCESS_KEY`, `_SECRET_KEY` and `_VERSION`).
    fn from_script(
        name: &'static str,
        script: &str,
        prepare: &str,
        prefix: &str,
    ) -> Option<(S3Server, HashMap<String, String>)> {
        let script = repo_root().join("scripts").join(script);
        let prepared = Command::new(&script)
            .arg(prepare)
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap_or_else(|e| panic!("{} runs: {e}", script.display()));
        if !prepared.success() {
            return None;
        }
        let (server, env) = run_in_foreground(&script, &prefix.to_lowercase());
        let key = |suffix: &str| env[&format!("{prefix}_{suffix}")].clone();
        let store = S3Server {
            name,
            version: key("VERSION"),
            endpoint: key("ENDPOINT"),
            access_key: key("ACCESS_KEY"),
            secret_key: key("SECRET_KEY"),
            garage: None,
            _server: Some(server),
        };
        Some((store, env))
    }

    /// Makes an empty bucket the tests' keys can use. On Garage it gets a global alias
    /// (Garage applies CORS to preflight requests only for those); elsewhere it is S3's
    /// CreateBucket.
    pub async fn create_bucket(&self, name: &str) {
        if self.garage.is_none() {
            self.client()
                .create_bucket()
                .bucket(name)
                .send()
                .await
                .unwrap_or_else(|e| panic!("create bucket {name} on {}: {e:?}", self.name));
            return;
        }
        self.garage_cli(&["bucket", "create", name]).await;
        self.garage_cli(&[
            "bucket",
            "allow",
            "--read",
            "--write",
            "--owner",
            "--key",
            "bucketcors",
            name,
        ])
        .await;
    }

    /// Runs Garage's command line against this server (Garage only); its output.
    pub async fn garage_cli(&self, args: &[&str]) -> String {
        let cli = self.garage.as_ref().expect("a Garage server");
        let output = tokio::process::Command::new(&cli.bin)
            .arg("-c")
            .arg(&cli.config)
            .args(args)
            .output()
            .await
            .expect("garage runs");
        assert!(
            output.status.success(),
            "garage {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// A client of the tests' own, with this server's keys.
    pub fn client(&self) -> aws_sdk_s3::Client {
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(&self.endpoint)
            .force_path_style(true)
            .credentials_provider(Credentials::new(
                &self.access_key,
                &self.secret_key,
                None,
                None,
                "tests",
            ))
            .build();
        aws_sdk_s3::Client::from_conf(config)
    }
}

/// Runs `script run DIR` under the tether, waits for DIR/ready and reads DIR/env.
fn run_in_foreground(script: &Path, name: &str) -> (Tethered, HashMap<String, String>) {
    let dir = std::env::temp_dir().join(format!("bucketcors-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let server = Tethered::spawn(
        script,
        &["run", dir.to_str().unwrap()],
        &[],
        &dir.join("run.log"),
    );
    let ready = dir.join("ready");
    wait_until(
        &format!("{name} to be ready"),
        Duration::from_secs(180),
        || ready.exists(),
    );
    let env = std::fs::read_to_string(dir.join("env"))
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    (server, env)
}

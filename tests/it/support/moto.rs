//! The moto S3 server, started once per test run on a loopback port.

use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};

use super::process::{Tethered, free_port, http_answers, python_env, wait_until};

pub struct Moto {
    pub port: u16,
    server: Mutex<Option<Tethered>>,
    log: PathBuf,
}

impl Moto {
    /// The moto server shared by every test in this run.
    pub fn shared() -> &'static Moto {
        static MOTO: OnceLock<Moto> = OnceLock::new();
        MOTO.get_or_init(|| {
            let moto = Moto {
                port: free_port(),
                server: Mutex::new(None),
                log: std::env::temp_dir()
                    .join(format!("bucketcors-moto-{}.log", std::process::id())),
            };
            moto.start();
            moto
        })
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts the server on its port (again) and waits until it answers.
    pub fn start(&self) {
        let server = python_env().join("bin/moto_server");
        let port = self.port.to_string();
        let tethered = Tethered::spawn(
            &server,
            &["-H", "127.0.0.1", "-p", &port],
            &[("MOTO_DISABLE_GLOBAL_CORS", "true")],
            &self.log,
        );
        *self.server.lock().unwrap() = Some(tethered);
        wait_until("moto to answer", Duration::from_secs(60), || {
            http_answers(self.port, "/moto-api/")
        });
    }

    /// An S3 client of the tests' own, independent of the operator's code, to set up buckets
    /// and read back what the server holds.
    pub fn client(&self) -> aws_sdk_s3::Client {
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(self.endpoint())
            .force_path_style(true)
            .credentials_provider(Credentials::new("testing", "testing", None, None, "tests"))
            .build();
        aws_sdk_s3::Client::from_conf(config)
    }
}

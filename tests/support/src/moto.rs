//! The moto S3 server on a loopback port, recording every request it receives so that tests
//! count S3 calls at the server, not in the operator's own code.

use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};

use super::process::{Tethered, free_port, http_answers, python_env, wait_until};

pub struct Moto {
    pub port: u16,
    server: Mutex<Option<Tethered>>,
    dir: PathBuf,
}

/// One request as moto received it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub url: String,
    pub headers: serde_json::Map<String, serde_json::Value>,
    body: Option<String>,
    body_encoded: bool,
}

impl Request {
    /// Whether this is a call on `bucket`'s CORS sub-resource.
    pub fn is_cors_of(&self, bucket: &str) -> bool {
        let path = self
            .url
            .split("://")
            .nth(1)
            .and_then(|r| r.split_once('/'))
            .map_or("", |(_, p)| p);
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        path.trim_end_matches('/') == bucket
            && query.split('&').any(|q| q == "cors" || q == "cors=")
    }

    /// The request body as sent.
    pub fn body(&self) -> Option<Vec<u8>> {
        use base64::Engine as _;
        let body = self.body.as_deref()?;
        if self.body_encoded {
            base64::engine::general_purpose::STANDARD.decode(body).ok()
        } else {
            Some(body.as_bytes().to_vec())
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v.as_str())
    }
}

impl Moto {
    /// The moto server shared by every test in this run.
    pub fn shared() -> &'static Moto {
        static MOTO: OnceLock<Moto> = OnceLock::new();
        MOTO.get_or_init(Moto::dedicated)
    }

    /// A moto server of its own, for tests that stop and start it.
    pub fn dedicated() -> Moto {
        let port = free_port();
        let dir =
            std::env::temp_dir().join(format!("bucketcors-moto-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let moto = Moto {
            port,
            server: Mutex::new(None),
            dir,
        };
        moto.start();
        moto
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts the server on its port (again) and waits until it answers.
    pub fn start(&self) {
        let server = python_env().join("bin/moto_server");
        let port = self.port.to_string();
        let recording = self.dir.join("requests.jsonl");
        let tethered = Tethered::spawn(
            &server,
            &["-H", "127.0.0.1", "-p", &port],
            &[
                ("MOTO_DISABLE_GLOBAL_CORS", "true"),
                ("MOTO_ENABLE_RECORDING", "true"),
                ("MOTO_RECORDER_FILEPATH", recording.to_str().unwrap()),
            ],
            &self.dir.join("moto.log"),
        );
        *self.server.lock().unwrap() = Some(tethered);
        wait_until("moto to answer", Duration::from_secs(60), || {
            http_answers(self.port, "/moto-api/")
        });
    }

    /// Stops the server; its port refuses connections until `start`.
    pub fn stop(&self) {
        if let Some(mut server) = self.server.lock().unwrap().take() {
            server.stop();
        }
    }

    /// The file moto appends every request it receives to, one JSON document a line.
    pub fn recording(&self) -> PathBuf {
        self.dir.join("requests.jsonl")
    }

    /// Every request the server has received so far.
    pub fn requests(&self) -> Vec<Request> {
        let text = std::fs::read_to_string(self.recording()).unwrap_or_default();
        text.lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .map(|entry| Request {
                method: entry["method"].as_str().unwrap_or_default().to_owned(),
                url: entry["url"].as_str().unwrap_or_default().to_owned(),
                headers: entry["headers"].as_object().cloned().unwrap_or_default(),
                body: entry["body"].as_str().map(str::to_owned),
                body_encoded: entry["body_encoded"].as_bool().unwrap_or(false),
            })
            .collect()
    }

    /// The calls on `bucket`'s CORS configuration, in order.
    pub fn cors_calls(&self, bucket: &str) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| r.is_cors_of(bucket))
            .collect()
    }

    /// How many PutBucketCors and DeleteBucketCors `bucket` has received.
    pub fn cors_writes(&self, bucket: &str) -> usize {
        self.cors_calls(bucket)
            .iter()
            .filter(|r| r.method != "GET")
            .count()
    }

    /// Creates a bucket with a name no other test uses, and returns the name.
    pub async fn new_bucket(&self, prefix: &str) -> String {
        let bucket = super::unique_name(prefix);
        self.client()
            .create_bucket()
            .bucket(&bucket)
            .send()
            .await
            .unwrap();
        bucket
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

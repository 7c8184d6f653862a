//! What a real browser does with the rules the operator writes. A page served from one
//! loopback origin runs fetch() in headless Chromium (tests/browser/fetch.mjs, set up by
//! scripts/browser.sh) against presigned URLs of a bucket on Ceph RGW, another origin; the
//! BucketCors changes between runs and the assertions are on what the page observed. A fresh
//! browser per run, so no preflight or HTTP cache carries over from one configuration to the
//! next.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use aws_sdk_s3::presigning::{PresignedRequest, PresigningConfig};
use aws_sdk_s3::primitives::ByteStream;
use bucketcors::api::{BucketCors, BucketCorsSpec};
use bucketcors::cors::CorsRule;
use serde::Deserialize;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::support::harness::{Harness, PROMPTLY};
use crate::support::process::repo_root;
use crate::support::stores::S3Server;
use crate::support::unique_name;

/// How long the browser may take for one run of cases, launch included.
const BROWSER_DEADLINE: Duration = Duration::from_secs(120);
const CUSTOM_HEADER: &str = "x-bucketcors-test";

/// The node_modules directory with playwright-core, made once per run by
/// `scripts/browser.sh install` (which also installs Chromium when it is missing).
fn node_modules() -> &'static PathBuf {
    static MODULES: OnceLock<PathBuf> = OnceLock::new();
    MODULES.get_or_init(|| {
        let script = repo_root().join("scripts/browser.sh");
        let out = std::process::Command::new(&script)
            .arg("install")
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        let log = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<_> = log.lines().rev().take(20).collect();
        assert!(
            out.status.success(),
            "scripts/browser.sh install failed ({}): the browser tests need Chromium \
             (/usr/bin/chromium, from apt-get) and Node with npm. Its last messages:\n{}",
            out.status,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
        eprint!("{log}");
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    })
}

/// What the page saw for one fetch().
#[derive(Debug, Deserialize)]
struct Seen {
    name: String,
    page: String,
    ok: bool,
    status: Option<u16>,
    etag: Option<String>,
    body: Option<String>,
    error: Option<String>,
    console: Vec<String>,
}

impl Seen {
    /// A request the browser refused to hand to the page: fetch() rejected with a TypeError.
    fn blocked(&self) -> bool {
        !self.ok
            && self.status.is_none()
            && self
                .error
                .as_deref()
                .is_some_and(|e| e.starts_with("TypeError"))
    }
}

/// One fetch() for the page to make.
struct Case {
    name: &'static str,
    method: &'static str,
    url: String,
    headers: Vec<(&'static str, &'static str)>,
    body: Option<&'static str>,
    /// Made from this page instead of the run's default one.
    page: Option<String>,
}

impl Case {
    fn get(name: &'static str, url: &str) -> Case {
        Case {
            name,
            method: "GET",
            url: url.to_owned(),
            headers: Vec::new(),
            body: None,
            page: None,
        }
    }

    fn put(name: &'static str, url: &str, body: &'static str) -> Case {
        Case {
            method: "PUT",
            body: Some(body),
            ..Case::get(name, url)
        }
    }

    fn header(mut self, name: &'static str, value: &'static str) -> Case {
        self.headers.push((name, value));
        self
    }

    fn from(mut self, page: &Page) -> Case {
        self.page = Some(page.url());
        self
    }

    fn to_json(&self) -> serde_json::Value {
        let headers: serde_json::Map<_, _> = self
            .headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), json!(v)))
            .collect();
        json!({
            "name": self.name,
            "method": self.method,
            "url": self.url,
            "headers": headers,
            "body": self.body,
            "page": self.page,
        })
    }
}

/// Runs `cases` in order in a fresh headless Chromium, from `page` unless a case names
/// another, and returns what the page saw for each.
async fn in_browser(page: &Page, cases: &[Case]) -> Vec<Seen> {
    let modules = node_modules();
    let list = serde_json::Value::Array(cases.iter().map(Case::to_json).collect());
    let run = tokio::process::Command::new("node")
        .arg(repo_root().join("tests/browser/fetch.mjs"))
        .arg(page.url())
        .arg(list.to_string())
        .env("NODE_PATH", modules)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(BROWSER_DEADLINE, run)
        .await
        .unwrap_or_else(|_| panic!("the browser did not finish within {BROWSER_DEADLINE:?}"))
        .expect("node runs (Node 20 or later is required)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "tests/browser/fetch.mjs failed ({}): {stderr}",
        out.status
    );
    let seen: Vec<Seen> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    assert_eq!(seen.len(), cases.len(), "one result per case: {seen:#?}");
    for s in &seen {
        eprintln!(
            "browser: {} (from {}): ok={} status={:?} etag={:?} error={:?}",
            s.name, s.page, s.ok, s.status, s.etag, s.error
        );
        for line in &s.console {
            eprintln!("browser:     console {line}");
        }
    }
    seen
}

/// A tiny HTTP server on a loopback port of its own (so an origin of its own) that answers
/// any request with a small HTML page. Stops when dropped.
struct Page {
    port: u16,
    server: JoinHandle<()>,
}

const HTML: &str = "<!doctype html><html><head><meta charset=\"utf-8\">\
    <link rel=\"icon\" href=\"data:,\"><title>bucketcors</title></head>\
    <body>bucketcors browser test page</body></html>";

impl Page {
    async fn serve() -> Page {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(answer(stream));
            }
        });
        Page { port, server }
    }

    /// The origin the browser sends for requests made from this page.
    fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn url(&self) -> String {
        format!("{}/", self.origin())
    }
}

impl Drop for Page {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn answer(mut stream: TcpStream) {
    let mut request = Vec::new();
    let mut buf = [0u8; 4096];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 64 * 1024 {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n{HTML}",
        HTML.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// A namespace with the controller running against Ceph RGW, a Secret with RGW's keys, and
/// a fresh bucket holding `hello.txt`.
struct World {
    store: &'static S3Server,
    h: Harness,
    s3: aws_sdk_s3::Client,
    bucket: String,
    /// The ETag RGW gave `hello.txt`.
    etag: String,
}

const KEY: &str = "hello.txt";

impl World {
    async fn start() -> World {
        // Fails the test with the script's own message when Chromium or Node cannot be had.
        node_modules();
        let store = S3Server::ceph_rgw();
        let h = Harness::start_with(&store.endpoint).await;
        h.create_credentials_secret("store", &store.access_key, &store.secret_key)
            .await;
        let s3 = store.client();
        let bucket = unique_name("browser");
        s3.create_bucket().bucket(&bucket).send().await.unwrap();
        let put = s3
            .put_object()
            .bucket(&bucket)
            .key(KEY)
            .body(ByteStream::from_static(b"hello"))
            .content_type("text/plain")
            .send()
            .await
            .unwrap();
        let etag = put.e_tag().expect("RGW returns an ETag").to_owned();
        World {
            store,
            h,
            s3,
            bucket,
            etag,
        }
    }

    fn spec(&self, rules: Vec<CorsRule>) -> BucketCorsSpec {
        self.h.spec_with_secret(&self.bucket, rules, "store")
    }

    /// Creates or updates BucketCors `name` with `rules` and waits until it is Ready for that
    /// generation, i.e. the rules are on the bucket.
    async fn apply(&self, name: &str, rules: Vec<CorsRule>) -> BucketCors {
        let spec = self.spec(rules);
        if self.h.api.get_opt(name).await.unwrap().is_some() {
            self.h.update(name, &spec).await;
        } else {
            self.h.create(name, spec).await;
        }
        self.h
            .wait_for(
                name,
                "Ready (Applied or InSync) for its current generation",
                PROMPTLY,
                |o| {
                    o.status.as_ref().and_then(|s| s.observed_generation) == o.metadata.generation
                        && o.ready_condition().is_some_and(|c| {
                            c.status == "True" && (c.reason == "Applied" || c.reason == "InSync")
                        })
                },
            )
            .await
    }

    async fn presigned_get(&self) -> String {
        let request = self
            .s3
            .get_object()
            .bucket(&self.bucket)
            .key(KEY)
            .presigned(expiry())
            .await
            .unwrap();
        url_only(request)
    }

    async fn presigned_put(&self) -> String {
        let request = self
            .s3
            .put_object()
            .bucket(&self.bucket)
            .key(KEY)
            .presigned(expiry())
            .await
            .unwrap();
        url_only(request)
    }

    /// What `hello.txt` holds now, read by the tests' own client.
    async fn content(&self) -> String {
        let out = self
            .s3
            .get_object()
            .bucket(&self.bucket)
            .key(KEY)
            .send()
            .await
            .unwrap();
        String::from_utf8(out.body.collect().await.unwrap().to_vec()).unwrap()
    }
}

fn expiry() -> PresigningConfig {
    PresigningConfig::expires_in(Duration::from_secs(15 * 60)).unwrap()
}

/// The URL of a presigned request that needs no headers of its own, so that the page can
/// send it as it is (any extra header would need the bucket's allowedHeaders).
fn url_only(request: PresignedRequest) -> String {
    let headers: Vec<_> = request.headers().collect();
    assert!(
        headers.is_empty(),
        "the presigned {} needs headers: {headers:?}",
        request.method()
    );
    request.uri().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_reads_an_object_only_while_the_rules_allow_its_origin() {
    let w = World::start().await;
    eprintln!("browser: {} on {}", w.store.name, w.store.endpoint);
    let page = Page::serve().await;
    let other = Page::serve().await;
    let url = w.presigned_get().await;

    // No configuration at all: the browser refuses the page the response.
    let seen = in_browser(&page, &[Case::get("GET, no CORS configuration", &url)]).await;
    assert!(seen[0].blocked(), "{:#?}", seen[0]);

    // The page's origin, GET, ETag exposed: the page reads the object and its ETag.
    w.apply(
        "reader",
        vec![CorsRule::new([page.origin()], ["GET"]).expose_headers(["ETag"])],
    )
    .await;
    let seen = in_browser(
        &page,
        &[Case::get("GET, origin allowed, ETag exposed", &url)],
    )
    .await;
    let s = &seen[0];
    assert!(s.ok && s.status == Some(200), "{s:#?}");
    assert_eq!(s.body.as_deref(), Some("hello"), "{s:#?}");
    assert_eq!(s.etag.as_deref(), Some(w.etag.as_str()), "{s:#?}");

    // Same rule without exposeHeaders: the body still, but the browser hides the ETag.
    w.apply("reader", vec![CorsRule::new([page.origin()], ["GET"])])
        .await;
    let seen = in_browser(&page, &[Case::get("GET, ETag not exposed", &url)]).await;
    let s = &seen[0];
    assert!(s.ok && s.status == Some(200), "{s:#?}");
    assert_eq!(s.body.as_deref(), Some("hello"), "{s:#?}");
    assert_eq!(s.etag, None, "{s:#?}");

    // Only another origin: the page is blocked, while that other origin, in the same browser,
    // reads the object (so the URL and the store are fine, and the origin is what changed).
    w.apply(
        "reader",
        vec![CorsRule::new([other.origin()], ["GET"]).expose_headers(["ETag"])],
    )
    .await;
    let seen = in_browser(
        &page,
        &[
            Case::get("GET from a page whose origin is no longer allowed", &url),
            Case::get("GET from the allowed origin", &url).from(&other),
        ],
    )
    .await;
    assert!(seen[0].blocked(), "{:#?}", seen[0]);
    let s = &seen[1];
    assert!(s.ok && s.status == Some(200), "{s:#?}");
    assert_eq!(s.etag.as_deref(), Some(w.etag.as_str()), "{s:#?}");

    // Only PUT for the page's origin: a GET is blocked again.
    w.apply("reader", vec![CorsRule::new([page.origin()], ["PUT"])])
        .await;
    let seen = in_browser(&page, &[Case::get("GET, only PUT allowed", &url)]).await;
    assert!(seen[0].blocked(), "{:#?}", seen[0]);

    w.h.delete("reader").await;
    w.h.wait_gone("reader").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_puts_with_a_custom_header_only_when_allowed_headers_match() {
    let w = World::start().await;
    let page = Page::serve().await;
    let url = w.presigned_put().await;

    // PUT allowed, no allowedHeaders: the preflight for the custom header fails, nothing is
    // written; the same PUT without the header (a CORS-safelisted Content-Type only) passes.
    w.apply("writer", vec![CorsRule::new([page.origin()], ["PUT"])])
        .await;
    let seen = in_browser(
        &page,
        &[
            Case::put("PUT with a custom header, none allowed", &url, "blocked")
                .header(CUSTOM_HEADER, "1"),
        ],
    )
    .await;
    assert!(seen[0].blocked(), "{:#?}", seen[0]);
    assert_eq!(
        w.content().await,
        "hello",
        "the blocked PUT must not reach the store"
    );
    let seen = in_browser(
        &page,
        &[Case::put(
            "PUT without the custom header",
            &url,
            "no custom header",
        )],
    )
    .await;
    let s = &seen[0];
    assert!(s.ok && s.status == Some(200), "{s:#?}");
    assert_eq!(w.content().await, "no custom header");

    // allowedHeaders with a wildcard that covers the header: the PUT goes through.
    w.apply(
        "writer",
        vec![CorsRule::new([page.origin()], ["PUT"]).allowed_headers(["x-bucketcors-*"])],
    )
    .await;
    let seen = in_browser(
        &page,
        &[
            Case::put("PUT with a custom header, allowed", &url, "from the page")
                .header(CUSTOM_HEADER, "1"),
        ],
    )
    .await;
    let s = &seen[0];
    assert!(s.ok && s.status == Some(200), "{s:#?}");
    assert_eq!(w.content().await, "from the page");

    w.h.delete("writer").await;
    w.h.wait_gone("writer").await;
}

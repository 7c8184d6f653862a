//! An HTTP/1.1 proxy on a loopback port, placed between the operator and the S3 server, that
//! answers the way a troubled store does: throttling, internal errors, connections dropped,
//! reset or left hanging. The fault can be switched at any time and applies to the next request.
//!
//! It can also stand in for a store that is not here (`FaultProxy::emulating`): in front of
//! moto, it answers as that store's documentation says it does, where the operator relies on
//! it. Each [`Emulation`] cites its source; what no source says (the exact text of an error) is
//! marked as the emulation's own.
//!
//! Every connection carries one request: the proxy reads it whole (head, then `Content-Length`
//! bytes of body), forwards it or fails it, and closes the connection.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How a request is failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// `503 SlowDown`, as S3 throttles.
    SlowDown,
    /// `500 InternalError`.
    InternalError,
    /// `501 NotImplemented`, as stores without the bucket CORS operations answer.
    NotImplemented,
    /// `403 AccessDenied`.
    AccessDenied,
    /// `404 NoSuchCORSConfiguration`, as stores that answer a delete of a configuration that
    /// is not there do.
    NoSuchCorsConfiguration,
    /// `301 PermanentRedirect` with `x-amz-bucket-region: eu-west-1`, as AWS answers a request
    /// sent to another region than the bucket's.
    WrongRegion,
    /// `307 TemporaryRedirect`, as AWS answers while a new bucket's DNS name spreads.
    TemporaryRedirect,
    /// The connection is closed without an answer.
    Drop,
    /// The request reaches the S3 server, which acts on it; its answer is lost (the
    /// connection is closed), as when a timeout strikes after the store committed.
    LoseAnswer,
    /// The request reaches the S3 server, which acts on it; its answer is held (the connection
    /// stays open, unanswered) until the fault is changed. `held` counts these.
    HoldAnswer,
    /// The answer comes back with every `<ID>` element removed, as a store that does not keep
    /// rule IDs answers.
    DropIds,
    /// The connection is reset (SO_LINGER 0, then closed).
    Reset,
    /// No answer; the connection stays open until the fault is changed.
    Hang,
    /// `400 InvalidRequest` whose `<Message>` is 5 MiB long.
    HugeMessage,
    /// `200 OK` with a 200 MiB body, sent until the client stops reading.
    HugeBody,
    /// `200 OK` with a CORS configuration of just under 1 MiB made of the smallest rules (one
    /// origin, one method each: [`TINY_RULE`]), as a hostile endpoint would answer
    /// GetBucketCors to make the operator parse and keep as many rules as it can.
    TinyRules,
}

/// One rule of [`Failure::TinyRules`]'s answer.
pub const TINY_RULE: &str =
    "<CORSRule><AllowedOrigin>*</AllowedOrigin><AllowedMethod>GET</AllowedMethod></CORSRule>";

/// How many [`TINY_RULE`]s the answer of [`Failure::TinyRules`] holds: as many as fit in
/// 1 MiB with the XML around them.
pub const TINY_RULES: usize = (1024 * 1024 - 200) / TINY_RULE.len();

/// A store that does not run here, reproduced from its documentation in front of moto.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Emulation {
    /// Requests reach the S3 server as they are.
    None,
    /// IONOS Object Storage: "The x-amz-expected-bucket-owner header isn't supported" on the
    /// CORS operations
    /// (<https://docs.ionos.com/sections-test/api/ionos-object-storage/ionos-object-storage-for-user-owned-buckets/cors>).
    /// A request carrying it is answered `501 NotImplemented` (the answer's shape is the
    /// emulation's own, modelled on how R2 answers a header it does not implement:
    /// <https://github.com/cloudflare/cloudflare-docs/issues/4508>).
    Ionos,
    /// Backblaze B2's S3 API: a request with a flexible checksum header is answered `400
    /// InvalidArgument: Unsupported header 'x-amz-checksum-crc32' received for this API call.`
    /// (<https://github.com/stonith404/pingvin-share/issues/798>); GetBucketCors answers with a
    /// rule's duplicate methods merged, and a `MaxAgeSeconds` over 86400 is refused
    /// (<https://www.backblaze.com/docs/cloud-storage-enable-cors-with-the-s3-compatible-api>).
    BackblazeB2,
    /// Wasabi: "Wasabi maintains a default CORS configuration. [...] If you delete a custom
    /// CORS configuration, the default configuration is used"
    /// (<https://docs.wasabi.com/docs/cross-origin-resource-sharing-cors>): where moto has no
    /// configuration, GetBucketCors answers [`WASABI_DEFAULT`] (the documentation does not
    /// publish the default's rules; this one is the emulation's own).
    Wasabi,
    /// MinIO's community edition: every bucket CORS request is answered `501 NotImplemented: A
    /// header you provided implies functionality that is not implemented`, with `Server: MinIO`
    /// (<https://github.com/minio/minio/issues/21332>).
    MinIoCommunity,
    /// Cloudflare R2's limits: a PutBucketCors with a `MaxAgeSeconds` over 86400 or an origin
    /// with a path is answered `400 InvalidArgument`
    /// (<https://developers.cloudflare.com/r2/buckets/cors/>; the answer's text is the
    /// emulation's own).
    CloudflareR2,
    /// OVHcloud Object Storage: a request with the SDK's flexible checksum header is refused
    /// (<https://github.com/earth-mover/icechunk/pull/2115>, a third-party report; the answer,
    /// `400 InvalidRequest`, is the emulation's own).
    OvhCloud,
    /// DigitalOcean Spaces: an origin may hold a wildcard only at the start of its host name
    /// (<https://docs.digitalocean.com/products/spaces/how-to/configure-cors/>); a
    /// PutBucketCors with one elsewhere is answered `400 InvalidArgument` (the emulation's own).
    DigitalOceanSpaces,
}

/// The default configuration the Wasabi emulation answers where none was written.
pub const WASABI_DEFAULT: &str =
    "<CORSRule><AllowedOrigin>*</AllowedOrigin><AllowedMethod>GET</AllowedMethod></CORSRule>";

/// Which requests fail, and how.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Every request reaches the S3 server.
    Pass,
    /// Every request fails.
    All(Failure),
    /// Writes (PUT, POST, DELETE) fail; reads reach the S3 server.
    Writes(Failure),
    /// `503 SlowDown` for a request that would make more than this many in the last second,
    /// as a store that throttles above a rate; the others reach the S3 server.
    ThrottleAbove(usize),
    /// Every other request fails (the first, the third, ...).
    EveryOther(Failure),
    /// Every request reaches the S3 server, but for this long after a write to a bucket's CORS
    /// configuration GetBucketCors answers what it answered before the write: a store whose
    /// writes take time to reach every replica.
    StaleReads(std::time::Duration),
}

impl Fault {
    fn failure_for(self, method: &str) -> Option<Failure> {
        match self {
            Fault::Pass => None,
            Fault::All(failure) => Some(failure),
            Fault::Writes(failure) => {
                matches!(method, "PUT" | "POST" | "DELETE").then_some(failure)
            }
            // Decided by `Shared::failure_for`, which keeps the count.
            Fault::ThrottleAbove(_) | Fault::EveryOther(_) | Fault::StaleReads(_) => None,
        }
    }
}

struct Shared {
    upstream: String,
    emulation: Emulation,
    /// How many requests carried each header (by lower-case name).
    headers: Mutex<HashMap<String, usize>>,
    fault: watch::Sender<Fault>,
    seen: AtomicUsize,
    faulted: AtomicUsize,
    held: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    /// What the proxy could not handle; reported by the test, not swallowed.
    errors: Mutex<Vec<String>>,
    /// Every request's method and target, in arrival order.
    log: Mutex<Vec<(String, String)>>,
    /// When the requests of the last second that reached the S3 server arrived
    /// (`Fault::ThrottleAbove`).
    recent: Mutex<std::collections::VecDeque<std::time::Instant>>,
    /// Requests counted for `Fault::EveryOther`.
    alternate: AtomicUsize,
    /// Each bucket's last GetBucketCors answer, and until when it is answered again
    /// (`Fault::StaleReads`).
    stale: Mutex<HashMap<String, (std::time::Instant, Vec<u8>)>>,
    /// GetBucketCors answered from before a write (`Fault::StaleReads`).
    stale_answers: AtomicUsize,
}

impl Shared {
    fn failure_for(&self, method: &str) -> Option<Failure> {
        let fault = *self.fault.borrow();
        match fault {
            Fault::ThrottleAbove(most) => {
                let now = std::time::Instant::now();
                let mut recent = self.recent.lock().unwrap();
                while recent
                    .front()
                    .is_some_and(|at| now.duration_since(*at) >= std::time::Duration::from_secs(1))
                {
                    recent.pop_front();
                }
                if recent.len() >= most {
                    Some(Failure::SlowDown)
                } else {
                    recent.push_back(now);
                    None
                }
            }
            Fault::EveryOther(failure) => self
                .alternate
                .fetch_add(1, Ordering::SeqCst)
                .is_multiple_of(2)
                .then_some(failure),
            fault => fault.failure_for(method),
        }
    }

    /// `answer` as a store with `Fault::StaleReads` gives it: a GetBucketCors soon after a
    /// successful write to the same bucket gets the answer from before the write.
    fn propagated(&self, method: &str, target: &str, answer: Vec<u8>) -> Vec<u8> {
        let Fault::StaleReads(delay) = *self.fault.borrow() else {
            return answer;
        };
        if !is_cors(target) {
            return answer;
        }
        let bucket = target
            .trim_start_matches('/')
            .split(['/', '?'])
            .next()
            .unwrap_or_default()
            .to_owned();
        let now = std::time::Instant::now();
        let mut stale = self.stale.lock().unwrap();
        match method {
            "GET" => match stale.get(&bucket) {
                Some((until, before)) if now < *until => {
                    self.stale_answers.fetch_add(1, Ordering::SeqCst);
                    before.clone()
                }
                _ => {
                    stale.insert(bucket, (now, answer.clone()));
                    answer
                }
            },
            _ if answer.starts_with(b"HTTP/1.1 2") => {
                if let Some((until, _)) = stale.get_mut(&bucket) {
                    *until = now + delay;
                }
                answer
            }
            _ => answer,
        }
    }
}

pub struct FaultProxy {
    port: u16,
    shared: Arc<Shared>,
    acceptor: JoinHandle<()>,
}

impl FaultProxy {
    /// Starts the proxy on the current runtime, forwarding to `upstream` (`http://HOST:PORT`),
    /// passing every request until told otherwise.
    pub async fn start(upstream: &str) -> FaultProxy {
        FaultProxy::emulating(upstream, Emulation::None).await
    }

    /// [`FaultProxy::start`], answering as `emulation` says its store does.
    pub async fn emulating(upstream: &str, emulation: Emulation) -> FaultProxy {
        let upstream = upstream
            .strip_prefix("http://")
            .expect("an http:// upstream")
            .trim_end_matches('/')
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            upstream,
            emulation,
            headers: Mutex::new(HashMap::new()),
            fault: watch::Sender::new(Fault::Pass),
            seen: AtomicUsize::new(0),
            faulted: AtomicUsize::new(0),
            held: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            errors: Mutex::new(Vec::new()),
            log: Mutex::new(Vec::new()),
            recent: Mutex::new(std::collections::VecDeque::new()),
            alternate: AtomicUsize::new(0),
            stale: Mutex::new(HashMap::new()),
            stale_answers: AtomicUsize::new(0),
        });
        let acceptor = tokio::spawn({
            let shared = shared.clone();
            async move {
                while let Ok((stream, _)) = listener.accept().await {
                    tokio::spawn(serve(stream, shared.clone()));
                }
            }
        });
        FaultProxy {
            port,
            shared,
            acceptor,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Applies `fault` to every request read from now on.
    pub fn set(&self, fault: Fault) {
        self.shared.fault.send_replace(fault);
    }

    /// Requests received so far, failed ones included.
    pub fn requests_seen(&self) -> usize {
        self.check();
        self.shared.seen.load(Ordering::SeqCst)
    }

    /// Method and target (path and query) of every request so far, in order.
    pub fn requests(&self) -> Vec<(String, String)> {
        self.check();
        self.shared.log.lock().unwrap().clone()
    }

    /// The calls on `bucket`'s CORS configuration so far, by method.
    pub fn cors_calls(&self, bucket: &str) -> Vec<String> {
        let cors = [
            format!("/{bucket}?cors"),
            format!("/{bucket}/?cors"),
            format!("/{bucket}?cors="),
        ];
        self.requests()
            .into_iter()
            .filter(|(_, target)| {
                cors.iter()
                    .any(|c| target == c || target.starts_with(&format!("{c}&")))
            })
            .map(|(method, _)| method)
            .collect()
    }

    /// How many PutBucketCors and DeleteBucketCors `bucket` has received.
    pub fn cors_writes(&self, bucket: &str) -> usize {
        self.cors_calls(bucket)
            .iter()
            .filter(|m| *m != "GET")
            .count()
    }

    /// How many requests so far carried header `name`.
    pub fn requests_with_header(&self, name: &str) -> usize {
        self.check();
        let headers = self.shared.headers.lock().unwrap();
        headers
            .get(&name.to_ascii_lowercase())
            .copied()
            .unwrap_or(0)
    }

    /// Requests failed so far.
    pub fn faulted(&self) -> usize {
        self.check();
        self.shared.faulted.load(Ordering::SeqCst)
    }

    /// Requests the S3 server acted on whose answers are being held.
    pub fn held(&self) -> usize {
        self.check();
        self.shared.held.load(Ordering::SeqCst)
    }

    /// GetBucketCors requests answered from before a write (`Fault::StaleReads`).
    pub fn stale_answers(&self) -> usize {
        self.check();
        self.shared.stale_answers.load(Ordering::SeqCst)
    }

    /// The most requests that were in the proxy at the same time.
    pub fn max_in_flight(&self) -> usize {
        self.check();
        self.shared.max_in_flight.load(Ordering::SeqCst)
    }

    fn check(&self) {
        let errors = self.shared.errors.lock().unwrap();
        assert!(errors.is_empty(), "the fault proxy failed: {errors:?}");
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.acceptor.abort();
        // Hanging connections end now.
        self.shared.fault.send_replace(Fault::Pass);
        if !std::thread::panicking() {
            self.check();
        }
    }
}

/// A request as read from the client: its head's lines (request line first) and its body.
struct Request {
    head: Vec<String>,
    body: Vec<u8>,
}

impl Request {
    fn method(&self) -> &str {
        self.head[0].split(' ').next().unwrap_or_default()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.head[1..]
            .iter()
            .find_map(|line| header_value(line, name))
    }
}

fn header_value<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let (key, value) = line.split_once(':')?;
    key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
}

async fn serve(stream: TcpStream, shared: Arc<Shared>) {
    let mut client = BufReader::new(stream);
    let request = match read_request(&mut client).await {
        Ok(Some(request)) => request,
        // The client left before sending a request.
        Ok(None) => return,
        Err(err) if err.kind() == io::ErrorKind::InvalidData => {
            shared.errors.lock().unwrap().push(err.to_string());
            return;
        }
        Err(_) => return,
    };
    shared.seen.fetch_add(1, Ordering::SeqCst);
    let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    shared.max_in_flight.fetch_max(now, Ordering::SeqCst);
    answer(&mut client, request, &shared).await;
    shared.in_flight.fetch_sub(1, Ordering::SeqCst);
}

async fn answer(client: &mut BufReader<TcpStream>, request: Request, shared: &Shared) {
    let target = request.head[0]
        .split(' ')
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    shared
        .log
        .lock()
        .unwrap()
        .push((request.method().to_owned(), target.clone()));
    {
        let mut headers = shared.headers.lock().unwrap();
        for line in &request.head[1..] {
            if let Some((name, _)) = line.split_once(':') {
                *headers.entry(name.trim().to_ascii_lowercase()).or_default() += 1;
            }
        }
    }
    if let Some(answer) = emulate(&request, &target, shared).await {
        let stream = client.get_mut();
        let _ = stream.write_all(&answer).await;
        let _ = stream.shutdown().await;
        return;
    }
    let mut hang = shared.fault.subscribe();
    let failure = shared.failure_for(request.method());
    if failure.is_some() {
        shared.faulted.fetch_add(1, Ordering::SeqCst);
    }
    let answer = match failure {
        None => match forward(&shared.upstream, &request).await {
            Ok(response) => shared.propagated(request.method(), &target, response),
            Err(err) => {
                let message = format!("forwarding to {}: {err}", shared.upstream);
                shared.errors.lock().unwrap().push(message);
                return;
            }
        },
        Some(Failure::SlowDown) => s3_error(
            "503 Slow Down",
            "SlowDown",
            "Please reduce your request rate.",
        ),
        Some(Failure::InternalError) => s3_error(
            "500 Internal Server Error",
            "InternalError",
            "We encountered an internal error. Please try again.",
        ),
        Some(Failure::NotImplemented) => s3_error(
            "501 Not Implemented",
            "NotImplemented",
            "A header you provided implies functionality that is not implemented.",
        ),
        Some(Failure::AccessDenied) => s3_error("403 Forbidden", "AccessDenied", "Access Denied"),
        Some(Failure::NoSuchCorsConfiguration) => s3_error(
            "404 Not Found",
            "NoSuchCORSConfiguration",
            "The CORS configuration does not exist",
        ),
        Some(Failure::WrongRegion) => with_header(
            s3_error(
                "301 Moved Permanently",
                "PermanentRedirect",
                "The bucket you are attempting to access must be addressed using the specified endpoint.",
            ),
            "x-amz-bucket-region: eu-west-1",
        ),
        Some(Failure::TemporaryRedirect) => with_header(
            s3_error(
                "307 Temporary Redirect",
                "TemporaryRedirect",
                "Please re-send this request to the specified temporary endpoint.",
            ),
            "Location: http://127.0.0.1:1/",
        ),
        Some(Failure::Drop) => return,
        Some(Failure::LoseAnswer) => {
            let _ = forwarded(&request, shared).await;
            return;
        }
        Some(Failure::HoldAnswer) => {
            if forwarded(&request, shared).await.is_none() {
                return;
            }
            shared.held.fetch_add(1, Ordering::SeqCst);
            let _ = hang.changed().await;
            return;
        }
        Some(Failure::DropIds) => {
            let Some(response) = forwarded(&request, shared).await else {
                return;
            };
            match checked(without_ids(&response), shared) {
                Some(answer) => answer,
                None => return,
            }
        }
        Some(Failure::Reset) => {
            let _ = client.get_ref().set_zero_linger();
            return;
        }
        Some(Failure::Hang) => {
            let _ = hang.changed().await;
            return;
        }
        Some(Failure::HugeMessage) => s3_error(
            "400 Bad Request",
            "InvalidRequest",
            &"too long; ".repeat(5 * 1024 * 1024 / 10),
        ),
        Some(Failure::TinyRules) => {
            let body = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<CORSConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">{}</CORSConfiguration>",
                TINY_RULE.repeat(TINY_RULES)
            );
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .into_bytes()
        }
        Some(Failure::HugeBody) => {
            let length: usize = 200 * 1024 * 1024;
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
            );
            let stream = client.get_mut();
            if stream.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let chunk = vec![b' '; 64 * 1024];
            let mut sent = 0;
            // The client stops reading (and closes) long before the end when it caps answers.
            while sent < length {
                if stream.write_all(&chunk).await.is_err() {
                    return;
                }
                sent += chunk.len();
            }
            let _ = stream.shutdown().await;
            return;
        }
    };
    let stream = client.get_mut();
    // The client may have given up already; nothing to report then.
    let _ = stream.write_all(&answer).await;
    let _ = stream.shutdown().await;
}

/// Reads one request; `None` when the connection closes before one starts.
async fn read_request(client: &mut BufReader<TcpStream>) -> io::Result<Option<Request>> {
    let invalid = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
    let mut head = Vec::new();
    let mut head_bytes = 0;
    loop {
        let mut line = String::new();
        let n = client.read_line(&mut line).await?;
        if n == 0 && head.is_empty() {
            return Ok(None);
        }
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        head_bytes += n;
        if head_bytes > 64 * 1024 {
            return Err(invalid("request head over 64 KiB".into()));
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            break;
        }
        head.push(line.to_owned());
    }
    let mut request = Request {
        head,
        body: Vec::new(),
    };
    if let Some(encoding) = request.header("transfer-encoding") {
        return Err(invalid(format!(
            "{}: Transfer-Encoding {encoding} is not supported",
            request.head[0]
        )));
    }
    if request
        .header("expect")
        .is_some_and(|e| e.eq_ignore_ascii_case("100-continue"))
    {
        client
            .get_mut()
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .await?;
    }
    let length = match request.header("content-length") {
        Some(value) => value
            .parse::<usize>()
            .map_err(|_| invalid(format!("bad Content-Length {value:?}")))?,
        None => 0,
    };
    request.body = vec![0; length];
    client.read_exact(&mut request.body).await?;
    Ok(Some(request))
}

/// Sends `request` to the S3 server over a connection of its own and returns the whole answer,
/// marked `Connection: close`.
async fn forward(upstream: &str, request: &Request) -> io::Result<Vec<u8>> {
    let mut server = TcpStream::connect(upstream).await?;
    let mut head = without_connection_headers(&request.head, &["connection", "expect"]);
    head.push_str("Connection: close\r\n\r\n");
    server.write_all(head.as_bytes()).await?;
    server.write_all(&request.body).await?;
    let mut response = Vec::new();
    server.read_to_end(&mut response).await?;

    let end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "response without a head"))?;
    let lines: Vec<String> = String::from_utf8_lossy(&response[..end])
        .split("\r\n")
        .map(str::to_owned)
        .collect();
    let mut answer = without_connection_headers(&lines, &["connection", "keep-alive"]);
    answer.push_str("Connection: close\r\n\r\n");
    let mut answer = answer.into_bytes();
    answer.extend_from_slice(&response[end + 4..]);
    Ok(answer)
}

/// `answer` with every `<ID>…</ID>` element of its body removed and its Content-Length set
/// to match.
fn without_ids(answer: &[u8]) -> Result<Vec<u8>, String> {
    with_body(answer, |body| {
        while let Some(start) = body.find("<ID>") {
            let stop = body[start..]
                .find("</ID>")
                .ok_or("DropIds: <ID> without </ID>")?;
            body.replace_range(start..start + stop + "</ID>".len(), "");
        }
        Ok(())
    })
}

/// `answer` with its body changed by `change` and its Content-Length set to match.
fn with_body(
    answer: &[u8],
    change: impl FnOnce(&mut String) -> Result<(), String>,
) -> Result<Vec<u8>, String> {
    let end = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("answer without a head")?;
    let head = String::from_utf8_lossy(&answer[..end]).into_owned();
    let mut body = String::from_utf8(answer[end + 4..].to_vec()).map_err(|e| e.to_string())?;
    if head
        .lines()
        .any(|l| header_value(l, "transfer-encoding").is_some())
    {
        return Err("chunked answers are not supported".into());
    }
    change(&mut body)?;
    let lines: Vec<String> = head
        .split("\r\n")
        .filter(|l| header_value(l, "content-length").is_none())
        .map(str::to_owned)
        .collect();
    let mut out = without_connection_headers(&lines, &[]);
    out.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    Ok(out.into_bytes())
}

/// The head's lines, minus the headers named, each ending in CRLF.
fn without_connection_headers(lines: &[String], dropped: &[&str]) -> String {
    lines
        .iter()
        .enumerate()
        .filter(|(i, line)| *i == 0 || !dropped.iter().any(|d| header_value(line, d).is_some()))
        .map(|(_, line)| format!("{line}\r\n"))
        .collect()
}

/// An S3 error answer.
/// `answer` with one more header line.
fn with_header(answer: Vec<u8>, header: &str) -> Vec<u8> {
    let text = String::from_utf8(answer).expect("the proxy's own answers are text");
    text.replacen("\r\n", &format!("\r\n{header}\r\n"), 1)
        .into_bytes()
}

fn s3_error(status: &str, code: &str, message: &str) -> Vec<u8> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code>\
         <Message>{message}</Message><RequestId>fault-proxy</RequestId></Error>"
    );
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Whether `target` (path and query) names a bucket's `cors` subresource.
fn is_cors(target: &str) -> bool {
    target.split_once('?').is_some_and(|(_, query)| {
        query
            .split('&')
            .any(|p| p == "cors" || p.starts_with("cors="))
    })
}

/// The answer the emulated store gives `request` itself, or `None` to go on (to the fault,
/// then the S3 server).
async fn emulate(request: &Request, target: &str, shared: &Shared) -> Option<Vec<u8>> {
    let cors = is_cors(target);
    let method = request.method();
    match shared.emulation {
        Emulation::None => None,
        Emulation::Ionos => request.header("x-amz-expected-bucket-owner").map(|_| {
            s3_error(
                "501 Not Implemented",
                "NotImplemented",
                "Header 'x-amz-expected-bucket-owner' not implemented",
            )
        }),
        Emulation::BackblazeB2 => {
            let checksum = request.head[1..]
                .iter()
                .filter_map(|line| line.split_once(':'))
                .map(|(name, _)| name.trim().to_ascii_lowercase())
                .find(|name| name.starts_with("x-amz-checksum-"));
            if let Some(name) = checksum {
                return Some(s3_error(
                    "400 Bad Request",
                    "InvalidArgument",
                    &format!("Unsupported header '{name}' received for this API call."),
                ));
            }
            if cors && method == "PUT" {
                // MaxAgeSeconds "will accept a range of [0, 86400]" (the answer's text is the
                // emulation's own).
                let body = String::from_utf8_lossy(&request.body);
                let over_a_day = elements(&body, "MaxAgeSeconds")
                    .iter()
                    .any(|age| age.parse::<i64>().is_ok_and(|age| age > 86400));
                return over_a_day.then(|| {
                    s3_error(
                        "400 Bad Request",
                        "InvalidArgument",
                        "MaxAgeSeconds must be between 0 and 86400",
                    )
                });
            }
            if !(cors && method == "GET") {
                return None;
            }
            let answer = forwarded(request, shared).await?;
            checked(with_body(&answer, merge_duplicate_methods), shared)
        }
        Emulation::Wasabi => {
            if !(cors && method == "GET") {
                return None;
            }
            let answer = forwarded(request, shared).await?;
            let text = String::from_utf8_lossy(&answer);
            if text.starts_with("HTTP/1.1 404") && text.contains("NoSuchCORSConfiguration") {
                let body = format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<CORSConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">{WASABI_DEFAULT}</CORSConfiguration>"
                );
                Some(
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                    .into_bytes(),
                )
            } else {
                Some(answer)
            }
        }
        Emulation::MinIoCommunity => cors.then(|| {
            with_header(
                s3_error(
                    "501 Not Implemented",
                    "NotImplemented",
                    "A header you provided implies functionality that is not implemented",
                ),
                "Server: MinIO",
            )
        }),
        Emulation::OvhCloud => request.header("x-amz-checksum-crc32").map(|_| {
            s3_error(
                "400 Bad Request",
                "InvalidRequest",
                "x-amz-checksum-crc32 is not supported",
            )
        }),
        Emulation::DigitalOceanSpaces => {
            if !(cors && method == "PUT") {
                return None;
            }
            let body = String::from_utf8_lossy(&request.body);
            let misplaced = elements(&body, "AllowedOrigin").iter().any(|origin| {
                let host_start = origin.find("://").map_or(0, |i| i + 3);
                origin != "*" && origin.find('*').is_some_and(|at| at != host_start)
            });
            misplaced.then(|| {
                s3_error(
                    "400 Bad Request",
                    "InvalidArgument",
                    "a wildcard is allowed only at the start of the host name",
                )
            })
        }
        Emulation::CloudflareR2 => {
            if !(cors && method == "PUT") {
                return None;
            }
            let body = String::from_utf8_lossy(&request.body);
            let over_a_day = elements(&body, "MaxAgeSeconds")
                .iter()
                .any(|age| age.parse::<i64>().is_ok_and(|age| age > 86400));
            let with_path = elements(&body, "AllowedOrigin").iter().any(|origin| {
                origin
                    .split_once("://")
                    .is_some_and(|(_, rest)| rest.contains('/'))
            });
            (over_a_day || with_path).then(|| {
                s3_error(
                    "400 Bad Request",
                    "InvalidArgument",
                    "MaxAgeSeconds must be at most 86400 and origins must be scheme://host[:port]",
                )
            })
        }
    }
}

/// The S3 server's answer to `request`, or `None` (reported) when it could not be reached.
async fn forwarded(request: &Request, shared: &Shared) -> Option<Vec<u8>> {
    match forward(&shared.upstream, request).await {
        Ok(answer) => Some(answer),
        Err(err) => {
            let message = format!("forwarding to {}: {err}", shared.upstream);
            shared.errors.lock().unwrap().push(message);
            None
        }
    }
}

fn checked(answer: Result<Vec<u8>, String>, shared: &Shared) -> Option<Vec<u8>> {
    answer
        .map_err(|message| shared.errors.lock().unwrap().push(message))
        .ok()
}

/// The text of every `<name>…</name>` element of `xml`, in order.
fn elements(xml: &str, name: &str) -> Vec<String> {
    let (open, close) = (format!("<{name}>"), format!("</{name}>"));
    let mut found = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let Some(end) = after.find(&close) else { break };
        found.push(after[..end].to_owned());
        rest = &after[end + close.len()..];
    }
    found
}

/// Within each `<CORSRule>`, every `<AllowedMethod>` after the first with the same text removed.
fn merge_duplicate_methods(body: &mut String) -> Result<(), String> {
    let mut out = String::with_capacity(body.len());
    let mut rest = body.as_str();
    while let Some(start) = rest.find("<CORSRule>") {
        let end = rest[start..]
            .find("</CORSRule>")
            .ok_or("<CORSRule> without </CORSRule>")?
            + start;
        out.push_str(&rest[..start]);
        let mut rule = rest[start..end].to_owned();
        let mut seen = Vec::new();
        for method in elements(&rule, "AllowedMethod") {
            let element = format!("<AllowedMethod>{method}</AllowedMethod>");
            if seen.contains(&method) {
                // Remove the last copy; the first one stays.
                if let Some(at) = rule.rfind(&element) {
                    rule.replace_range(at..at + element.len(), "");
                }
            } else {
                seen.push(method);
            }
        }
        out.push_str(&rule);
        rest = &rest[end..];
    }
    out.push_str(rest);
    *body = out;
    Ok(())
}

//! The world the benchmark measures: the control plane, the moto S3 server and the operator
//! as processes (started with the integration tests' own support), where each runs (its
//! placement on the CPUs), and the benchmark's own clients.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, ensure};
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::types::{CorsConfiguration, CorsRule as SdkRule};
use bucketcors::api::{BucketCors, BucketCorsSpec};
use bucketcors::cors::{self, CorsRule, Plan};
use bucketcors_test_support::cluster::Cluster;
use bucketcors_test_support::harness::spec_on;
use bucketcors_test_support::moto::Moto;
use bucketcors_test_support::operator::OperatorProcess;
use bucketcors_test_support::process::{pin, python_env};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::runtime::watcher;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::recording::Tail;
use crate::results::Versions;
use crate::sample::{find_pid, process_start};
use crate::{CONCURRENCY, CREATE_CONCURRENCY, say};

/// Where the processes run. `Shared`: every process on every CPU, as a small cluster node
/// runs them. `Isolated`: the control plane (kube-apiserver, etcd, the CRD server and its
/// etcd) and the benchmark's Kubernetes client on the first CPU; the S3 server with the
/// operator, or with the bare-SDK loop that gives the limit, on the second.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    Shared,
    Isolated,
}

impl Placement {
    pub fn name(self) -> &'static str {
        match self {
            Placement::Shared => "shared",
            Placement::Isolated => "isolated",
        }
    }

    /// (the control plane's CPUs, the S3 server's CPUs), as `taskset` lists.
    fn cpus(self, cpus: usize) -> (String, String) {
        let all = format!("0-{}", cpus - 1);
        match self {
            Placement::Shared => (all.clone(), all),
            Placement::Isolated => ("0".into(), "1".into()),
        }
    }
}

pub struct World {
    pub cp: Cluster,
    pub kube: kube::Client,
    /// The CRD server itself: its request counters are the writes to BucketCors.
    pub crd: kube::Client,
    pub moto: Moto,
    pub s3: aws_sdk_s3::Client,
    pub endpoint: String,
    pub moto_pid: u32,
    pub tail: Tail,
    pub work: PathBuf,
    pub prefix: String,
    pub operator_bin: PathBuf,
    pub versions: Versions,
    cpus: usize,
    placement: Mutex<Placement>,
    /// The arguments each kind of operator run was started with (ports left out).
    operator_args: Mutex<BTreeMap<String, String>>,
}

impl World {
    /// Starts the control plane (CRDs installed) and moto, and follows moto's recording.
    pub async fn start(work: &Path, operator_bin: PathBuf) -> anyhow::Result<World> {
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        ensure!(
            cpus >= 2,
            "the benchmark places the control plane and the S3 server on CPUs of their own: it needs 2 CPUs, this machine has {cpus}"
        );
        let venv = blocking(python_env).await;
        let cp = blocking({
            let dir = work.join("control-plane");
            move || Cluster::start_in(&dir)
        })
        .await;
        let kube = cp.client().await;
        let crd = cp.crd_server_client().await;
        let moto = blocking(Moto::dedicated).await;
        let moto_port = moto.port.to_string();
        let moto_pid = find_pid(
            move |argv| {
                argv.iter().any(|a| a.ends_with("moto_server"))
                    && argv.windows(2).any(|w| w[0] == "-p" && w[1] == moto_port)
                    && !argv.iter().any(|a| a.ends_with("tether.py"))
            },
            Duration::from_secs(10),
        )
        .await
        .context("the moto server's process")?;
        // moto loads its S3 backend on the first request; not part of any measurement.
        warm_up(&moto.client()).await?;
        let versions = Versions::read(&venv, &cp);
        say(&format!("versions: {versions:?}"));
        let prefix = format!("bcb{}-", std::process::id());
        let tail = Tail::start(moto.recording(), prefix.clone());
        Ok(World {
            s3: moto.client(),
            endpoint: moto.endpoint(),
            cp,
            kube,
            crd,
            moto,
            moto_pid,
            tail,
            work: work.to_owned(),
            prefix,
            operator_bin,
            versions,
            cpus,
            placement: Mutex::new(Placement::Shared),
            operator_args: Mutex::new(BTreeMap::new()),
        })
    }

    pub fn stop(&self) {
        self.tail.stop();
        self.moto.stop();
    }

    /// Moves every running server, and this process, to `placement`.
    pub fn place(&self, placement: Placement) -> anyhow::Result<()> {
        let (control, s3) = placement.cpus(self.cpus);
        for name in ["kube-apiserver", "etcd", "crd-server", "crd-etcd"] {
            let pid = self
                .cp
                .pid(name)
                .with_context(|| format!("the control plane's {name} has no pid file"))?;
            pin(pid, &control).map_err(|e| anyhow!(e))?;
        }
        pin(self.moto_pid, &s3).map_err(|e| anyhow!(e))?;
        pin(std::process::id(), &control).map_err(|e| anyhow!(e))?;
        *self.placement.lock().expect("poisoned") = placement;
        say(&format!(
            "placement {}: control plane and benchmark client on CPU {control}, S3 server and operator on CPU {s3}",
            placement.name()
        ));
        Ok(())
    }

    /// Runs this process where the operator runs (for the bare-SDK loop, which stands for
    /// the operator), or back where the Kubernetes clients run.
    pub fn bench_beside_s3(&self, beside: bool) -> anyhow::Result<()> {
        let placement = *self.placement.lock().expect("poisoned");
        let (control, s3) = placement.cpus(self.cpus);
        let cpus = if beside { s3 } else { control };
        pin(std::process::id(), &cpus).map_err(|e| anyhow!(e))
    }

    /// What the measured processes run, as BENCHMARKS.md records it and `make bench-check`
    /// compares it: each server's command line and the operator's arguments, with ports,
    /// process ids and temporary paths left out. A change of test support that changes how
    /// a measured process runs changes this text.
    pub fn describe(&self) -> BTreeMap<String, String> {
        let mut world = BTreeMap::new();
        let pids = [
            ("kube-apiserver", self.cp.pid("kube-apiserver")),
            ("etcd", self.cp.pid("etcd")),
            ("crd-server", self.cp.pid("crd-server")),
            ("crd-etcd", self.cp.pid("crd-etcd")),
            ("moto", Some(self.moto_pid)),
        ];
        for (name, pid) in pids {
            let argv = pid.and_then(crate::sample::cmdline).unwrap_or_default();
            let program = argv
                .iter()
                .position(|a| !a.contains("python"))
                .map_or(&argv[..], |i| &argv[i..]);
            let program: Vec<String> = program
                .iter()
                .enumerate()
                .map(|(i, a)| {
                    if i == 0 {
                        Path::new(a)
                            .file_name()
                            .map_or(a.clone(), |f| f.to_string_lossy().into_owned())
                    } else {
                        normalise(a)
                    }
                })
                .collect();
            let env = pid.map(|pid| environment(pid, "MOTO_")).unwrap_or_default();
            world.insert(name.to_owned(), format!("{env}{}", program.join(" ")));
        }
        for (kind, args) in self.operator_args.lock().expect("poisoned").iter() {
            world.insert(format!("operator ({kind})"), args.clone());
        }
        world
    }

    pub fn bucket(&self, set: &str, i: usize) -> String {
        format!("{}{set}-{i}", self.prefix)
    }

    pub fn spec(&self, bucket: &str, rules: Vec<CorsRule>) -> BucketCorsSpec {
        spec_on(&self.endpoint, bucket, rules)
    }

    pub fn pids(&self, operator: Option<&Operator>) -> Vec<(&'static str, u32)> {
        let mut pids = vec![("moto", self.moto_pid), ("bench", std::process::id())];
        if let Some(pid) = self.cp.pid("kube-apiserver") {
            pids.push(("kube-apiserver", pid));
        }
        if let Some(pid) = self.cp.pid("etcd") {
            pids.push(("etcd", pid));
        }
        // BucketCors itself is served by the control plane's CRD server and its own etcd.
        if let Some(pid) = self.cp.pid("crd-server") {
            pids.push(("crd-server", pid));
        }
        if let Some(pid) = self.cp.pid("crd-etcd") {
            pids.push(("crd-etcd", pid));
        }
        if let Some(op) = operator {
            pids.push(("operator", op.pid));
        }
        pids
    }

    pub async fn create_buckets(&self, buckets: &[String]) -> anyhow::Result<Duration> {
        let started = Instant::now();
        futures::stream::iter(buckets)
            .map(|bucket| async move {
                self.s3
                    .create_bucket()
                    .bucket(bucket)
                    .send()
                    .await
                    .with_context(|| format!("creating bucket {bucket}"))
                    .map(drop)
            })
            .buffer_unordered(CREATE_CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(started.elapsed())
    }

    pub async fn namespace(&self, name: &str) -> anyhow::Result<()> {
        let namespaces: Api<Namespace> = Api::all(self.kube.clone());
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                ..Default::default()
            },
            ..Default::default()
        };
        namespaces
            .create(&PostParams::default(), &ns)
            .await
            .with_context(|| format!("creating namespace {name}"))?;
        Ok(())
    }

    /// A fresh operator watching `namespaces`, at the benchmark's concurrency with `extra`
    /// arguments, placed beside the S3 server. `kind` names the run in its log and in
    /// [`World::describe`].
    pub fn start_operator(
        &self,
        kind: &str,
        name: &str,
        namespaces: &[&str],
        extra: &[&str],
    ) -> anyhow::Result<Operator> {
        let mut args = Vec::new();
        for namespace in namespaces {
            args.extend(["--namespace".to_owned(), (*namespace).to_owned()]);
        }
        args.extend(["--concurrency".to_owned(), CONCURRENCY.to_string()]);
        // The operator is measured unpaced, as the bare-SDK limit is: the default request
        // budget (200 a second per store) would otherwise be what the figures measure. The
        // budget phase sets its own.
        if !extra.contains(&"--store-requests-per-second") {
            args.extend(["--store-requests-per-second".to_owned(), "0".to_owned()]);
        }
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        let operator = Operator::spawn(
            &self.operator_bin,
            &self.cp.kubeconfig,
            &args,
            self.work.join(format!("operator-{name}.log")),
        )?;
        let placement = *self.placement.lock().expect("poisoned");
        let (_, s3) = placement.cpus(self.cpus);
        pin(operator.pid, &s3).map_err(|e| anyhow!(e))?;
        let watched = match namespaces.len() {
            1 => "--namespace <one>".to_owned(),
            n => format!("--namespace <{n} namespaces>"),
        };
        let env = ["BUCKETCORS_", "RUST_LOG", "AWS_REGION"]
            .iter()
            .map(|prefix| environment(operator.pid, prefix))
            .collect::<String>();
        let described = format!(
            "{env}{watched} {}",
            args.iter()
                .skip(2 * namespaces.len())
                .map(|a| normalise(a))
                .collect::<Vec<_>>()
                .join(" ")
        );
        self.operator_args
            .lock()
            .expect("poisoned")
            .insert(kind.to_owned(), described);
        Ok(operator)
    }

    pub async fn verify(
        &self,
        buckets: &[String],
        expected: impl Fn(usize) -> Vec<CorsRule>,
    ) -> usize {
        let expected = &expected;
        futures::stream::iter(buckets.iter().enumerate())
            .map(|(i, bucket)| async move {
                match read_cors(&self.s3, bucket).await {
                    Ok(rules) => cors::diff(&expected(i), &rules) == Plan::NoChange,
                    Err(_) => false,
                }
            })
            .buffer_unordered(CONCURRENCY)
            .filter(|ok| futures::future::ready(*ok))
            .count()
            .await
    }

    /// One GetBucketCors on each of `buckets`, at the operator's concurrency.
    pub async fn get_pass(&self, buckets: &[String]) -> anyhow::Result<Duration> {
        let started = Instant::now();
        futures::stream::iter(buckets)
            .map(|bucket| async move {
                self.s3
                    .get_bucket_cors()
                    .bucket(bucket)
                    .send()
                    .await
                    .map(drop)
                    .with_context(|| format!("GetBucketCors {bucket}"))
            })
            .buffer_unordered(CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(started.elapsed())
    }
    /// Creates `objects` through the Kubernetes API, [`CREATE_CONCURRENCY`] at a time; how
    /// long that took.
    pub async fn create_objects(
        &self,
        objects: impl Iterator<Item = (String, BucketCors)>,
    ) -> anyhow::Result<Duration> {
        let started = Instant::now();
        futures::stream::iter(objects)
            .map(|(namespace, object)| {
                let api: Api<BucketCors> = Api::namespaced(self.kube.clone(), &namespace);
                async move {
                    api.create(&PostParams::default(), &object)
                        .await
                        .map(drop)
                        .with_context(|| {
                            format!(
                                "creating {namespace}/{}",
                                object.metadata.name.as_deref().unwrap_or_default()
                            )
                        })
                }
            })
            .buffer_unordered(CREATE_CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(started.elapsed())
    }
}

/// The variables of `pid`'s environment whose names start with `prefix`, sorted, as
/// `NAME=value ` (values normalised as arguments are).
fn environment(pid: u32, prefix: &str) -> String {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    let mut vars: Vec<String> = raw
        .split(|b| *b == 0)
        .filter_map(|v| std::str::from_utf8(v).ok())
        .filter(|v| v.starts_with(prefix))
        .map(|v| match v.split_once('=') {
            Some((name, value)) => format!("{name}={} ", normalise(value)),
            None => format!("{v} "),
        })
        .collect();
    vars.sort();
    vars.concat()
}

/// `arg` without what changes from run to run: ports, this run's folders, process ids.
fn normalise(arg: &str) -> String {
    let mut out = String::with_capacity(arg.len());
    let mut rest = arg;
    while !rest.is_empty() {
        if let Some(tail) = rest.strip_prefix("/tmp/") {
            out.push_str("<tmp>");
            rest = tail.trim_start_matches(|c: char| c != '/' && c != ',' && c != ' ');
            // The rest of the path names a file of the run: keep its last component.
            let end = rest.find([',', ' ']).unwrap_or(rest.len());
            let path = &rest[..end];
            if let Some(file) = Path::new(path).file_name() {
                out.push_str("/…/");
                out.push_str(&file.to_string_lossy());
            }
            rest = &rest[end..];
            continue;
        }
        let c = rest.chars().next().expect("not empty");
        let digits = rest[1..]
            .find(|d: char| !d.is_ascii_digit())
            .unwrap_or(rest.len() - 1);
        if c == '=' && digits >= 4 {
            out.push_str("=<number>");
            rest = &rest[1 + digits..];
            continue;
        }
        if c == ':' && rest[1..].starts_with(|d: char| d.is_ascii_digit()) {
            out.push_str(":<port>");
            rest = rest[1..].trim_start_matches(|d: char| d.is_ascii_digit());
            continue;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    if out.chars().all(|c| c.is_ascii_digit()) && out.len() >= 4 {
        return "<number>".into();
    }
    out
}

pub async fn warm_up(s3: &aws_sdk_s3::Client) -> anyhow::Result<()> {
    let bucket = format!("warm-up-{}", std::process::id());
    s3.create_bucket().bucket(&bucket).send().await?;
    s3.put_bucket_cors()
        .bucket(&bucket)
        .cors_configuration(sdk_configuration(&rules_for(0, 0)))
        .send()
        .await?;
    read_cors(s3, &bucket).await?;
    Ok(())
}

pub fn object_name(i: usize) -> String {
    format!("cors-{i}")
}

/// The rules of object `i`; `variant` changes the first origin (an update).
pub fn rules_for(i: usize, variant: usize) -> Vec<CorsRule> {
    let origin = if variant == 0 {
        format!("https://app-{i}.example.com")
    } else {
        format!("https://app-{i}-v{variant}.example.com")
    };
    vec![
        CorsRule::new([origin], ["GET", "PUT"])
            .id("app")
            .allowed_headers(["*"])
            .expose_headers(["ETag"])
            .max_age(3000),
        CorsRule::new(["*"], ["GET"]),
    ]
}

pub fn sdk_configuration(rules: &[CorsRule]) -> CorsConfiguration {
    let non_empty = |list: &Vec<String>| (!list.is_empty()).then(|| list.clone());
    let rules = rules
        .iter()
        .map(|r| {
            SdkRule::builder()
                .set_id(r.id.clone())
                .set_allowed_origins(Some(r.allowed_origins.clone()))
                .set_allowed_methods(Some(r.allowed_methods.clone()))
                .set_allowed_headers(non_empty(&r.allowed_headers))
                .set_expose_headers(non_empty(&r.expose_headers))
                .set_max_age_seconds(r.max_age_seconds)
                .build()
                .expect("origins and methods are set")
        })
        .collect();
    CorsConfiguration::builder()
        .set_cors_rules(Some(rules))
        .build()
        .expect("rules are set")
}

/// The `--cors-configuration` document of the aws CLI.
pub fn cli_configuration(rules: &[CorsRule]) -> Value {
    let rules: Vec<Value> = rules
        .iter()
        .map(|r| {
            let mut rule = serde_json::Map::new();
            if let Some(id) = &r.id {
                rule.insert("ID".into(), id.clone().into());
            }
            rule.insert("AllowedOrigins".into(), r.allowed_origins.clone().into());
            rule.insert("AllowedMethods".into(), r.allowed_methods.clone().into());
            if !r.allowed_headers.is_empty() {
                rule.insert("AllowedHeaders".into(), r.allowed_headers.clone().into());
            }
            if !r.expose_headers.is_empty() {
                rule.insert("ExposeHeaders".into(), r.expose_headers.clone().into());
            }
            if let Some(age) = r.max_age_seconds {
                rule.insert("MaxAgeSeconds".into(), age.into());
            }
            Value::Object(rule)
        })
        .collect();
    serde_json::json!({ "CORSRules": rules })
}

/// What `bucket` holds, read by the benchmark's own client.
pub async fn read_cors(s3: &aws_sdk_s3::Client, bucket: &str) -> anyhow::Result<Vec<CorsRule>> {
    match s3.get_bucket_cors().bucket(bucket).send().await {
        Ok(out) => Ok(out
            .cors_rules()
            .iter()
            .map(|r| CorsRule {
                id: r.id().map(str::to_owned),
                allowed_origins: r.allowed_origins().to_vec(),
                allowed_methods: r.allowed_methods().to_vec(),
                allowed_headers: r.allowed_headers().to_vec(),
                expose_headers: r.expose_headers().to_vec(),
                max_age_seconds: r.max_age_seconds(),
            })
            .collect()),
        Err(err) if err.code() == Some("NoSuchCORSConfiguration") => Ok(Vec::new()),
        Err(err) => Err(anyhow!("GetBucketCors {bucket}: {err:?}")),
    }
}

pub fn converged(obj: &BucketCors) -> bool {
    let current =
        obj.status.as_ref().and_then(|s| s.observed_generation) == obj.metadata.generation;
    current && obj.is_ready()
}

pub fn in_sync(obj: &BucketCors) -> bool {
    converged(obj) && obj.ready_condition().is_some_and(|c| c.reason == "InSync")
}

/// Follows the objects of one namespace through a watch and tells when `n` of them satisfy
/// a condition.
pub struct WaitAll {
    pub done: tokio::task::JoinHandle<anyhow::Result<Instant>>,
}

impl WaitAll {
    /// Returns once the watch has listed the namespace, so that nothing created after is missed.
    pub async fn start(
        api: Api<BucketCors>,
        n: usize,
        condition: fn(&BucketCors) -> bool,
    ) -> anyhow::Result<WaitAll> {
        WaitAll::start_with(api, watcher::Config::default(), n, condition).await
    }

    /// [`WaitAll::start`] for the objects `config` selects.
    pub async fn start_with(
        api: Api<BucketCors>,
        config: watcher::Config,
        n: usize,
        condition: fn(&BucketCors) -> bool,
    ) -> anyhow::Result<WaitAll> {
        let (listed_tx, listed_rx) = tokio::sync::oneshot::channel();
        let done = tokio::spawn(async move {
            let mut listed_tx = Some(listed_tx);
            let mut state: HashMap<String, bool> = HashMap::new();
            let mut met = 0usize;
            let stream = watcher(api, config);
            futures::pin_mut!(stream);
            while let Some(event) = stream.next().await {
                let mut update = |obj: &BucketCors, present: bool| {
                    // Names repeat across namespaces.
                    let name = format!(
                        "{}/{}",
                        obj.metadata.namespace.as_deref().unwrap_or_default(),
                        obj.metadata.name.as_deref().unwrap_or_default()
                    );
                    let now = present && condition(obj);
                    let before = if present {
                        state.insert(name, now).unwrap_or(false)
                    } else {
                        state.remove(&name).unwrap_or(false)
                    };
                    match (before, now) {
                        (false, true) => met += 1,
                        (true, false) => met -= 1,
                        _ => {}
                    }
                };
                match event {
                    Ok(watcher::Event::Apply(obj) | watcher::Event::InitApply(obj)) => {
                        update(&obj, true)
                    }
                    Ok(watcher::Event::Delete(obj)) => update(&obj, false),
                    Ok(watcher::Event::Init) => {
                        state.clear();
                        met = 0;
                    }
                    Ok(watcher::Event::InitDone) => {
                        if let Some(tx) = listed_tx.take() {
                            let _ = tx.send(());
                        }
                    }
                    Err(err) => say(&format!("watch error (retried): {err}")),
                }
                if met >= n && listed_tx.is_none() {
                    return Ok(Instant::now());
                }
            }
            Err(anyhow!("the watch ended"))
        });
        tokio::time::timeout(Duration::from_secs(60), listed_rx)
            .await
            .context("the watch did not list the namespace in time")?
            .context("the watch ended before listing")?;
        Ok(WaitAll { done })
    }

    pub async fn wait(self, deadline: Duration) -> anyhow::Result<Instant> {
        let abort = self.done.abort_handle();
        match tokio::time::timeout(deadline, self.done).await {
            Ok(joined) => joined?,
            Err(_) => {
                abort.abort();
                Err(anyhow!("timed out after {deadline:?}"))
            }
        }
    }
}

/// The operator binary as a process (the tests' [`OperatorProcess`]), with what the
/// benchmark reads of it.
pub struct Operator {
    pub process: OperatorProcess,
    pub pid: u32,
    pub health_port: u16,
    /// When the kernel started the process.
    pub started: Instant,
}

impl Operator {
    /// Starts `binary` with `args`; `BUCKETCORS_BENCH_WRAPPER` may name a command to run it
    /// under (e.g. `heaptrack -o /tmp/operator`), whose own cost its figures then include.
    pub fn spawn(
        binary: &Path,
        kubeconfig: &Path,
        args: &[String],
        log: PathBuf,
    ) -> anyhow::Result<Operator> {
        let wrapper = std::env::var("BUCKETCORS_BENCH_WRAPPER").unwrap_or_default();
        let wrapper: Vec<&str> = wrapper.split_whitespace().collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let process = OperatorProcess::spawn(binary, &wrapper, kubeconfig, &args, &[], log);
        let deadline = Instant::now() + Duration::from_secs(10);
        let pid = loop {
            if let Some(pid) = process.pid() {
                break pid;
            }
            ensure!(
                Instant::now() < deadline,
                "the operator's process did not appear"
            );
            std::thread::sleep(Duration::from_millis(5));
        };
        let started = process_start(pid).unwrap_or_else(Instant::now);
        Ok(Operator {
            health_port: process.health_port,
            process,
            pid,
            started,
        })
    }

    /// Polls /readyz until it answers 200; returns when it did.
    pub async fn wait_ready(&self, deadline: Duration) -> anyhow::Result<Instant> {
        let started = Instant::now();
        loop {
            if http_status(self.health_port, "/readyz").await == Some(200) {
                return Ok(Instant::now());
            }
            ensure!(
                started.elapsed() < deadline,
                "the operator was not ready within {deadline:?}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// (VmHWM, VmRSS) in bytes.
    pub fn memory(&self) -> (u64, u64) {
        let [peak, rss] = self.status_fields(["VmHWM:", "VmRSS:"]);
        (peak, rss)
    }

    /// (RssAnon, RssFile) in bytes: what the process allocated, and what it maps from files.
    pub fn rss_split(&self) -> (u64, u64) {
        let [anon, file] = self.status_fields(["RssAnon:", "RssFile:"]);
        (anon, file)
    }

    /// Fields of /proc/<pid>/status given in KiB, in bytes (0 when absent).
    pub fn status_fields<const N: usize>(&self, names: [&str; N]) -> [u64; N] {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap_or_default();
        names.map(|name| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
                .map_or(0, |kib| kib * 1024)
        })
    }
}

pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f)
        .await
        .expect("a blocking task finishes")
}

/// The status code of `GET path` on a loopback port, or None when nothing answers.
pub async fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut head = [0u8; 12];
    tokio::time::timeout(Duration::from_secs(2), stream.read_exact(&mut head))
        .await
        .ok()?
        .ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

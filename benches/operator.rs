//! Benchmarks of the operator binary (built in release mode) against real servers on loopback:
//! a kube-apiserver with etcd (scripts/control-plane.sh) and the moto S3 server, which records
//! every request it receives so that S3 calls are counted at the server.
//!
//! `make bench` runs it; `make bench BENCH_ARGS=--large` adds 10,000 objects. Arguments:
//!   --large          also converge 10,000 objects (or BUCKETCORS_BENCH_LARGE=1)
//!   --sizes A,B,...  the object counts to converge (default 100,1000)
//!
//! It prints a table and writes BENCHMARKS.md at the root of the repository.

// The tests' helpers for servers on loopback (free ports, the Python environment, polling).
#[allow(dead_code)]
#[path = "../tests/it/support/process.rs"]
mod process;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail, ensure};
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::types::{CorsConfiguration, CorsRule as SdkRule};
use bucketcors::api::{BucketCors, BucketCorsSpec, DeletionPolicy, ManagementPolicy};
use bucketcors::cors::{self, CorsRule, Plan};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

// The tests' fault proxy, to stand for a store that throttles above a rate.
#[allow(dead_code)]
#[path = "../tests/it/support/fault_proxy.rs"]
mod fault_proxy;

use process::{free_port, http_answers, python_env, repo_root, wait_until};

/// The store of the request-budget phase answers 503 SlowDown to a request that would make
/// more than this many in the last second.
const THROTTLE_ABOVE: usize = 100;
/// The operator's budget for that store: its rate and burst together stay below the throttle.
const BUDGET_PER_SECOND: u32 = 80;
const BUDGET_BURST: u32 = 10;

/// The operator's `--concurrency` (its default), and the bare-SDK loop's.
const CONCURRENCY: usize = 16;
/// Objects created at once through the Kubernetes API.
const CREATE_CONCURRENCY: usize = 32;
/// Resync interval of the steady-state run.
const STEADY_RESYNC: Duration = Duration::from_secs(10);
/// Resync intervals the steady-state window lasts.
const STEADY_WINDOWS: u32 = 4;
/// Sequential spec updates timed for the change latency.
const UPDATES: usize = 100;
/// Buckets configured one by one with the aws CLI.
const CLI_SAMPLE: usize = 20;
/// The size the steady-state, change-latency and start-up figures are taken at.
const REFERENCE_SIZE: usize = 1000;
/// Operator restarts timed for the start-up figures (the median is reported).
const STARTUP_ROUNDS: usize = 3;

const MIB: f64 = 1024.0 * 1024.0;

fn main() {
    let options = match Options::parse() {
        Ok(options) => options,
        Err(err) => {
            eprintln!("bench: {err:#}");
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let work = std::env::temp_dir().join(format!("bucketcors-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work).expect("a work directory");
    // On SIGINT or SIGTERM the run is dropped: every server it started stops with its handle.
    let outcome = runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("a SIGTERM handler");
        tokio::select! {
            outcome = run(&options, &work) => Some(outcome),
            _ = tokio::signal::ctrl_c() => None,
            _ = term.recv() => None,
        }
    });
    match outcome {
        Some(Ok(())) => {
            let _ = std::fs::remove_dir_all(&work);
        }
        Some(Err(err)) => {
            eprintln!("bench failed: {err:#}");
            eprintln!("logs kept in {}", work.display());
            std::process::exit(1);
        }
        None => {
            eprintln!("bench interrupted; everything it started is stopped");
            let _ = std::fs::remove_dir_all(&work);
            std::process::exit(130);
        }
    }
}

struct Options {
    sizes: Vec<usize>,
    large: bool,
}

impl Options {
    fn parse() -> anyhow::Result<Options> {
        let mut sizes = vec![100, 1000];
        let mut large = std::env::var("BUCKETCORS_BENCH_LARGE").is_ok_and(|v| v == "1");
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--large" => large = true,
                "--sizes" => {
                    let list = args.next().context("--sizes needs a value")?;
                    sizes = list
                        .split(',')
                        .map(|s| s.trim().parse::<usize>())
                        .collect::<Result<_, _>>()
                        .context("--sizes takes numbers separated by commas")?;
                    ensure!(sizes.iter().all(|&n| n > 0), "sizes must be positive");
                }
                // Added by `cargo bench`.
                "--bench" => {}
                other => bail!("unknown argument {other} (known: --large, --sizes A,B,...)"),
            }
        }
        if large && !sizes.contains(&10_000) {
            sizes.push(10_000);
        }
        sizes.sort_unstable();
        sizes.dedup();
        Ok(Options { sizes, large })
    }

    /// The size the steady-state, change-latency and start-up figures are taken at.
    fn reference(&self) -> usize {
        if self.sizes.contains(&REFERENCE_SIZE) {
            REFERENCE_SIZE
        } else {
            self.sizes
                .iter()
                .copied()
                .filter(|&n| n <= REFERENCE_SIZE)
                .max()
                .unwrap_or(self.sizes[0])
        }
    }

    fn command(&self) -> String {
        let default = self.sizes == [100, 1000];
        match (self.large, default) {
            (false, true) => "make bench".into(),
            (true, _) if self.sizes == [100, 1000, 10_000] => {
                "make bench BENCH_ARGS=--large".into()
            }
            _ => format!(
                "make bench BENCH_ARGS='--sizes {}'",
                self.sizes
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------------------------

async fn run(options: &Options, work: &Path) -> anyhow::Result<()> {
    let run_started = Instant::now();
    let date = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let operator_bin = PathBuf::from(env!("CARGO_BIN_EXE_bucketcors"));
    say(&format!("operator binary: {}", operator_bin.display()));
    let machine = Machine::read();
    say(&format!(
        "machine: {} CPUs ({}), {:.1} GiB, load average {}",
        machine.cpus, machine.cpu_model, machine.mem_gib, machine.load_before
    ));

    let venv = blocking(python_env).await;
    let cp = blocking({
        let work = work.to_owned();
        move || ControlPlane::start(&work)
    })
    .await?;
    let kube = cp.client().await?;
    cp.install_crd(&kube).await?;
    let moto = blocking({
        let (venv, work) = (venv.clone(), work.to_owned());
        move || MotoServer::start(&venv, &work)
    })
    .await?;
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
    let world = World {
        cp,
        kube,
        s3: moto.client(),
        endpoint: moto.endpoint(),
        moto_pid,
        tail,
        work: work.to_owned(),
        prefix,
        operator_bin,
    };

    let mut report = Report {
        date,
        command: options.command(),
        machine,
        versions,
        sizes: Vec::new(),
        latency: None,
        steady: None,
        startup: None,
        cli: None,
        budget: Vec::new(),
        phases: Vec::new(),
        reference: options.reference(),
        duration: Duration::ZERO,
    };

    for &n in &options.sizes {
        let keep = n == report.reference;
        let (result, operator) = world.converge(n, keep, &mut report.phases).await?;
        report.sizes.push(result);
        if let Some(mut operator) = operator {
            report.latency = Some(
                world
                    .change_latency(n, &operator, &mut report.phases)
                    .await?,
            );
            blocking_stop(&mut operator).await;
            report.steady = Some(world.steady_state(n, &mut report.phases).await?);
            report.startup = Some(world.startup(n, &mut report.phases).await?);
        }
    }
    // The request budget: at the largest size, with and (at the reference size) without it.
    let largest = *options.sizes.last().expect("at least one size");
    report
        .budget
        .push(world.budgeted(report.reference, None).await?);
    report.budget.push(
        world
            .budgeted(largest, Some((BUDGET_PER_SECOND, BUDGET_BURST)))
            .await?,
    );
    report.cli = Some(world.aws_cli(CLI_SAMPLE).await?);
    report.duration = run_started.elapsed();

    let text = report.markdown();
    println!("\n{}", report.table());
    let path = repo_root().join("BENCHMARKS.md");
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    say(&format!(
        "wrote {} after {:.0} s",
        path.display(),
        report.duration.as_secs_f64()
    ));
    world.tail.stop();
    Ok(())
}

struct World {
    cp: ControlPlane,
    kube: kube::Client,
    s3: aws_sdk_s3::Client,
    endpoint: String,
    moto_pid: u32,
    tail: Tail,
    work: PathBuf,
    prefix: String,
    operator_bin: PathBuf,
}

/// One run of the request-budget phase.
struct BudgetRun {
    n: usize,
    /// Rate and burst; none: no budget.
    budget: Option<(u32, u32)>,
    converged: Duration,
    /// Requests the store received (throttled ones included).
    requests: usize,
    /// Requests it answered 503 SlowDown.
    throttled: usize,
}

struct SizeResult {
    n: usize,
    buckets_created: Duration,
    limit: Duration,
    limit_gets: Duration,
    objects_created: Duration,
    converged: Duration,
    operator_s3: OpCounts,
    idle_rss: u64,
    peak_rss: u64,
    rss: u64,
    api_requests: BTreeMap<String, f64>,
    /// CPU used by each process during the limit and during convergence.
    limit_cpu: Phase,
    converge_cpu: Phase,
}

impl World {
    fn bucket(&self, set: &str, i: usize) -> String {
        format!("{}{set}-{i}", self.prefix)
    }

    fn spec(&self, bucket: &str, rules: Vec<CorsRule>) -> BucketCorsSpec {
        BucketCorsSpec {
            bucket: bucket.to_owned(),
            region: None,
            endpoint: Some(self.endpoint.clone()),
            force_path_style: None,
            store_ref: None,
            credentials_secret_ref: None,
            expected_bucket_owner: None,
            deletion_policy: DeletionPolicy::Delete,
            management_policy: ManagementPolicy::Full,
            put_checksum: None,
            store_profile: None,
            rules,
            expectations: Vec::new(),
            verify: None,
        }
    }

    fn pids(&self, operator: Option<&Operator>) -> Vec<(&'static str, u32)> {
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

    async fn create_buckets(&self, buckets: &[String]) -> anyhow::Result<Duration> {
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

    /// The bare minimum on fresh buckets: one GetBucketCors and one PutBucketCors each, at the
    /// operator's concurrency.
    async fn limit(&self, buckets: &[String]) -> anyhow::Result<Duration> {
        let started = Instant::now();
        futures::stream::iter(buckets.iter().enumerate())
            .map(|(i, bucket)| async move {
                match self.s3.get_bucket_cors().bucket(bucket).send().await {
                    Ok(_) => {}
                    Err(err) if err.code() == Some("NoSuchCORSConfiguration") => {}
                    Err(err) => return Err(anyhow!("GetBucketCors {bucket}: {err:?}")),
                }
                self.s3
                    .put_bucket_cors()
                    .bucket(bucket)
                    .cors_configuration(sdk_configuration(&rules_for(i, 0)))
                    .send()
                    .await
                    .map(drop)
                    .with_context(|| format!("PutBucketCors {bucket}"))
            })
            .buffer_unordered(CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(started.elapsed())
    }

    async fn namespace(&self, name: &str) -> anyhow::Result<()> {
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

    fn start_operator(
        &self,
        name: &str,
        namespace: &str,
        extra: &[&str],
    ) -> anyhow::Result<Operator> {
        let mut args = vec![
            "--namespace".to_owned(),
            namespace.to_owned(),
            "--concurrency".to_owned(),
            CONCURRENCY.to_string(),
        ];
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        Operator::spawn(
            &self.operator_bin,
            &self.cp.kubeconfig,
            &args,
            self.work.join(format!("operator-{name}.log")),
        )
    }

    /// Limit, then N objects created at once and converged by a fresh operator. Returns the
    /// operator still running when `keep`.
    async fn converge(
        &self,
        n: usize,
        keep: bool,
        phases: &mut Vec<Phase>,
    ) -> anyhow::Result<(SizeResult, Option<Operator>)> {
        say(&format!("== {n} objects: bare-SDK limit"));
        let limit_buckets: Vec<String> = (0..n).map(|i| self.bucket(&format!("l{n}"), i)).collect();
        self.create_buckets(&limit_buckets).await?;
        let cpu = CpuSnapshot::take(&self.pids(None));
        let limit = self.limit(&limit_buckets).await?;
        let cpu_after = CpuSnapshot::take(&self.pids(None));
        let limit_cpu = Phase::new(
            format!("bare-SDK limit, {n} buckets (Get+Put)"),
            &cpu,
            &cpu_after,
        );
        phases.push(limit_cpu.clone());
        let limit_gets = self.get_pass(&limit_buckets).await?;
        say(&format!(
            "limit: {:.2} s for {n} Get+Put, {:.2} s for {n} Get",
            limit.as_secs_f64(),
            limit_gets.as_secs_f64()
        ));

        let set = format!("n{n}");
        let buckets: Vec<String> = (0..n).map(|i| self.bucket(&set, i)).collect();
        let buckets_created = self.create_buckets(&buckets).await?;
        let namespace = format!("bench-{n}");
        self.namespace(&namespace).await?;
        let mut operator = self.start_operator(&format!("converge-{n}"), &namespace, &[])?;
        operator.wait_ready(Duration::from_secs(60)).await?;
        let idle_rss = operator.memory().1;
        let api: Api<BucketCors> = Api::namespaced(self.kube.clone(), &namespace);
        let waiter = WaitAll::start(api.clone(), n, converged).await?;

        say(&format!("== {n} objects: create and converge"));
        let api_before = api_requests(&self.kube).await?;
        let cpu = CpuSnapshot::take(&self.pids(Some(&operator)));
        let started = Instant::now();
        futures::stream::iter(buckets.iter().enumerate())
            .map(|(i, bucket)| {
                let api = api.clone();
                let object = BucketCors::new(&object_name(i), self.spec(bucket, rules_for(i, 0)));
                async move {
                    api.create(&PostParams::default(), &object)
                        .await
                        .map(drop)
                        .with_context(|| format!("creating {}", object_name(i)))
                }
            })
            .buffer_unordered(CREATE_CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
        let objects_created = started.elapsed();
        let deadline = Duration::from_secs(120) + Duration::from_millis(100) * n as u32;
        let all_ready = waiter.wait(deadline).await?;
        let converged_in = all_ready.duration_since(started);
        let cpu_after = CpuSnapshot::take(&self.pids(Some(&operator)));
        let api_after = api_requests(&self.kube).await?;
        let converge_cpu = Phase::new(
            format!("operator converging {n} objects (creation included)"),
            &cpu,
            &cpu_after,
        );
        phases.push(converge_cpu.clone());
        say(&format!(
            "created in {:.2} s, all Ready after {:.2} s",
            objects_created.as_secs_f64(),
            converged_in.as_secs_f64()
        ));

        let bucket_set: HashSet<&str> = buckets.iter().map(String::as_str).collect();
        let operator_s3 = self
            .tail
            .counts(started, Instant::now(), |r| {
                r.operator && bucket_set.contains(r.bucket.as_str())
            })
            .await;
        let verified = self.verify(&buckets, |i| rules_for(i, 0)).await;
        ensure!(
            verified == n,
            "only {verified} of {n} buckets hold their object's rules"
        );
        let (peak_rss, rss) = operator.memory();
        let result = SizeResult {
            n,
            buckets_created,
            limit,
            limit_gets,
            objects_created,
            converged: converged_in,
            operator_s3,
            idle_rss,
            peak_rss,
            rss,
            api_requests: diff_requests(&api_before, &api_after),
            limit_cpu,
            converge_cpu,
        };
        let (anon, file) = operator.rss_split();
        say(&format!(
            "S3 by the operator: {:?}; RSS peak {:.1} MiB, now {:.1} MiB ({:.1} MiB heap and \
             stacks, {:.1} MiB mapped from the binary and libraries)",
            result.operator_s3,
            peak_rss as f64 / MIB,
            rss as f64 / MIB,
            anon as f64 / MIB,
            file as f64 / MIB
        ));
        if keep {
            Ok((result, Some(operator)))
        } else {
            blocking_stop(&mut operator).await;
            Ok((result, None))
        }
    }

    /// N objects, each with a bucket of its own, on one store that throttles above
    /// [`THROTTLE_ABOVE`] requests a second (the tests' fault proxy in front of moto),
    /// converged by a fresh operator with `budget` (rate, burst) for its stores, or none.
    async fn budgeted(&self, n: usize, budget: Option<(u32, u32)>) -> anyhow::Result<BudgetRun> {
        let label = budget.map_or("no budget".to_owned(), |(r, b)| {
            format!("budget {r}/s, burst {b}")
        });
        say(&format!(
            "== {n} objects on a store that throttles above {THROTTLE_ABOVE}/s, {label}"
        ));
        let proxy = fault_proxy::FaultProxy::start(&self.endpoint).await;
        proxy.set(fault_proxy::Fault::ThrottleAbove(THROTTLE_ABOVE));
        let set = match budget {
            Some(_) => format!("b{n}"),
            None => format!("u{n}"),
        };
        let buckets: Vec<String> = (0..n).map(|i| self.bucket(&set, i)).collect();
        self.create_buckets(&buckets).await?;
        let namespace = format!("bench-{set}");
        self.namespace(&namespace).await?;
        let (rate, burst) = budget.unwrap_or((0, 1));
        let (rate, burst) = (rate.to_string(), burst.to_string());
        let mut operator = self.start_operator(
            &format!("budget-{set}"),
            &namespace,
            &[
                "--store-requests-per-second",
                &rate,
                "--store-request-burst",
                &burst,
            ],
        )?;
        operator.wait_ready(Duration::from_secs(60)).await?;
        let api: Api<BucketCors> = Api::namespaced(self.kube.clone(), &namespace);
        let waiter = WaitAll::start(api.clone(), n, converged).await?;
        let endpoint = proxy.endpoint();
        let started = Instant::now();
        futures::stream::iter(buckets.iter().enumerate())
            .map(|(i, bucket)| {
                let api = api.clone();
                let mut spec = self.spec(bucket, rules_for(i, 0));
                spec.endpoint = Some(endpoint.clone());
                let object = BucketCors::new(&object_name(i), spec);
                async move {
                    api.create(&PostParams::default(), &object)
                        .await
                        .map(drop)
                        .with_context(|| format!("creating {}", object_name(i)))
                }
            })
            .buffer_unordered(CREATE_CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
        let deadline = Duration::from_secs(120) + Duration::from_millis(100) * n as u32;
        let all_ready = waiter.wait(deadline).await?;
        let converged_in = all_ready.duration_since(started);
        let (requests, throttled) = (proxy.requests_seen(), proxy.faulted());
        let verified = self.verify(&buckets, |i| rules_for(i, 0)).await;
        ensure!(
            verified == n,
            "only {verified} of {n} buckets hold their object's rules"
        );
        blocking_stop(&mut operator).await;
        say(&format!(
            "{label}: all Ready after {:.2} s, {requests} requests, {throttled} answered 503",
            converged_in.as_secs_f64()
        ));
        Ok(BudgetRun {
            n,
            budget,
            converged: converged_in,
            requests,
            throttled,
        })
    }

    /// How many of `buckets` hold exactly the rules `expected(i)`, read concurrently.
    async fn verify(&self, buckets: &[String], expected: impl Fn(usize) -> Vec<CorsRule>) -> usize {
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

    /// Sequential spec updates, each timed until the S3 server holds the new rules.
    async fn change_latency(
        &self,
        n: usize,
        operator: &Operator,
        phases: &mut Vec<Phase>,
    ) -> anyhow::Result<Latency> {
        say(&format!(
            "== change latency: {UPDATES} updates with {n} objects"
        ));
        let api: Api<BucketCors> = Api::namespaced(self.kube.clone(), &format!("bench-{n}"));
        let cpu = CpuSnapshot::take(&self.pids(Some(operator)));
        let mut samples = Vec::with_capacity(UPDATES);
        for k in 0..UPDATES {
            let i = k % n;
            let bucket = self.bucket(&format!("n{n}"), i);
            let rules = rules_for(i, 1 + k / n);
            let patch = serde_json::json!({ "spec": { "rules": rules } });
            let started = Instant::now();
            api.patch(
                &object_name(i),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
            .with_context(|| format!("updating {}", object_name(i)))?;
            loop {
                if let Ok(observed) = read_cors(&self.s3, &bucket).await
                    && cors::diff(&rules, &observed) == Plan::NoChange
                {
                    break;
                }
                ensure!(
                    started.elapsed() < Duration::from_secs(30),
                    "bucket {bucket} did not get the update of {} within 30 s",
                    object_name(i)
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            samples.push(started.elapsed());
        }
        phases.push(Phase::new(
            format!("{UPDATES} sequential updates"),
            &cpu,
            &CpuSnapshot::take(&self.pids(Some(operator))),
        ));
        let latency = Latency::of(samples);
        say(&format!(
            "p50 {:.0} ms, p95 {:.0} ms, max {:.0} ms",
            ms(latency.p50),
            ms(latency.p95),
            ms(latency.max)
        ));
        Ok(latency)
    }

    /// A fresh operator with a short resync over N converged objects: once every object has
    /// been checked (InSync), counts what reaches the S3 server over several resync intervals.
    async fn steady_state(&self, n: usize, phases: &mut Vec<Phase>) -> anyhow::Result<Steady> {
        say(&format!(
            "== steady state: {n} objects, resync {} s",
            STEADY_RESYNC.as_secs()
        ));
        let namespace = format!("bench-{n}");
        let api: Api<BucketCors> = Api::namespaced(self.kube.clone(), &namespace);
        let resync = format!("{}s", STEADY_RESYNC.as_secs());
        let mut operator =
            self.start_operator("steady", &namespace, &["--resync-interval", &resync])?;
        operator.wait_ready(Duration::from_secs(60)).await?;
        let waiter = WaitAll::start(api, n, in_sync).await?;
        let checked = waiter
            .wait(Duration::from_secs(120) + Duration::from_millis(100) * n as u32)
            .await
            .context("waiting for every object to be InSync")?;

        // Every bucket has just been read; the window opens half a resync later, so that each
        // bucket's next reads fall inside it rather than on its edges, and lasts a whole number
        // of resyncs: exactly one read per object per resync means exactly STEADY_WINDOWS
        // reads of each bucket in it.
        let window = STEADY_RESYNC * STEADY_WINDOWS;
        tokio::time::sleep_until((checked + STEADY_RESYNC / 2).into()).await;
        let api_before = api_requests(&self.kube).await?;
        let cpu = CpuSnapshot::take(&self.pids(Some(&operator)));
        let from = Instant::now();
        // The measurement window itself: nothing is awaited, the servers are only observed.
        tokio::time::sleep(window).await;
        let to = Instant::now();
        let cpu_after = CpuSnapshot::take(&self.pids(Some(&operator)));
        let api_after = api_requests(&self.kube).await?;
        phases.push(Phase::new(
            format!(
                "steady state, {n} objects, {} s window, resync {} s",
                window.as_secs(),
                STEADY_RESYNC.as_secs()
            ),
            &cpu,
            &cpu_after,
        ));
        // Requests reach the recording a little after they are sent; let it catch up.
        self.tail.caught_up().await;
        let set = format!("{}n{n}-", self.prefix);
        let records = self
            .tail
            .select(from, to, |r| r.operator && r.bucket.starts_with(&set));
        let counts = OpCounts::of(records.iter());
        let mut per_bucket: HashMap<&str, Vec<Instant>> = HashMap::new();
        for r in records.iter().filter(|r| r.op == Op::GetCors) {
            per_bucket.entry(&r.bucket).or_default().push(r.at);
        }
        let gaps: Vec<Duration> = per_bucket
            .values()
            .flat_map(|times| times.windows(2).map(|w| w[1].duration_since(w[0])))
            .collect();
        let (peak_rss, rss) = operator.memory();
        blocking_stop(&mut operator).await;
        let api = diff_requests(&api_before, &api_after);
        let api_writes = api
            .iter()
            .filter(|(k, _)| is_write(k))
            .map(|(_, v)| v.round() as u64)
            .sum();
        let steady = Steady {
            n,
            window,
            counts,
            buckets_seen: per_bucket.len(),
            buckets_exact: per_bucket
                .values()
                .filter(|t| t.len() == STEADY_WINDOWS as usize)
                .count(),
            min_gap: gaps.iter().min().copied().unwrap_or_default(),
            max_gap: gaps.iter().max().copied().unwrap_or_default(),
            mean_gap: if gaps.is_empty() {
                Duration::ZERO
            } else {
                gaps.iter().sum::<Duration>() / gaps.len() as u32
            },
            api_writes,
            peak_rss,
            rss,
        };
        // Which writes, by verb and resource: the API server's counters cover every client.
        let written: Vec<String> = api
            .iter()
            .filter(|(k, v)| is_write(k) && **v > 0.0)
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        say(&format!(
            "{:?}; {:.3} Get/object/resync; gaps {:.2}..{:.2} s; API writes {api_writes} {written:?}",
            steady.counts,
            steady.gets_per_object_per_resync(),
            steady.min_gap.as_secs_f64(),
            steady.max_gap.as_secs_f64(),
        ));
        Ok(steady)
    }

    /// One GetBucketCors on each of `buckets`, at the operator's concurrency.
    async fn get_pass(&self, buckets: &[String]) -> anyhow::Result<Duration> {
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

    /// Fresh operators over N existing, converged (InSync) objects: time to /readyz and until
    /// the S3 server has seen a GetBucketCors on every bucket. Each round is paired with a
    /// bare-SDK Get pass over as many buckets just before it.
    async fn startup(&self, n: usize, phases: &mut Vec<Phase>) -> anyhow::Result<Startup> {
        let limit_buckets: Vec<String> = (0..n).map(|i| self.bucket(&format!("l{n}"), i)).collect();
        let mut rounds = Vec::with_capacity(STARTUP_ROUNDS);
        for round in 1..=STARTUP_ROUNDS {
            say(&format!(
                "== start-up over {n} existing objects, round {round} of {STARTUP_ROUNDS}"
            ));
            let cpu = CpuSnapshot::take(&self.pids(None));
            let limit_gets = self.get_pass(&limit_buckets).await?;
            if round == 1 {
                phases.push(Phase::new(
                    format!("bare-SDK Get pass, {n} buckets"),
                    &cpu,
                    &CpuSnapshot::take(&self.pids(None)),
                ));
            }
            let r = self.startup_round(n, limit_gets, round, phases).await?;
            say(&format!(
                "ready after {:.0} ms; {n} buckets checked {:.2} s after start ({:.2} s after ready); bare-SDK Get pass {:.2} s",
                ms(r.ready),
                r.verified.as_secs_f64(),
                r.verified_after_ready.as_secs_f64(),
                limit_gets.as_secs_f64()
            ));
            rounds.push(r);
        }
        Ok(Startup { n, rounds })
    }

    async fn startup_round(
        &self,
        n: usize,
        limit_gets: Duration,
        round: usize,
        phases: &mut Vec<Phase>,
    ) -> anyhow::Result<StartupRound> {
        let namespace = format!("bench-{n}");
        let set = format!("{}n{n}-", self.prefix);
        let api_before = api_requests(&self.kube).await?;
        let cpu = CpuSnapshot::take(&self.pids(None));
        let spawned = Instant::now();
        let mut operator = self.start_operator(&format!("startup-{round}"), &namespace, &[])?;
        let ready_at = operator.wait_ready(Duration::from_secs(60)).await?;
        let deadline =
            Instant::now() + Duration::from_secs(60) + Duration::from_millis(100) * n as u32;
        let verified_at = loop {
            let (seen, last) = self.tail.distinct_gets(spawned, &set);
            if seen >= n {
                break last.expect("a last Get when some were seen");
            }
            ensure!(
                Instant::now() < deadline,
                "the operator checked only {seen} of {n} buckets after start"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let cpu_after = CpuSnapshot::take(&self.pids(Some(&operator)));
        if round == 1 {
            phases.push(Phase::new(
                format!("start-up over {n} existing objects"),
                &cpu,
                &cpu_after,
            ));
        }
        let api_after = api_requests(&self.kube).await?;
        let counts = self
            .tail
            .counts(spawned, Instant::now(), |r| {
                r.operator && r.bucket.starts_with(&set)
            })
            .await;
        let (peak_rss, rss) = operator.memory();
        blocking_stop(&mut operator).await;
        let api = diff_requests(&api_before, &api_after);
        let status_writes = api
            .iter()
            .filter(|(k, _)| is_write(k) && k.contains("bucketcors"))
            .map(|(_, v)| v.round() as u64)
            .sum();
        Ok(StartupRound {
            limit_gets,
            ready: ready_at.saturating_duration_since(operator.started),
            verified: verified_at.saturating_duration_since(operator.started),
            verified_after_ready: verified_at.saturating_duration_since(ready_at),
            counts,
            status_writes,
            peak_rss,
            rss,
        })
    }

    /// `aws s3api put-bucket-cors` once per bucket, one after the other, as a user would.
    async fn aws_cli(&self, sample: usize) -> anyhow::Result<Cli> {
        say(&format!("== aws CLI on {sample} buckets"));
        let buckets: Vec<String> = (0..sample).map(|i| self.bucket("cli", i)).collect();
        self.create_buckets(&buckets).await?;
        let aws = python_env().join("bin/aws");
        let mut total = Duration::ZERO;
        for (i, bucket) in buckets.iter().enumerate() {
            let file = self.work.join(format!("cors-{i}.json"));
            std::fs::write(&file, cli_configuration(&rules_for(i, 0)).to_string())?;
            let file_arg = format!("file://{}", file.display());
            let args = [
                "s3api",
                "put-bucket-cors",
                "--endpoint-url",
                &self.endpoint,
                "--bucket",
                bucket,
                "--cors-configuration",
                &file_arg,
            ];
            let started = Instant::now();
            let out = tokio::process::Command::new(&aws)
                .args(args)
                .env("AWS_ACCESS_KEY_ID", "testing")
                .env("AWS_SECRET_ACCESS_KEY", "testing")
                .env("AWS_DEFAULT_REGION", "us-east-1")
                .env("AWS_EC2_METADATA_DISABLED", "true")
                .stdin(Stdio::null())
                .output()
                .await
                .context("running the aws CLI")?;
            total += started.elapsed();
            ensure!(
                out.status.success(),
                "aws s3api put-bucket-cors failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let verified = self.verify(&buckets, |i| rules_for(i, 0)).await;
        ensure!(
            verified == sample,
            "only {verified} of {sample} buckets hold what the aws CLI put"
        );
        let cli = Cli {
            sample,
            per_bucket: total / sample as u32,
        };
        say(&format!("{:.0} ms per bucket", ms(cli.per_bucket)));
        Ok(cli)
    }
}

async fn warm_up(s3: &aws_sdk_s3::Client) -> anyhow::Result<()> {
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

fn object_name(i: usize) -> String {
    format!("cors-{i}")
}

/// The rules of object `i`; `variant` changes the first origin (an update).
fn rules_for(i: usize, variant: usize) -> Vec<CorsRule> {
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

fn sdk_configuration(rules: &[CorsRule]) -> CorsConfiguration {
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
fn cli_configuration(rules: &[CorsRule]) -> Value {
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
async fn read_cors(s3: &aws_sdk_s3::Client, bucket: &str) -> anyhow::Result<Vec<CorsRule>> {
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

fn converged(obj: &BucketCors) -> bool {
    let current =
        obj.status.as_ref().and_then(|s| s.observed_generation) == obj.metadata.generation;
    current && obj.is_ready()
}

fn in_sync(obj: &BucketCors) -> bool {
    converged(obj) && obj.ready_condition().is_some_and(|c| c.reason == "InSync")
}

/// Follows the objects of one namespace through a watch and tells when `n` of them satisfy
/// a condition.
struct WaitAll {
    done: tokio::task::JoinHandle<anyhow::Result<Instant>>,
}

impl WaitAll {
    /// Returns once the watch has listed the namespace, so that nothing created after is missed.
    async fn start(
        api: Api<BucketCors>,
        n: usize,
        condition: fn(&BucketCors) -> bool,
    ) -> anyhow::Result<WaitAll> {
        let (listed_tx, listed_rx) = tokio::sync::oneshot::channel();
        let done = tokio::spawn(async move {
            let mut listed_tx = Some(listed_tx);
            let mut state: HashMap<String, bool> = HashMap::new();
            let mut met = 0usize;
            let stream = watcher(api, watcher::Config::default());
            futures::pin_mut!(stream);
            while let Some(event) = stream.next().await {
                let mut update = |obj: &BucketCors, present: bool| {
                    let name = obj.metadata.name.clone().unwrap_or_default();
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

    async fn wait(self, deadline: Duration) -> anyhow::Result<Instant> {
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

// ---------------------------------------------------------------------------------------------
// Servers and processes
// ---------------------------------------------------------------------------------------------

/// kube-apiserver + etcd under scripts/control-plane.sh, tethered to this process.
struct ControlPlane {
    dir: PathBuf,
    kubeconfig: PathBuf,
    apiserver_bin: PathBuf,
    etcd_bin: PathBuf,
    server: Option<Tether>,
}

impl ControlPlane {
    fn start(work: &Path) -> anyhow::Result<ControlPlane> {
        let script = repo_root().join("scripts/control-plane.sh");
        let built = Command::new(&script)
            .arg("build")
            .stderr(Stdio::inherit())
            .output()
            .context("running scripts/control-plane.sh build")?;
        ensure!(
            built.status.success(),
            "scripts/control-plane.sh build failed"
        );
        // Before `run`, whose start-up deadline a cold build would miss.
        let crd_server = Command::new(repo_root().join("scripts/crd-server.sh"))
            .arg("build")
            .stdout(Stdio::null())
            .status()
            .context("running scripts/crd-server.sh build")?;
        ensure!(crd_server.success(), "scripts/crd-server.sh build failed");
        let paths = String::from_utf8_lossy(&built.stdout).into_owned();
        let path_of = |key: &str| {
            paths
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{key}=")))
                .map(PathBuf::from)
                .with_context(|| format!("control-plane.sh build printed no {key}"))
        };
        let dir = work.join("control-plane");
        std::fs::create_dir_all(&dir)?;
        let server = Tether::spawn(
            &script,
            &["run", dir.to_str().context("a UTF-8 path")?],
            &[],
            &work.join("control-plane.log"),
        )?;
        let ready = dir.join("ready");
        wait_until(
            "the control plane to be ready",
            Duration::from_secs(180),
            || ready.exists(),
        );
        Ok(ControlPlane {
            kubeconfig: dir.join("kubeconfig"),
            apiserver_bin: path_of("KUBE_APISERVER")?,
            etcd_bin: path_of("ETCD")?,
            dir,
            server: Some(server),
        })
    }

    fn pid(&self, name: &str) -> Option<u32> {
        std::fs::read_to_string(self.dir.join(format!("{name}.pid")))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    async fn client(&self) -> anyhow::Result<kube::Client> {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig)?;
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
        Ok(kube::Client::try_from(config)?)
    }

    /// Creates the CRD, as it is, on the control plane's CRD server (which serves
    /// bucketcors.dev behind the core API server), and waits until the core serves it.
    async fn install_crd(&self, client: &kube::Client) -> anyhow::Result<()> {
        let env = std::fs::read_to_string(self.dir.join("env"))?;
        let crd_kubeconfig = env
            .lines()
            .find_map(|l| l.strip_prefix("CRD_SERVER_KUBECONFIG="))
            .context("control-plane.sh's env names no CRD_SERVER_KUBECONFIG")?;
        let kubeconfig = Kubeconfig::read_from(crd_kubeconfig)?;
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
        let api: Api<CustomResourceDefinition> = Api::all(kube::Client::try_from(config)?);
        // Both CRDs, as an install has them: the operator watches the stores too.
        for file in ["crds/bucketcors.yaml", "crds/clusterbucketstore.yaml"] {
            let yaml = std::fs::read_to_string(repo_root().join(file))?;
            let crd: CustomResourceDefinition =
                serde_saphyr::from_str(&yaml).context("the CRD parses")?;
            api.create(&PostParams::default(), &crd).await?;
            let name = crd.metadata.name.clone().unwrap_or_default();
            let established = kube::runtime::wait::await_condition(
                api.clone(),
                &name,
                kube::runtime::wait::conditions::is_crd_established(),
            );
            tokio::time::timeout(Duration::from_secs(60), established)
                .await
                .context("the CRD is not established in time")??;
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match client
                .list_api_group_resources("bucketcors.dev/v1alpha1")
                .await
            {
                Ok(list) if list.resources.iter().any(|r| r.name == "bucketcors") => return Ok(()),
                outcome if Instant::now() >= deadline => {
                    anyhow::bail!("the core API server does not serve bucketcors: {outcome:?}")
                }
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        if let Some(mut server) = self.server.take() {
            server.stop();
        }
    }
}

/// The operator binary as a process, tethered to this one.
struct Operator {
    process: Tether,
    pid: u32,
    health_port: u16,
    /// When the kernel started the process.
    started: Instant,
}

impl Operator {
    fn spawn(
        binary: &Path,
        kubeconfig: &Path,
        args: &[String],
        log: PathBuf,
    ) -> anyhow::Result<Operator> {
        let metrics_port = free_port();
        let health_port = free_port();
        let metrics = format!("127.0.0.1:{metrics_port}");
        let health = format!("127.0.0.1:{health_port}");
        let mut all_args = vec![
            "run",
            "--metrics-addr",
            &metrics,
            "--health-addr",
            &health,
            "--log-format",
            "json",
        ];
        all_args.extend(args.iter().map(String::as_str));
        let kubeconfig = kubeconfig.to_str().expect("a UTF-8 path");
        // A profiler to run the operator under, e.g. `heaptrack -o /tmp/operator`; its figures
        // then include the profiler's own cost.
        let wrapper = std::env::var("BUCKETCORS_BENCH_WRAPPER").unwrap_or_default();
        let mut wrapped: Vec<&str> = wrapper.split_whitespace().collect();
        let program = match wrapped.first().copied() {
            Some(first) => {
                wrapped.remove(0);
                wrapped.push(binary.to_str().expect("a UTF-8 path"));
                wrapped.extend(all_args.iter().copied());
                all_args = wrapped;
                PathBuf::from(first)
            }
            None => binary.to_path_buf(),
        };
        let process = Tether::spawn(
            &program,
            &all_args,
            &[
                ("KUBECONFIG", kubeconfig),
                ("AWS_ACCESS_KEY_ID", "ambient"),
                ("AWS_SECRET_ACCESS_KEY", "ambient"),
                ("AWS_REGION", "us-east-1"),
                ("AWS_EC2_METADATA_DISABLED", "true"),
                ("RUST_LOG", "info"),
                // Objects act with the operator's identity, as in a single-tenant cluster.
                ("BUCKETCORS_SINGLE_TENANT", "true"),
            ],
            &log,
        )?;
        let binary_name = binary.to_string_lossy().into_owned();
        let pid = find_pid_blocking(
            |argv| argv.first().is_some_and(|a| *a == binary_name) && argv.contains(&health),
            Duration::from_secs(10),
        )
        .context("the operator's process did not appear")?;
        let started = process_start(pid).unwrap_or_else(Instant::now);
        Ok(Operator {
            process,
            pid,
            health_port,
            started,
        })
    }

    /// Polls /readyz until it answers 200; returns when it did.
    async fn wait_ready(&self, deadline: Duration) -> anyhow::Result<Instant> {
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
    fn memory(&self) -> (u64, u64) {
        let [peak, rss] = self.status_fields(["VmHWM:", "VmRSS:"]);
        (peak, rss)
    }

    /// (RssAnon, RssFile) in bytes: what the process allocated, and what it maps from files.
    fn rss_split(&self) -> (u64, u64) {
        let [anon, file] = self.status_fields(["RssAnon:", "RssFile:"]);
        (anon, file)
    }

    /// Fields of /proc/<pid>/status given in KiB, in bytes (0 when absent).
    fn status_fields<const N: usize>(&self, names: [&str; N]) -> [u64; N] {
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

async fn blocking_stop(operator: &mut Operator) {
    tokio::task::block_in_place(|| operator.process.stop());
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f)
        .await
        .expect("a blocking task finishes")
}

/// The status code of `GET path` on a loopback port, or None when nothing answers.
async fn http_status(port: u16, path: &str) -> Option<u16> {
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

fn cmdline(pid: u32) -> Option<Vec<String>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
    )
}

fn find_pid_once(matches: &impl Fn(&[String]) -> bool) -> Option<u32> {
    std::fs::read_dir("/proc")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .find(|&pid| cmdline(pid).is_some_and(|argv| matches(&argv)))
}

fn find_pid_blocking(matches: impl Fn(&[String]) -> bool, deadline: Duration) -> Option<u32> {
    let started = Instant::now();
    loop {
        if let Some(pid) = find_pid_once(&matches) {
            return Some(pid);
        }
        if started.elapsed() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

async fn find_pid(
    matches: impl Fn(&[String]) -> bool + Send + 'static,
    deadline: Duration,
) -> Option<u32> {
    blocking(move || find_pid_blocking(matches, deadline)).await
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// The fields of /proc/PID/stat after the command name (field 3 onwards).
fn stat_fields(pid: u32) -> Option<Vec<u64>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    Some(
        rest.split_whitespace()
            .skip(1)
            .map(|f| f.parse().unwrap_or(0))
            .collect(),
    )
}

/// When the kernel started `pid`, as an Instant (10 ms resolution).
fn process_start(pid: u32) -> Option<Instant> {
    let fields = stat_fields(pid)?;
    // Field 22 (starttime); the vector starts at field 4.
    let start_ticks = *fields.get(22 - 4)? as f64;
    let now = Instant::now();
    let uptime: f64 = std::fs::read_to_string("/proc/uptime")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let age = (uptime - start_ticks / clock_ticks()).max(0.0);
    now.checked_sub(Duration::from_secs_f64(age))
}

/// User + system CPU time of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let fields = stat_fields(pid)?;
    // Fields 14 (utime) and 15 (stime).
    Some(fields.get(14 - 4)? + fields.get(15 - 4)?)
}

/// (busy, total) CPU ticks of the whole machine.
fn machine_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    let total: u64 = fields.iter().take(8).sum();
    let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

struct CpuSnapshot {
    at: Instant,
    processes: Vec<(&'static str, u64)>,
    machine_busy: u64,
}

impl CpuSnapshot {
    fn take(pids: &[(&'static str, u32)]) -> CpuSnapshot {
        CpuSnapshot {
            at: Instant::now(),
            processes: pids
                .iter()
                .filter_map(|&(name, pid)| Some((name, cpu_ticks(pid)?)))
                .collect(),
            machine_busy: machine_ticks().0,
        }
    }
}

/// CPU used during one phase of the run, per process, in seconds.
#[derive(Clone)]
struct Phase {
    name: String,
    wall: Duration,
    cpu: BTreeMap<&'static str, f64>,
    machine: f64,
}

impl Phase {
    fn new(name: String, before: &CpuSnapshot, after: &CpuSnapshot) -> Phase {
        let hz = clock_ticks();
        let mut cpu = BTreeMap::new();
        for (name, ticks) in &after.processes {
            // A process started during the phase counts from zero.
            let start = before
                .processes
                .iter()
                .find(|(n, _)| n == name)
                .map_or(0, |(_, t)| *t);
            cpu.insert(*name, ticks.saturating_sub(start) as f64 / hz);
        }
        Phase {
            name,
            wall: after.at.duration_since(before.at),
            cpu,
            machine: after.machine_busy.saturating_sub(before.machine_busy) as f64 / hz,
        }
    }
}

/// A process run under scripts/tether.py, which stops it when the pipe to this process closes:
/// when the handle is dropped, or however the benchmark ends. tether.py gets a process group of
/// its own, so that a signal sent to the benchmark's group (Ctrl-C, `timeout`, a CI runner
/// cancelling the job) ends the benchmark but not tether.py, which then stops the server.
struct Tether {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Tether {
    fn spawn(
        program: &Path,
        args: &[&str],
        envs: &[(&str, &str)],
        log: &Path,
    ) -> anyhow::Result<Tether> {
        let log_file =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let mut child = Command::new(repo_root().join("scripts/tether.py"))
            .arg(program)
            .args(args)
            .envs(envs.iter().copied())
            .stdin(Stdio::piped())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        let stdin = child.stdin.take();
        Ok(Tether { child, stdin })
    }

    /// Stops the process and waits until it is gone.
    fn stop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

impl Drop for Tether {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The moto S3 server on a loopback port, recording every request it receives.
struct MotoServer {
    port: u16,
    dir: PathBuf,
    _server: Tether,
}

impl MotoServer {
    fn start(venv: &Path, work: &Path) -> anyhow::Result<MotoServer> {
        let port = free_port();
        let dir = work.join("moto");
        std::fs::create_dir_all(&dir)?;
        let recording = dir.join("requests.jsonl");
        let server = Tether::spawn(
            &venv.join("bin/moto_server"),
            &["-H", "127.0.0.1", "-p", &port.to_string()],
            &[
                ("MOTO_DISABLE_GLOBAL_CORS", "true"),
                ("MOTO_ENABLE_RECORDING", "true"),
                (
                    "MOTO_RECORDER_FILEPATH",
                    recording.to_str().context("a UTF-8 path")?,
                ),
            ],
            &dir.join("moto.log"),
        )?;
        wait_until("moto to answer", Duration::from_secs(60), || {
            http_answers(port, "/moto-api/")
        });
        Ok(MotoServer {
            port,
            dir,
            _server: server,
        })
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn recording(&self) -> PathBuf {
        self.dir.join("requests.jsonl")
    }

    /// The benchmark's own S3 client (credentials other than the operator's).
    fn client(&self) -> aws_sdk_s3::Client {
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(self.endpoint())
            .force_path_style(true)
            .credentials_provider(Credentials::new("testing", "testing", None, None, "bench"))
            .build();
        aws_sdk_s3::Client::from_conf(config)
    }
}

/// Removes `key` wherever it appears in `value`.

// ---------------------------------------------------------------------------------------------
// The S3 server's request recording
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    GetCors,
    PutCors,
    DeleteCors,
    Other,
}

/// One request moto recorded, stamped with when the benchmark saw it in the recording.
struct Record {
    at: Instant,
    op: Op,
    bucket: String,
    /// Sent with the operator's credentials (the benchmark uses others).
    operator: bool,
}

/// Follows moto's recording file as it grows, keeping the requests on the benchmark's buckets.
struct Tail {
    records: Arc<Mutex<Vec<Record>>>,
    /// Bytes of the file read so far.
    read: Arc<Mutex<u64>>,
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Tail {
    fn start(path: PathBuf, prefix: String) -> Tail {
        let records = Arc::new(Mutex::new(Vec::new()));
        let read = Arc::new(Mutex::new(0u64));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (records, read, stop, path) =
                (records.clone(), read.clone(), stop.clone(), path.clone());
            std::thread::spawn(move || {
                let mut pending = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let mut offset = read.lock().expect("poisoned");
                    if let Ok(mut file) = std::fs::File::open(&path)
                        && file.seek(SeekFrom::Start(*offset)).is_ok()
                    {
                        let mut chunk = Vec::new();
                        if let Ok(n) = file.read_to_end(&mut chunk) {
                            let at = Instant::now();
                            *offset += n as u64;
                            pending.extend_from_slice(&chunk);
                            if let Some(end) = pending.iter().rposition(|b| *b == b'\n') {
                                let lines: Vec<u8> = pending.drain(..=end).collect();
                                let parsed: Vec<Record> = lines
                                    .split(|b| *b == b'\n')
                                    .filter_map(|line| parse_record(line, at, &prefix))
                                    .collect();
                                records.lock().expect("poisoned").extend(parsed);
                            }
                        }
                    }
                    drop(offset);
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        };
        Tail {
            records,
            read,
            path,
            stop,
            thread: Mutex::new(Some(thread)),
        }
    }

    /// Waits until everything the file holds now has been read.
    async fn caught_up(&self) {
        let size = std::fs::metadata(&self.path).map_or(0, |m| m.len());
        let started = Instant::now();
        while *self.read.lock().expect("poisoned") < size
            && started.elapsed() < Duration::from_secs(30)
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn select(&self, from: Instant, to: Instant, keep: impl Fn(&Record) -> bool) -> Vec<Record> {
        self.records
            .lock()
            .expect("poisoned")
            .iter()
            .filter(|r| r.at >= from && r.at <= to && keep(r))
            .map(|r| Record {
                at: r.at,
                op: r.op,
                bucket: r.bucket.clone(),
                operator: r.operator,
            })
            .collect()
    }

    async fn counts(&self, from: Instant, to: Instant, keep: impl Fn(&Record) -> bool) -> OpCounts {
        self.caught_up().await;
        OpCounts::of(self.select(from, to, keep).iter())
    }

    /// How many buckets whose name starts with `set` the operator has read since `from`, and
    /// when the first read of the last of them was seen.
    fn distinct_gets(&self, from: Instant, set: &str) -> (usize, Option<Instant>) {
        let records = self.records.lock().expect("poisoned");
        let mut seen = HashSet::new();
        let mut last = None;
        for r in records.iter().filter(|r| {
            r.at >= from && r.operator && r.op == Op::GetCors && r.bucket.starts_with(set)
        }) {
            if seen.insert(r.bucket.as_str()) {
                last = Some(r.at);
            }
        }
        (seen.len(), last)
    }

    fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.lock().expect("poisoned").take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Tail {
    fn drop(&mut self) {
        self.stop();
    }
}

fn parse_record(line: &[u8], at: Instant, prefix: &str) -> Option<Record> {
    if line.is_empty() {
        return None;
    }
    let entry: Value = serde_json::from_slice(line).ok()?;
    let method = entry["method"].as_str()?;
    let url = entry["url"].as_str()?;
    let path = url
        .split("://")
        .nth(1)?
        .split_once('/')
        .map_or("", |(_, p)| p);
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let bucket = path.split('/').next().unwrap_or_default();
    if !bucket.starts_with(prefix) {
        return None;
    }
    let is_cors = path.trim_end_matches('/') == bucket
        && query.split('&').any(|q| q == "cors" || q == "cors=");
    let op = match (is_cors, method) {
        (true, "GET") => Op::GetCors,
        (true, "PUT") => Op::PutCors,
        (true, "DELETE") => Op::DeleteCors,
        _ => Op::Other,
    };
    let operator = entry["headers"].as_object().is_some_and(|headers| {
        headers.iter().any(|(k, v)| {
            k.eq_ignore_ascii_case("authorization")
                && v.as_str()
                    .is_some_and(|v| v.contains("Credential=ambient/"))
        })
    });
    Some(Record {
        at,
        op,
        bucket: bucket.to_owned(),
        operator,
    })
}

#[derive(Clone, Copy, Debug, Default)]
struct OpCounts {
    gets: usize,
    puts: usize,
    deletes: usize,
    other: usize,
}

impl OpCounts {
    fn of<'a>(records: impl Iterator<Item = &'a Record>) -> OpCounts {
        let mut counts = OpCounts::default();
        for r in records {
            match r.op {
                Op::GetCors => counts.gets += 1,
                Op::PutCors => counts.puts += 1,
                Op::DeleteCors => counts.deletes += 1,
                Op::Other => counts.other += 1,
            }
        }
        counts
    }

    fn writes(&self) -> usize {
        self.puts + self.deletes
    }
}

// ---------------------------------------------------------------------------------------------
// The API server's own request counters
// ---------------------------------------------------------------------------------------------

/// `apiserver_request_total` summed by "VERB resource[/subresource]".
async fn api_requests(client: &kube::Client) -> anyhow::Result<BTreeMap<String, f64>> {
    let request = axum::http::Request::get("/metrics").body(Vec::new())?;
    let text = client.request_text(request).await?;
    let mut totals = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let label = |name: &str| {
            labels
                .split("\",")
                .find_map(|kv| kv.strip_prefix(&format!("{name}=\"")))
                .map(|v| v.trim_end_matches('"').to_owned())
                .unwrap_or_default()
        };
        let resource = label("resource");
        let subresource = label("subresource");
        let key = if subresource.is_empty() {
            format!("{} {resource}", label("verb"))
        } else {
            format!("{} {resource}/{subresource}", label("verb"))
        };
        *totals.entry(key).or_insert(0.0) += value.trim().parse::<f64>().unwrap_or(0.0);
    }
    Ok(totals)
}

fn diff_requests(
    before: &BTreeMap<String, f64>,
    after: &BTreeMap<String, f64>,
) -> BTreeMap<String, f64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, v)| *v > 0.0)
        .collect()
}

fn is_write(key: &str) -> bool {
    ["POST ", "PUT ", "PATCH ", "DELETE ", "APPLY "]
        .iter()
        .any(|verb| key.starts_with(verb))
}

// ---------------------------------------------------------------------------------------------
// Results
// ---------------------------------------------------------------------------------------------

struct Latency {
    p50: Duration,
    p95: Duration,
    max: Duration,
    count: usize,
}

impl Latency {
    fn of(mut samples: Vec<Duration>) -> Latency {
        samples.sort_unstable();
        let rank = |p: f64| {
            let i = ((p * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1;
            samples[i]
        };
        Latency {
            p50: rank(0.50),
            p95: rank(0.95),
            max: *samples.last().expect("samples"),
            count: samples.len(),
        }
    }
}

struct Steady {
    n: usize,
    window: Duration,
    counts: OpCounts,
    buckets_seen: usize,
    /// Buckets read exactly once per resync in the window.
    buckets_exact: usize,
    min_gap: Duration,
    max_gap: Duration,
    mean_gap: Duration,
    api_writes: u64,
    peak_rss: u64,
    rss: u64,
}

impl Steady {
    fn gets_per_object_per_resync(&self) -> f64 {
        let resyncs = self.window.as_secs_f64() / STEADY_RESYNC.as_secs_f64();
        self.counts.gets as f64 / (self.n as f64 * resyncs)
    }

    /// Exactly one Get per object per resync: every object read, no two reads of a bucket
    /// closer than the shortest jittered interval (0.9 R) nor further apart than the longest
    /// (1.1 R), allowing for how precisely reads are timed here; and no writes.
    fn met(&self) -> bool {
        let r = STEADY_RESYNC.as_secs_f64();
        self.counts.writes() == 0
            && self.counts.other == 0
            && self.buckets_seen == self.n
            && (self.gets_per_object_per_resync() - 1.0).abs() <= 0.02
            && self.min_gap.as_secs_f64() >= 0.9 * r - 0.25
            && self.max_gap.as_secs_f64() <= 1.1 * r + 0.5
    }
}

struct Startup {
    n: usize,
    rounds: Vec<StartupRound>,
}

struct StartupRound {
    /// The bare-SDK Get pass over as many buckets, just before this round.
    limit_gets: Duration,
    ready: Duration,
    verified: Duration,
    verified_after_ready: Duration,
    counts: OpCounts,
    status_writes: u64,
    peak_rss: u64,
    rss: u64,
}

impl Startup {
    fn median(&self, field: impl Fn(&StartupRound) -> Duration) -> Duration {
        let mut values: Vec<Duration> = self.rounds.iter().map(field).collect();
        values.sort_unstable();
        values[values.len() / 2]
    }

    fn max(&self, field: impl Fn(&StartupRound) -> Duration) -> Duration {
        self.rounds.iter().map(field).max().unwrap_or_default()
    }

    fn list(&self, field: impl Fn(&StartupRound) -> Duration) -> String {
        self.rounds
            .iter()
            .map(|r| format!("{:.2}", field(r).as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

struct Cli {
    sample: usize,
    per_bucket: Duration,
}

struct Machine {
    cpus: usize,
    cpu_model: String,
    mem_gib: f64,
    kernel: String,
    load_before: String,
}

impl Machine {
    fn read() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_owned())
            .unwrap_or_else(|| "unknown".into());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let mem_kib: f64 = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0.0);
        Machine {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model,
            mem_gib: mem_kib / 1024.0 / 1024.0,
            kernel: first_line(&["uname", "-sr"]),
            load_before: std::fs::read_to_string("/proc/loadavg")
                .unwrap_or_default()
                .split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" "),
        }
    }
}

#[derive(Debug)]
struct Versions {
    rustc: String,
    apiserver: String,
    etcd: String,
    moto: String,
    aws: String,
}

impl Versions {
    fn read(venv: &Path, cp: &ControlPlane) -> Versions {
        let python = venv.join("bin/python");
        let aws = venv.join("bin/aws");
        Versions {
            rustc: first_line(&["rustc", "--version"]),
            apiserver: first_line(&[cp.apiserver_bin.to_str().unwrap_or_default(), "--version"]),
            etcd: first_line(&[cp.etcd_bin.to_str().unwrap_or_default(), "--version"]),
            moto: first_line(&[
                python.to_str().unwrap_or_default(),
                "-c",
                "import moto; print(moto.__version__)",
            ]),
            aws: first_line(&[aws.to_str().unwrap_or_default(), "--version"]),
        }
    }
}

/// The first line a command prints (on stdout, else stderr).
fn first_line(argv: &[&str]) -> String {
    Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .ok()
        .map(|o| {
            let out = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            String::from_utf8_lossy(&out)
                .lines()
                .next()
                .unwrap_or_default()
                .trim()
                .to_owned()
        })
        .unwrap_or_else(|| "unknown".into())
}

struct Report {
    date: String,
    command: String,
    machine: Machine,
    versions: Versions,
    sizes: Vec<SizeResult>,
    latency: Option<Latency>,
    steady: Option<Steady>,
    startup: Option<Startup>,
    cli: Option<Cli>,
    budget: Vec<BudgetRun>,
    phases: Vec<Phase>,
    reference: usize,
    duration: Duration,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / MIB)
}

fn verdict(met: bool) -> &'static str {
    if met { "yes" } else { "**no**" }
}

fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

impl Report {
    fn size(&self, n: usize) -> Option<&SizeResult> {
        self.sizes.iter().find(|s| s.n == n)
    }

    /// The results with their targets, as a Markdown table.
    fn table(&self) -> String {
        let mut t = String::new();
        t.push_str("| Measure | Result | Target | Met |\n|---|---|---|---|\n");
        for s in &self.sizes {
            let ratio = s.converged.as_secs_f64() / s.limit.as_secs_f64();
            let (target, met) = if s.n == REFERENCE_SIZE {
                ("≤ 1.15× the limit", verdict(ratio <= 1.15))
            } else {
                ("—", "—")
            };
            let _ = writeln!(
                t,
                "| Convergence, {} objects | {} (objects created in {}); bare-SDK limit {}: **{ratio:.2}×** | {target} | {met} |",
                thousands(s.n),
                secs(s.converged),
                secs(s.objects_created),
                secs(s.limit),
            );
        }
        if let (Some(cli), Some(s)) = (&self.cli, self.size(self.reference)) {
            let per_bucket = s.converged / s.n as u32;
            let speedup = cli.per_bucket.as_secs_f64() / per_bucket.as_secs_f64();
            let _ = writeln!(
                t,
                "| vs `aws s3api put-bucket-cors` per bucket | CLI {:.0} ms/bucket ({} buckets, one after the other); operator {:.1} ms/bucket at {}: **{speedup:.0}× faster** | ≥ 20× | {} |",
                ms(cli.per_bucket),
                cli.sample,
                ms(per_bucket),
                thousands(s.n),
                verdict(speedup >= 20.0)
            );
        }
        if let Some(st) = &self.steady {
            let _ = writeln!(
                t,
                "| Steady state, {} objects, resync {} s, {} s window | **{:.3} GetBucketCors/object/resync** ({} Gets), **{} writes**; {} of {} buckets read exactly {} times; reads of a bucket {:.2}–{:.2} s apart (mean {:.2} s); {} Kubernetes API writes | exactly 1, 0 writes | {} |",
                thousands(st.n),
                STEADY_RESYNC.as_secs(),
                st.window.as_secs(),
                st.gets_per_object_per_resync(),
                st.counts.gets,
                st.counts.writes(),
                thousands(st.buckets_exact),
                thousands(st.n),
                STEADY_WINDOWS,
                st.min_gap.as_secs_f64(),
                st.max_gap.as_secs_f64(),
                st.mean_gap.as_secs_f64(),
                st.api_writes,
                verdict(st.met())
            );
        }
        for b in &self.budget {
            let (what, target, met) = match b.budget {
                Some((rate, burst)) => (
                    format!("budget {rate}/s, burst {burst}"),
                    "0 answered 503",
                    verdict(b.throttled == 0),
                ),
                None => ("no budget".to_owned(), "— (shows the store throttles)", "—"),
            };
            let _ = writeln!(
                t,
                "| {} objects on a store that throttles above {THROTTLE_ABOVE}/s, {what} | converged in {}; {} requests, **{} answered 503** | {target} | {met} |",
                thousands(b.n),
                secs(b.converged),
                thousands(b.requests),
                thousands(b.throttled)
            );
        }
        if let Some(l) = &self.latency {
            let _ = writeln!(
                t,
                "| Change latency (spec patch → S3 server holds the rules), {} updates | p50 **{:.0} ms**, p95 **{:.0} ms**, max {:.0} ms | — | — |",
                l.count,
                ms(l.p50),
                ms(l.p95),
                ms(l.max)
            );
        }
        for s in &self.sizes {
            let target = match s.n {
                1000 => Some(32.0),
                10_000 => Some(64.0),
                _ => None,
            };
            let steady = if s.n == self.reference {
                self.steady.as_ref().map(|st| st.rss)
            } else {
                None
            }
            .unwrap_or(s.rss);
            let (target_text, met) = match target {
                Some(limit) => (
                    format!("≤ {limit:.0} MiB"),
                    verdict(s.peak_rss as f64 / MIB <= limit && steady as f64 / MIB <= limit),
                ),
                None => ("—".into(), "—"),
            };
            let _ = writeln!(
                t,
                "| Operator RSS, {} objects | peak **{}**, steady {} | {target_text} | {met} |",
                thousands(s.n),
                mib(s.peak_rss),
                mib(steady),
            );
        }
        if let Some(su) = &self.startup {
            let ready = su.median(|r| r.ready);
            let worst = su.max(|r| r.ready);
            let _ = writeln!(
                t,
                "| Start-up: process start → /readyz 200, {} objects (median of {}) | **{:.0} ms** (slowest {:.0} ms) | ≤ 1 s | {} |",
                thousands(su.n),
                su.rounds.len(),
                ms(ready),
                ms(worst),
                verdict(worst <= Duration::from_secs(1))
            );
            let verified = su.median(|r| r.verified_after_ready);
            let limit = su.median(|r| r.limit_gets);
            let ratio = verified.as_secs_f64() / limit.as_secs_f64();
            let writes: usize = su.rounds.iter().map(|r| r.counts.writes()).sum();
            let status: u64 = su.rounds.iter().map(|r| r.status_writes).sum();
            let _ = writeln!(
                t,
                "| Start-up: {} existing objects verified (every bucket read once; median of {}) | **{} after ready** ({} after start); bare-SDK Get pass over {} buckets {}: **{ratio:.2}×**; {writes} writes to S3, {status} status writes | ≤ the limit | {} |",
                thousands(su.n),
                su.rounds.len(),
                secs(verified),
                secs(su.median(|r| r.verified)),
                thousands(su.n),
                secs(limit),
                verdict(ratio <= 1.0)
            );
        }
        t
    }

    /// What the CPU accounting says about the convergence figure at each size.
    fn reading(&self) -> String {
        let mut md = String::from(
            "\n## Where convergence time goes\n\nCPU seconds used by each process from the \
             first create until every object was Ready (`/proc/<pid>/stat`). The bare-SDK \
             limit keeps only the S3 server busy; converging also runs the Kubernetes API \
             server, etcd and the operator on the same CPUs, so the sum of all CPU time \
             divided by the number of CPUs bounds the convergence time from below.\n\n\
             | objects | converged | machine busy | API servers | etcds | moto | operator | benchmark | total | total ÷ CPUs | moto during the limit |\n\
             |---|---|---|---|---|---|---|---|---|---|---|\n",
        );
        let cpus = self.machine.cpus as f64;
        for s in &self.sizes {
            let c = &s.converge_cpu;
            let get = |name: &str| c.cpu.get(name).copied().unwrap_or(0.0);
            let total: f64 = c.cpu.values().sum();
            let floor = total / cpus;
            let limit_moto = s.limit_cpu.cpu.get("moto").copied().unwrap_or(0.0);
            let _ = writeln!(
                md,
                "| {} | {:.1} s | {:.0}% | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} s = {:.2}× the limit | {:.1} in {:.1} s |",
                thousands(s.n),
                s.converged.as_secs_f64(),
                100.0 * c.machine / (cpus * c.wall.as_secs_f64()),
                get("kube-apiserver") + get("crd-server"),
                get("etcd") + get("crd-etcd"),
                get("moto"),
                get("operator"),
                get("bench"),
                total,
                floor,
                floor / s.limit.as_secs_f64(),
                limit_moto,
                s.limit.as_secs_f64(),
            );
        }
        md
    }

    fn markdown(&self) -> String {
        let m = &self.machine;
        let v = &self.versions;
        let mut md = String::new();
        let _ = writeln!(
            md,
            "# Benchmarks\n\n\
             Written by `benches/operator.rs` (`make bench`; `make bench BENCH_ARGS=--large` \
             adds 10,000 objects). Every figure comes from real servers on \
             loopback: a kube-apiserver with etcd (`scripts/control-plane.sh`), the moto S3 \
             server, and the operator binary built in release mode, run as a process.\n"
        );
        let _ = writeln!(md, "- Date: {}", self.date);
        let _ = writeln!(md, "- Command: `{}`", self.command);
        let _ = writeln!(
            md,
            "- Duration of the run: {:.0} s (servers started, buckets created, every phase below)",
            self.duration.as_secs_f64()
        );
        let _ = writeln!(
            md,
            "- Machine: {} CPUs, {} ({}), {:.1} GiB of memory; load average before the run: {}",
            m.cpus, m.cpu_model, m.kernel, m.mem_gib, m.load_before
        );
        let _ = writeln!(
            md,
            "- Versions: {}; kube-apiserver {}; etcd {}; moto {}; {}\n",
            v.rustc,
            v.apiserver.trim_start_matches("Kubernetes "),
            v.etcd.trim_start_matches("etcd Version: "),
            v.moto,
            v.aws
        );
        md.push_str("## Results\n\n");
        md.push_str(&self.table());
        md.push_str(&self.reading());
        md.push_str(
            "\n## What is measured\n\n\
             - **Convergence**: N buckets are created in moto first; the operator \
             (`--concurrency 16`, default resync) runs and is ready, watching one namespace. \
             N BucketCors, each naming its own bucket with two rules, are then created through \
             the Kubernetes API, 32 at a time. The clock runs from the first create until a \
             watch has seen every object `Ready=True` for its generation; every bucket is then \
             read back and compared with its object's rules (not timed). Creating the objects \
             is part of the time; how long the creates alone took is shown beside it.\n\
             - **Bare-SDK limit**: on N fresh buckets of the same server, an aws-sdk-s3 loop \
             does exactly the minimum the operator must do, one GetBucketCors and one \
             PutBucketCors per bucket, 16 buckets at a time (the operator's concurrency). A \
             second pass of one GetBucketCors per bucket gives the limit for verifying existing \
             buckets.\n\
             - **aws CLI**: `aws s3api put-bucket-cors --endpoint-url … --bucket … \
             --cors-configuration file://…` once per bucket, one after the other, as someone \
             would without the operator. Compared with the operator's time per bucket at the \
             reference size (convergence time, creation included, divided by N).\n\
             - **Steady state**: a fresh operator with `--resync-interval 10s` over the \
             converged objects; once a watch has seen every object `InSync`, the S3 server's \
             recording is counted over the window, by operation, for the operator's credentials \
             and the benchmark's buckets. The intervals between two reads of the same bucket \
             show that each bucket is read exactly once per resync (10 s ± 10% jitter). \
             Kubernetes API writes come from the API server's `apiserver_request_total`.\n\
             - **Change latency**: one object's rules are changed with a merge patch, then the \
             bucket is read every 10 ms until the S3 server answers with the new rules; one \
             update after the other, each on a different object.\n\
             - **Memory**: VmHWM (peak) and VmRSS of the operator process from \
             `/proc/<pid>/status`: the peak after converging N objects; steady is VmRSS at the \
             end of the steady-state window (reference size) or after converging (other sizes).\n\
             - **Start-up**: a fresh operator over the converged, `InSync` objects. Ready is \
             from the kernel's start time of the process to the first `/readyz` 200 (10 ms \
             resolution). Verified is when the S3 server's recording shows a GetBucketCors on \
             every bucket (the status of an object in sync is not rewritten, so the server's \
             count is the measure); compared with the bare-SDK Get pass over as many buckets.\n\
             - moto records every request (`MOTO_ENABLE_RECORDING`) for the limit, the aws CLI \
             and the operator alike: the same server, with the same per-request cost, for all.\n",
        );
        md.push_str("\n## Details\n\n### Convergence\n\n");
        md.push_str(
            "| objects | buckets created in moto | bare-SDK limit (Get+Put) | limit, Get only | objects created | converged | S3 requests from the operator | operator RSS with no object / peak / after |\n\
             |---|---|---|---|---|---|---|---|\n",
        );
        for s in &self.sizes {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} Get, {} Put, {} Delete, {} other | {} / {} / {} |",
                thousands(s.n),
                secs(s.buckets_created),
                secs(s.limit),
                secs(s.limit_gets),
                secs(s.objects_created),
                secs(s.converged),
                s.operator_s3.gets,
                s.operator_s3.puts,
                s.operator_s3.deletes,
                s.operator_s3.other,
                mib(s.idle_rss),
                mib(s.peak_rss),
                mib(s.rss),
            );
        }
        md.push_str(
            "\nKubernetes API requests during convergence (all clients: the benchmark's creates \
             and watch included), per object:\n\n| objects | requests per object |\n|---|---|\n",
        );
        for s in &self.sizes {
            let per: Vec<String> = s
                .api_requests
                .iter()
                .filter(|(k, _)| !k.starts_with("WATCH"))
                .map(|(k, v)| format!("{k}: {:.2}", v / s.n as f64))
                .collect();
            let _ = writeln!(md, "| {} | {} |", thousands(s.n), per.join(", "));
        }
        if let Some(st) = &self.steady {
            let _ = writeln!(
                md,
                "\n### Steady state\n\n{} objects, resync {} s, window {} s: {} GetBucketCors, \
                 {} PutBucketCors, {} DeleteBucketCors, {} other requests from the operator; \
                 {} of {} buckets read; operator RSS {} (peak {}).",
                thousands(st.n),
                STEADY_RESYNC.as_secs(),
                st.window.as_secs(),
                st.counts.gets,
                st.counts.puts,
                st.counts.deletes,
                st.counts.other,
                st.buckets_seen,
                st.n,
                mib(st.rss),
                mib(st.peak_rss)
            );
        }
        if let Some(su) = &self.startup {
            let _ = writeln!(
                md,
                "\n### Start-up\n\n{} objects, {} fresh operators, each after a bare-SDK Get \
                 pass over as many buckets (seconds, per round):\n\n\
                 | | per round |\n|---|---|\n\
                 | bare-SDK Get pass | {} |\n\
                 | process start → /readyz 200 | {} |\n\
                 | /readyz 200 → every bucket read | {} |\n\
                 | process start → every bucket read | {} |",
                thousands(su.n),
                su.rounds.len(),
                su.list(|r| r.limit_gets),
                su.list(|r| r.ready),
                su.list(|r| r.verified_after_ready),
                su.list(|r| r.verified),
            );
            let r = &su.rounds[0];
            let _ = writeln!(
                md,
                "\nFirst round: S3 requests from the operator until every bucket was read: {} \
                 Get, {} Put, {} Delete; Kubernetes writes to BucketCors: {}; RSS {} (peak {}).",
                r.counts.gets,
                r.counts.puts,
                r.counts.deletes,
                r.status_writes,
                mib(r.rss),
                mib(r.peak_rss)
            );
        }
        if !self.budget.is_empty() {
            let _ = writeln!(
                md,
                "\n### Fair use of a store\n\nEvery object on one store that answers 503 SlowDown \
                 to a request that would make more than {THROTTLE_ABOVE} in the last second (the \
                 tests' fault proxy in front of moto); a fresh operator, objects created 32 at a \
                 time, until every one is Ready; every bucket then read back.\n\n\
                 | objects | operator budget for the store | converged | requests to the store | answered 503 |\n\
                 |---|---|---|---|---|"
            );
            for b in &self.budget {
                let budget = b.budget.map_or(
                    "none (`--store-requests-per-second 0`)".to_owned(),
                    |(r, burst)| format!("{r}/s, burst {burst}"),
                );
                let _ = writeln!(
                    md,
                    "| {} | {budget} | {} | {} | {} |",
                    thousands(b.n),
                    secs(b.converged),
                    thousands(b.requests),
                    thousands(b.throttled)
                );
            }
        }
        md.push_str(
            "\n### Where the CPU goes\n\nCPU seconds used by each process during each phase \
             (`/proc/<pid>/stat`); \"API servers\" are the core kube-apiserver and the CRD server \
             that serves BucketCors behind it, \"etcds\" their two etcds; \"others\" is the rest of the machine (busy time not \
             accounted to the processes listed), a sign of outside load.\n\n\
             | phase | wall | API servers | etcds | moto | operator | benchmark | others |\n\
             |---|---|---|---|---|---|---|---|\n",
        );
        for p in &self.phases {
            let get = |name: &str| p.cpu.get(name).copied().unwrap_or(0.0);
            let known: f64 = p.cpu.values().sum();
            let _ = writeln!(
                md,
                "| {} | {:.1} s | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
                p.name,
                p.wall.as_secs_f64(),
                get("kube-apiserver") + get("crd-server"),
                get("etcd") + get("crd-etcd"),
                get("moto"),
                get("operator"),
                get("bench"),
                (p.machine - known).max(0.0)
            );
        }
        md
    }
}

fn say(message: &str) {
    eprintln!("bench: {message}");
}

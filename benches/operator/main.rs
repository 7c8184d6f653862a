//! Benchmarks of the operator binary (built in release mode) against real servers on loopback:
//! a kube-apiserver with etcd (scripts/control-plane.sh) and the moto S3 server, which records
//! every request it receives so that S3 calls are counted at the server. The servers, the
//! processes and the fault proxy are the integration tests' own (`tests/support`).
//!
//! `make bench` runs it; `make bench BENCH_ARGS=--large` adds 10,000 objects; `make
//! bench-check` runs the default sizes and compares the per-object budgets with the committed
//! BENCHMARKS.md. Arguments:
//!   --large          also converge 10,000 objects (or BUCKETCORS_BENCH_LARGE=1)
//!   --sizes A,B,...  the object counts to converge (default 100,1000)
//!   --check          compare with BENCHMARKS.md instead of writing it (exit 1 on a regression)
//!   --only memory    run only the memory phase and print its section of BENCHMARKS.md
//!                    (the file is left alone)
//!
//! Split by concern: `world` starts and drives the servers, `phases` are the measurements,
//! `sample` reads /proc and the API servers' counters, `recording` follows moto's request
//! recording, `results` and `report` hold and print the figures, `check` compares them.

mod check;
mod memory;
mod phases;
mod recording;
mod report;
mod results;
mod sample;
mod world;

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use bucketcors_test_support::process::{operator_binary, repo_root};

use crate::report::Report;
use crate::world::{Placement, World};

/// The store of the request-budget phase answers 503 SlowDown to a request that would make
/// more than this many in the last second.
pub const THROTTLE_ABOVE: usize = 100;
/// The operator's budget for that store: its rate and burst together stay below the throttle.
pub const BUDGET_PER_SECOND: u32 = 80;
pub const BUDGET_BURST: u32 = 10;

/// The operator's `--concurrency` (its default), and the bare-SDK loop's.
pub const CONCURRENCY: usize = 16;
/// Objects created at once through the Kubernetes API.
pub const CREATE_CONCURRENCY: usize = 32;
/// Resync interval of the steady-state run.
pub const STEADY_RESYNC: Duration = Duration::from_secs(10);
/// Resync intervals the steady-state window lasts.
pub const STEADY_WINDOWS: u32 = 4;
/// Sequential spec updates timed for the change latency.
pub const UPDATES: usize = 100;
/// Buckets configured one by one with the aws CLI.
pub const CLI_SAMPLE: usize = 20;
/// The size the steady-state, change-latency and start-up figures are taken at.
pub const REFERENCE_SIZE: usize = 1000;
/// Operator restarts timed for the start-up figures (the median is reported).
pub const STARTUP_ROUNDS: usize = 3;

pub const MIB: f64 = 1024.0 * 1024.0;
/// Namespaces of the scale phase, and the objects in each that name one shared bucket.
pub const SPREAD_NAMESPACES: usize = 100;
/// Resync interval of the scale phase: 10 s, and 10 ms per object above 1,000, so that one
/// S3 server can serve a pass over every bucket well within it (moto serves a few hundred
/// Gets a second on one CPU), and length of its steady-state window, in resyncs.
pub fn spread_resync(n: usize) -> Duration {
    Duration::from_secs(10).max(Duration::from_millis(10) * n as u32)
}
pub const SPREAD_WINDOWS: u32 = 2;

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

pub struct Options {
    pub sizes: Vec<usize>,
    pub large: bool,
    /// Compare with the committed BENCHMARKS.md instead of writing it.
    pub check: bool,
    /// Run only the memory phase and print its section (`--only memory`).
    pub memory_only: bool,
}

impl Options {
    fn parse() -> anyhow::Result<Options> {
        let mut sizes = vec![100, 1000];
        let mut large = std::env::var("BUCKETCORS_BENCH_LARGE").is_ok_and(|v| v == "1");
        let mut check = false;
        let mut memory_only = false;
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--large" => large = true,
                "--check" => check = true,
                "--only" => match args.next().as_deref() {
                    Some("memory") => memory_only = true,
                    other => bail!("--only takes one phase: memory (got {other:?})"),
                },
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
                other => {
                    bail!(
                        "unknown argument {other} (known: --large, --sizes A,B,..., --check, --only memory)"
                    )
                }
            }
        }
        if large && !sizes.contains(&10_000) {
            sizes.push(10_000);
        }
        sizes.sort_unstable();
        sizes.dedup();
        ensure!(
            !(check && (large || sizes != [100, 1000])),
            "--check runs the default sizes only: the committed budgets are theirs"
        );
        ensure!(
            !(memory_only && check),
            "--only memory prints its figures; it has no budgets to check"
        );
        Ok(Options {
            sizes,
            large,
            check,
            memory_only,
        })
    }

    /// The size the steady-state, change-latency and start-up figures are taken at.
    pub fn reference(&self) -> usize {
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

    pub fn command(&self) -> String {
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

// ---------------------------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------------------------

async fn run(options: &Options, work: &Path) -> anyhow::Result<()> {
    let run_started = Instant::now();
    let date = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let operator_bin = operator_binary();
    say(&format!("operator binary: {}", operator_bin.display()));
    let machine = results::Machine::read();
    say(&format!(
        "machine: {} CPUs ({}), {:.1} GiB, load average {}",
        machine.cpus, machine.cpu_model, machine.mem_gib, machine.load_before
    ));
    let world = World::start(work, operator_bin).await?;
    if options.memory_only {
        let memory = world.hostile_memory().await;
        world.stop();
        println!("{}", memory?.markdown());
        return Ok(());
    }
    let mut report = Report::new(date, options, machine, world.versions.clone());

    for &n in &options.sizes {
        // Today's placement first (every process on every CPU), then the control plane on a
        // CPU of its own; the phases after run in the second.
        for placement in [Placement::Shared, Placement::Isolated] {
            world.place(placement)?;
            let keep = n == report.reference && placement == Placement::Isolated;
            let (result, operator) = world
                .converge(n, placement, keep, &mut report.phases)
                .await?;
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
    }
    // One bucket name claimed in every namespace, and many namespaces watched.
    report.spread.push(world.spread(report.reference).await?);
    let largest = *options.sizes.last().expect("at least one size");
    if largest > report.reference {
        report.spread.push(world.spread(largest).await?);
    }
    if !options.check {
        // Where the operator's CPU goes (perf, not part of any figure above).
        report.profile = world.profile(report.reference).await?;
        // The request budget: at the largest size, with and (at the reference size) without it.
        report
            .budget
            .push(world.budgeted(report.reference, None).await?);
        report.budget.push(
            world
                .budgeted(largest, Some((BUDGET_PER_SECOND, BUDGET_BURST)))
                .await?,
        );
        report.cli = Some(world.aws_cli(CLI_SAMPLE).await?);
        // Last: its objects stay, and they are as large as the API server takes.
        report.memory = Some(world.hostile_memory().await?);
    }
    report.world = world.describe();
    report.duration = run_started.elapsed();
    world.stop();

    let text = report.markdown();
    println!("\n{}", report.table());
    let committed = repo_root().join("BENCHMARKS.md");
    if options.check {
        let path = work.with_extension("md");
        std::fs::write(&path, &text).with_context(|| format!("writing {}", path.display()))?;
        say(&format!("this run's report: {}", path.display()));
        let baseline = std::fs::read_to_string(&committed)
            .with_context(|| format!("reading {}", committed.display()))?;
        return check::compare(&baseline, &report);
    }
    std::fs::write(&committed, text).with_context(|| format!("writing {}", committed.display()))?;
    say(&format!(
        "wrote {} after {:.0} s",
        committed.display(),
        report.duration.as_secs_f64()
    ));
    Ok(())
}

pub async fn blocking_stop(operator: &mut world::Operator) {
    tokio::task::block_in_place(|| operator.process.terminate());
}

pub fn say(message: &str) {
    eprintln!("bench: {message}");
}

//! The figures each phase returns, and what the machine and the servers were.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use bucketcors_test_support::cluster::Cluster;

use crate::STEADY_RESYNC;
use crate::recording::OpCounts;
use crate::sample::Phase;
use crate::world::Placement;

/// One run of the request-budget phase.
pub struct BudgetRun {
    pub n: usize,
    /// Rate and burst; none: no budget.
    pub budget: Option<(u32, u32)>,
    pub converged: Duration,
    /// Requests the store received (throttled ones included).
    pub requests: usize,
    /// Requests it answered 503 SlowDown.
    pub throttled: usize,
}

pub struct SizeResult {
    pub n: usize,
    pub placement: Placement,
    pub buckets_created: Duration,
    pub limit: Duration,
    pub limit_gets: Duration,
    pub objects_created: Duration,
    pub converged: Duration,
    pub operator_s3: OpCounts,
    pub idle_rss: u64,
    pub peak_rss: u64,
    pub rss: u64,
    /// Requests both API servers served during convergence, all clients.
    pub api_requests: BTreeMap<String, f64>,
    /// CPU used by each process during the limit and during convergence.
    pub limit_cpu: Phase,
    pub converge_cpu: Phase,
}

impl SizeResult {
    pub fn ratio(&self) -> f64 {
        self.converged.as_secs_f64() / self.limit.as_secs_f64()
    }

    /// The operator's CPU seconds per converged object.
    pub fn operator_cpu_per_object(&self) -> f64 {
        self.converge_cpu
            .cpu
            .get("operator")
            .copied()
            .unwrap_or_default()
            / self.n as f64
    }

    /// Writes to the Kubernetes API per new object, by the operator: every write both API
    /// servers served during convergence but the benchmark's own creates (one per object).
    pub fn operator_api_writes_per_object(&self) -> f64 {
        let writes: f64 = self
            .api_requests
            .iter()
            .filter(|(k, _)| crate::sample::is_write(k))
            .map(|(_, v)| v)
            .sum();
        (writes - self.n as f64).max(0.0) / self.n as f64
    }

    /// S3 requests per object the server received from the operator.
    pub fn s3_requests_per_object(&self) -> f64 {
        let c = &self.operator_s3;
        (c.gets + c.puts + c.deletes + c.other) as f64 / self.n as f64
    }
}

/// The scale phase: objects across many namespaces, one bucket claimed in each.
pub struct Spread {
    pub n: usize,
    pub namespaces: usize,
    /// Objects waiting for the shared bucket.
    pub conflicts: usize,
    pub converged: Duration,
    /// The operator's resync interval.
    pub resync: Duration,
    pub window: Duration,
    /// The operator's CPU seconds in the window.
    pub operator_cpu: f64,
    pub counts: OpCounts,
    pub api_writes: u64,
    pub peak_rss: u64,
    pub rss: u64,
}

impl Spread {
    pub fn passes(&self) -> f64 {
        self.window.as_secs_f64() / self.resync.as_secs_f64()
    }

    /// The operator's CPU seconds per object and pass (waiting objects included).
    pub fn cpu_per_object_pass(&self) -> f64 {
        self.operator_cpu / (self.n as f64 * self.passes())
    }
}

/// Where the operator's CPU went, from perf's samples.
pub struct Profile {
    pub n: usize,
    pub samples: u64,
    /// Share of samples by crate (or library, or the kernel), largest first, in percent.
    pub by_crate: Vec<(String, f64)>,
    /// The functions with the most samples, in percent.
    pub top: Vec<(String, f64)>,
}

impl Profile {
    /// From `perf report --stdio --no-children --sort sym`.
    pub fn parse(n: usize, report: &str) -> Profile {
        let mut samples = 0;
        let mut symbols = Vec::new();
        for line in report.lines() {
            if let Some(count) = line.strip_prefix("# Samples: ") {
                let count = count.split_whitespace().next().unwrap_or("0");
                samples += parse_count(count);
                continue;
            }
            let line = line.trim();
            let Some((percent, rest)) = line.split_once('%') else {
                continue;
            };
            let Ok(percent) = percent.trim().parse::<f64>() else {
                continue;
            };
            let rest = rest.trim();
            let (kernel, symbol) = match rest.split_once("] ") {
                Some((marker, symbol)) => (marker.ends_with("[k"), symbol.trim()),
                None => (false, rest),
            };
            symbols.push((kernel, symbol.to_owned(), percent));
        }
        let mut by_crate: BTreeMap<String, f64> = BTreeMap::new();
        for (kernel, symbol, percent) in &symbols {
            *by_crate.entry(area(*kernel, symbol)).or_default() += percent;
        }
        let mut by_crate: Vec<(String, f64)> = by_crate.into_iter().collect();
        by_crate.sort_by(|a, b| b.1.total_cmp(&a.1));
        let top = symbols
            .iter()
            .take(15)
            .map(|(_, s, p)| (shorten(s), *p))
            .collect();
        Profile {
            n,
            samples,
            by_crate,
            top,
        }
    }
}

/// perf prints counts such as `12K` or `3M`.
fn parse_count(count: &str) -> u64 {
    let (digits, scale) = match count.chars().last() {
        Some('K') => (&count[..count.len() - 1], 1_000.0),
        Some('M') => (&count[..count.len() - 1], 1_000_000.0),
        _ => (count, 1.0),
    };
    (digits.parse::<f64>().unwrap_or(0.0) * scale) as u64
}

/// The crate (or library) a symbol belongs to, named by its first path segment.
fn area(kernel: bool, symbol: &str) -> String {
    if kernel {
        return "kernel".into();
    }
    let symbol = symbol
        .trim_start_matches(['<', '&', '*'])
        .trim_start_matches("mut ");
    let symbol = symbol.strip_prefix("dyn ").unwrap_or(symbol);
    if symbol.starts_with("aws_lc") || symbol.starts_with("aws-lc") {
        return "aws-lc (TLS and signing crypto)".into();
    }
    if symbol.starts_with("0x") {
        return "unresolved".into();
    }
    match symbol.split_once("::") {
        Some((krate, _)) if !krate.contains(' ') => krate.to_owned(),
        _ => {
            let word: String = symbol
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            match word.as_str() {
                w if w.starts_with("__") || w.starts_with("_int_") || w.starts_with("mem") => {
                    "libc".into()
                }
                w if w.starts_with("je_") || w.starts_with("_rjem") => "jemalloc".into(),
                _ => "other".into(),
            }
        }
    }
}

/// A symbol without nested generic arguments (`<A<T> as B>::f` → `<A as B>::f`), at most
/// 100 characters.
fn shorten(symbol: &str) -> String {
    let mut out = String::new();
    let mut depth = 0usize;
    let qualified = symbol.starts_with('<');
    for c in symbol.chars() {
        match c {
            '<' => {
                depth += 1;
                if qualified && depth == 1 {
                    out.push('<');
                } else if depth == 1 || (qualified && depth == 2) {
                    out.push_str("<…>");
                }
            }
            '>' => {
                if qualified && depth == 1 {
                    out.push('>');
                }
                depth = depth.saturating_sub(1);
            }
            _ if depth == 0 || (qualified && depth == 1) => out.push(c),
            _ => {}
        }
    }
    let out = out.replace("<…><…>", "<…>");
    // The legacy mangling's hash (`::h0123456789abcdef`) tells nothing.
    let out = match out.rsplit_once("::h") {
        Some((path, hash)) if hash.len() == 16 && hash.chars().all(|c| c.is_ascii_hexdigit()) => {
            path.to_owned()
        }
        _ => out,
    };
    let out = if out.trim().is_empty() {
        symbol.to_owned()
    } else {
        out
    };
    match out.char_indices().nth(100) {
        Some((i, _)) => format!("{}…", &out[..i]),
        None => out,
    }
}

pub struct Latency {
    pub p50: Duration,
    pub p95: Duration,
    pub max: Duration,
    pub count: usize,
}

impl Latency {
    pub fn of(mut samples: Vec<Duration>) -> Latency {
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

pub struct Steady {
    pub n: usize,
    /// The operator's CPU seconds in the window.
    pub operator_cpu: f64,
    pub window: Duration,
    pub counts: OpCounts,
    pub buckets_seen: usize,
    /// Buckets read exactly once per resync in the window.
    pub buckets_exact: usize,
    pub min_gap: Duration,
    pub max_gap: Duration,
    pub mean_gap: Duration,
    pub api_writes: u64,
    pub peak_rss: u64,
    pub rss: u64,
}

impl Steady {
    /// The operator's CPU seconds per GetBucketCors in the window (a steady-state read).
    pub fn cpu_per_read(&self) -> f64 {
        self.operator_cpu / self.counts.gets.max(1) as f64
    }

    pub fn gets_per_object_per_resync(&self) -> f64 {
        let resyncs = self.window.as_secs_f64() / STEADY_RESYNC.as_secs_f64();
        self.counts.gets as f64 / (self.n as f64 * resyncs)
    }

    /// Exactly one Get per object per resync: every object read, no two reads of a bucket
    /// closer than the shortest jittered interval (0.9 R) nor further apart than the longest
    /// (1.1 R), allowing for how precisely reads are timed here; and no writes.
    pub fn met(&self) -> bool {
        let r = STEADY_RESYNC.as_secs_f64();
        self.counts.writes() == 0
            && self.counts.other == 0
            && self.buckets_seen == self.n
            && (self.gets_per_object_per_resync() - 1.0).abs() <= 0.02
            && self.min_gap.as_secs_f64() >= 0.9 * r - 0.25
            && self.max_gap.as_secs_f64() <= 1.1 * r + 0.5
    }
}

pub struct Startup {
    pub n: usize,
    pub rounds: Vec<StartupRound>,
}

pub struct StartupRound {
    /// The bare-SDK Get pass over as many buckets, just before this round.
    pub limit_gets: Duration,
    pub ready: Duration,
    pub verified: Duration,
    pub verified_after_ready: Duration,
    pub counts: OpCounts,
    pub status_writes: u64,
    pub peak_rss: u64,
    pub rss: u64,
}

impl Startup {
    pub fn median(&self, field: impl Fn(&StartupRound) -> Duration) -> Duration {
        let mut values: Vec<Duration> = self.rounds.iter().map(field).collect();
        values.sort_unstable();
        values[values.len() / 2]
    }

    pub fn max(&self, field: impl Fn(&StartupRound) -> Duration) -> Duration {
        self.rounds.iter().map(field).max().unwrap_or_default()
    }

    pub fn list(&self, field: impl Fn(&StartupRound) -> Duration) -> String {
        self.rounds
            .iter()
            .map(|r| format!("{:.2}", field(r).as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

pub struct Cli {
    pub sample: usize,
    pub per_bucket: Duration,
}

pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub mem_gib: f64,
    pub kernel: String,
    pub load_before: String,
}

impl Machine {
    pub fn read() -> Machine {
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

#[derive(Clone, Debug)]
pub struct Versions {
    pub rustc: String,
    pub apiserver: String,
    pub etcd: String,
    pub moto: String,
    pub aws: String,
}

impl Versions {
    pub fn read(venv: &Path, cp: &Cluster) -> Versions {
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
pub fn first_line(argv: &[&str]) -> String {
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

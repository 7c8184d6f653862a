//! The report: the results with their targets, as BENCHMARKS.md and the table printed at
//! the end of a run.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use crate::results::{
    BudgetRun, Cli, Latency, Machine, Profile, SizeResult, Spread, Startup, Steady, Versions,
};
use crate::sample::Phase;
use crate::world::Placement;
use crate::{MIB, Options, REFERENCE_SIZE, STEADY_RESYNC, STEADY_WINDOWS, THROTTLE_ABOVE};

/// `x` to 4 significant decimals, for the budgets block.
fn round(x: f64) -> f64 {
    (x * 1e4).round() / 1e4
}

pub struct Report {
    pub date: String,
    pub command: String,
    pub machine: Machine,
    pub versions: Versions,
    pub sizes: Vec<SizeResult>,
    pub latency: Option<Latency>,
    pub steady: Option<Steady>,
    pub startup: Option<Startup>,
    pub cli: Option<Cli>,
    pub budget: Vec<BudgetRun>,
    pub phases: Vec<Phase>,
    pub reference: usize,
    pub duration: Duration,
    /// The scale phase at the reference size and, when larger, the largest.
    pub spread: Vec<Spread>,
    pub profile: Option<Profile>,
    /// What one tenant can make the operator hold.
    pub memory: Option<crate::memory::MemoryRun>,
    /// What the measured processes ran ([`crate::world::World::describe`]).
    pub world: BTreeMap<String, String>,
}

/// Targets of the per-object budgets.
pub const CPU_PER_OBJECT_TARGET: f64 = 2.0e-3;
pub const CPU_PER_READ_TARGET: f64 = 0.75e-3;
pub const API_WRITES_PER_OBJECT_TARGET: f64 = 4.0;
/// The scale phase's CPU per object and pass may grow by this factor from the reference
/// size to the largest.
pub const SPREAD_FLAT: f64 = 1.25;

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / MIB)
}

pub fn verdict(met: bool) -> &'static str {
    if met { "yes" } else { "**no**" }
}

pub fn thousands(n: usize) -> String {
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
    pub fn new(date: String, options: &Options, machine: Machine, versions: Versions) -> Report {
        Report {
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
            memory: None,
            phases: Vec::new(),
            reference: options.reference(),
            duration: Duration::ZERO,
            spread: Vec::new(),
            profile: None,
            world: BTreeMap::new(),
        }
    }

    /// The convergence of `n` objects with the control plane on a CPU of its own.
    pub fn size(&self, n: usize) -> Option<&SizeResult> {
        self.sizes
            .iter()
            .find(|s| s.n == n && s.placement == Placement::Isolated)
    }

    /// The convergence runs with the control plane isolated, smallest first.
    pub fn isolated(&self) -> impl Iterator<Item = &SizeResult> {
        self.sizes
            .iter()
            .filter(|s| s.placement == Placement::Isolated)
    }

    /// The per-object budgets, as `make bench-check` compares them: CPU in milliseconds or
    /// microseconds, counts per object, memory in MiB, by size.
    pub fn budgets(&self) -> serde_json::Value {
        let by_size = |f: &dyn Fn(&SizeResult) -> f64| -> serde_json::Value {
            self.isolated()
                .map(|s| (s.n.to_string(), serde_json::json!(round(f(s)))))
                .collect::<serde_json::Map<_, _>>()
                .into()
        };
        let mut budgets = serde_json::json!({
            // Each size converges twice (two placements, two operators): the lower is the
            // steadier figure of the operator's own cost.
            "operator_cpu_ms_per_object": self
                .isolated()
                .map(|s| {
                    let lowest = self
                        .sizes
                        .iter()
                        .filter(|o| o.n == s.n)
                        .map(SizeResult::operator_cpu_per_object)
                        .fold(f64::INFINITY, f64::min);
                    (s.n.to_string(), serde_json::json!(round(lowest * 1e3)))
                })
                .collect::<serde_json::Map<_, _>>(),
            "operator_api_writes_per_object": by_size(&|s| s.operator_api_writes_per_object()),
            "s3_requests_per_object": by_size(&|s| s.s3_requests_per_object()),
            "peak_rss_mib": by_size(&|s| s.peak_rss as f64 / MIB),
            "spread_api_writes_per_pass": self
                .spread
                .iter()
                .map(|w| (w.n.to_string(), serde_json::json!(round(w.api_writes as f64 / w.passes()))))
                .collect::<serde_json::Map<_, _>>(),
            "spread_cpu_us_per_object_pass": self
                .spread
                .iter()
                .map(|w| (w.n.to_string(), serde_json::json!(round(w.cpu_per_object_pass() * 1e6))))
                .collect::<serde_json::Map<_, _>>(),
            "world": self.world,
        });
        if let Some(st) = &self.steady {
            budgets["operator_cpu_ms_per_read"] = round(st.cpu_per_read() * 1e3).into();
            budgets["gets_per_object_per_resync"] = round(st.gets_per_object_per_resync()).into();
            budgets["api_writes_per_steady_pass"] =
                round(st.api_writes as f64 / STEADY_WINDOWS as f64).into();
        }
        budgets
    }

    /// The results with their targets, as a Markdown table.
    pub fn table(&self) -> String {
        let mut t = String::new();
        t.push_str("| Measure | Result | Target | Met |\n|---|---|---|---|\n");
        for s in &self.sizes {
            let ratio = s.ratio();
            let (placement, target, met) = match s.placement {
                Placement::Isolated if s.n >= REFERENCE_SIZE => (
                    "control plane on CPU 0, S3 server and operator on CPU 1",
                    "≤ 1.15× the limit",
                    verdict(ratio <= 1.15),
                ),
                Placement::Isolated => (
                    "control plane on CPU 0, S3 server and operator on CPU 1",
                    "—",
                    "—",
                ),
                Placement::Shared => ("every process on every CPU", "—", "—"),
            };
            let _ = writeln!(
                t,
                "| Convergence, {} objects, {placement} | {} (objects created in {}); bare-SDK limit {}: **{ratio:.2}×** | {target} | {met} |",
                thousands(s.n),
                secs(s.converged),
                secs(s.objects_created),
                secs(s.limit),
            );
        }
        for s in self.isolated() {
            let cpu = s.operator_cpu_per_object();
            let _ = writeln!(
                t,
                "| Operator CPU per converged object, {} objects | **{:.2} ms** | ≤ {:.1} ms | {} |",
                thousands(s.n),
                cpu * 1e3,
                CPU_PER_OBJECT_TARGET * 1e3,
                verdict(cpu <= CPU_PER_OBJECT_TARGET)
            );
            let writes = s.operator_api_writes_per_object();
            let _ = writeln!(
                t,
                "| Kubernetes API writes per new object by the operator, {} objects | **{writes:.2}** | ≤ {API_WRITES_PER_OBJECT_TARGET:.0} (finalizer, the holder's mark, status, Event) | {} |",
                thousands(s.n),
                verdict(writes <= API_WRITES_PER_OBJECT_TARGET + 0.005)
            );
            let c = &s.operator_s3;
            let _ = writeln!(
                t,
                "| S3 requests per new object, {} objects | **{:.2}** ({} Get, {} Put, {} other) | 1 Get + 1 Put + 1 Get reading it back | {} |",
                thousands(s.n),
                s.s3_requests_per_object(),
                thousands(c.gets),
                thousands(c.puts),
                c.deletes + c.other,
                verdict(c.gets == 2 * s.n && c.puts == s.n && c.deletes + c.other == 0)
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
            let _ = writeln!(
                t,
                "| Operator CPU per steady-state read, {} objects | **{:.3} ms** ({:.2} CPU-s for {} Gets) | ≤ {:.2} ms | {} |",
                thousands(st.n),
                st.cpu_per_read() * 1e3,
                st.operator_cpu,
                st.counts.gets,
                CPU_PER_READ_TARGET * 1e3,
                verdict(st.cpu_per_read() <= CPU_PER_READ_TARGET)
            );
            let per_pass = st.api_writes as f64 / STEADY_WINDOWS as f64;
            let _ = writeln!(
                t,
                "| Kubernetes API writes per steady-state pass, {} objects | **{per_pass:.1}** | 0 | {} |",
                thousands(st.n),
                verdict(st.api_writes == 0)
            );
        }
        let first = self.spread.first();
        for w in &self.spread {
            let growth = first.map_or(1.0, |f| w.cpu_per_object_pass() / f.cpu_per_object_pass());
            let (target, met) = match first {
                Some(f) if f.n != w.n => (
                    format!("≤ {SPREAD_FLAT:.2}× the figure at {}", thousands(f.n)),
                    verdict(growth <= SPREAD_FLAT),
                ),
                _ => ("— (the base of the comparison)".to_owned(), "—"),
            };
            let _ = writeln!(
                t,
                "| Scale: Kubernetes API writes per steady-state pass, {} objects in {} namespaces | **{:.1}** | 0 | {} |",
                thousands(w.n),
                w.namespaces,
                w.api_writes as f64 / w.passes(),
                verdict(w.api_writes == 0)
            );
            let _ = writeln!(
                t,
                "| Scale: {} objects in {} namespaces, one bucket claimed in each ({} waiting), resync {} s | **{:.1} µs operator CPU per object and pass** ({:.2}× the first size); {} Gets, {} writes to S3, {} Kubernetes writes in {} s | {target} | {met} |",
                thousands(w.n),
                w.namespaces,
                w.conflicts,
                w.resync.as_secs(),
                w.cpu_per_object_pass() * 1e6,
                growth,
                thousands(w.counts.gets),
                w.counts.writes(),
                w.api_writes,
                w.window.as_secs()
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
        for s in self.isolated() {
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
    pub fn reading(&self) -> String {
        let mut md = String::from(
            "\n## Where convergence time goes\n\nCPU seconds used by each process from the \
             first create until every object was Ready (`/proc/<pid>/stat`). The bare-SDK \
             limit keeps only the S3 server busy; converging also runs the Kubernetes API \
             server, etcd and the operator on the same CPUs, so the sum of all CPU time \
             divided by the number of CPUs bounds the convergence time from below.\n\n\
             | objects | placement | converged | machine busy | API servers | etcds | moto | operator | benchmark | total | total ÷ CPUs | moto during the limit |\n\
             |---|---|---|---|---|---|---|---|---|---|---|---|\n",
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
                "| {} | {} | {:.1} s | {:.0}% | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} s = {:.2}× the limit | {:.1} in {:.1} s |",
                thousands(s.n),
                s.placement.name(),
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

    /// The sections on placement, scale, the profile and the measured world.
    pub fn instrument(&self) -> String {
        let mut md = String::new();
        md.push_str(
            "\n## Placement\n\nEach size converges twice. **Shared**: every process on every \
             CPU, as on a small node. **Isolated**: kube-apiserver, etcd, the CRD server and \
             its etcd, and the benchmark's Kubernetes client on CPU 0; the moto S3 server and \
             the operator on CPU 1 (`taskset`, every thread). The bare-SDK loop that gives the \
             limit runs on CPU 1 beside moto, where the operator runs, so the limit and the \
             operator share the same S3 CPU and the API servers' work no longer lands on the \
             measured CPU. The phases after the convergence runs keep the isolated placement.\n\n\
             | objects | placement | converged | limit | ratio | operator CPU | API servers + etcds CPU | moto CPU |\n\
             |---|---|---|---|---|---|---|---|\n",
        );
        for s in &self.sizes {
            let get = |name: &str| s.converge_cpu.cpu.get(name).copied().unwrap_or(0.0);
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {:.2}× | {:.1} s | {:.1} s | {:.1} s |",
                thousands(s.n),
                s.placement.name(),
                secs(s.converged),
                secs(s.limit),
                s.ratio(),
                get("operator"),
                get("kube-apiserver") + get("crd-server") + get("etcd") + get("crd-etcd"),
                get("moto"),
            );
        }
        if !self.spread.is_empty() {
            md.push_str(
                "\n## Scale across namespaces\n\nN objects in 100 namespaces, one operator \
                 watching all of them (a `--namespace` each; `--resync-interval` 10 s, and 10 ms per \
                 object above 1,000, so that moto can serve a pass over every bucket within \
                 it: 100 s at 10,000). In every \
                 namespace the first object names one bucket shared by all: one holds it, the \
                 others wait (Conflict) and are checked again every pass; the other objects name \
                 a bucket of their own. Once every object has settled and been through the pass that \
                 turns Applied into InSync, a window of 2 resyncs: the \
                 operator's CPU divided by objects × passes is the per-pass cost, ownership \
                 check included; it must stay flat as N grows.\n\n\
                 | objects | namespaces | waiting | settled in | window | operator CPU | per object and pass | Gets | S3 writes | API writes | RSS peak / after |\n\
                 |---|---|---|---|---|---|---|---|---|---|---|\n",
            );
            for w in &self.spread {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} s | {:.2} s | {:.1} µs | {} | {} | {} | {} / {} |",
                    thousands(w.n),
                    w.namespaces,
                    w.conflicts,
                    secs(w.converged),
                    w.window.as_secs(),
                    w.operator_cpu,
                    w.cpu_per_object_pass() * 1e6,
                    thousands(w.counts.gets),
                    w.counts.writes(),
                    w.api_writes,
                    mib(w.peak_rss),
                    mib(w.rss)
                );
            }
        }
        if let Some(p) = &self.profile {
            let _ = writeln!(
                md,
                "\n## Where the operator's CPU goes\n\n`perf record -e cpu-clock -F 999` on the \
                 operator while it converges {} objects (a run of its own, not part of the \
                 figures above); {} samples, user and kernel. By crate (first path segment of \
                 the function; aws-lc is the C crypto under rustls and SigV4):\n\n\
                 | crate | share of samples |\n|---|---|",
                thousands(p.n),
                p.samples
            );
            for (krate, share) in p.by_crate.iter().filter(|(_, s)| *s >= 0.5) {
                let _ = writeln!(md, "| {krate} | {share:.1}% |");
            }
            md.push_str(
                "\nThe functions with the most samples:\n\n| function | share |\n|---|---|\n",
            );
            for (symbol, share) in &p.top {
                let _ = writeln!(md, "| `{}` | {share:.1}% |", symbol.replace('|', "\\|"));
            }
        }
        md.push_str(
            "\n## The measured world\n\nWhat each measured process ran, from \
             `/proc/<pid>/cmdline` (servers) and the operator's arguments, with ports, process \
             ids and temporary paths left out. The benchmark starts its servers with the \
             integration tests' own support (`tests/support`); `make bench-check` refuses to \
             compare with a run whose world differs, so a change of test support that changes \
             what is measured shows as a changed world, not as a drifted figure.\n\n\
             | process | runs |\n|---|---|\n",
        );
        for (name, runs) in &self.world {
            let _ = writeln!(md, "| {name} | `{}` |", runs.replace('|', "\\|"));
        }
        let _ = writeln!(
            md,
            "\n## Budgets as `make bench-check` reads them\n\n`make bench-check` runs the \
             default sizes and compares with this block: CPU figures may grow by at most {:.0}% \
             ({} for the scale phase), counts per object by at most {}, peak RSS by at most \
             {:.0}%, steady-state API writes not at all, and the world must be the same. Wall \
             times are not compared: on a shared machine they are noise.\n\n```json\n{}\n```",
            (crate::check::CPU_TOLERANCE - 1.0) * 100.0,
            format_args!("{:.0}%", (crate::check::SPREAD_TOLERANCE - 1.0) * 100.0),
            crate::check::COUNT_TOLERANCE,
            (crate::check::RSS_TOLERANCE - 1.0) * 100.0,
            serde_json::to_string_pretty(&self.budgets()).unwrap_or_default()
        );
        md
    }

    pub fn markdown(&self) -> String {
        let m = &self.machine;
        let v = &self.versions;
        let mut md = String::new();
        let _ = writeln!(
            md,
            "# Benchmarks\n\n\
             Written by `benches/operator/` (`make bench`; `make bench BENCH_ARGS=--large` \
             adds 10,000 objects; `make bench-check` compares a run with the budgets at the \
             end). Every figure comes from real servers on \
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
        md.push_str(&self.instrument());
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
             does exactly the minimum the operator must do, one GetBucketCors, one \
             PutBucketCors and one GetBucketCors reading the write back per bucket, 16 buckets \
             at a time (the operator's concurrency). A \
             second pass of one GetBucketCors per bucket gives the limit for verifying existing \
             buckets.\n\
             - **Unpaced**: every operator run but the request-budget phase's has \
             `--store-requests-per-second 0`, as the bare-SDK loop has no budget: with the \
             default budget (200 requests a second per store) the figures would measure the \
             budget (1,000 objects need 2,000 requests: 9 s at 200 a second after a burst of \
             200, more than the limit itself), not the operator.\n\
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
            "| objects | placement | buckets created in moto | bare-SDK limit (Get+Put) | limit, Get only | objects created | converged | S3 requests from the operator | operator RSS with no object / peak / after |\n\
             |---|---|---|---|---|---|---|---|---|\n",
        );
        for s in &self.sizes {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} | {} Get, {} Put, {} Delete, {} other | {} / {} / {} |",
                thousands(s.n),
                s.placement.name(),
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
             and watch included, on both API servers), per object, control plane isolated:\n\n| objects | requests per object |\n|---|---|\n",
        );
        for s in self.isolated() {
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
        if let Some(memory) = &self.memory {
            md.push_str(&memory.markdown());
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

//! What the benchmark reads of the processes it measures: /proc (CPU time, start time,
//! command lines) and the API servers' own request counters.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::world::{Operator, World, blocking};

/// What one window of pure observation saw: the CPU each process used, the requests both API
/// servers served, and when it opened and closed (to select moto's records in it).
pub struct Observed {
    pub phase: Phase,
    pub api: BTreeMap<String, f64>,
    pub from: Instant,
    pub to: Instant,
}

impl World {
    /// Watches `operator` and the servers for `window` without doing anything, as phase `name`.
    pub async fn observe(
        &self,
        operator: &Operator,
        window: Duration,
        name: String,
    ) -> anyhow::Result<Observed> {
        let api_before = self.api_requests().await?;
        let cpu = CpuSnapshot::take(&self.pids(Some(operator)));
        let from = Instant::now();
        // The measurement window itself: nothing is awaited, the servers are only observed.
        tokio::time::sleep(window).await;
        let to = Instant::now();
        let cpu_after = CpuSnapshot::take(&self.pids(Some(operator)));
        let api_after = self.api_requests().await?;
        Ok(Observed {
            phase: Phase::new(name, &cpu, &cpu_after),
            api: diff_requests(&api_before, &api_after),
            from,
            to,
        })
    }

    /// The requests both API servers have served so far (the core, and the CRD server that
    /// serves BucketCors behind it), by "VERB resource[/subresource]".
    pub async fn api_requests(&self) -> anyhow::Result<BTreeMap<String, f64>> {
        let mut totals = api_requests(&self.kube).await?;
        for (key, value) in api_requests(&self.crd).await? {
            *totals.entry(key).or_insert(0.0) += value;
        }
        Ok(totals)
    }
}

pub fn cmdline(pid: u32) -> Option<Vec<String>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
    )
}

pub fn find_pid_once(matches: &impl Fn(&[String]) -> bool) -> Option<u32> {
    std::fs::read_dir("/proc")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .find(|&pid| cmdline(pid).is_some_and(|argv| matches(&argv)))
}

pub fn find_pid_blocking(matches: impl Fn(&[String]) -> bool, deadline: Duration) -> Option<u32> {
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

pub async fn find_pid(
    matches: impl Fn(&[String]) -> bool + Send + 'static,
    deadline: Duration,
) -> Option<u32> {
    blocking(move || find_pid_blocking(matches, deadline)).await
}

pub fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// The fields of /proc/PID/stat after the command name (field 3 onwards).
pub fn stat_fields(pid: u32) -> Option<Vec<u64>> {
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
pub fn process_start(pid: u32) -> Option<Instant> {
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
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let fields = stat_fields(pid)?;
    // Fields 14 (utime) and 15 (stime).
    Some(fields.get(14 - 4)? + fields.get(15 - 4)?)
}

/// (busy, total) CPU ticks of the whole machine.
pub fn machine_ticks() -> (u64, u64) {
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

pub struct CpuSnapshot {
    pub at: Instant,
    pub processes: Vec<(&'static str, u64)>,
    pub machine_busy: u64,
}

impl CpuSnapshot {
    pub fn take(pids: &[(&'static str, u32)]) -> CpuSnapshot {
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
pub struct Phase {
    pub name: String,
    pub wall: Duration,
    pub cpu: BTreeMap<&'static str, f64>,
    pub machine: f64,
}

impl Phase {
    pub fn new(name: String, before: &CpuSnapshot, after: &CpuSnapshot) -> Phase {
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

pub fn diff_requests(
    before: &BTreeMap<String, f64>,
    after: &BTreeMap<String, f64>,
) -> BTreeMap<String, f64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, v)| *v > 0.0)
        .collect()
}

/// A request that changes what the API servers store. TokenReviews and SubjectAccessReviews
/// are not: they are questions (the CRD server asks the core about the benchmark's own
/// scrape of its /metrics), created and never kept.
pub fn is_write(key: &str) -> bool {
    ["POST ", "PUT ", "PATCH ", "DELETE ", "APPLY "]
        .iter()
        .any(|verb| key.starts_with(verb))
        && !key.ends_with(" tokenreviews")
        && !key.ends_with(" subjectaccessreviews")
}

/// How many of `api`'s requests were writes.
pub fn writes(api: &BTreeMap<String, f64>) -> u64 {
    api.iter()
        .filter(|(k, _)| is_write(k))
        .map(|(_, v)| v.round() as u64)
        .sum()
}

/// The writes among `api`, as "VERB resource count".
pub fn written(api: &BTreeMap<String, f64>) -> Vec<String> {
    api.iter()
        .filter(|(k, v)| is_write(k) && **v > 0.0)
        .map(|(k, v)| format!("{k} {v}"))
        .collect()
}

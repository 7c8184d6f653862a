//! The `bucketcors` binary run as a process, the way a cluster runs it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::process::{Tethered, free_port, http_get, http_get_with, operator_binary, wait_until};

pub struct OperatorProcess {
    pub metrics_port: u16,
    pub health_port: u16,
    pub log: PathBuf,
    /// The executable the operator's process runs.
    binary: PathBuf,
    process: Tethered,
}

impl OperatorProcess {
    /// Starts `bucketcors run` with `args` (after the listen addresses) against the cluster
    /// of `kubeconfig`, with test credentials as its ambient AWS credentials, and waits until
    /// it answers /healthz.
    pub fn start(
        kubeconfig: &Path,
        args: &[&str],
        envs: &[(&str, &str)],
        log: PathBuf,
    ) -> OperatorProcess {
        let operator = OperatorProcess::spawn(&operator_binary(), &[], kubeconfig, args, envs, log);
        wait_until(
            "the operator to answer /healthz",
            Duration::from_secs(30),
            || {
                operator
                    .get_health("/healthz")
                    .is_some_and(|(status, _)| status == 200)
            },
        );
        operator
    }

    /// [`OperatorProcess::start`] of `binary`, run under `wrapper` (a command and its
    /// arguments, such as a profiler, or nothing), without waiting for it.
    pub fn spawn(
        binary: &Path,
        wrapper: &[&str],
        kubeconfig: &Path,
        args: &[&str],
        envs: &[(&str, &str)],
        log: PathBuf,
    ) -> OperatorProcess {
        let metrics_port = free_port();
        let health_port = free_port();
        let metrics = format!("127.0.0.1:{metrics_port}");
        let health = format!("127.0.0.1:{health_port}");
        let binary_arg = binary.to_str().expect("a UTF-8 path");
        let mut all_args: Vec<&str> = wrapper.iter().skip(1).copied().collect();
        if !wrapper.is_empty() {
            all_args.push(binary_arg);
        }
        all_args.extend([
            "run",
            "--metrics-addr",
            &metrics,
            "--health-addr",
            &health,
            "--log-format",
            "json",
        ]);
        all_args.extend_from_slice(args);
        let mut all_envs = vec![
            ("KUBECONFIG", kubeconfig.to_str().unwrap()),
            ("AWS_ACCESS_KEY_ID", "ambient"),
            ("AWS_SECRET_ACCESS_KEY", "ambient"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("RUST_LOG", "info"),
            // Tests of other behaviours run it as a single-tenant cluster does.
            ("BUCKETCORS_SINGLE_TENANT", "true"),
        ];
        all_envs.extend_from_slice(envs);
        let program = wrapper.first().map_or(binary, Path::new);
        let process = Tethered::spawn(program, &all_args, &all_envs, &log);
        OperatorProcess {
            metrics_port,
            health_port,
            log,
            binary: std::fs::canonicalize(binary).unwrap_or_else(|_| binary.to_path_buf()),
            process,
        }
    }

    /// The process id of the operator itself (not of the tether or a wrapper), once it runs.
    pub fn pid(&self) -> Option<u32> {
        let pattern = format!("health-addr 127.0.0.1:{}", self.health_port);
        let out = Command::new("pgrep").args(["-f", &pattern]).output().ok()?;
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|pid| pid.trim().parse::<u32>().ok())
            .find(|pid| {
                std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|e| e == self.binary)
            })
    }

    pub fn get_health(&self, path: &str) -> Option<(u16, String)> {
        http_get(self.health_port, path)
    }

    /// The operator's /metrics, as text (the Prometheus text format: no Accept header).
    pub fn scrape(&self) -> String {
        let (status, body) = http_get(self.metrics_port, "/metrics").expect("/metrics answers");
        assert_eq!(status, 200);
        body
    }

    /// The operator's /metrics as Prometheus asks for it (OpenMetrics).
    pub fn scrape_open_metrics(&self) -> String {
        let accept = "Accept: application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1\r\n";
        let (status, body) =
            http_get_with(self.metrics_port, "/metrics", accept).expect("/metrics answers");
        assert_eq!(status, 200);
        body
    }

    /// What the operator has logged so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops it with SIGTERM (the way Kubernetes does) and waits until it has exited.
    pub fn terminate(&mut self) {
        self.process.stop();
    }

    /// The operator's peak resident memory so far (VmHWM), in bytes.
    pub fn peak_rss(&self) -> u64 {
        let pid = self.pid().expect("the operator's process runs");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/PID/status");
        kib * 1024
    }

    /// Kills it with SIGKILL: no chance to clean up, as when a node dies.
    pub fn kill(&mut self) {
        let pattern = format!("health-addr 127.0.0.1:{}", self.health_port);
        let killed = Command::new("pkill")
            .args(["-KILL", "-f", &pattern])
            .status()
            .unwrap();
        assert!(killed.success(), "no process matched {pattern}");
        self.process.stop();
    }
}

/// The value of the first sample of `metric` with exactly these `labels` (`{a="b"}` or empty).
pub fn sample(metrics: &str, metric: &str, labels: &str) -> Option<f64> {
    let prefix = format!("{metric}{labels} ");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

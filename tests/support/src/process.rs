//! Servers the tests start and stop.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

/// The repository's root (this crate lives in tests/support).
pub fn repo_root() -> PathBuf {
    let support = Path::new(env!("CARGO_MANIFEST_DIR"));
    support
        .ancestors()
        .nth(2)
        .expect("tests/support is two folders below the root")
        .to_path_buf()
}

/// The `bucketcors` binary cargo built beside the running test or benchmark (whose executable
/// is `<target>/<profile>/deps/<name>-<hash>`), or `BUCKETCORS_OPERATOR_BIN` when set.
pub fn operator_binary() -> PathBuf {
    if let Some(binary) = std::env::var_os("BUCKETCORS_OPERATOR_BIN") {
        return PathBuf::from(binary);
    }
    let exe = std::env::current_exe().expect("the running executable's path");
    let binary = exe
        .parent()
        .and_then(Path::parent)
        .expect("the executable is in <target>/<profile>/deps")
        .join("bucketcors");
    assert!(
        binary.exists(),
        "{} does not exist: cargo builds it for integration tests and benchmarks",
        binary.display()
    );
    binary
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// The Python environment with moto and the aws CLI (made by scripts/python-env.sh).
pub fn python_env() -> PathBuf {
    if let Ok(venv) = std::env::var("BUCKETCORS_VENV") {
        return PathBuf::from(venv);
    }
    let out = Command::new(repo_root().join("scripts/python-env.sh"))
        .stderr(Stdio::inherit())
        .output()
        .expect("scripts/python-env.sh runs");
    assert!(out.status.success(), "scripts/python-env.sh failed");
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// A process that stops when this handle is dropped or the test process exits: it runs under
/// scripts/tether.py, which stops it when its standard input closes. tether.py gets a process
/// group of its own, so that a signal sent to the caller's group (Ctrl-C, `timeout`, a CI
/// runner cancelling the job) ends the caller but not tether.py, which then stops the process.
pub struct Tethered {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Tethered {
    pub fn spawn(program: &Path, args: &[&str], envs: &[(&str, &str)], log: &Path) -> Tethered {
        let log_file = std::fs::File::create(log).expect("log file");
        let mut command = Command::new(repo_root().join("scripts/tether.py"));
        command
            .arg(program)
            .args(args)
            .envs(envs.iter().copied())
            .stdin(Stdio::piped())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .process_group(0);
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", program.display()));
        let stdin = child.stdin.take();
        Tethered { child, stdin }
    }

    /// Stops the process and waits until it is gone.
    pub fn stop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

impl Drop for Tethered {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs every thread of process `pid` on `cpus` only (a `taskset` CPU list such as `0` or
/// `0-1`); the threads it starts later inherit the placement.
pub fn pin(pid: u32, cpus: &str) -> Result<(), String> {
    let out = Command::new("taskset")
        .args(["--all-tasks", "--pid", "--cpu-list", cpus, &pid.to_string()])
        .output()
        .map_err(|e| format!("taskset: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "taskset -a -p -c {cpus} {pid}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Waits until `check` holds, polling, or panics after `deadline` saying what it waited for.
pub fn wait_until(what: &str, deadline: Duration, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether an HTTP server on `port` answers `GET path` at all.
pub fn http_answers(port: u16, path: &str) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.")
}

/// `GET path` on a loopback port: the status code and the body, or None when nothing answers.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    http_get_with(port, path, "")
}

/// `http_get` with extra request header lines (each ending in CRLF).
pub fn http_get_with(port: u16, path: &str, headers: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{headers}\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((status, body))
}

//! moto's request recording, followed as it grows: every S3 request the benchmark's buckets
//! received, by operation and by whose credentials sent it.

use std::collections::HashSet;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    GetCors,
    PutCors,
    DeleteCors,
    Other,
}

/// One request moto recorded, stamped with when the benchmark saw it in the recording.
pub struct Record {
    pub at: Instant,
    pub op: Op,
    pub bucket: String,
    /// Sent with the operator's credentials (the benchmark uses others).
    pub operator: bool,
}

/// Follows moto's recording file as it grows, keeping the requests on the benchmark's buckets.
pub struct Tail {
    pub records: Arc<Mutex<Vec<Record>>>,
    /// Bytes of the file read so far.
    pub read: Arc<Mutex<u64>>,
    pub path: PathBuf,
    pub stop: Arc<AtomicBool>,
    pub thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Tail {
    pub fn start(path: PathBuf, prefix: String) -> Tail {
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
    pub async fn caught_up(&self) {
        let size = std::fs::metadata(&self.path).map_or(0, |m| m.len());
        let started = Instant::now();
        while *self.read.lock().expect("poisoned") < size
            && started.elapsed() < Duration::from_secs(30)
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn select(
        &self,
        from: Instant,
        to: Instant,
        keep: impl Fn(&Record) -> bool,
    ) -> Vec<Record> {
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

    pub async fn counts(
        &self,
        from: Instant,
        to: Instant,
        keep: impl Fn(&Record) -> bool,
    ) -> OpCounts {
        self.caught_up().await;
        OpCounts::of(self.select(from, to, keep).iter())
    }

    /// How many buckets whose name starts with `set` the operator has read since `from`, and
    /// when the first read of the last of them was seen.
    pub fn distinct_gets(&self, from: Instant, set: &str) -> (usize, Option<Instant>) {
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

    pub fn stop(&self) {
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

pub fn parse_record(line: &[u8], at: Instant, prefix: &str) -> Option<Record> {
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
pub struct OpCounts {
    pub gets: usize,
    pub puts: usize,
    pub deletes: usize,
    pub other: usize,
}

impl OpCounts {
    pub fn of<'a>(records: impl Iterator<Item = &'a Record>) -> OpCounts {
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

    pub fn writes(&self) -> usize {
        self.puts + self.deletes
    }
}

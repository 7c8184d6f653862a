//! What one tenant can make the operator hold: objects as large as the API server takes (which
//! the operator refuses), and objects whose own endpoint answers as much as the operator reads.
//! The operator's peak RSS after each set, and a fresh operator's over all of them (a restart
//! lists them all at once).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use aws_sdk_s3::types::CorsConfiguration;
use bucketcors::api::BucketCors;
use bucketcors::cors::CorsRule;
use bucketcors_test_support::fault_proxy::{Failure, Fault, FaultProxy, TINY_RULES};
use kube::api::Api;

use crate::world::{Operator, WaitAll, World, object_name, rules_for, sdk_configuration};
use crate::{MIB, blocking_stop, say};

/// Objects in each set.
pub const OBJECTS: usize = 100;
/// The largest spec the API server takes: 100 rules of 40 origins of 300 characters (1.2 MB
/// of origins; S3 allows 64 KB, so the operator refuses it).
const MAX_RULES: usize = 100;
const MAX_ORIGINS: usize = 40;
const MAX_ORIGIN_LEN: usize = 300;
/// A configuration of just under 1 MiB on the S3 server: 100 rules of 40 origins of 200
/// characters, as much as the operator reads of an answer.
const BIG_ORIGIN_LEN: usize = 200;

/// The peak RSS of the operator after each set, and of a fresh one over all of them.
pub struct MemoryRun {
    /// VmHWM of the operator once ready, before any object.
    pub idle: u64,
    /// (what the set is, VmHWM after it settled).
    pub sets: Vec<(String, u64)>,
    /// VmHWM and VmRSS of a fresh operator once it had looked at every object again.
    pub restart: (u64, u64),
}

/// An origin of `len` characters, distinct per rule and position.
fn origin(rule: usize, k: usize, len: usize) -> String {
    let head = format!("https://o{rule}-{k}.");
    let tail = ".example.com";
    format!("{head}{}{tail}", "a".repeat(len - head.len() - tail.len()))
}

/// `rules` rules of `origins` origins of `len` characters each.
fn large_rules(rules: usize, origins: usize, len: usize) -> Vec<CorsRule> {
    (0..rules)
        .map(|r| CorsRule::new((0..origins).map(|k| origin(r, k, len)), ["GET"]))
        .collect()
}

/// Whether the operator has concluded a pass over the object's current generation.
fn settled(obj: &BucketCors) -> bool {
    obj.ready_condition()
        .is_some_and(|c| c.observed_generation == obj.metadata.generation)
}

impl World {
    /// The memory phase: 100 maximal objects, 100 objects whose bucket holds a configuration
    /// of just under 1 MiB, 100 whose endpoint answers 1 MiB of the smallest rules; then a
    /// fresh operator over the 300.
    pub async fn hostile_memory(&self) -> anyhow::Result<MemoryRun> {
        say(&format!(
            "== memory: {OBJECTS} maximal objects, {OBJECTS} over 1 MiB configurations, {OBJECTS} over 1 MiB of tiny rules"
        ));
        let namespace = "bench-memory";
        self.namespace(namespace).await?;
        let api: Api<BucketCors> = Api::namespaced(self.kube.clone(), namespace);
        let proxy = FaultProxy::start(&self.endpoint).await;
        proxy.set(Fault::All(Failure::TinyRules));
        let mut operator = self.start_operator("memory", "memory", &[namespace], &[])?;
        operator.wait_ready(Duration::from_secs(60)).await?;
        let idle = operator.memory().0;
        let mut sets = Vec::new();

        let maximal = large_rules(MAX_RULES, MAX_ORIGINS, MAX_ORIGIN_LEN);
        let objects = (0..OBJECTS).map(|i| {
            let spec = self.spec(&self.bucket("mx", i), maximal.clone());
            BucketCors::new(&format!("max-{}", object_name(i)), spec)
        });
        let peak = self
            .settle(&api, namespace, &operator, objects, "maximal (InvalidSpec)")
            .await?;
        sets.push((
            format!(
                "{OBJECTS} objects of {MAX_RULES} rules × {MAX_ORIGINS} origins × {MAX_ORIGIN_LEN} characters (InvalidSpec)"
            ),
            peak,
        ));

        let big = sdk_configuration(&large_rules(MAX_RULES, MAX_ORIGINS, BIG_ORIGIN_LEN));
        let buckets: Vec<String> = (0..OBJECTS).map(|i| self.bucket("mb", i)).collect();
        self.create_buckets(&buckets).await?;
        self.fill(&buckets, &big).await?;
        let objects = buckets.iter().enumerate().map(|(i, bucket)| {
            let spec = self.spec(bucket, rules_for(i, 0));
            BucketCors::new(&format!("big-{}", object_name(i)), spec)
        });
        let peak = self
            .settle(
                &api,
                namespace,
                &operator,
                objects,
                "over 1 MiB configurations",
            )
            .await?;
        sets.push((
            format!(
                "{OBJECTS} objects whose bucket holds {MAX_RULES} rules × {MAX_ORIGINS} origins × {BIG_ORIGIN_LEN} characters (just under 1 MiB of XML)"
            ),
            peak,
        ));

        let objects = (0..OBJECTS).map(|i| {
            let mut spec = self.spec(&self.bucket("mt", i), rules_for(i, 0));
            spec.endpoint = Some(proxy.endpoint());
            BucketCors::new(&format!("tiny-{}", object_name(i)), spec)
        });
        let peak = self
            .settle(
                &api,
                namespace,
                &operator,
                objects,
                "over 1 MiB of tiny rules",
            )
            .await?;
        sets.push((
            format!(
                "{OBJECTS} objects whose endpoint answers {TINY_RULES} rules of one origin and one method (1 MiB of XML)"
            ),
            peak,
        ));
        blocking_stop(&mut operator).await;

        let restart = self.restarted(namespace, &proxy).await?;
        Ok(MemoryRun {
            idle,
            sets,
            restart,
        })
    }

    /// Puts `configuration` on every bucket of `buckets`.
    async fn fill(
        &self,
        buckets: &[String],
        configuration: &CorsConfiguration,
    ) -> anyhow::Result<()> {
        for bucket in buckets {
            self.s3
                .put_bucket_cors()
                .bucket(bucket)
                .cors_configuration(configuration.clone())
                .send()
                .await
                .with_context(|| format!("PutBucketCors {bucket}"))?;
        }
        Ok(())
    }

    /// Creates `objects` and waits until the operator has concluded a pass over each; the
    /// operator's peak RSS then.
    async fn settle(
        &self,
        api: &Api<BucketCors>,
        namespace: &str,
        operator: &Operator,
        objects: impl Iterator<Item = BucketCors>,
        what: &str,
    ) -> anyhow::Result<u64> {
        let objects: Vec<BucketCors> = objects.collect();
        let before = api.list(&Default::default()).await?.items.len();
        let waiter = WaitAll::start(api.clone(), before + objects.len(), settled).await?;
        let started = Instant::now();
        self.create_objects(objects.into_iter().map(|o| (namespace.to_owned(), o)))
            .await?;
        waiter.wait(Duration::from_secs(600)).await?;
        let (peak, rss) = operator.memory();
        say(&format!(
            "{what}: settled in {:.1} s; operator RSS peak {:.1} MiB, now {:.1} MiB",
            started.elapsed().as_secs_f64(),
            peak as f64 / MIB,
            rss as f64 / MIB
        ));
        Ok(peak)
    }

    /// A fresh operator over every object of `namespace`, once it has read every bucket of
    /// the sets that reach a store (the refused objects make no call); its peak and RSS.
    async fn restarted(&self, namespace: &str, proxy: &FaultProxy) -> anyhow::Result<(u64, u64)> {
        let seen_before = proxy.requests_seen();
        let started = Instant::now();
        let operator = self.start_operator("memory", "memory-restart", &[namespace], &[])?;
        operator.wait_ready(Duration::from_secs(120)).await?;
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let (read, _) = self
                .tail
                .distinct_gets(started, &format!("{}mb-", self.prefix));
            let asked = proxy.requests_seen() - seen_before;
            if read >= OBJECTS && asked >= OBJECTS {
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "the fresh operator read {read} of {OBJECTS} buckets and asked the endpoint {asked} times"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let (peak, rss) = operator.memory();
        say(&format!(
            "fresh operator over {} objects: RSS peak {:.1} MiB, now {:.1} MiB",
            3 * OBJECTS,
            peak as f64 / MIB,
            rss as f64 / MIB
        ));
        let mut operator = operator;
        blocking_stop(&mut operator).await;
        Ok((peak, rss))
    }
}

impl MemoryRun {
    /// The section of BENCHMARKS.md.
    pub fn markdown(&self) -> String {
        let mut md = String::from(
            "\n### Memory one tenant can take\n\n\
             One operator (`--concurrency 16`) watching one namespace, in which objects are \
             created set after set, each set waited for until the operator has concluded a pass \
             over every object of it; then a fresh operator over all of them, once it has read \
             every bucket again (a restart lists every object at once). Peak is VmHWM of the \
             operator process. The chart's default memory limit is 128 MiB.\n\n\
             | after | operator RSS peak |\n|---|---|\n",
        );
        let _ = writeln!(
            md,
            "| ready, no object | {:.1} MiB |",
            self.idle as f64 / MIB
        );
        for (what, peak) in &self.sets {
            let _ = writeln!(md, "| + {what} | **{:.1} MiB** |", *peak as f64 / MIB);
        }
        let _ = writeln!(
            md,
            "| a fresh operator over the {} objects | **{:.1} MiB** (RSS after: {:.1} MiB) |",
            self.sets.len() * OBJECTS,
            self.restart.0 as f64 / MIB,
            self.restart.1 as f64 / MIB
        );
        md
    }
}

//! The measurements: each phase starts what it needs in the [`World`], drives it, and returns
//! its figures.

use std::collections::{HashMap, HashSet};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, ensure};
use aws_sdk_s3::error::ProvideErrorMetadata;
use bucketcors::api::BucketCors;
use bucketcors::cors::{self, Plan};
use bucketcors_test_support::fault_proxy::{Fault, FaultProxy};
use bucketcors_test_support::process::python_env;
use futures::{StreamExt, TryStreamExt};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::watcher;

use crate::recording::{Op, OpCounts};
use crate::report::ms;
use crate::results::{
    BudgetRun, Cli, Latency, Profile, SizeResult, Spread, Startup, StartupRound, Steady,
};
use crate::sample::{CpuSnapshot, Observed, Phase, diff_requests, is_write, writes, written};
use crate::world::{
    Operator, Placement, WaitAll, World, cli_configuration, converged, in_sync, object_name,
    read_cors, rules_for, sdk_configuration,
};
use crate::{
    CONCURRENCY, MIB, SPREAD_NAMESPACES, SPREAD_WINDOWS, STARTUP_ROUNDS, STEADY_RESYNC,
    STEADY_WINDOWS, THROTTLE_ABOVE, UPDATES, blocking_stop, say,
};

/// The label that tells the objects of one phase across namespaces.
const SET_LABEL: &str = "bench.bucketcors.dev/set";

impl World {
    /// The bare minimum on fresh buckets: one GetBucketCors, one PutBucketCors and the
    /// GetBucketCors that reads the write back, each, at the operator's concurrency.
    pub async fn limit(&self, buckets: &[String]) -> anyhow::Result<Duration> {
        // The loop stands for the operator: it runs where the operator runs.
        self.bench_beside_s3(true)?;
        let started = Instant::now();
        let done = futures::stream::iter(buckets.iter().enumerate())
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
                    .with_context(|| format!("PutBucketCors {bucket}"))?;
                self.s3
                    .get_bucket_cors()
                    .bucket(bucket)
                    .send()
                    .await
                    .map(drop)
                    .with_context(|| format!("GetBucketCors {bucket} after the write"))
            })
            .buffer_unordered(CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await;
        let took = started.elapsed();
        self.bench_beside_s3(false)?;
        done?;
        Ok(took)
    }

    /// Limit, then N objects created at once and converged by a fresh operator. Returns the
    /// operator still running when `keep`.
    pub async fn converge(
        &self,
        n: usize,
        placement: Placement,
        keep: bool,
        phases: &mut Vec<Phase>,
    ) -> anyhow::Result<(SizeResult, Option<Operator>)> {
        say(&format!(
            "== {n} objects, placement {}: bare-SDK limit",
            placement.name()
        ));
        // The reference placement's sets keep their names: the phases after it use them.
        let tag = match placement {
            Placement::Isolated => "",
            Placement::Shared => "s",
        };
        let limit_buckets: Vec<String> = (0..n)
            .map(|i| self.bucket(&format!("{tag}l{n}"), i))
            .collect();
        self.create_buckets(&limit_buckets).await?;
        let cpu = CpuSnapshot::take(&self.pids(None));
        let limit = self.limit(&limit_buckets).await?;
        let cpu_after = CpuSnapshot::take(&self.pids(None));
        let limit_cpu = Phase::new(
            format!(
                "bare-SDK limit, {n} buckets (Get+Put), placement {}",
                placement.name()
            ),
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

        let set = format!("{tag}n{n}");
        let buckets: Vec<String> = (0..n).map(|i| self.bucket(&set, i)).collect();
        let buckets_created = self.create_buckets(&buckets).await?;
        let namespace = match placement {
            Placement::Isolated => format!("bench-{n}"),
            Placement::Shared => format!("bench-shared-{n}"),
        };
        self.namespace(&namespace).await?;
        let mut operator = self.start_operator(
            "converge",
            &format!("converge-{}-{n}", placement.name()),
            &[&namespace],
            &[],
        )?;
        operator.wait_ready(Duration::from_secs(60)).await?;
        let idle_rss = operator.memory().1;
        let api: Api<BucketCors> = Api::namespaced(self.kube.clone(), &namespace);
        let waiter = WaitAll::start(api.clone(), n, converged).await?;

        say(&format!("== {n} objects: create and converge"));
        let api_before = self.api_requests().await?;
        let cpu = CpuSnapshot::take(&self.pids(Some(&operator)));
        let started = Instant::now();
        let objects = buckets.iter().enumerate().map(|(i, bucket)| {
            let object = BucketCors::new(&object_name(i), self.spec(bucket, rules_for(i, 0)));
            (namespace.clone(), object)
        });
        let objects_created = self.create_objects(objects).await?;
        let deadline = Duration::from_secs(120) + Duration::from_millis(100) * n as u32;
        let all_ready = waiter.wait(deadline).await?;
        let converged_in = all_ready.duration_since(started);
        let cpu_after = CpuSnapshot::take(&self.pids(Some(&operator)));
        let api_after = self.api_requests().await?;
        let converge_cpu = Phase::new(
            format!(
                "operator converging {n} objects (creation included), placement {}",
                placement.name()
            ),
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
            placement,
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
    pub async fn budgeted(
        &self,
        n: usize,
        budget: Option<(u32, u32)>,
    ) -> anyhow::Result<BudgetRun> {
        let label = budget.map_or("no budget".to_owned(), |(r, b)| {
            format!("budget {r}/s, burst {b}")
        });
        say(&format!(
            "== {n} objects on a store that throttles above {THROTTLE_ABOVE}/s, {label}"
        ));
        let proxy = FaultProxy::start(&self.endpoint).await;
        proxy.set(Fault::ThrottleAbove(THROTTLE_ABOVE));
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
            "budget",
            &format!("budget-{set}"),
            &[&namespace],
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
        let objects = buckets.iter().enumerate().map(|(i, bucket)| {
            let mut spec = self.spec(bucket, rules_for(i, 0));
            spec.endpoint = Some(endpoint.clone());
            (namespace.clone(), BucketCors::new(&object_name(i), spec))
        });
        self.create_objects(objects).await?;
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

    /// Sequential spec updates, each timed until the S3 server holds the new rules.
    pub async fn change_latency(
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
    pub async fn steady_state(&self, n: usize, phases: &mut Vec<Phase>) -> anyhow::Result<Steady> {
        say(&format!(
            "== steady state: {n} objects, resync {} s",
            STEADY_RESYNC.as_secs()
        ));
        let namespace = format!("bench-{n}");
        let api: Api<BucketCors> = Api::namespaced(self.kube.clone(), &namespace);
        let resync = format!("{}s", STEADY_RESYNC.as_secs());
        let mut operator = self.start_operator(
            "steady",
            "steady",
            &[&namespace],
            &["--resync-interval", &resync],
        )?;
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
        let Observed {
            phase,
            api,
            from,
            to,
        } = self
            .observe(
                &operator,
                window,
                format!(
                    "steady state, {n} objects, {} s window, resync {} s",
                    window.as_secs(),
                    STEADY_RESYNC.as_secs()
                ),
            )
            .await?;
        let operator_cpu = phase.cpu.get("operator").copied().unwrap_or_default();
        phases.push(phase);
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
        let api_writes = writes(&api);
        let steady = Steady {
            n,
            operator_cpu,
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
        let written = written(&api);
        say(&format!(
            "{:?}; {:.3} Get/object/resync; gaps {:.2}..{:.2} s; API writes {api_writes} {written:?}",
            steady.counts,
            steady.gets_per_object_per_resync(),
            steady.min_gap.as_secs_f64(),
            steady.max_gap.as_secs_f64(),
        ));
        Ok(steady)
    }

    /// Fresh operators over N existing, converged (InSync) objects: time to /readyz and until
    /// the S3 server has seen a GetBucketCors on every bucket. Each round is paired with a
    /// bare-SDK Get pass over as many buckets just before it.
    pub async fn startup(&self, n: usize, phases: &mut Vec<Phase>) -> anyhow::Result<Startup> {
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

    pub async fn startup_round(
        &self,
        n: usize,
        limit_gets: Duration,
        round: usize,
        phases: &mut Vec<Phase>,
    ) -> anyhow::Result<StartupRound> {
        let namespace = format!("bench-{n}");
        let set = format!("{}n{n}-", self.prefix);
        let api_before = self.api_requests().await?;
        let cpu = CpuSnapshot::take(&self.pids(None));
        let spawned = Instant::now();
        let mut operator =
            self.start_operator("startup", &format!("startup-{round}"), &[&namespace], &[])?;
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
        let api_after = self.api_requests().await?;
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
    pub async fn aws_cli(&self, sample: usize) -> anyhow::Result<Cli> {
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
    /// `n` objects in [`SPREAD_NAMESPACES`] namespaces, all watched by one operator (a
    /// `--namespace` each). In every namespace the first object names one bucket that all
    /// namespaces share: one holds it, the others wait (Conflict) and are checked again on
    /// every pass; the others name a bucket of their own. Once all have settled, a window of
    /// [`SPREAD_WINDOWS`] resyncs gives the operator's CPU per object and pass, which must
    /// not grow with the number of objects.
    pub async fn spread(&self, n: usize) -> anyhow::Result<Spread> {
        let spaces = SPREAD_NAMESPACES;
        ensure!(
            n >= 2 * spaces,
            "the scale phase puts {spaces} namespaces of at least 2 objects: {n} is too few"
        );
        let per = n / spaces;
        let n = per * spaces;
        say(&format!(
            "== {n} objects in {spaces} namespaces, one bucket claimed in every namespace"
        ));
        let set = format!("spread-{n}");
        let shared = format!("{}w{n}-shared", self.prefix);
        let own = |k: usize, j: usize| self.bucket(&format!("w{n}-{k}"), j);
        let mut buckets = vec![shared.clone()];
        buckets.extend(
            (0..spaces)
                .flat_map(|k| (1..per).map(move |j| (k, j)))
                .map(|(k, j)| own(k, j)),
        );
        self.create_buckets(&buckets).await?;
        let namespaces: Vec<String> = (0..spaces).map(|k| format!("{set}-{k}")).collect();
        futures::stream::iter(&namespaces)
            .map(|ns| self.namespace(ns))
            .buffer_unordered(CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
        let watched: Vec<&str> = namespaces.iter().map(String::as_str).collect();
        let resync_every = crate::spread_resync(n);
        let resync = format!("{}s", resync_every.as_secs());
        // One entry of the measured world per size: the resync grows with it.
        let kind = format!("spread {n}");
        let mut operator =
            self.start_operator(&kind, &set, &watched, &["--resync-interval", &resync])?;
        operator.wait_ready(Duration::from_secs(60)).await?;
        let all: Api<BucketCors> = Api::all(self.kube.clone());
        let selector = format!("{SET_LABEL}={set}");
        let waiter = WaitAll::start_with(
            all.clone(),
            watcher::Config::default().labels(&selector),
            n,
            settled,
        )
        .await?;
        let mut objects = Vec::with_capacity(n);
        for (k, ns) in namespaces.iter().enumerate() {
            for j in 0..per {
                let bucket = if j == 0 { shared.clone() } else { own(k, j) };
                let mut object =
                    BucketCors::new(&object_name(j), self.spec(&bucket, rules_for(j, 0)));
                object.metadata.labels = Some([(SET_LABEL.to_owned(), set.clone())].into());
                objects.push((ns.clone(), object));
            }
        }
        // A pass that finds its bucket in sync turns Applied into InSync: once per object,
        // after converging. The window waits for that, so that it sees the steady state.
        let quieted = WaitAll::start_with(
            all.clone(),
            watcher::Config::default().labels(&selector),
            n,
            quiet,
        )
        .await?;
        let started = Instant::now();
        self.create_objects(objects.into_iter()).await?;
        let deadline = Duration::from_secs(120) + Duration::from_millis(100) * n as u32;
        let all_settled = waiter.wait(deadline).await?;
        let converged_in = all_settled.duration_since(started);
        let listed = all.list(&ListParams::default().labels(&selector)).await?;
        let reason_of = |obj: &BucketCors| obj.ready_condition().map(|c| c.reason.clone());
        let conflicts = listed
            .items
            .iter()
            .filter(|o| reason_of(o).as_deref() == Some("Conflict"))
            .count();
        ensure!(
            conflicts == spaces - 1,
            "{conflicts} objects report Conflict; {} wait for the shared bucket",
            spaces - 1
        );
        let verified = self
            .verify(&buckets[1..], |i| rules_for(i % (per - 1) + 1, 0))
            .await;
        ensure!(
            verified == buckets.len() - 1,
            "only {verified} of {} buckets of their own hold their object's rules",
            buckets.len() - 1
        );
        say(&format!(
            "all settled after {:.2} s ({conflicts} wait for the shared bucket)",
            converged_in.as_secs_f64()
        ));
        let all_quiet = quieted
            .wait(Duration::from_secs(60) + resync_every * 2)
            .await
            .context("waiting for every object to be InSync or waiting")?;
        // Every object has just been through a pass; the window opens half a resync later.
        tokio::time::sleep_until((all_quiet + resync_every / 2).into()).await;
        let window = resync_every * SPREAD_WINDOWS;
        let Observed {
            phase,
            api,
            from,
            to,
        } = self
            .observe(
                &operator,
                window,
                format!("scale: {n} objects, {spaces} namespaces"),
            )
            .await?;
        let operator_cpu = phase.cpu.get("operator").copied().unwrap_or_default();
        let prefix = format!("{}w{n}-", self.prefix);
        let counts = self
            .tail
            .counts(from, to, |r| r.operator && r.bucket.starts_with(&prefix))
            .await;
        let api_writes = writes(&api);
        let written = written(&api);
        say(&format!("Kubernetes API writes in the window: {written:?}"));
        let (peak_rss, rss) = operator.memory();
        blocking_stop(&mut operator).await;
        let spread = Spread {
            n,
            namespaces: spaces,
            conflicts,
            converged: converged_in,
            resync: resync_every,
            window,
            operator_cpu,
            counts,
            api_writes,
            peak_rss,
            rss,
        };
        say(&format!(
            "{:.1} µs of operator CPU per object and pass; {:?}; {api_writes} API writes",
            spread.cpu_per_object_pass() * 1e6,
            spread.counts
        ));
        Ok(spread)
    }

    /// Where the operator's CPU goes while it converges `n` objects: `perf record` samples
    /// its threads (user and kernel time, 999 Hz); the shares by function and by crate.
    /// Not part of any other figure (the sampling costs CPU of its own).
    pub async fn profile(&self, n: usize) -> anyhow::Result<Option<Profile>> {
        let perf_runs = std::process::Command::new("perf")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !perf_runs {
            say("no perf on this machine: the profile is left out");
            return Ok(None);
        }
        say(&format!("== profile: {n} objects converged under perf"));
        let set = format!("p{n}");
        let buckets: Vec<String> = (0..n).map(|i| self.bucket(&set, i)).collect();
        self.create_buckets(&buckets).await?;
        let namespace = format!("bench-profile-{n}");
        self.namespace(&namespace).await?;
        let mut operator = self.start_operator("converge", "profile", &[&namespace], &[])?;
        operator.wait_ready(Duration::from_secs(60)).await?;
        let api: Api<BucketCors> = Api::namespaced(self.kube.clone(), &namespace);
        let waiter = WaitAll::start(api, n, converged).await?;
        let data = self.work.join("perf.data");
        let mut perf = tokio::process::Command::new("perf")
            .args(["record", "-e", "cpu-clock", "-F", "999", "-p"])
            .arg(operator.pid.to_string())
            .arg("-o")
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting perf record")?;
        let objects = buckets.iter().enumerate().map(|(i, bucket)| {
            let object = BucketCors::new(&object_name(i), self.spec(bucket, rules_for(i, 0)));
            (namespace.clone(), object)
        });
        self.create_objects(objects).await?;
        let deadline = Duration::from_secs(120) + Duration::from_millis(100) * n as u32;
        waiter.wait(deadline).await?;
        let perf_pid = perf.id().context("perf record runs")?;
        let stopped = std::process::Command::new("kill")
            .args(["-INT", &perf_pid.to_string()])
            .status()?;
        ensure!(stopped.success(), "perf record did not take SIGINT");
        tokio::time::timeout(Duration::from_secs(60), perf.wait())
            .await
            .context("perf record did not finish writing")??;
        blocking_stop(&mut operator).await;
        let report = tokio::process::Command::new("perf")
            .args(["report", "--stdio", "--no-children", "--sort", "sym", "-i"])
            .arg(&data)
            .output()
            .await
            .context("running perf report")?;
        ensure!(
            report.status.success(),
            "perf report failed: {}",
            String::from_utf8_lossy(&report.stderr)
        );
        let profile = Profile::parse(n, &String::from_utf8_lossy(&report.stdout));
        ensure!(
            profile.samples > 0,
            "perf recorded no sample of the operator"
        );
        say(&format!(
            "{} samples; by crate: {}",
            profile.samples,
            profile
                .by_crate
                .iter()
                .take(6)
                .map(|(c, p)| format!("{c} {p:.1}%"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        Ok(Some(profile))
    }
}

/// Through a pass that found its bucket in sync, or waiting for another holder of its bucket.
fn quiet(obj: &BucketCors) -> bool {
    settled(obj)
        && obj
            .ready_condition()
            .is_some_and(|c| matches!(c.reason.as_str(), "InSync" | "Conflict"))
}

/// Through a pass for its current spec: Ready, or waiting for another holder of its bucket.
fn settled(obj: &BucketCors) -> bool {
    let current =
        obj.status.as_ref().and_then(|s| s.observed_generation) == obj.metadata.generation;
    current
        && obj
            .ready_condition()
            .is_some_and(|c| matches!(c.reason.as_str(), "Applied" | "InSync" | "Conflict"))
}

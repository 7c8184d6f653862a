//! Crash consistency with the operator as a process, killed with SIGKILL at the worst
//! moments: right after the store took a Put and before the status says so, right after the
//! adoption record and before the Put, and in the middle of converging 1,000 objects.
//! Restarted, it converges every object, no bucket holds rules it was not asked for, and every
//! adoption record survives.

use std::path::PathBuf;
use std::time::Duration;

use bucketcors::api::{BucketCors, DeletionPolicy};
use bucketcors::cors::CorsRule;
use futures::{StreamExt, TryStreamExt, stream};
use kube::api::{ListParams, PostParams};

use crate::support::fault_proxy::{Failure, Fault, FaultProxy};
use crate::support::harness::{Harness, PROMPTLY, bucket_cors, eventually, put_behind_the_back};
use crate::support::moto::Moto;
use crate::support::operator::OperatorProcess;
use crate::support::unique_name;

fn ours() -> Vec<CorsRule> {
    vec![CorsRule::new(["https://app.example.com"], ["GET"]).id("app")]
}

fn log_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("bucketcors-{}.log", unique_name(name)))
}

fn start(h: &Harness, resync: &str, name: &str) -> OperatorProcess {
    OperatorProcess::start(
        &h.cluster.kubeconfig,
        &["--namespace", &h.namespace, "--resync-interval", resync],
        &[],
        log_path(name),
    )
}

fn record(obj: &BucketCors) -> Option<Vec<CorsRule>> {
    obj.status
        .as_ref()
        .and_then(|s| s.previous_configuration.as_ref())
        .map(|p| p.cors_rules())
}

fn settled(obj: &BucketCors) -> bool {
    obj.ready_condition()
        .is_some_and(|c| c.status == "True" && c.observed_generation == obj.metadata.generation)
}

/// A bucket with someone else's configuration, and an object that adopts it and restores it
/// on delete, written through `proxy`.
async fn adopting(h: &Harness, proxy: &FaultProxy) -> (String, Vec<CorsRule>) {
    let moto = Moto::shared();
    let bucket = moto.new_bucket("crash").await;
    put_behind_the_back(&moto.client(), &bucket, "https://theirs.example.com").await;
    let theirs = bucket_cors(&moto.client(), &bucket).await;
    let mut spec = h.spec(&bucket, ours());
    spec.endpoint = Some(proxy.endpoint());
    spec.deletion_policy = DeletionPolicy::Restore;
    h.create("web", spec).await;
    (bucket, theirs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_the_store_took_a_put_and_before_the_status_it_loses_nothing() {
    let h = Harness::without_controller().await;
    let moto = Moto::shared();
    let proxy = FaultProxy::start(&moto.endpoint()).await;
    // The Put reaches the store, which keeps it; its answer never comes back.
    proxy.set(Fault::Writes(Failure::HoldAnswer));
    let mut op = start(&h, "2s", "crash-put");
    let (bucket, theirs) = adopting(&h, &proxy).await;
    eventually("the store to take the Put", PROMPTLY, || async {
        proxy.held() >= 1
    })
    .await;
    assert_eq!(bucket_cors(&moto.client(), &bucket).await, ours());
    let before = h.api.get("web").await.unwrap();
    assert_eq!(
        record(&before),
        Some(theirs.clone()),
        "recorded before the Put"
    );
    assert!(!settled(&before), "Ready before the Put was answered");
    op.kill();
    proxy.set(Fault::Pass);

    let _op = start(&h, "2s", "crash-put-again");
    let after = h.wait_reason("web", "InSync").await;
    assert_eq!(record(&after), Some(theirs.clone()), "the record survived");
    assert_eq!(
        proxy.cors_writes(&bucket),
        1,
        "the landed Put was not repeated"
    );
    assert_eq!(bucket_cors(&moto.client(), &bucket).await, ours());

    // The record does its job.
    h.delete("web").await;
    h.wait_gone("web").await;
    assert_eq!(bucket_cors(&moto.client(), &bucket).await, theirs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_a_put_to_an_empty_bucket_it_keeps_the_record_and_its_hold() {
    let h = Harness::without_controller().await;
    let moto = Moto::shared();
    let proxy = FaultProxy::start(&moto.endpoint()).await;
    proxy.set(Fault::Writes(Failure::HoldAnswer));
    let mut op = start(&h, "2s", "crash-empty");
    // A bucket with no configuration, and the default deletion policy.
    let bucket = moto.new_bucket("crash-empty").await;
    let mut spec = h.spec(&bucket, ours());
    spec.endpoint = Some(proxy.endpoint());
    h.create("web", spec).await;
    eventually("the store to take the Put", PROMPTLY, || async {
        proxy.held() >= 1
    })
    .await;
    // "It had none" and "this object holds it" were in the API before the Put.
    let before = h.api.get("web").await.unwrap();
    assert_eq!(record(&before), Some(Vec::new()), "recorded before the Put");
    assert!(
        before
            .status
            .as_ref()
            .and_then(|s| s.holding.as_ref())
            .is_some(),
        "the hold was marked before the Put"
    );
    op.kill();
    proxy.set(Fault::Pass);

    let _op = start(&h, "2s", "crash-empty-again");
    let after = h.wait_reason("web", "InSync").await;
    assert_eq!(record(&after), Some(Vec::new()), "the record survived");
    assert_eq!(
        proxy.cors_writes(&bucket),
        1,
        "the landed Put was not repeated"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_the_adoption_record_and_before_the_put_it_loses_nothing() {
    let h = Harness::without_controller().await;
    let moto = Moto::shared();
    let proxy = FaultProxy::start(&moto.endpoint()).await;
    // The Put never leaves the proxy.
    proxy.set(Fault::Writes(Failure::Hang));
    let mut op = start(&h, "2s", "crash-record");
    let (bucket, theirs) = adopting(&h, &proxy).await;
    h.wait_for("web", "recorded", PROMPTLY, |o| record(o).is_some())
        .await;
    eventually("the Put to be on its way", PROMPTLY, || async {
        proxy.cors_writes(&bucket) >= 1
    })
    .await;
    op.kill();
    // Nothing half-written: the bucket holds what it held.
    assert_eq!(bucket_cors(&moto.client(), &bucket).await, theirs);
    proxy.set(Fault::Pass);

    let _op = start(&h, "2s", "crash-record-again");
    let after = h.wait_for("web", "settled", PROMPTLY, settled).await;
    assert_eq!(record(&after), Some(theirs.clone()), "the record survived");
    assert_eq!(bucket_cors(&moto.client(), &bucket).await, ours());
    let events = h.wait_event("web", |(_, r, _)| r == "Adopted").await;
    let adopted = events.iter().filter(|(_, r, _)| r == "Adopted").count();
    assert_eq!(adopted, 1, "adopted once, across the crash: {events:?}");

    h.delete("web").await;
    h.wait_gone("web").await;
    assert_eq!(bucket_cors(&moto.client(), &bucket).await, theirs);
}

const OBJECTS: usize = 1000;

fn rules_for(i: usize) -> Vec<CorsRule> {
    vec![CorsRule::new([format!("https://app-{i}.example.com")], ["GET", "PUT"]).id("app")]
}

async fn list(h: &Harness) -> Vec<BucketCors> {
    h.api.list(&ListParams::default()).await.unwrap().items
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_in_the_middle_of_converging_a_thousand_objects_it_converges_them_all() {
    let h = Harness::without_controller().await;
    let moto = Moto::shared();
    let s3 = moto.client();
    let prefix = unique_name("k");
    let bucket = |i: usize| format!("{prefix}-{i:04}");
    // Every other bucket holds someone else's rules, to be adopted.
    stream::iter(0..OBJECTS)
        .map(|i| {
            let (s3, bucket) = (s3.clone(), bucket(i));
            async move {
                s3.create_bucket().bucket(&bucket).send().await.unwrap();
                if i.is_multiple_of(2) {
                    put_behind_the_back(&s3, &bucket, "https://theirs.example.com").await;
                }
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
    let theirs = bucket_cors(&s3, &bucket(0)).await;
    stream::iter(0..OBJECTS)
        .map(|i| {
            let spec = h.spec(&bucket(i), rules_for(i));
            let api = h.api.clone();
            async move {
                api.create(
                    &PostParams::default(),
                    &BucketCors::new(&format!("web-{i:04}"), spec),
                )
                .await
                .map(drop)
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<()>>()
        .await
        .unwrap();

    let mut op = start(&h, "60s", "crash-many");
    let deadline = Duration::from_secs(300);
    eventually("a third of the objects to settle", deadline, || async {
        list(&h).await.iter().filter(|o| settled(o)).count() >= OBJECTS / 3
    })
    .await;
    op.kill();
    let settled_before = list(&h).await.iter().filter(|o| settled(o)).count();
    assert!(
        settled_before < OBJECTS,
        "the operator finished before it was killed"
    );
    eprintln!("killed with {settled_before} of {OBJECTS} objects settled");

    let _op = start(&h, "60s", "crash-many-again");
    eventually("every object to settle", deadline, || async {
        list(&h).await.iter().all(settled)
    })
    .await;
    let objects = list(&h).await;
    assert_eq!(objects.len(), OBJECTS);
    for obj in &objects {
        let i: usize = obj.metadata.name.as_ref().unwrap()[4..].parse().unwrap();
        let record = record(obj);
        if i.is_multiple_of(2) {
            assert_eq!(
                record,
                Some(theirs.clone()),
                "record of {:?}",
                obj.metadata.name
            );
        } else {
            // An empty bucket had nothing to lose: "it had none" travels with the status of
            // the pass that writes (so a crash after that Put may leave no record at all), and
            // is never anything else.
            assert!(
                record.as_ref().is_none_or(Vec::is_empty),
                "record of {:?}: {record:?}",
                obj.metadata.name
            );
        }
    }
    let wrong: Vec<usize> = stream::iter(0..OBJECTS)
        .map(|i| {
            let (s3, bucket) = (s3.clone(), bucket(i));
            async move { (bucket_cors(&s3, &bucket).await != rules_for(i)).then_some(i) }
        })
        .buffer_unordered(16)
        .filter_map(|wrong| async move { wrong })
        .collect()
        .await;
    assert!(
        wrong.is_empty(),
        "buckets not holding their rules: {wrong:?}"
    );
}

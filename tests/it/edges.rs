//! The edges of ownership and of the pass: a holder keeps its bucket, the next one takes it
//! the moment it goes, a write that does not stick is reported instead of repeated, one
//! concurrency budget covers every namespace, and a deleted object leaves nothing in memory.

use std::time::Duration;

use bucketcors::api::{BucketCors, ManagementPolicy};
use bucketcors::cors::CorsRule;
use kube::api::{Api, PostParams};

use crate::support::fault_proxy::{Failure, Fault, FaultProxy};
use crate::support::harness::{Harness, PROMPTLY, bucket_cors, eventually};
use crate::support::moto::Moto;
use crate::support::operator::sample;

fn rules_a() -> Vec<CorsRule> {
    vec![CorsRule::new(["https://a.example.com"], ["GET"]).id("a")]
}

fn rules_b() -> Vec<CorsRule> {
    vec![CorsRule::new(["https://b.example.com"], ["PUT"]).id("b")]
}

fn reason(obj: &BucketCors) -> String {
    obj.ready_condition()
        .map(|c| c.reason.clone())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_object_that_starts_writing_does_not_take_a_bucket_another_one_manages() {
    let h = Harness::start().await;
    let moto = Moto::shared();
    let bucket = moto.new_bucket("sticky").await;
    // Created first, and first by name too: it would win every tie-break.
    let mut older = h.spec(&bucket, rules_a());
    older.management_policy = ManagementPolicy::ObserveOnly;
    h.create("a-older", older.clone()).await;
    h.wait_reason("a-older", "Drifted").await;
    h.create("b-newer", h.spec(&bucket, rules_b())).await;
    h.wait_reason("b-newer", "Applied").await;

    older.management_policy = ManagementPolicy::Full;
    h.update("a-older", &older).await;
    let waiting = h.wait_reason("a-older", "Conflict").await;
    let message = &waiting.ready_condition().unwrap().message;
    assert!(
        message.contains("BucketCors \"b-newer\" of this namespace"),
        "{message}"
    );
    // Resyncs of both: the holder stays the holder.
    let calls = moto.cors_calls(&bucket).len();
    eventually("three resyncs of the holder", PROMPTLY, || async {
        moto.cors_calls(&bucket).len() >= calls + 3
    })
    .await;
    assert_eq!(moto.cors_writes(&bucket), 1, "only the holder wrote");
    assert_eq!(bucket_cors(&moto.client(), &bucket).await, rules_b());
    assert_eq!(reason(&h.api.get("b-newer").await.unwrap()), "InSync");
    assert_eq!(reason(&h.api.get("a-older").await.unwrap()), "Conflict");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_object_takes_the_bucket_as_soon_as_the_holder_is_gone() {
    // With a resync of five minutes, only a wake-up brings the waiting object in time.
    let h = Harness::start_configured(&Moto::shared().endpoint(), |s| {
        s.resync_interval = Duration::from_secs(300);
    })
    .await;
    let moto = Moto::shared();
    let bucket = moto.new_bucket("wake").await;
    h.create("holder", h.spec(&bucket, rules_a())).await;
    h.wait_reason("holder", "Applied").await;
    h.create("waiting", h.spec(&bucket, rules_b())).await;
    h.wait_reason("waiting", "Conflict").await;

    // The holder's Delete policy removes its rules; the waiting object puts its own at once.
    h.delete("holder").await;
    h.wait_gone("holder").await;
    h.wait_reason_within("waiting", "Applied", Duration::from_secs(10))
        .await;
    assert_eq!(bucket_cors(&moto.client(), &bucket).await, rules_b());
    h.wait_event("holder", |(_, reason, _)| reason == "Deleted")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_does_not_keep_what_is_written_is_reported_once_not_written_forever() {
    let moto = Moto::shared();
    let proxy = FaultProxy::start(&moto.endpoint()).await;
    // Reads come back without rule IDs, as from a store that does not keep them.
    proxy.set(Fault::All(Failure::DropIds));
    let h = Harness::start_with(&proxy.endpoint()).await;
    let bucket = moto.new_bucket("unkept").await;
    h.create("web", h.spec(&bucket, rules_a())).await;
    let stuck = h.wait_reason("web", "NotPersisted").await;
    let condition = stuck.ready_condition().unwrap();
    assert_eq!(condition.status, "False");
    assert!(
        condition
            .message
            .contains("the store took the write of these rules but answers otherwise"),
        "{}",
        condition.message
    );
    let writes = proxy.cors_writes(&bucket);
    assert_eq!(writes, 1, "found out by reading back the first write");

    // Many resyncs later: no more writes, one Warning, counted once.
    let calls = proxy.cors_calls(&bucket).len();
    eventually("four more resyncs", PROMPTLY, || async {
        proxy.cors_calls(&bucket).len() >= calls + 4
    })
    .await;
    assert_eq!(proxy.cors_writes(&bucket), writes);
    let warnings: Vec<_> = h
        .wait_event("web", |(_, reason, _)| reason == "NotPersisted")
        .await
        .into_iter()
        .filter(|(type_, reason, _)| type_ == "Warning" && reason == "NotPersisted")
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(
        sample(&h.metrics(), "bucketcors_unkept_writes_total", ""),
        Some(1.0)
    );

    // The store keeps IDs again and someone changes the bucket: the object writes and is Ready.
    proxy.set(Fault::Pass);
    crate::support::harness::put_behind_the_back(&moto.client(), &bucket, "https://x.example.com")
        .await;
    h.wait_reason("web", "Applied").await;
    assert_eq!(bucket_cors(&moto.client(), &bucket).await, rules_a());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_concurrency_budget_covers_every_watched_namespace() {
    let moto = Moto::shared();
    let proxy = FaultProxy::start(&moto.endpoint()).await;
    let other = Harness::new_namespace("t").await;
    let h = Harness::start_configured(&proxy.endpoint(), |s| {
        s.concurrency = 1;
        s.namespaces.push(other.clone());
    })
    .await;
    let other_api: Api<BucketCors> = Api::namespaced(h.client.clone(), &other);
    let mut buckets = Vec::new();
    for i in 0..3 {
        let (mine, theirs) = (
            moto.new_bucket("budget").await,
            moto.new_bucket("budget").await,
        );
        h.create(&format!("web-{i}"), h.spec(&mine, rules_a()))
            .await;
        other_api
            .create(
                &PostParams::default(),
                &BucketCors::new(&format!("web-{i}"), h.spec(&theirs, rules_b())),
            )
            .await
            .unwrap();
        buckets.push((mine, theirs));
    }
    eventually("every bucket written", PROMPTLY, || async {
        let mut all = true;
        for (mine, theirs) in &buckets {
            all &= bucket_cors(&moto.client(), mine).await == rules_a()
                && bucket_cors(&moto.client(), theirs).await == rules_b();
        }
        all
    })
    .await;
    assert_eq!(
        proxy.max_in_flight(),
        1,
        "more than one S3 call at a time with --concurrency 1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_object_leaves_nothing_behind_in_the_operators_memory() {
    let h = Harness::start().await;
    let moto = Moto::shared();
    // Failing objects count their failures; a recorded bucket has a status ahead of the cache.
    h.create("missing", h.spec("no-such-bucket-anywhere", rules_a()))
        .await;
    h.wait_reason("missing", "BucketNotFound").await;
    let bucket = moto.new_bucket("memory").await;
    crate::support::harness::put_behind_the_back(&moto.client(), &bucket, "https://x.example.com")
        .await;
    h.create("adopting", h.spec(&bucket, rules_a())).await;
    h.wait_reason("adopting", "Applied").await;
    // A status written is kept only until the cache shows it.
    eventually(
        "written statuses dropped once the cache shows them",
        PROMPTLY,
        || async { h.kept().1 == 0 },
    )
    .await;
    eventually("a failure to be counted", PROMPTLY, || async {
        h.kept().0 >= 1
    })
    .await;

    h.delete("missing").await;
    h.delete("adopting").await;
    h.wait_gone("missing").await;
    h.wait_gone("adopting").await;
    eventually("nothing kept about deleted objects", PROMPTLY, || async {
        h.kept() == (0, 0, 0)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overloaded_operator_still_reconciles_every_object_in_turn() {
    // More passes are due than the operator can run: 48 objects at a resync of one second
    // against a budget of 10 requests a second, 4 passes at a time. Each object must still
    // get its turn, in the order it became due.
    let moto = Moto::shared();
    let h = Harness::start_configured(&moto.endpoint(), |s| {
        s.concurrency = 4;
        s.resync_interval = Duration::from_secs(1);
        s.store_budget = Some(bucketcors::s3::Budget {
            per_second: 10,
            burst: 5,
        });
    })
    .await;
    let mut names = Vec::new();
    for wave in [16, 32] {
        for _ in 0..wave {
            let name = format!("web-{}", names.len());
            let bucket = moto.new_bucket("turn").await;
            h.create(&name, h.spec(&bucket, rules_a())).await;
            names.push(name);
        }
        // The first wave converges before the second arrives, and keeps the operator busy.
        eventually(
            &format!("all {} objects to be Ready", names.len()),
            Duration::from_secs(90),
            || async {
                let objects = h.api.list(&Default::default()).await.unwrap();
                names.iter().all(|name| {
                    objects
                        .items
                        .iter()
                        .any(|o| o.metadata.name.as_ref() == Some(name) && o.is_ready())
                })
            },
        )
        .await;
    }
}

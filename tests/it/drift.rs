//! Drift is repaired every time, whatever the bucket held before the operator's first write: a
//! configuration deleted or changed by hand, a bucket deleted and made again, a store restarted
//! empty. Whether a store kept a write is told from what it answers right after it.

use std::time::Duration;

use bucketcors::cors::CorsRule;

use crate::support::fault_proxy::{Failure, Fault, FaultProxy};
use crate::support::harness::{
    Harness, PROMPTLY, RESYNC, bucket_cors, delete_behind_the_back, eventually, put_behind_the_back,
};
use crate::support::moto::Moto;
use crate::support::operator::sample;
use crate::support::stores::garage;

/// A resync (±10% jitter), the pass itself, and slack for a shared 2-core machine.
const WITHIN_ONE_RESYNC: Duration = Duration::from_secs(RESYNC.as_secs() * 2 + 8);

fn rules() -> Vec<CorsRule> {
    vec![
        CorsRule::new(["https://app.example.com"], ["PUT", "POST", "DELETE"]).id("app"),
        CorsRule::new(["*"], ["GET"]).id("public"),
    ]
}

/// PutBucketCors requests `bucket` received at moto.
fn puts(moto: &Moto, bucket: &str) -> usize {
    moto.cors_calls(bucket)
        .iter()
        .filter(|r| r.method == "PUT")
        .count()
}

fn counted(h: &Harness, how: &str) -> f64 {
    let labels = format!("{{reason=\"{how}\"}}");
    sample(&h.metrics(), "bucketcors_drift_corrections_total", &labels).unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configuration_deleted_by_hand_is_put_back_every_time() {
    let h = Harness::start().await;
    let moto = Moto::shared();
    let s3 = moto.client();
    // A bucket with no configuration before the operator's first write: what it reads after a
    // delete by hand is what it held before that write.
    let bucket = moto.new_bucket("drift").await;
    h.create("web", h.spec(&bucket, rules())).await;
    h.wait_reason("web", "Applied").await;
    assert_eq!(bucket_cors(&s3, &bucket).await, rules());

    for time in 1..=3 {
        delete_behind_the_back(&s3, &bucket).await;
        assert_eq!(bucket_cors(&s3, &bucket).await, Vec::new());
        eventually(
            &format!("the rules to be put back after delete {time}"),
            WITHIN_ONE_RESYNC,
            || async { bucket_cors(&s3, &bucket).await == rules() },
        )
        .await;
    }
    assert_eq!(puts(moto, &bucket), 4, "the first write and three repairs");
    eventually("three repairs to be counted", PROMPTLY, || async {
        counted(&h, "removed") == 3.0
    })
    .await;

    // Three repairs within the window: one Warning that names how many, in how long.
    let events = h
        .wait_event("web", |(_, reason, _)| reason == "DriftRepeated")
        .await;
    let repeated: Vec<_> = events
        .iter()
        .filter(|(_, reason, _)| reason == "DriftRepeated")
        .collect();
    assert_eq!(repeated.len(), 1, "{events:?}");
    let (type_, _, note) = repeated[0];
    assert_eq!(type_, "Warning");
    assert!(note.contains("put back 3 times in "), "{note}");
    assert!(
        !events.iter().any(|(_, reason, _)| reason == "NotPersisted"),
        "{events:?}"
    );

    // Changed by hand: put back as well, and counted apart.
    put_behind_the_back(&s3, &bucket, "https://theirs.example.com").await;
    eventually(
        "the changed rules to be put back",
        WITHIN_ONE_RESYNC,
        || async { bucket_cors(&s3, &bucket).await == rules() },
    )
    .await;
    eventually("the change to be counted", PROMPTLY, || async {
        counted(&h, "changed") == 1.0
    })
    .await;
    h.wait_reason("web", "InSync").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_deleted_and_made_again_gets_its_configuration_back() {
    let h = Harness::start().await;
    let moto = Moto::shared();
    let s3 = moto.client();
    let bucket = moto.new_bucket("again").await;
    h.create("web", h.spec(&bucket, rules())).await;
    h.wait_reason("web", "Applied").await;

    s3.delete_bucket().bucket(&bucket).send().await.unwrap();
    h.wait_reason("web", "BucketNotFound").await;
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    eventually(
        "the rules to be put on the new bucket",
        WITHIN_ONE_RESYNC,
        || async { bucket_cors(&s3, &bucket).await == rules() },
    )
    .await;
    h.wait_reason("web", "InSync").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_restarted_empty_gets_the_configuration_back_once_the_bucket_exists() {
    let moto = Moto::dedicated();
    let h = Harness::start_with(&moto.endpoint()).await;
    let bucket = moto.new_bucket("empty").await;
    h.create("web", h.spec(&bucket, rules())).await;
    h.wait_reason("web", "Applied").await;

    // moto keeps everything in memory: started again, it has no bucket at all.
    moto.stop();
    moto.start();
    h.wait_reason("web", "BucketNotFound").await;
    moto.client()
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    eventually(
        "the rules to be put on the bucket made again",
        WITHIN_ONE_RESYNC,
        || async { bucket_cors(&moto.client(), &bucket).await == rules() },
    )
    .await;
    h.wait_reason("web", "InSync").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_drops_ids_is_found_out_by_reading_back_the_first_write() {
    let moto = Moto::shared();
    let proxy = FaultProxy::start(&moto.endpoint()).await;
    proxy.set(Fault::All(Failure::DropIds));
    let h = Harness::start_with(&proxy.endpoint()).await;
    let bucket = moto.new_bucket("ids").await;
    h.create("web", h.spec(&bucket, rules())).await;
    let stuck = h.wait_reason("web", "NotPersisted").await;
    let message = &stuck.ready_condition().unwrap().message;
    assert!(message.contains("differs in id"), "{message}");
    // The write, then the read back that found it out: no write after it.
    let writes = proxy.cors_writes(&bucket);
    assert!(writes <= 2, "{writes} writes");
    let calls = proxy.cors_calls(&bucket).len();
    eventually("three more resyncs", PROMPTLY, || async {
        proxy.cors_calls(&bucket).len() >= calls + 3
    })
    .await;
    assert_eq!(proxy.cors_writes(&bucket), writes);
    assert_eq!(
        sample(&h.metrics(), "bucketcors_unkept_writes_total", ""),
        Some(writes as f64)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_whose_writes_take_time_to_show_ends_in_sync_not_unkept() {
    let moto = Moto::shared();
    let proxy = FaultProxy::start(&moto.endpoint()).await;
    // Within the generic profile's propagation time (5 s).
    proxy.set(Fault::StaleReads(Duration::from_secs(2)));
    let h = Harness::start_with(&proxy.endpoint()).await;
    let bucket = moto.new_bucket("slow").await;
    h.create("web", h.spec(&bucket, rules())).await;
    h.wait_reason("web", "Applied").await;
    h.wait_reason("web", "InSync").await;
    assert!(
        proxy.stale_answers() >= 1,
        "the read back after the write was answered from before it"
    );
    assert_eq!(proxy.cors_writes(&bucket), 1);
    assert_eq!(bucket_cors(&moto.client(), &bucket).await, rules());
    let events = h.events("web").await;
    assert!(
        !events.iter().any(|(_, reason, _)| reason == "NotPersisted"),
        "{events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configuration_deleted_by_hand_on_garage_is_put_back() {
    let store = garage("a_configuration_deleted_by_hand_on_garage_is_put_back");
    let h = Harness::start_with(&store.endpoint).await;
    h.create_credentials_secret("store", &store.access_key, &store.secret_key)
        .await;
    let bucket = crate::support::unique_name("drift");
    store.create_bucket(&bucket).await;
    let s3 = store.client();
    h.create("web", h.spec_with_secret(&bucket, rules(), "store"))
        .await;
    h.wait_reason("web", "Applied").await;
    for time in 1..=2 {
        delete_behind_the_back(&s3, &bucket).await;
        eventually(
            &format!("the rules to be put back after delete {time}"),
            WITHIN_ONE_RESYNC,
            || async { bucket_cors(&s3, &bucket).await == rules() },
        )
        .await;
    }
    eventually("two repairs to be counted", PROMPTLY, || async {
        counted(&h, "removed") == 2.0
    })
    .await;
}

//! Every namespace gets its share of the operator: namespaces whose stores never answer do not
//! hold up a healthy one.

use std::time::{Duration, Instant};

use bucketcors::api::BucketCors;
use bucketcors::cors::CorsRule;
use kube::api::{Api, PostParams};

use crate::support::fault_proxy::{Failure, Fault, FaultProxy};
use crate::support::harness::{Harness, PROMPTLY, eventually};
use crate::support::moto::Moto;

fn rules(origin: &str) -> Vec<CorsRule> {
    vec![CorsRule::new([origin], ["GET"])]
}

/// How long `name` takes from its creation to `Applied`, waiting at most `deadline`.
async fn applied_after(h: &Harness, name: &str, bucket: &str, deadline: Duration) -> Duration {
    let started = Instant::now();
    h.create(name, h.spec(bucket, rules("https://a.example.com")))
        .await;
    h.wait_reason_within(name, "Applied", deadline).await;
    started.elapsed()
}

/// `hanging` namespaces, each with 32 objects on a store that never answers (the harness's
/// store has no timeout: their passes hold their turns until the end of the test), beside the
/// harness's namespace, on an operator that runs `concurrency` passes at once. An object of
/// the healthy namespace is Applied within a few seconds of the time it takes without them.
async fn a_healthy_namespace_keeps_its_latency_beside(hanging: usize, concurrency: u16) {
    let mut tarpits = Vec::new();
    for _ in 0..hanging {
        tarpits.push(Harness::new_namespace("tarpit").await);
    }
    let h = Harness::start_configured(&Moto::shared().endpoint(), |s| {
        s.namespaces.extend(tarpits.iter().cloned());
        s.concurrency = concurrency;
        s.resync_interval = Duration::from_secs(300);
    })
    .await;
    let moto = Moto::shared();
    // The first pass waits for the caches to list; the second shows the normal latency.
    let bucket = moto.new_bucket("fair").await;
    applied_after(&h, "warm", &bucket, PROMPTLY).await;
    let bucket = moto.new_bucket("fair").await;
    let normal = applied_after(&h, "before", &bucket, PROMPTLY).await;

    let mut proxies = Vec::new();
    for namespace in &tarpits {
        let proxy = FaultProxy::start(&moto.endpoint()).await;
        proxy.set(Fault::All(Failure::Hang));
        let api: Api<BucketCors> = Api::namespaced(h.client.clone(), namespace);
        for i in 0..32 {
            let mut spec = h.spec(&format!("tarpit-{i}"), rules("https://a.example.com"));
            spec.endpoint = Some(proxy.endpoint());
            api.create(
                &PostParams::default(),
                &BucketCors::new(&format!("slow-{i}"), spec),
            )
            .await
            .unwrap();
        }
        proxies.push(proxy);
    }
    // Three quarters of the passes are taken by passes that hang.
    let held = usize::from(concurrency) * 3 / 4;
    eventually("the tarpits to hold their passes", PROMPTLY, || async {
        proxies.iter().map(FaultProxy::requests_seen).sum::<usize>() >= held
    })
    .await;

    let bucket = moto.new_bucket("fair").await;
    let slack = Duration::from_secs(5);
    let loaded = applied_after(&h, "during", &bucket, normal + slack).await;
    // No hanging namespace was left without a turn either.
    eventually("every tarpit to hold a pass", PROMPTLY, || async {
        proxies.iter().all(|p| p.requests_seen() >= 1)
    })
    .await;
    let seen: Vec<usize> = proxies.iter().map(FaultProxy::max_in_flight).collect();
    println!(
        "{hanging} hanging namespaces, concurrency {concurrency}: normal {normal:?}, beside them {loaded:?}; passes held by each: {seen:?}"
    );
    for proxy in &proxies {
        proxy.set(Fault::Pass);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_namespaces_whose_stores_hang_leave_a_healthy_one_its_normal_latency() {
    a_healthy_namespace_keeps_its_latency_beside(2, 8).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_namespaces_whose_stores_hang_leave_a_healthy_one_its_normal_latency() {
    a_healthy_namespace_keeps_its_latency_beside(3, 12).await;
}

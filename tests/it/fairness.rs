//! Every namespace gets its share of the operator: namespaces whose stores never answer do not
//! hold up a healthy one, and a tenant cannot spend a store's request budget.

use std::time::{Duration, Instant};

use std::collections::BTreeMap;

use bucketcors::api::{BucketCors, BucketCorsSpec};
use bucketcors::cors::CorsRule;
use bucketcors::s3::Budget;
use bucketcors::tenancy::ClusterBucketStore;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams};

use crate::support::fault_proxy::{Failure, Fault, FaultProxy};
use crate::support::harness::{Harness, PROMPTLY, bucket_cors, eventually};
use crate::support::moto::Moto;
use crate::support::unique_name;

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

/// A store granting the harness's namespace `bucket` through `endpoint`, with the operator's
/// own identity (the access key id `ambient` in these tests) and a budget of one request a
/// second. Deleted when the returned guard goes.
struct SlowStore {
    api: Api<ClusterBucketStore>,
    name: String,
}

impl SlowStore {
    async fn create(h: &Harness, endpoint: &str, buckets: Vec<String>) -> SlowStore {
        let api: Api<ClusterBucketStore> = Api::all(h.client.clone());
        let name = unique_name("slow-store");
        let store: ClusterBucketStore = serde_json::from_value(serde_json::json!({
            "apiVersion": "bucketcors.dev/v1alpha1",
            "kind": "ClusterBucketStore",
            "metadata": {"name": name},
            "spec": {
                "endpoint": endpoint,
                "requestBudget": {"perSecond": 1, "burst": 1},
                "conditions": [{"namespaces": [h.namespace]}],
                "buckets": buckets,
            },
        }))
        .unwrap();
        api.create(&PostParams::default(), &store).await.unwrap();
        SlowStore { api, name }
    }
}

impl Drop for SlowStore {
    fn drop(&mut self) {
        let (api, name) = (self.api.clone(), self.name.clone());
        tokio::spawn(async move {
            let _ = api.delete(&name, &DeleteParams::default()).await;
        });
    }
}

async fn create_secret(h: &Harness, namespace: &str, name: &str, access_key_id: &str) {
    let secrets: Api<Secret> = Api::namespaced(h.client.clone(), namespace);
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        string_data: Some(BTreeMap::from([
            ("AWS_ACCESS_KEY_ID".to_owned(), access_key_id.to_owned()),
            ("AWS_SECRET_ACCESS_KEY".to_owned(), "forged".to_owned()),
        ])),
        ..Secret::default()
    };
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_whose_key_id_names_the_operators_identity_does_not_spend_a_stores_budget() {
    let tenant = Harness::new_namespace("forger").await;
    let h = Harness::start_configured(&Moto::shared().endpoint(), |s| {
        s.namespaces.push(tenant.clone());
        s.tenancy.single_tenant = false;
        s.tenancy.endpoint_policy.allow_http = true;
        s.tenancy.endpoint_policy.allowed = vec!["127.0.0.0/8".parse().unwrap()];
        s.resync_interval = Duration::from_secs(300);
        // The tenant's passes may take 12 slots: as many of its requests wait for a token.
        s.concurrency = 16;
        // The budget of what no store sets: the tenant's own identities.
        s.store_budget = Some(Budget {
            per_second: 1,
            burst: 1,
        });
    })
    .await;
    let moto = Moto::shared();
    // The store and the tenant reach the same endpoint, as the same access key id.
    let proxy = FaultProxy::start(&moto.endpoint()).await;
    let mut granted = Vec::new();
    for _ in 0..3 {
        granted.push(moto.new_bucket("granted").await);
    }
    let store = SlowStore::create(&h, &proxy.endpoint(), granted.clone()).await;
    let through = |bucket: &str| -> BucketCorsSpec {
        serde_json::from_value(serde_json::json!({
            "bucket": bucket,
            "storeRef": {"name": store.name},
            "rules": rules("https://a.example.com"),
        }))
        .unwrap()
    };
    // The first pass waits for the store and the caches; the second shows the normal latency.
    let started = Instant::now();
    h.create("warm", through(&granted[0])).await;
    h.wait_reason("warm", "Applied").await;
    println!("first object through the store: {:?}", started.elapsed());
    let started = Instant::now();
    h.create("before", through(&granted[1])).await;
    h.wait_reason("before", "Applied").await;
    let normal = started.elapsed();

    // 24 objects of the tenant, with a Secret whose access key id is the operator's own, send
    // 48 requests (a Get and a Put each) at their budget of 1 a second.
    create_secret(&h, &tenant, "forged", "ambient").await;
    let api: Api<BucketCors> = Api::namespaced(h.client.clone(), &tenant);
    let mut flood = Vec::new();
    for i in 0..24 {
        let bucket = moto.new_bucket("flood").await;
        let mut spec = h.spec_with_secret(&bucket, rules("https://a.example.com"), "forged");
        spec.endpoint = Some(proxy.endpoint());
        api.create(
            &PostParams::default(),
            &BucketCors::new(&format!("flood-{i}"), spec),
        )
        .await
        .unwrap();
        flood.push(bucket);
    }
    eventually("the flood to reach the store", PROMPTLY, || async {
        flood
            .iter()
            .filter(|b| !proxy.cors_calls(b).is_empty())
            .count()
            >= 4
    })
    .await;

    let started = Instant::now();
    h.create("during", through(&granted[2])).await;
    h.wait_reason_within("during", "Applied", normal + Duration::from_secs(3))
        .await;
    let during = started.elapsed();
    let flooded = flood
        .iter()
        .map(|b| proxy.cors_calls(b).len())
        .sum::<usize>();
    println!(
        "an object through a store of 1 request a second: normal {normal:?}, beside a tenant flooding as the same key id {during:?} ({flooded} of the tenant's requests sent by then)"
    );
    assert_eq!(
        bucket_cors(&moto.client(), &granted[2]).await,
        rules("https://a.example.com")
    );
}

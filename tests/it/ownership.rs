//! One holder per bucket, decided once and kept: across restarts and leader changes, when a
//! grant comes back for many objects at once, and whatever objects that can never write do.

use std::collections::BTreeMap;

use bucketcors::api::{BucketCors, ManagementPolicy, StoreRef};
use bucketcors::cors::{CorsRule, Expectation};
use bucketcors::tenancy::{ClusterBucketStore, ClusterBucketStoreSpec, StoreCondition};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};

use crate::support::harness::{Harness, PROMPTLY, bucket_cors, eventually};
use crate::support::moto::Moto;
use crate::support::operator::OperatorProcess;
use crate::support::unique_name;

fn rules(origin: &str) -> Vec<CorsRule> {
    vec![CorsRule::new([origin], ["GET", "PUT"])]
}

fn reason(obj: &BucketCors) -> String {
    obj.ready_condition()
        .map(|c| c.reason.clone())
        .unwrap_or_default()
}

/// PutBucketCors and DeleteBucketCors requests `bucket` received, at moto.
fn writes(bucket: &str) -> usize {
    Moto::shared().cors_writes(bucket)
}

/// Waits until `bucket` has been read `more` more times (the holder's resyncs).
async fn reads_of(bucket: &str, more: usize) {
    let calls = Moto::shared().cors_calls(bucket).len();
    eventually(
        &format!("{more} more reads of {bucket}"),
        PROMPTLY,
        || async { Moto::shared().cors_calls(bucket).len() >= calls + more },
    )
    .await;
}

async fn holder_of_lease(h: &Harness) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(h.client.clone(), &h.namespace);
    leases
        .get_opt("bucketcors")
        .await
        .unwrap()?
        .spec?
        .holder_identity
        .filter(|h| !h.is_empty())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_former_holder_back_in_the_running_does_not_retake_the_bucket_at_a_leader_change() {
    let h = Harness::without_controller().await;
    let moto = Moto::shared();
    let bucket = moto.new_bucket("own").await;
    let start = |identity: &str| {
        let log = std::env::temp_dir().join(format!("{}-{identity}.log", unique_name("own")));
        OperatorProcess::start(
            &h.cluster.kubeconfig,
            &[
                "--namespace",
                &h.namespace,
                "--resync-interval",
                "2s",
                "--leader-election",
                "--leader-election-namespace",
                &h.namespace,
                "--leader-election-lease",
                "bucketcors",
                "--leader-election-lease-duration",
                "4s",
            ],
            &[("POD_NAME", identity)],
            log,
        )
    };
    let mut a = start("op-a");
    let mut b = start("op-b");
    eventually("a leader", PROMPTLY, || async {
        holder_of_lease(&h).await.is_some()
    })
    .await;

    // The first object holds the bucket; it steps aside (ObserveOnly), the second takes over,
    // and the first comes back to Full behind it.
    let mut first = h.spec(&bucket, rules("https://first.example.com"));
    h.create("a-first", first.clone()).await;
    h.wait_reason("a-first", "Applied").await;
    h.create(
        "b-second",
        h.spec(&bucket, rules("https://second.example.com")),
    )
    .await;
    h.wait_reason("b-second", "Conflict").await;
    first.management_policy = ManagementPolicy::ObserveOnly;
    h.update("a-first", &first).await;
    h.wait_reason("b-second", "Applied").await;
    first.management_policy = ManagementPolicy::Full;
    h.update("a-first", &first).await;
    h.wait_reason("a-first", "Conflict").await;
    let held = writes(&bucket);

    // The leader dies; the standby takes over with nothing but what the API server holds.
    let leader = holder_of_lease(&h).await.unwrap();
    if leader == "op-a" {
        a.kill();
    } else {
        b.kill();
    }
    eventually("the standby to lead", PROMPTLY, || async {
        holder_of_lease(&h).await.is_some_and(|l| l != leader)
    })
    .await;
    reads_of(&bucket, 3).await;
    assert_eq!(
        bucket_cors(&moto.client(), &bucket).await,
        rules("https://second.example.com")
    );
    assert_eq!(writes(&bucket), held, "no write after the leader change");
    assert_eq!(reason(&h.api.get("a-first").await.unwrap()), "Conflict");
    a.terminate();
    b.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_that_can_never_write_do_not_block_one_that_can() {
    let h = Harness::start().await;
    let moto = Moto::shared();
    let bucket = moto.new_bucket("blocked").await;
    // Older, and with an expectation its own rules break: it can never write.
    let mut broken = h.spec(&bucket, rules("https://broken.example.com"));
    broken.expectations = vec![Expectation::new(
        "https://broken.example.com",
        "DELETE",
        true,
    )];
    h.create("a-broken", broken).await;
    h.wait_reason("a-broken", "ExpectationFailed").await;
    h.create(
        "b-valid",
        h.spec(&bucket, rules("https://valid.example.com")),
    )
    .await;
    h.wait_reason("b-valid", "Applied").await;
    assert_eq!(
        bucket_cors(&moto.client(), &bucket).await,
        rules("https://valid.example.com")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_naming_a_secret_that_does_not_exist_does_not_block_one_that_can_write() {
    let h = Harness::start_configured(&Moto::shared().endpoint(), |s| {
        s.tenancy.single_tenant = false;
        s.tenancy.endpoint_policy.allow_http = true;
        s.tenancy.endpoint_policy.allowed = vec!["127.0.0.0/8".parse().unwrap()];
    })
    .await;
    let moto = Moto::shared();
    let bucket = moto.new_bucket("nosecret").await;
    h.create_credentials_secret("creds", "AKIAOWNERSHIPTEST", "secret")
        .await;
    h.create(
        "a-missing",
        h.spec_with_secret(&bucket, rules("https://missing.example.com"), "absent"),
    )
    .await;
    h.wait_reason("a-missing", "CredentialsNotFound").await;
    h.create(
        "b-valid",
        h.spec_with_secret(&bucket, rules("https://valid.example.com"), "creds"),
    )
    .await;
    h.wait_reason("b-valid", "Applied").await;
    assert_eq!(
        bucket_cors(&moto.client(), &bucket).await,
        rules("https://valid.example.com")
    );
}

/// A store on the shared moto granting `conditions` the buckets `globs`, with the operator's
/// identity.
fn store(name: &str, conditions: Vec<StoreCondition>, globs: &[String]) -> ClusterBucketStore {
    ClusterBucketStore {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        spec: ClusterBucketStoreSpec {
            endpoint: Some(Moto::shared().endpoint()),
            region: None,
            force_path_style: None,
            put_checksum: None,
            profile: None,
            request_budget: None,
            credentials: None,
            conditions,
            buckets: globs.to_vec(),
        },
        status: None,
    }
}

fn through(store: &str, bucket: &str, rules: Vec<CorsRule>) -> bucketcors::api::BucketCorsSpec {
    serde_json::from_value(serde_json::json!({
        "bucket": bucket,
        "storeRef": StoreRef { name: store.to_owned() },
        "rules": rules,
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_comes_back_goes_to_the_object_that_held_the_bucket() {
    let h = Harness::start_configured(&Moto::shared().endpoint(), |s| {
        s.tenancy.single_tenant = false;
    })
    .await;
    let moto = Moto::shared();
    let bucket = moto.new_bucket("back").await;
    let name = unique_name("store");
    let stores: Api<ClusterBucketStore> = Api::all(h.client.clone());
    let make = || {
        store(
            &name,
            vec![StoreCondition {
                namespaces: vec![h.namespace.clone()],
                namespace_selector: None,
            }],
            std::slice::from_ref(&bucket),
        )
    };
    stores
        .create(&PostParams::default(), &make())
        .await
        .unwrap();
    h.create(
        "holder",
        through(&name, &bucket, rules("https://holder.example.com")),
    )
    .await;
    h.wait_reason("holder", "Applied").await;
    let waiting: Vec<String> = (0..8).map(|i| format!("waiting-{i}")).collect();
    for object in &waiting {
        let origin = format!("https://{object}.example.com");
        h.create(object, through(&name, &bucket, rules(&origin)))
            .await;
        h.wait_reason(object, "Conflict").await;
    }

    // The store goes (GitOps prunes it, or it is re-created), then comes back: every object
    // is granted again at once.
    stores
        .delete(&name, &DeleteParams::default())
        .await
        .unwrap();
    h.wait_reason("holder", "NotPermitted").await;
    eventually("the store to be gone", PROMPTLY, || async {
        stores.get_opt(&name).await.unwrap().is_none()
    })
    .await;
    let held = writes(&bucket);
    stores
        .create(&PostParams::default(), &make())
        .await
        .unwrap();
    h.wait_reason("holder", "InSync").await;
    for object in &waiting {
        h.wait_reason(object, "Conflict").await;
    }
    assert_eq!(
        bucket_cors(&moto.client(), &bucket).await,
        rules("https://holder.example.com")
    );
    assert_eq!(
        writes(&bucket),
        held,
        "the bucket already held the holder's rules"
    );
    let _ = stores.delete(&name, &DeleteParams::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_restarts_a_bucket_granted_by_namespace_labels_keeps_its_holder() {
    let h = Harness::without_controller().await;
    let start = || {
        let log = std::env::temp_dir().join(format!("{}.log", unique_name("labels")));
        OperatorProcess::start(
            &h.cluster.kubeconfig,
            &["--namespace", &h.namespace, "--resync-interval", "2s"],
            &[("BUCKETCORS_SINGLE_TENANT", "false")],
            log,
        )
    };
    let moto = Moto::shared();
    let bucket = moto.new_bucket("labels").await;
    let label = unique_name("team");
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(h.client.clone());
    let patch = serde_json::json!({"metadata": {"labels": {"bucketcors-test": label}}});
    namespaces
        .patch(&h.namespace, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let name = unique_name("store");
    let stores: Api<ClusterBucketStore> = Api::all(h.client.clone());
    let selecting = StoreCondition {
        namespaces: vec![],
        namespace_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([("bucketcors-test".to_owned(), label)])),
            match_expressions: None,
        }),
    };
    stores
        .create(
            &PostParams::default(),
            &store(&name, vec![selecting], std::slice::from_ref(&bucket)),
        )
        .await
        .unwrap();
    let mut operator = start();
    h.create(
        "a-holder",
        through(&name, &bucket, rules("https://a.example.com")),
    )
    .await;
    h.wait_reason("a-holder", "Applied").await;
    h.create(
        "b-waiting",
        through(&name, &bucket, rules("https://b.example.com")),
    )
    .await;
    h.wait_reason("b-waiting", "Conflict").await;
    let held = writes(&bucket);

    // Killed and started again, three times: each start lists objects, stores and
    // namespaces in whatever order they come.
    for restart in 1..=3 {
        operator.kill();
        operator = start();
        reads_of(&bucket, 2).await;
        assert_eq!(
            bucket_cors(&moto.client(), &bucket).await,
            rules("https://a.example.com"),
            "after restart {restart}"
        );
        assert_eq!(writes(&bucket), held, "after restart {restart}");
    }
    assert_eq!(reason(&h.api.get("b-waiting").await.unwrap()), "Conflict");
    operator.terminate();
    let _ = stores.delete(&name, &DeleteParams::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_restarts_a_bucket_reached_with_own_secrets_keeps_its_holder() {
    let mut h = Harness::start_configured(&Moto::shared().endpoint(), |s| {
        s.tenancy.single_tenant = false;
        s.tenancy.endpoint_policy.allow_http = true;
        s.tenancy.endpoint_policy.allowed = vec!["127.0.0.0/8".parse().unwrap()];
    })
    .await;
    let moto = Moto::shared();
    let bucket = moto.new_bucket("secrets").await;
    h.create_credentials_secret("creds", "AKIAOWNERSHIPTEST", "secret")
        .await;
    h.create(
        "a-holder",
        h.spec_with_secret(&bucket, rules("https://a.example.com"), "creds"),
    )
    .await;
    h.wait_reason("a-holder", "Applied").await;
    h.create(
        "b-waiting",
        h.spec_with_secret(&bucket, rules("https://b.example.com"), "creds"),
    )
    .await;
    h.wait_reason("b-waiting", "Conflict").await;
    let held = writes(&bucket);

    // After a start, no Secret has been read yet: the recorded hold keeps the bucket with its
    // holder, whichever object's pass comes first.
    for restart in 1..=3 {
        h.restart_controller().await;
        reads_of(&bucket, 2).await;
        assert_eq!(
            bucket_cors(&moto.client(), &bucket).await,
            rules("https://a.example.com"),
            "after restart {restart}"
        );
        assert_eq!(writes(&bucket), held, "after restart {restart}");
    }
    assert_eq!(reason(&h.api.get("b-waiting").await.unwrap()), "Conflict");
}

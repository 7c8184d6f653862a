//! A namespace touches only the buckets it was granted: stores that administrators make, no
//! ambient identity by default, no requests to addresses the operator should never reach.
//! Every request moto receives names its access key, so the tests check which identity
//! reached which bucket at the server.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::time::Duration;

use bucketcors::api::{BucketCors, BucketCorsSpec, StoreRef};
use bucketcors::cors::CorsRule;
use bucketcors::tenancy::{
    ClusterBucketStore, ClusterBucketStoreSpec, EndpointPolicy, StoreCondition,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};

use crate::support::fault_proxy::{Failure, Fault, FaultProxy};
use crate::support::harness::{Harness, PROMPTLY, bucket_cors, eventually};
use crate::support::moto::{Moto, Request};
use crate::support::operator::OperatorProcess;
use crate::support::unique_name;

fn rules(origin: &str) -> Vec<CorsRule> {
    vec![CorsRule::new([origin], ["GET"])]
}

/// The access key that signed a request, from its Authorization header.
fn access_key(request: &Request) -> Option<String> {
    let auth = request.header("authorization")?;
    let credential = auth.split("Credential=").nth(1)?;
    credential.split('/').next().map(str::to_owned)
}

/// A harness whose controller runs the secure default (no single-tenant mode), resyncing
/// rarely so that what happens at once is the operator's doing, not a resync's.
async fn secure(configure: impl FnOnce(&mut bucketcors::controller::Settings)) -> Harness {
    Harness::start_configured(&Moto::shared().endpoint(), |s| {
        s.tenancy.single_tenant = false;
        s.resync_interval = Duration::from_secs(300);
        configure(s);
    })
    .await
}

/// A store on moto with the operator's ambient identity, granting `conditions` the buckets
/// `globs`. Deleted when the returned guard goes.
struct StoreGuard {
    api: Api<ClusterBucketStore>,
    name: String,
}

impl Drop for StoreGuard {
    fn drop(&mut self) {
        let (api, name) = (self.api.clone(), self.name.clone());
        // Best effort: a leftover store grants only the test's own unique names.
        tokio::spawn(async move {
            let _ = api.delete(&name, &DeleteParams::default()).await;
        });
    }
}

async fn make_store(h: &Harness, conditions: Vec<StoreCondition>, globs: &[String]) -> StoreGuard {
    let api: Api<ClusterBucketStore> = Api::all(h.client.clone());
    let name = unique_name("store");
    let store = ClusterBucketStore {
        metadata: ObjectMeta {
            name: Some(name.clone()),
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
    };
    api.create(&PostParams::default(), &store).await.unwrap();
    StoreGuard { api, name }
}

fn through(store: &str, bucket: &str, rules: Vec<CorsRule>) -> BucketCorsSpec {
    serde_json::from_value(serde_json::json!({
        "bucket": bucket,
        "storeRef": StoreRef { name: store.to_owned() },
        "rules": rules,
    }))
    .unwrap()
}

fn selecting(label: &str, value: &str) -> StoreCondition {
    StoreCondition {
        namespaces: vec![],
        namespace_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([(label.to_owned(), value.to_owned())])),
            match_expressions: None,
        }),
    }
}

async fn label_namespace(h: &Harness, namespace: &str, label: &str, value: Option<&str>) {
    let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(h.client.clone());
    let patch = serde_json::json!({ "metadata": { "labels": { label: value } } });
    api.patch(namespace, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

async fn new_bucket(name: &str) {
    Moto::shared()
        .client()
        .create_bucket()
        .bucket(name)
        .send()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_store_an_object_is_not_permitted_and_nothing_is_sent_even_on_delete() {
    let h = secure(|_| {}).await;
    let moto = Moto::shared();
    let bucket = moto.new_bucket("nostore").await;
    h.create("web", h.spec(&bucket, rules("https://a.example.com")))
        .await;

    let denied = h.wait_reason("web", "NotPermitted").await;
    let message = &denied.ready_condition().unwrap().message;
    assert!(
        message.contains("no ClusterBucketStore grants namespace"),
        "{message}"
    );
    assert!(message.contains(&bucket), "{message}");
    h.wait_event("web", |(t, r, _)| t == "Warning" && r == "NotPermitted")
        .await;

    h.delete("web").await;
    h.wait_gone("web").await;
    h.wait_event("web", |(t, r, n)| {
        t == "Warning" && r == "CleanupSkipped" && n.contains("NotPermitted")
    })
    .await;
    assert!(
        moto.cors_calls(&bucket).is_empty(),
        "no request reached the bucket: {:?}",
        moto.cors_calls(&bucket)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_grants_its_namespaces_their_buckets_and_a_revoked_grant_never_writes() {
    let h = secure(|_| {}).await;
    let moto = Moto::shared();
    let tag = unique_name("grant");
    let (granted, other) = (format!("{tag}-a-1"), format!("{tag}-b-1"));
    new_bucket(&granted).await;
    new_bucket(&other).await;
    label_namespace(&h, &h.namespace, "bucketcors.dev/test-team", Some(&tag)).await;
    let store = make_store(
        &h,
        vec![selecting("bucketcors.dev/test-team", &tag)],
        &[format!("{tag}-a-*")],
    )
    .await;
    // The store reports itself valid.
    let stores: Api<ClusterBucketStore> = Api::all(h.client.clone());
    eventually("the store to be Ready", PROMPTLY, || async {
        stores
            .get(&store.name)
            .await
            .unwrap()
            .status
            .is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
            })
    })
    .await;

    h.create(
        "mine",
        through(&store.name, &granted, rules("https://a.example.com")),
    )
    .await;
    h.create(
        "theirs",
        through(&store.name, &other, rules("https://a.example.com")),
    )
    .await;
    h.wait_reason("mine", "Applied").await;
    assert_eq!(
        bucket_cors(&moto.client(), &granted).await,
        rules("https://a.example.com")
    );
    let denied = h.wait_reason("theirs", "NotPermitted").await;
    let message = &denied.ready_condition().unwrap().message;
    assert!(message.contains("does not grant bucket"), "{message}");
    assert!(moto.cors_calls(&other).is_empty());

    // Revoked: the namespace loses its label. The object is woken at once (the resync is five
    // minutes away) and turns NotPermitted without writing.
    let writes = moto.cors_writes(&granted);
    label_namespace(&h, &h.namespace, "bucketcors.dev/test-team", None).await;
    let revoked = h.wait_reason("mine", "NotPermitted").await;
    let message = &revoked.ready_condition().unwrap().message;
    assert!(
        message.contains("does not serve this namespace"),
        "{message}"
    );
    assert_eq!(moto.cors_writes(&granted), writes);

    // Deleting a denied object sends nothing: the bucket keeps its rules.
    h.delete("mine").await;
    h.wait_gone("mine").await;
    assert_eq!(moto.cors_writes(&granted), writes);
    assert_eq!(
        bucket_cors(&moto.client(), &granted).await,
        rules("https://a.example.com")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ungranted_object_named_first_does_not_stop_the_granted_one() {
    let team_b = Harness::new_namespace("team-b").await;
    let mut h = secure(|s| s.namespaces.push(team_b.clone())).await;
    let moto = Moto::shared();
    let tag = unique_name("squat");
    let bucket = format!("{tag}-a-1");
    new_bucket(&bucket).await;
    let store = make_store(
        &h,
        vec![StoreCondition {
            namespaces: vec![h.namespace.clone()],
            namespace_selector: None,
        }],
        &[format!("{tag}-a-*")],
    )
    .await;

    // Team B names the bucket first: through the store (not granted), with the operator's
    // identity (not lent), and with its own junk key toward an address it may not reach.
    let squatters: Api<BucketCors> = Api::namespaced(h.client.clone(), &team_b);
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(h.client.clone(), &team_b);
    let junk = k8s_openapi::api::core::v1::Secret {
        metadata: ObjectMeta {
            name: Some("junk".into()),
            ..ObjectMeta::default()
        },
        string_data: Some(BTreeMap::from([
            ("AWS_ACCESS_KEY_ID".to_owned(), "AKIAJUNK".to_owned()),
            ("AWS_SECRET_ACCESS_KEY".to_owned(), "junk".to_owned()),
        ])),
        ..Default::default()
    };
    secrets.create(&PostParams::default(), &junk).await.unwrap();
    let mut with_junk = h.spec_with_secret(&bucket, rules("https://b.example.com"), "junk");
    with_junk.endpoint = Some(moto.endpoint());
    for (name, spec) in [
        (
            "via-store",
            through(&store.name, &bucket, rules("https://b.example.com")),
        ),
        ("ambient", h.spec(&bucket, rules("https://b.example.com"))),
        ("own-key", with_junk),
    ] {
        squatters
            .create(&PostParams::default(), &BucketCors::new(name, spec))
            .await
            .unwrap();
    }
    let reason = |obj: &BucketCors| obj.ready_condition().map(|c| c.reason.clone());
    for (name, expected) in [
        ("via-store", "NotPermitted"),
        ("ambient", "NotPermitted"),
        ("own-key", "EndpointNotAllowed"),
    ] {
        eventually(
            &format!("team-b/{name} to be {expected}"),
            PROMPTLY,
            || async { reason(&squatters.get(name).await.unwrap()).as_deref() == Some(expected) },
        )
        .await;
    }

    h.create(
        "web",
        through(&store.name, &bucket, rules("https://a.example.com")),
    )
    .await;
    h.wait_reason("web", "Applied").await;
    h.restart_controller().await;
    h.wait_reason("web", "InSync").await;
    assert_eq!(
        bucket_cors(&moto.client(), &bucket).await,
        rules("https://a.example.com")
    );
    // Besides the tests' own reads ("testing"), only the store's identity reached the bucket,
    // and it wrote once.
    let calls = moto.cors_calls(&bucket);
    let operator: Vec<_> = calls
        .iter()
        .filter(|r| access_key(r).as_deref() != Some("testing"))
        .collect();
    let keys: Vec<_> = operator.iter().map(|r| access_key(r)).collect();
    assert!(
        keys.iter().all(|k| k.as_deref() == Some("ambient")),
        "only the store's identity reached the bucket: {keys:?}"
    );
    assert_eq!(operator.iter().filter(|r| r.method == "PUT").count(), 1);
    assert!(
        moto.requests()
            .iter()
            .all(|r| access_key(r).as_deref() != Some("AKIAJUNK")),
        "the junk key sent nothing"
    );
    for name in ["via-store", "ambient", "own-key"] {
        squatters
            .delete(name, &DeleteParams::default())
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_own_endpoint_inside_the_machine_is_refused_before_and_at_connection() {
    // The policy lets plain http through and allows 127.0.0.1 only.
    let h = secure(|s| {
        s.tenancy.endpoint_policy = EndpointPolicy {
            allow_http: true,
            allowed: vec!["127.0.0.1/32".parse().unwrap()],
        };
    })
    .await;
    h.create_credentials_secret("own", "AKIAOWN", "own").await;

    // Another loopback address, not allowed: refused from the URL, nothing connects.
    let other = TcpListener::bind("127.0.0.2:0").unwrap();
    other.set_nonblocking(true).unwrap();
    let mut spec = h.spec_with_secret("inner-bucket", rules("https://a.example.com"), "own");
    spec.endpoint = Some(format!("http://{}", other.local_addr().unwrap()));
    h.create("literal", spec).await;
    let refused = h.wait_reason("literal", "EndpointNotAllowed").await;
    let message = &refused.ready_condition().unwrap().message;
    assert!(message.contains("loopback"), "{message}");

    // A host name: it passes the URL check and is caught where the connection is made, since
    // `localhost` resolves to loopback addresses the policy does not all allow.
    let named = TcpListener::bind("127.0.0.1:0").unwrap();
    named.set_nonblocking(true).unwrap();
    let port = named.local_addr().unwrap().port();
    let strict = secure(|s| {
        s.tenancy.endpoint_policy = EndpointPolicy {
            allow_http: true,
            allowed: vec![],
        };
    })
    .await;
    strict
        .create_credentials_secret("own", "AKIAOWN", "own")
        .await;
    let mut spec = strict.spec_with_secret("inner-bucket", rules("https://a.example.com"), "own");
    spec.endpoint = Some(format!("http://localhost:{port}"));
    strict.create("named", spec).await;
    let refused = strict.wait_reason("named", "EndpointNotAllowed").await;
    let message = &refused.ready_condition().unwrap().message;
    assert!(
        message.contains(r#"host "localhost" resolves to"#),
        "{message}"
    );

    for listener in [&other, &named] {
        assert!(
            matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "no connection reached {:?}",
            listener.local_addr()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_answer_is_cut_at_a_mebibyte_and_the_operator_holds_no_more() {
    let h = Harness::without_controller().await;
    let moto = Moto::shared();
    let proxy = FaultProxy::start(&moto.endpoint()).await;
    let mut op = OperatorProcess::start(
        &h.cluster.kubeconfig,
        &["--namespace", &h.namespace, "--resync-interval", "2s"],
        &[],
        std::env::temp_dir().join(format!("{}-bounds.log", unique_name("op"))),
    );
    let baseline = op.peak_rss();

    for (name, failure) in [
        ("body", Failure::HugeBody),
        ("message", Failure::HugeMessage),
    ] {
        proxy.set(Fault::All(failure));
        let bucket = moto.new_bucket("huge").await;
        let mut spec = h.spec(&bucket, rules("https://a.example.com"));
        spec.endpoint = Some(proxy.endpoint());
        h.create(name, spec).await;
        let cut = h.wait_reason(name, "Rejected").await;
        let message = &cut.ready_condition().unwrap().message;
        assert!(message.contains("AnswerTooLarge"), "{name}: {message}");
        assert!(
            message.contains("larger than 1024 KiB"),
            "{name}: {message}"
        );
        assert!(message.len() <= 4096, "{name}: {} bytes", message.len());
    }
    // A 200 MiB body read whole would show here; a capped one leaves the peak where it was,
    // give or take a few buffers.
    let peak = op.peak_rss();
    assert!(
        peak < baseline + 64 * 1024 * 1024,
        "peak RSS {} MiB (baseline {} MiB)",
        peak / (1024 * 1024),
        baseline / (1024 * 1024)
    );
    op.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_whose_store_hangs_leaves_the_others_their_share() {
    let slow = Harness::new_namespace("tarpit").await;
    let h = Harness::start_configured(&Moto::shared().endpoint(), |s| {
        s.namespaces.push(slow.clone());
        s.concurrency = 4;
        s.resync_interval = Duration::from_secs(300);
    })
    .await;
    let moto = Moto::shared();
    let tarpit = FaultProxy::start(&moto.endpoint()).await;
    tarpit.set(Fault::All(Failure::Hang));
    let api: Api<BucketCors> = Api::namespaced(h.client.clone(), &slow);
    for i in 0..32 {
        let mut spec = h.spec(&format!("tarpit-{i}"), rules("https://a.example.com"));
        spec.endpoint = Some(tarpit.endpoint());
        api.create(
            &PostParams::default(),
            &BucketCors::new(&format!("slow-{i}"), spec),
        )
        .await
        .unwrap();
    }
    eventually("the tarpit to hold passes", PROMPTLY, || async {
        tarpit.requests_seen() >= 3
    })
    .await;

    let bucket = moto.new_bucket("fair").await;
    h.create("web", h.spec(&bucket, rules("https://a.example.com")))
        .await;
    h.wait_reason_within("web", "Applied", Duration::from_secs(10))
        .await;
    assert!(
        tarpit.max_in_flight() <= 3,
        "the slow namespace took more than its share: {}",
        tarpit.max_in_flight()
    );
    tarpit.set(Fault::Pass);
}

/// The operator as a process in the secure default, assuming roles through `sts`, and a store
/// on moto that lends role `role` to `h`'s namespace for `bucket`.
async fn role_store(
    h: &Harness,
    sts: &str,
    role: &str,
    bucket: &str,
) -> (OperatorProcess, StoreGuard) {
    let moto = Moto::shared();
    let op = OperatorProcess::start(
        &h.cluster.kubeconfig,
        &["--namespace", &h.namespace, "--resync-interval", "300s"],
        &[
            ("BUCKETCORS_SINGLE_TENANT", "false"),
            ("AWS_ENDPOINT_URL_STS", sts),
        ],
        std::env::temp_dir().join(format!("{}-role.log", unique_name("op"))),
    );
    let stores: Api<ClusterBucketStore> = Api::all(h.client.clone());
    let store: ClusterBucketStore = serde_json::from_value(serde_json::json!({
        "apiVersion": "bucketcors.dev/v1alpha1",
        "kind": "ClusterBucketStore",
        "metadata": {"name": unique_name("role-store")},
        "spec": {
            "endpoint": moto.endpoint(),
            "credentials": {"assumeRole": {"roleArn": role}},
            "conditions": [{"namespaces": [h.namespace]}],
            "buckets": [bucket],
        },
    }))
    .unwrap();
    let store = stores.create(&PostParams::default(), &store).await.unwrap();
    let guard = StoreGuard {
        api: stores,
        name: store.metadata.name.clone().unwrap(),
    };
    (op, guard)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_with_a_role_assumes_it_with_a_session_named_after_the_object() {
    let h = Harness::without_controller().await;
    let moto = Moto::shared();
    let bucket = moto.new_bucket("role").await;
    let role = "arn:aws:iam::123456789012:role/team-cors";
    let (mut op, guard) = role_store(&h, &moto.endpoint(), role, &bucket).await;
    h.create(
        "web",
        through(&guard.name, &bucket, rules("https://a.example.com")),
    )
    .await;
    h.wait_reason("web", "Applied").await;

    let session = format!("bucketcors.{}.web", h.namespace);
    let requests = moto.requests();
    let assumed = requests.iter().find(|r| {
        let body = String::from_utf8_lossy(&r.body().unwrap_or_default()).into_owned();
        body.contains("Action=AssumeRole") && body.contains(&format!("RoleSessionName={session}"))
    });
    assert!(assumed.is_some(), "no AssumeRole with session {session}");
    assert_eq!(access_key(assumed.unwrap()).as_deref(), Some("ambient"));
    let put = moto
        .cors_calls(&bucket)
        .into_iter()
        .find(|r| r.method == "PUT")
        .expect("the rules were written");
    let key = access_key(&put).unwrap_or_default();
    assert!(
        key != "ambient" && put.header("x-amz-security-token").is_some(),
        "the write used the role's session credentials, not the operator's: {key}"
    );
    op.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_made_after_its_object_grants_it_at_once() {
    let h = secure(|_| {}).await;
    let moto = Moto::shared();
    let tag = unique_name("later");
    let bucket = format!("{tag}-a-1");
    new_bucket(&bucket).await;
    let name = unique_name("store");
    h.create(
        "web",
        through(&name, &bucket, rules("https://a.example.com")),
    )
    .await;
    let denied = h.wait_reason("web", "NotPermitted").await;
    let message = &denied.ready_condition().unwrap().message;
    assert!(
        message.contains("does not exist or does not serve"),
        "{message}"
    );

    // The administrator makes it: the object is woken by the store's watch, not by a resync
    // (five minutes away).
    let store: ClusterBucketStore = serde_json::from_value(serde_json::json!({
        "apiVersion": "bucketcors.dev/v1alpha1",
        "kind": "ClusterBucketStore",
        "metadata": {"name": name},
        "spec": {
            "endpoint": moto.endpoint(),
            "conditions": [{"namespaces": [h.namespace]}],
            "buckets": [format!("{tag}-a-*")],
        },
    }))
    .unwrap();
    let stores: Api<ClusterBucketStore> = Api::all(h.client.clone());
    stores.create(&PostParams::default(), &store).await.unwrap();
    let _guard = StoreGuard { api: stores, name };
    h.wait_reason_within("web", "Applied", Duration::from_secs(10))
        .await;
    assert_eq!(
        bucket_cors(&moto.client(), &bucket).await,
        rules("https://a.example.com")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stores_documented_limits_apply_to_the_objects_it_serves_before_any_call() {
    let h = secure(|_| {}).await;
    let tag = unique_name("r2");
    let bucket = format!("{tag}-site");
    // An R2 account endpoint: nothing here answers there, so any call would be Unavailable.
    let name = unique_name("store");
    let store: ClusterBucketStore = serde_json::from_value(serde_json::json!({
        "apiVersion": "bucketcors.dev/v1alpha1",
        "kind": "ClusterBucketStore",
        "metadata": {"name": name},
        "spec": {
            "endpoint": "https://0123abcd.r2.cloudflarestorage.com",
            "conditions": [{"namespaces": [h.namespace]}],
            "buckets": [format!("{tag}-*")],
        },
    }))
    .unwrap();
    let stores: Api<ClusterBucketStore> = Api::all(h.client.clone());
    stores.create(&PostParams::default(), &store).await.unwrap();
    let _guard = StoreGuard {
        api: stores,
        name: name.clone(),
    };
    let mut week = rules("https://a.example.com");
    week[0].max_age_seconds = Some(604_800);
    h.create("web", through(&name, &bucket, week)).await;
    let refused = h.wait_reason("web", "InvalidSpec").await;
    let message = &refused.ready_condition().unwrap().message;
    assert_eq!(
        message,
        "spec.rules[0].maxAgeSeconds: \"604800\" is more than Cloudflare R2 allows: maxAgeSeconds up to 86400"
    );

    // A store whose host tells nothing names its profile: the same limit applies to what it
    // serves, and what is within it reaches the store.
    let named = unique_name("store");
    let store: ClusterBucketStore = serde_json::from_value(serde_json::json!({
        "apiVersion": "bucketcors.dev/v1alpha1",
        "kind": "ClusterBucketStore",
        "metadata": {"name": named},
        "spec": {
            "endpoint": Moto::shared().endpoint(),
            "profile": "CloudflareR2",
            "requestBudget": {"perSecond": 2, "burst": 1},
            "conditions": [{"namespaces": [h.namespace]}],
            "buckets": [format!("{tag}-named-*")],
        },
    }))
    .unwrap();
    let stores: Api<ClusterBucketStore> = Api::all(h.client.clone());
    stores.create(&PostParams::default(), &store).await.unwrap();
    let _named_guard = StoreGuard {
        api: stores,
        name: named.clone(),
    };
    let mut week = rules("https://a.example.com");
    week[0].max_age_seconds = Some(604_800);
    let refused_bucket = Moto::shared().new_bucket(&format!("{tag}-named-a")).await;
    h.create("named-week", through(&named, &refused_bucket, week))
        .await;
    let refused = h.wait_reason("named-week", "InvalidSpec").await;
    assert!(
        refused
            .ready_condition()
            .unwrap()
            .message
            .contains("more than Cloudflare R2 allows"),
        "{:?}",
        refused.ready_condition()
    );
    assert_eq!(
        bucket_cors(&Moto::shared().client(), &refused_bucket).await,
        vec![]
    );
    let mut day = rules("https://a.example.com");
    day[0].max_age_seconds = Some(86_400);
    let bucket = Moto::shared().new_bucket(&format!("{tag}-named-b")).await;
    h.create("named-day", through(&named, &bucket, day.clone()))
        .await;
    h.wait_reason("named-day", "Applied").await;
    assert_eq!(bucket_cors(&Moto::shared().client(), &bucket).await, day);

    // The store's request budget (2 a second, 1 at once) paces the objects it serves: three
    // more need at least a Get and a Put each, 6 requests, so no less than 2.5 s.
    let started = std::time::Instant::now();
    let mut names = Vec::new();
    for i in 0..3 {
        let bucket = Moto::shared()
            .new_bucket(&format!("{tag}-named-p{i}"))
            .await;
        let name = format!("paced-{i}");
        h.create(&name, through(&named, &bucket, day.clone())).await;
        names.push(name);
    }
    for name in &names {
        h.wait_for(name, "Ready", Duration::from_secs(60), |o| {
            o.ready_condition().is_some_and(|c| c.status == "True")
        })
        .await;
    }
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(2500), "3 objects in {took:?}");
}

/// A tenant learns nothing of other namespaces from its conditions: a bucket held from
/// another namespace is "held by another BucketCors" (no namespace, name or endpoint), and a
/// store that does not serve its namespace reads the same whether it exists, is valid or not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_learned_about_other_namespaces() {
    let other = Harness::new_namespace("other").await;
    let h = secure(|s| s.namespaces.push(other.clone())).await;
    let moto = Moto::shared();
    let bucket = unique_name("shared");
    new_bucket(&bucket).await;
    let elsewhere = Harness::new_namespace("elsewhere").await;
    let both = make_store(
        &h,
        vec![StoreCondition {
            namespaces: vec![h.namespace.clone(), other.clone()],
            namespace_selector: None,
        }],
        std::slice::from_ref(&bucket),
    )
    .await;
    let theirs: Api<BucketCors> = Api::namespaced(h.client.clone(), &other);
    let holder = BucketCors::new(
        "their-private-name",
        through(&both.name, &bucket, rules("https://theirs.example")),
    );
    theirs
        .create(&PostParams::default(), &holder)
        .await
        .unwrap();
    eventually(
        "the other namespace's object to hold the bucket",
        PROMPTLY,
        || async { bucket_cors(&moto.client(), &bucket).await == rules("https://theirs.example") },
    )
    .await;
    h.create(
        "mine",
        through(&both.name, &bucket, rules("https://mine.example")),
    )
    .await;
    let waiting = h.wait_reason("mine", "Conflict").await;
    let message = &waiting.ready_condition().unwrap().message;
    for secret in [other.as_str(), "their-private-name", &moto.endpoint()] {
        assert!(
            !message.contains(secret),
            "the Conflict names {secret:?}: {message}"
        );
    }
    assert!(message.contains("another BucketCors"), "{message}");

    // Stores that do not serve this namespace: one serving another, one not valid, none.
    let not_ours = make_store(
        &h,
        vec![StoreCondition {
            namespaces: vec![elsewhere.clone()],
            namespace_selector: None,
        }],
        &["*".to_owned()],
    )
    .await;
    // An `In` without values: not valid, and serving no namespace.
    let broken = StoreCondition {
        namespaces: vec![],
        namespace_selector: Some(LabelSelector {
            match_labels: None,
            match_expressions: Some(vec![
                k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement {
                    key: "team".into(),
                    operator: "In".into(),
                    values: None,
                },
            ]),
        }),
    };
    let invalid = make_store(&h, vec![broken], &["*".to_owned()]).await;
    let missing = unique_name("missing-store");
    let mut said = Vec::new();
    for (object, store) in [("a", &not_ours.name), ("b", &invalid.name), ("c", &missing)] {
        h.create(
            object,
            through(store, &bucket, rules("https://mine.example")),
        )
        .await;
        let denied = h.wait_reason(object, "NotPermitted").await;
        let message = denied.ready_condition().unwrap().message.clone();
        assert!(!message.contains(&elsewhere), "{message}");
        said.push(message.replace(store.as_str(), "STORE"));
    }
    assert!(
        said.iter().all(|m| m == &said[0]),
        "the denials differ: {said:#?}"
    );
    drop((both, not_ours, invalid));
}

/// An AssumeRole that STS refuses is reported to the tenant without the role's ARN or STS's
/// words (which name the operator's own role); the operator's log has both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_assume_role_shows_the_tenant_no_arn() {
    let h = Harness::without_controller().await;
    let moto = Moto::shared();
    let bucket = moto.new_bucket("role").await;
    let sts = FaultProxy::start(&moto.endpoint()).await;
    sts.set(Fault::All(Failure::AccessDenied));
    let role = "arn:aws:iam::123456789012:role/platform-secret-role";
    let (mut op, guard) = role_store(&h, &sts.endpoint(), role, &bucket).await;
    h.create(
        "web",
        through(&guard.name, &bucket, rules("https://a.example.com")),
    )
    .await;
    let failed = h
        .wait_for("web", "failed", PROMPTLY, |o| {
            o.ready_condition()
                .is_some_and(|c| c.status == "False" && c.reason != "Progressing")
        })
        .await;
    let message = &failed.ready_condition().unwrap().message;
    assert!(sts.faulted() >= 1, "STS was not asked");
    assert!(
        !message.contains("arn:aws") && !message.contains("AccessDenied"),
        "{message}"
    );
    assert!(message.contains("could not assume the role"), "{message}");
    op.terminate();
    let logs = op.logs();
    assert!(
        logs.contains(role),
        "the operator's log does not name the role: {logs}"
    );
    assert_eq!(moto.cors_writes(&bucket), 0);
}

/// Every way of writing a refused address in a URL, and the addresses that carry an inner one
/// (NAT64, 6to4, IPv4-compatible, IPv4-mapped) or sit in a special-purpose range: each object
/// is `EndpointNotAllowed` from its URL, before any lookup or connection, and the listener on
/// the loopback address they all spell sees nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_spelling_of_an_inner_address_is_refused_from_the_url_and_nothing_connects() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let h = secure(|s| {
        s.tenancy.endpoint_policy = EndpointPolicy {
            allow_http: true,
            allowed: vec![],
        };
    })
    .await;
    h.create_credentials_secret("own", "AKIAOWN", "own").await;
    let cases = [
        ("decimal", "2130706433", "loopback"),
        ("hex", "0x7f000001", "loopback"),
        ("hex-dotted", "0x7f.0.0.1", "loopback"),
        ("octal", "0177.0.0.1", "loopback"),
        ("short", "127.1", "loopback"),
        ("mapped", "[::ffff:7f00:1]", "loopback"),
        ("compatible", "[::127.0.0.1]", "IPv4-compatible"),
        ("nat64", "[64:ff9b::7f00:1]", "loopback"),
        ("nat64-local", "[64:ff9b:1::7f00:1]", "special-purpose"),
        ("sixtofour", "[2002:7f00:1::1]", "special-purpose"),
        ("teredo", "[2001::7f00:1]", "special-purpose"),
        ("site-local", "[fec0::1]", "site-local"),
        ("benchmarking", "198.18.0.1", "special-purpose"),
        ("reserved", "240.0.0.1", "special-purpose"),
    ];
    for (name, host, _) in cases {
        let mut spec = h.spec_with_secret("inner-bucket", rules("https://a.example.com"), "own");
        spec.endpoint = Some(format!("http://{host}:{port}"));
        h.create(name, spec).await;
    }
    for (name, host, range) in cases {
        let refused = h.wait_reason(name, "EndpointNotAllowed").await;
        let message = &refused.ready_condition().unwrap().message;
        // Refused from the URL (the check names the field), not by a lookup of the host.
        assert!(
            message.starts_with(&format!("spec.endpoint: \"http://{host}:{port}\"")),
            "{name}: {message}"
        );
        assert!(message.contains(range), "{name}: {message}");
    }
    assert!(
        matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "no connection reached {:?}",
        listener.local_addr()
    );
}

/// `kubectl auth can-i VERB secrets -n NAMESPACE --as WHO`: the first line of the answer.
fn can_get_secrets(h: &Harness, who: &str, namespace: &str) -> String {
    let args = [
        "auth", "can-i", "--as", who, "get", "secrets", "-n", namespace,
    ];
    let (_, output) = h.cluster.kubectl_with_input(&args, "");
    output.lines().next().unwrap_or_default().trim().to_owned()
}

/// A kubeconfig that authenticates as ServiceAccount `namespace/name`, with a token the API
/// server issues, as the pod would.
async fn kubeconfig_of(h: &Harness, namespace: &str, name: &str, path: &std::path::Path) {
    use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
    use k8s_openapi::api::core::v1::ServiceAccount;
    let accounts: Api<ServiceAccount> = Api::namespaced(h.client.clone(), namespace);
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec![],
            expiration_seconds: Some(3600),
            ..Default::default()
        },
        ..Default::default()
    };
    let token = accounts
        .create_token_request(name, &PostParams::default(), &request)
        .await
        .unwrap()
        .status
        .unwrap()
        .token;
    let mut kubeconfig: serde_json::Value =
        serde_saphyr::from_str(&std::fs::read_to_string(&h.cluster.kubeconfig).unwrap()).unwrap();
    kubeconfig["users"][0]["user"] = serde_json::json!({ "token": token });
    std::fs::write(path, serde_json::to_string(&kubeconfig).unwrap()).unwrap();
}

/// The chart's default install reads no Secret outside its own namespace, kube-system
/// included. An object naming its own Secret says which Secret it cannot read and how its
/// namespace grants it; once the namespace's admin binds the chart's `-read-secrets`
/// ClusterRole to the operator there, the operator (run with the chart's ServiceAccount
/// token) reads it and applies the rules, and still reads no other namespace's Secrets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_the_chart_reads_no_tenant_secret_until_its_namespace_grants_it() {
    let h = Harness::without_controller().await;
    let release = Harness::new_namespace("release").await;
    let dir = std::env::temp_dir().join(unique_name("rbac-default"));
    std::fs::create_dir_all(&dir).unwrap();
    let fullname = format!("bc-{release}");
    let docs = crate::operator::render_chart_with(
        &release,
        &dir.join("render.yaml"),
        &format!("fullnameOverride: {fullname}\ncrds:\n  install: false\n"),
    );
    crate::operator::apply_access(&h, &docs, |_| true);
    let operator = format!("system:serviceaccount:{release}:{fullname}");
    for (namespace, expected) in [
        (release.as_str(), "yes"),
        (h.namespace.as_str(), "no"),
        ("default", "no"),
        ("kube-system", "no"),
    ] {
        assert_eq!(
            can_get_secrets(&h, &operator, namespace),
            expected,
            "the default install: get secrets in {namespace}"
        );
    }

    // The operator as the chart runs it (the ServiceAccount's token, its namespace), secure.
    let kubeconfig = dir.join("kubeconfig");
    kubeconfig_of(&h, &release, &fullname, &kubeconfig).await;
    let log = std::env::temp_dir().join(format!("{}.log", unique_name("rbac-default")));
    let mut op = OperatorProcess::start(
        &kubeconfig,
        &[
            "--namespace",
            &h.namespace,
            "--resync-interval",
            "2s",
            "--allow-http-endpoints",
            "--allow-endpoint-range",
            "127.0.0.1/32",
        ],
        &[
            ("BUCKETCORS_SINGLE_TENANT", "false"),
            ("POD_NAMESPACE", &release),
        ],
        log,
    );
    h.create_credentials_secret("own", "AKIAOWN", "own").await;
    let bucket = Moto::shared().new_bucket("tenant-secret").await;
    h.create(
        "web",
        h.spec_with_secret(&bucket, rules("https://a.example.com"), "own"),
    )
    .await;
    let refused = h.wait_reason("web", "CredentialsNotFound").await;
    let message = &refused.ready_condition().unwrap().message;
    for words in [
        format!("Secret {}/own", h.namespace),
        "RoleBinding".to_owned(),
        "-read-secrets".to_owned(),
        "ClusterBucketStore".to_owned(),
    ] {
        assert!(message.contains(&words), "{words:?} in {message}");
    }

    // The namespace's admin (who may do anything in it, and nothing elsewhere) grants it.
    let admin = format!("admin-{}", h.namespace);
    let role = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "team-everything", "namespace": h.namespace},
            "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "team-everything", "namespace": h.namespace},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "team-everything"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": admin}],
        },
    ]})
    .to_string();
    let (ok, output) = h.cluster.kubectl_with_input(&["apply", "-f", "-"], &role);
    assert!(ok, "{output}");
    let clusterrole = format!("--clusterrole={fullname}-read-secrets");
    let account = format!("--serviceaccount={release}:{fullname}");
    let (ok, output) = h.cluster.kubectl_with_input(
        &[
            "--as",
            &admin,
            "create",
            "rolebinding",
            "bucketcors-read-secrets",
            "-n",
            &h.namespace,
            &clusterrole,
            &account,
        ],
        "",
    );
    assert!(ok, "the namespace's admin binds the chart's role: {output}");
    h.wait_reason("web", "Applied").await;
    assert_eq!(
        bucket_cors(&Moto::shared().client(), &bucket).await,
        rules("https://a.example.com")
    );
    assert_eq!(can_get_secrets(&h, &operator, &h.namespace), "yes");
    for namespace in ["default", "kube-system"] {
        assert_eq!(
            can_get_secrets(&h, &operator, namespace),
            "no",
            "{namespace}"
        );
    }
    op.terminate();
}

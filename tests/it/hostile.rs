//! One tenant's worst input against every other: strings that cannot be sent as HTTP headers,
//! a pass that panics. Nothing a tenant writes may stop the operator for the others.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bucketcors::api::{BucketCors, Verify};
use bucketcors::controller::{self, Context, Settings};
use bucketcors::cors::{CorsRule, Expectation};
use bucketcors::s3::{BucketTarget, CorsStore, PreflightAnswer, S3Error, SdkStore};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ObjectMeta, PostParams};
use serde_json::Value;

use crate::support::cluster::Cluster;
use crate::support::harness::{Harness, PROMPTLY, ambient_store, eventually, spec_on};
use crate::support::moto::Moto;
use crate::support::operator::{OperatorProcess, sample};
use crate::support::unique_name;

const APP: &str = "https://app.example.com";

/// Expectations that hold a control character where it would become a header of the live
/// preflight: the origin, the method, a requested header. Each says the rules refuse it, which
/// they do, so that the rules are written and the preflight is sent.
fn hostile_expectations() -> Vec<(&'static str, Expectation)> {
    vec![
        (
            "spec.expectations[0].origin",
            Expectation::new("https://a.example\u{1}", "GET", false),
        ),
        (
            "spec.expectations[0].method",
            Expectation::new(APP, "GET\n", false),
        ),
        (
            "spec.expectations[0].headers[0]",
            Expectation::new(APP, "GET", false).headers(["a\rb"]),
        ),
    ]
}

fn hostile(
    endpoint: &str,
    bucket: &str,
    expectation: Expectation,
) -> bucketcors::api::BucketCorsSpec {
    let mut spec = spec_on(endpoint, bucket, vec![CorsRule::new([APP], ["GET"])]);
    spec.expectations = vec![expectation];
    spec.verify = Some(Verify {
        live: true,
        key: None,
    });
    spec
}

fn object(name: &str, spec: bucketcors::api::BucketCorsSpec) -> BucketCors {
    BucketCors::new(name, spec)
}

/// Waits until `name`'s Ready condition has `reason`.
async fn wait_reason_in(api: &Api<BucketCors>, name: &str, reason: &str) -> BucketCors {
    let mut last = None;
    let deadline = tokio::time::Instant::now() + PROMPTLY;
    while tokio::time::Instant::now() < deadline {
        let obj = api.get(name).await.unwrap();
        if obj.ready_condition().is_some_and(|c| c.reason == reason) {
            return obj;
        }
        last = obj.status;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{name} is not {reason} after {PROMPTLY:?}; last status: {last:?}");
}

async fn namespace(client: &kube::Client, prefix: &str) -> String {
    let name = unique_name(prefix);
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    name
}

/// Drops every validation rule that refuses control characters from `schema`, as the CRD of a
/// release before them had it.
fn without_control_rules(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            if let Some(Value::Array(rules)) = map.get_mut("x-kubernetes-validations") {
                rules.retain(|r| !r["rule"].as_str().unwrap_or("").contains("Cc"));
            }
            map.values_mut().for_each(without_control_rules);
        }
        Value::Array(items) => items.iter_mut().for_each(without_control_rules),
        _ => {}
    }
}

async fn set_crd(crds: &Api<CustomResourceDefinition>, crd: &CustomResourceDefinition) {
    let name = crd.metadata.name.clone().unwrap();
    let mut next = crd.clone();
    next.metadata.resource_version = crds.get(&name).await.unwrap().metadata.resource_version;
    crds.replace(&name, &PostParams::default(), &next)
        .await
        .unwrap();
}

fn log_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("bucketcors-{}.log", unique_name(name)))
}

/// Objects that an API server took before it refused control characters (an older CRD, or
/// a cluster without CEL) are still there when the operator starts: each is `InvalidSpec`
/// naming its field, the process stays up, and another namespace's object is applied.
#[test]
fn objects_with_control_characters_stop_nothing() {
    let dir = std::env::temp_dir().join(unique_name("bucketcors-hostile-cp"));
    let cluster = std::thread::spawn(move || Cluster::start_in(&dir))
        .join()
        .expect("a control plane of its own starts");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = cluster.client().await;
        let crds: Api<CustomResourceDefinition> = Api::all(cluster.crd_server_client().await);
        let current = crds.get("bucketcors.bucketcors.dev").await.unwrap();
        let mut older = serde_json::to_value(&current).unwrap();
        without_control_rules(&mut older["spec"]);
        set_crd(&crds, &serde_json::from_value(older).unwrap()).await;

        let moto = Moto::shared();
        let endpoint = moto.endpoint();
        let (bad_ns, good_ns) = (
            namespace(&client, "hostile").await,
            namespace(&client, "healthy").await,
        );
        let bad: Api<BucketCors> = Api::namespaced(client.clone(), &bad_ns);
        let mut names = Vec::new();
        for (i, (field, expectation)) in hostile_expectations().into_iter().enumerate() {
            let bucket = moto.new_bucket("hostile").await;
            let obj = object(
                &format!("hostile-{i}"),
                hostile(&endpoint, &bucket, expectation),
            );
            // The older CRD takes effect when the server says so.
            eventually("the older CRD to take the object", PROMPTLY, || {
                let (bad, obj) = (bad.clone(), obj.clone());
                async move { bad.create(&PostParams::default(), &obj).await.is_ok() }
            })
            .await;
            names.push((obj.metadata.name.clone().unwrap(), field));
        }
        // Today's CRD refuses such objects again; those already stored stay.
        set_crd(&crds, &current).await;
        let (_, expectation) = hostile_expectations().remove(0);
        let refused = object("refused", hostile(&endpoint, "refused-bucket", expectation));
        eventually("the current CRD to refuse the object", PROMPTLY, || {
            let (bad, refused) = (bad.clone(), refused.clone());
            async move {
                matches!(bad.create(&PostParams::default(), &refused).await,
                    Err(kube::Error::Api(e)) if e.message.contains("spec.expectations[0].origin")
                        && e.message.contains("control characters"))
            }
        })
        .await;

        let mut operator = OperatorProcess::start(
            &cluster.kubeconfig,
            &["--resync-interval", "2s"],
            &[],
            log_path("hostile"),
        );
        let good: Api<BucketCors> = Api::namespaced(client.clone(), &good_ns);
        let good_bucket = moto.new_bucket("healthy").await;
        good.create(
            &PostParams::default(),
            &object(
                "healthy",
                spec_on(&endpoint, &good_bucket, vec![CorsRule::new([APP], ["GET"])]),
            ),
        )
        .await
        .unwrap();
        for (name, field) in &names {
            let obj = wait_reason_in(&bad, name, "InvalidSpec").await;
            let message = &obj.ready_condition().unwrap().message;
            assert!(
                message.contains(field) && message.contains("control characters"),
                "{name}: {message}"
            );
        }
        wait_reason_in(&good, "healthy", "Applied").await;
        assert!(
            crate::support::harness::bucket_cors(&moto.client(), &good_bucket).await
                == vec![CorsRule::new([APP], ["GET"])]
        );
        // Nothing of the hostile objects reached their buckets.
        for (name, _) in &names {
            let obj = bad.get(name).await.unwrap();
            assert!(
                moto.cors_writes(&obj.spec.bucket) == 0,
                "{name}: the invalid object wrote its bucket"
            );
        }
        assert!(
            operator.pid().is_some(),
            "the operator's process exited:\n{}",
            operator.logs()
        );
        operator.terminate();
    });
}

/// A store whose every call for one bucket panics, as a defect on some input would.
struct Panicking {
    inner: SdkStore,
    bucket: String,
}

impl Panicking {
    fn check(&self, target: &BucketTarget) {
        assert!(
            target.bucket != self.bucket,
            "a defect on bucket {}",
            self.bucket
        );
    }
}

impl CorsStore for Panicking {
    async fn get_cors(&self, target: &BucketTarget) -> Result<Vec<CorsRule>, S3Error> {
        self.check(target);
        self.inner.get_cors(target).await
    }
    async fn put_cors(&self, target: &BucketTarget, rules: &[CorsRule]) -> Result<(), S3Error> {
        self.check(target);
        self.inner.put_cors(target, rules).await
    }
    async fn delete_cors(&self, target: &BucketTarget) -> Result<(), S3Error> {
        self.check(target);
        self.inner.delete_cors(target).await
    }
    async fn preflight(
        &self,
        target: &BucketTarget,
        key: &str,
        origin: &str,
        method: &str,
        headers: &[&str],
    ) -> Result<PreflightAnswer, S3Error> {
        self.check(target);
        self.inner
            .preflight(target, key, origin, method, headers)
            .await
    }
}

/// A pass that panics ends that pass, not the operator: the object's pass is counted as
/// failed and retried on a backoff, and the other objects are reconciled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_that_panics_ends_only_that_pass() {
    let h = Harness::without_controller().await;
    let moto = Moto::shared();
    let (doomed, fine) = (
        moto.new_bucket("panics").await,
        moto.new_bucket("fine").await,
    );
    let settings = Settings {
        namespaces: vec![h.namespace.clone()],
        resync_interval: Duration::from_secs(2),
        concurrency: 2,
        ..Settings::default()
    };
    let mut settings = settings;
    settings.tenancy.single_tenant = true;
    let store = Panicking {
        inner: ambient_store(),
        bucket: doomed.clone(),
    };
    let ctx = Arc::new(Context::new(h.client.clone(), store, settings));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(controller::run(ctx.clone(), async {
        let _ = stopped.await;
    }));
    let rules = vec![CorsRule::new([APP], ["GET"])];
    h.create("doomed", h.spec(&doomed, rules.clone())).await;
    eventually("the panic to be counted", PROMPTLY, || {
        let ctx = ctx.clone();
        async move {
            sample(&ctx.metrics.encode(), "bucketcors_pass_panics_total", "").unwrap_or(0.0) >= 1.0
        }
    })
    .await;
    // Objects made after the panic are still reconciled.
    h.create("fine", h.spec(&fine, rules.clone())).await;
    h.wait_reason("fine", "Applied").await;
    assert_eq!(
        crate::support::harness::bucket_cors(&moto.client(), &fine).await,
        rules
    );
    // And the panicking one is tried again.
    eventually("the panicking object to be tried again", PROMPTLY, || {
        let ctx = ctx.clone();
        async move {
            sample(&ctx.metrics.encode(), "bucketcors_pass_panics_total", "").unwrap_or(0.0) >= 2.0
        }
    })
    .await;
    assert!(!running.is_finished(), "the controller stopped");
    let _ = stop.send(());
    tokio::time::timeout(PROMPTLY, running)
        .await
        .expect("the controller stops in time")
        .expect("the controller did not panic");
}

/// The API server refuses, naming the field, every string that would become a header or a
/// path with something it cannot carry; the operator's own check says the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_server_refuses_what_cannot_be_sent() {
    use bucketcors::api::{SecretRef, StoreRef};
    let h = Harness::without_controller().await;
    let base = || h.spec("refused-bucket", vec![CorsRule::new([APP], ["GET"])]);
    let mut cases = Vec::new();
    for (field, expectation) in hostile_expectations() {
        cases.push((
            field,
            hostile(&h.s3_endpoint, "refused-bucket", expectation),
        ));
    }
    for key in ["..", "a/../b", "./x", "a\nb"] {
        let mut spec = hostile(
            &h.s3_endpoint,
            "refused-bucket",
            Expectation::new(APP, "GET", true),
        );
        spec.verify = Some(Verify {
            live: true,
            key: Some(key.to_owned()),
        });
        cases.push(("spec.verify.key", spec));
    }
    for name in ["../other", "a/b", "UPPER", "x\r"] {
        let mut spec = base();
        spec.credentials_secret_ref = Some(SecretRef {
            name: name.to_owned(),
        });
        cases.push(("spec.credentialsSecretRef.name", spec));
        let mut spec = base();
        spec.endpoint = None;
        spec.store_ref = Some(StoreRef {
            name: name.to_owned(),
        });
        cases.push(("spec.storeRef.name", spec));
    }
    let mut spec = base();
    spec.rules = vec![CorsRule::new(["https://a.example\r\nx: y"], ["GET"])];
    cases.push(("spec.rules[0].allowedOrigins[0]", spec));
    let mut spec = base();
    spec.expected_bucket_owner = Some("1234\n".to_owned());
    cases.push(("spec.expectedBucketOwner", spec));

    for (i, (field, spec)) in cases.into_iter().enumerate() {
        let operator_says = bucketcors::admission::validate(&spec).unwrap_err();
        assert!(
            operator_says.iter().any(|e| e.field == field),
            "{field}: the operator's check says {operator_says:?}"
        );
        let refused = h
            .api
            .create(&PostParams::default(), &object(&format!("bad-{i}"), spec))
            .await;
        let kube::Error::Api(status) = refused.expect_err(field) else {
            panic!("{field}: not an API refusal");
        };
        let path = field.trim_start_matches("spec.");
        assert!(
            status.code == 422 && status.message.contains(path),
            "{field}: {}",
            status.message
        );
    }
}

/// A Secret whose key id cannot be sent in a signed request's header (a line break) is that
/// object's `CredentialsNotFound`, naming the key and not its value; the other objects go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_that_cannot_be_sent_is_that_objects_error() {
    let h = Harness::start().await;
    let moto = Moto::shared();
    let (bad, good) = (
        moto.new_bucket("badkey").await,
        moto.new_bucket("goodkey").await,
    );
    h.create_credentials_secret("forged", "AKIA\nX-Injected: 1", "secret-value")
        .await;
    let rules = vec![CorsRule::new([APP], ["GET"])];
    h.create("forged", h.spec_with_secret(&bad, rules.clone(), "forged"))
        .await;
    let refused = h.wait_reason("forged", "CredentialsNotFound").await;
    let message = &refused.ready_condition().unwrap().message;
    assert!(
        message.contains("AWS_ACCESS_KEY_ID") && !message.contains("Injected"),
        "{message}"
    );
    h.create("fine", h.spec(&good, rules.clone())).await;
    h.wait_reason("fine", "Applied").await;
    assert_eq!(
        crate::support::harness::bucket_cors(&moto.client(), &good).await,
        rules
    );
    assert_eq!(moto.cors_writes(&bad), 0);
}

//! What one tenant can make the operator hold: a store's answer is kept only up to what S3
//! allows one CORS configuration (64 KB of XML), so `status.previousConfiguration` never
//! records more, and a bucket holding more is neither recorded nor written over; an object
//! the operator refuses is kept without its rules, and still says why it is refused. The
//! operator's peak memory with 100 such objects is measured by the benchmark (`make bench
//! BENCH_ARGS='--only memory'`).

use std::collections::BTreeMap;

use aws_sdk_s3::types::{CorsConfiguration, CorsRule as SdkRule};
use bucketcors::api::{BucketCors, DeletionPolicy};
use bucketcors::cors::{CorsRule, config_xml_len};
use k8s_openapi::api::core::v1::{ResourceQuota, ResourceQuotaSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{Api, ObjectMeta, PostParams};

use crate::support::fault_proxy::{Failure, Fault, FaultProxy};
use crate::support::harness::{Harness, bucket_cors};
use crate::support::moto::Moto;

fn rules(origin: &str) -> Vec<CorsRule> {
    vec![CorsRule::new([origin], ["GET"])]
}

/// `rules` rules of `origins` origins of `len` characters each.
fn large_rules(rules: usize, origins: usize, len: usize) -> Vec<CorsRule> {
    (0..rules)
        .map(|r| {
            CorsRule::new(
                (0..origins).map(|k| {
                    let head = format!("https://o{r}-{k}.");
                    format!("{head}{}.example.com", "a".repeat(len - head.len() - 12))
                }),
                ["GET"],
            )
        })
        .collect()
}

/// Puts `rules` on `bucket` as another client would (moto takes configurations larger than S3
/// allows, as some stores do).
async fn put_directly(bucket: &str, rules: &[CorsRule]) {
    let rules = rules.iter().map(|r| {
        SdkRule::builder()
            .set_allowed_origins(Some(r.allowed_origins.clone()))
            .set_allowed_methods(Some(r.allowed_methods.clone()))
            .build()
            .unwrap()
    });
    Moto::shared()
        .client()
        .put_bucket_cors()
        .bucket(bucket)
        .cors_configuration(
            CorsConfiguration::builder()
                .set_cors_rules(Some(rules.collect()))
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
}

fn message(obj: &BucketCors) -> String {
    obj.ready_condition()
        .map(|c| format!("{}: {}", c.reason, c.message))
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_holding_more_than_s3_allows_is_neither_recorded_nor_written_over() {
    let h = Harness::start().await;
    let moto = Moto::shared();
    let bucket = moto.new_bucket("over").await;
    // 100 rules of 40 origins of 60 characters: 369,587 bytes of XML, over S3's 65,536.
    let theirs = large_rules(100, 40, 60);
    let size = config_xml_len(&theirs);
    put_directly(&bucket, &theirs).await;
    let writes = moto.cors_writes(&bucket);
    let mut spec = h.spec(&bucket, rules("https://app.example.com"));
    spec.deletion_policy = DeletionPolicy::Restore;
    h.create("over", spec).await;

    let obj = h.wait_observed("over", Some(1)).await;
    let said = message(&obj);
    assert!(said.starts_with("Rejected: "), "{said}");
    assert!(said.contains(&format!("{size} bytes of XML")), "{said}");
    assert!(said.contains("65536"), "{said}");
    let status = obj.status.as_ref().unwrap();
    assert_eq!(status.previous_configuration, None, "{said}");
    // Nothing lost: the bucket still holds what it held, and the operator never wrote it.
    assert_eq!(bucket_cors(&moto.client(), &bucket).await, theirs);
    assert_eq!(moto.cors_writes(&bucket), writes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mebibyte_of_tiny_rules_from_an_endpoint_is_refused_and_nothing_is_kept() {
    let h = Harness::start().await;
    let moto = Moto::shared();
    let proxy = FaultProxy::start(&moto.endpoint()).await;
    proxy.set(Fault::All(Failure::TinyRules));
    let bucket = moto.new_bucket("tiny").await;
    let mut spec = h.spec(&bucket, rules("https://app.example.com"));
    spec.endpoint = Some(proxy.endpoint());
    h.create("tiny", spec).await;

    let obj = h.wait_observed("tiny", Some(1)).await;
    let said = message(&obj);
    assert!(said.starts_with("Rejected: "), "{said}");
    assert!(said.contains("65536"), "{said}");
    let status = obj.status.as_ref().unwrap();
    assert_eq!(status.previous_configuration, None, "{said}");
    assert_eq!(proxy.cors_writes(&bucket), 0, "{:?}", proxy.requests());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_maximal_object_is_refused_naming_the_field_and_works_once_fixed() {
    let h = Harness::start().await;
    let moto = Moto::shared();
    let bucket = moto.new_bucket("max").await;
    // As large as the API server takes: 100 rules of 40 origins of 300 characters.
    let maximal = large_rules(100, 40, 300);
    let size = config_xml_len(&maximal);
    h.create("max", h.spec(&bucket, maximal)).await;
    let obj = h.wait_reason("max", "InvalidSpec").await;
    let said = message(&obj);
    assert!(
        said.contains(&format!(
            "spec.rules: serialize to {size} bytes of XML; S3 allows at most 65536"
        )),
        "{said}"
    );
    assert_eq!(moto.cors_calls(&bucket).len(), 0);

    // Fixed, it is a valid object like any other: the refusal does not outlive its spec.
    let fixed = rules("https://app.example.com");
    h.update("max", &h.spec(&bucket, fixed.clone())).await;
    h.wait_reason("max", "Applied").await;
    assert_eq!(bucket_cors(&moto.client(), &bucket).await, fixed);
}

/// The README's per-namespace object count: a ResourceQuota on
/// `count/bucketcors.bucketcors.dev`. The quota admission plugin of the server that serves
/// the resource enforces it, with usage computed by kube-controller-manager. Neither is in the
/// tests' control plane: BucketCors is served by a standalone apiextensions-apiserver behind
/// the aggregation layer, whose admission plugins are NamespaceLifecycle, the admission
/// policies and the webhooks (no ResourceQuota), kube-apiserver does not admit what it
/// proxies, and tests/support runs no kube-controller-manager. Run it with `--ignored` against
/// a control plane that serves the CRD from kube-apiserver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the tests' CRD server has no ResourceQuota admission and no kube-controller-manager runs"]
async fn a_resource_quota_bounds_the_bucketcors_of_a_namespace() {
    let h = Harness::without_controller().await;
    let quotas: Api<ResourceQuota> = Api::namespaced(h.client.clone(), &h.namespace);
    let quota = ResourceQuota {
        metadata: ObjectMeta {
            name: Some("bucketcors".into()),
            ..ObjectMeta::default()
        },
        spec: Some(ResourceQuotaSpec {
            hard: Some(BTreeMap::from([(
                "count/bucketcors.bucketcors.dev".to_owned(),
                Quantity("2".into()),
            )])),
            ..ResourceQuotaSpec::default()
        }),
        status: None,
    };
    quotas.create(&PostParams::default(), &quota).await.unwrap();
    for name in ["first", "second"] {
        h.create(name, h.spec(name, rules("https://app.example.com")))
            .await;
    }
    let third = h
        .api
        .create(
            &PostParams::default(),
            &BucketCors::new("third", h.spec("third", rules("https://app.example.com"))),
        )
        .await;
    match third {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 403, "{status:?}");
            assert!(status.message.contains("exceeded quota"), "{status:?}");
        }
        other => panic!("the third BucketCors was not refused: {other:?}"),
    }
}

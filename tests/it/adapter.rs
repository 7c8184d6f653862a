//! The S3 adapter against a real S3 server (moto): what goes in comes back, and each failure
//! maps to its reason.

use aws_sdk_s3::error::ProvideErrorMetadata;
use bucketcors::cors::CorsRule;
use bucketcors::reason::Reason;
use bucketcors::s3::{BucketTarget, CorsStore, Credentials, S3Error, SdkStore};

use crate::support::fault_proxy::{Failure, Fault, FaultProxy};
use crate::support::moto::Moto;
use crate::support::unique_name;

async fn store() -> SdkStore {
    SdkStore::from_env(Some("us-east-1".into()), Default::default()).await
}

fn target(moto: &Moto, bucket: &str) -> BucketTarget {
    let mut target = BucketTarget::new(bucket);
    target.endpoint = Some(moto.endpoint());
    target.credentials = Some(Credentials {
        access_key_id: "testing".into(),
        secret_access_key: "testing".into(),
        session_token: None,
    });
    target
}

fn three_rules() -> Vec<CorsRule> {
    vec![
        CorsRule::new(["https://app.example.com"], ["PUT", "POST", "DELETE"])
            .id("uploads")
            .allowed_headers(["*"])
            .expose_headers(["ETag", "x-amz-request-id"])
            .max_age(3000),
        CorsRule::new(["*"], ["GET"]).id("public-read"),
        CorsRule::new(["https://*.example.org"], ["HEAD", "GET"])
            .expose_headers(["Content-Length"])
            .max_age(0),
    ]
}

#[tokio::test]
async fn a_three_rule_round_trip_keeps_order_ids_expose_headers_and_max_age() {
    let moto = Moto::shared();
    let bucket = moto.new_bucket("adapter").await;
    let store = store().await;
    let target = target(moto, &bucket);

    store.put_cors(&target, &three_rules()).await.unwrap();

    assert_eq!(store.get_cors(&target).await.unwrap(), three_rules());
    // Read back with a client of our own, not through the adapter.
    let held = moto
        .client()
        .get_bucket_cors()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    let ids: Vec<_> = held
        .cors_rules()
        .iter()
        .map(|r| r.id().unwrap_or(""))
        .collect();
    assert_eq!(ids, ["uploads", "public-read", ""]);
    assert_eq!(
        held.cors_rules()[0].expose_headers(),
        ["ETag", "x-amz-request-id"]
    );
    assert_eq!(held.cors_rules()[2].max_age_seconds(), Some(0));
    assert_eq!(held.cors_rules()[1].max_age_seconds(), None);
}

#[tokio::test]
async fn a_bucket_without_cors_reads_as_empty() {
    let moto = Moto::shared();
    let bucket = moto.new_bucket("adapter").await;
    let store = store().await;
    assert_eq!(
        store.get_cors(&target(moto, &bucket)).await.unwrap(),
        vec![]
    );
}

#[tokio::test]
async fn a_missing_bucket_is_bucket_not_found_for_every_operation() {
    let moto = Moto::shared();
    let store = store().await;
    let target = target(moto, &unique_name("never-created"));
    let get = store.get_cors(&target).await.unwrap_err();
    let put = store.put_cors(&target, &three_rules()).await.unwrap_err();
    let delete = store.delete_cors(&target).await.unwrap_err();
    for err in [get, put, delete] {
        assert_eq!(err.reason(), Reason::BucketNotFound, "{err}");
        assert!(err.to_string().contains(&target.bucket), "{err}");
    }
}

#[tokio::test]
async fn delete_removes_the_configuration_and_twice_is_fine() {
    let moto = Moto::shared();
    let bucket = moto.new_bucket("adapter").await;
    let store = store().await;
    let target = target(moto, &bucket);
    store.put_cors(&target, &three_rules()).await.unwrap();

    store.delete_cors(&target).await.unwrap();
    store.delete_cors(&target).await.unwrap();

    let err = moto
        .client()
        .get_bucket_cors()
        .bucket(&bucket)
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("NoSuchCORSConfiguration"));
    assert_eq!(store.get_cors(&target).await.unwrap(), vec![]);
}

#[tokio::test]
async fn a_method_s3_refuses_comes_back_rejected_with_the_servers_message() {
    let moto = Moto::shared();
    let bucket = moto.new_bucket("adapter").await;
    let store = store().await;
    let target = target(moto, &bucket);
    store.put_cors(&target, &three_rules()).await.unwrap();

    // Sent raw, past validation, to see what the store itself says.
    let err = store
        .put_cors(&target, &[CorsRule::new(["*"], ["PATCH"])])
        .await
        .unwrap_err();

    let S3Error::Rejected { code, message, .. } = &err else {
        panic!("expected Rejected, got {err:?}");
    };
    assert_eq!(code, "InvalidRequest");
    assert!(
        message.contains("PATCH"),
        "the server's message is kept: {message}"
    );
    assert_eq!(err.reason(), Reason::Rejected);
}

#[tokio::test]
async fn a_store_nobody_listens_on_is_unavailable() {
    let moto = Moto::shared();
    let mut target = target(moto, "any-bucket");
    target.endpoint = Some(format!(
        "http://127.0.0.1:{}",
        crate::support::process::free_port()
    ));
    let err = store().await.get_cors(&target).await.unwrap_err();
    assert_eq!(err.reason(), Reason::Unavailable, "{err}");
}

#[tokio::test]
async fn one_client_serves_every_call_to_the_same_store() {
    let moto = Moto::shared();
    let store = store().await;
    for _ in 0..3 {
        let bucket = moto.new_bucket("adapter").await;
        store
            .put_cors(&target(moto, &bucket), &three_rules())
            .await
            .unwrap();
        store.get_cors(&target(moto, &bucket)).await.unwrap();
    }
    assert_eq!(store.cached_clients(), 1);

    let mut other = target(moto, &moto.new_bucket("adapter").await);
    other.credentials.as_mut().unwrap().access_key_id = "other".into();
    store.get_cors(&other).await.unwrap();
    assert_eq!(store.cached_clients(), 2);
}

#[tokio::test]
async fn the_server_side_request_log_sees_each_call() {
    let moto = Moto::shared();
    let bucket = moto.new_bucket("adapter").await;
    let store = store().await;
    let target = target(moto, &bucket);
    store.put_cors(&target, &three_rules()).await.unwrap();
    store.get_cors(&target).await.unwrap();
    store.delete_cors(&target).await.unwrap();

    let methods: Vec<String> = moto
        .cors_calls(&bucket)
        .into_iter()
        .map(|r| r.method)
        .collect();
    assert_eq!(methods, ["PUT", "GET", "DELETE"]);
    assert_eq!(moto.cors_writes(&bucket), 2);
}

#[tokio::test]
async fn deleting_a_configuration_that_is_not_there_succeeds_as_the_trait_promises() {
    let moto = Moto::shared();
    let bucket = moto.new_bucket("adapter").await;
    let proxy = FaultProxy::start(&moto.endpoint()).await;
    // Some stores answer 404 NoSuchCORSConfiguration where AWS answers 204.
    proxy.set(Fault::Writes(Failure::NoSuchCorsConfiguration));
    let mut through_proxy = target(moto, &bucket);
    through_proxy.endpoint = Some(proxy.endpoint());
    store().await.delete_cors(&through_proxy).await.unwrap();
    assert!(proxy.faulted() >= 1, "the store's 404 was never sent");
}

#[tokio::test]
async fn the_64_kb_check_counts_the_body_the_sdk_sends_escapes_included() {
    let moto = Moto::shared();
    let bucket = moto.new_bucket("adapter").await;
    let mut target = target(moto, &bucket);
    target.checksum = bucketcors::s3::Checksum::ContentMd5;
    // Every character the SDK's XML writer escapes, in ids and headers.
    let rules = vec![
        CorsRule::new(["https://a.example.com"], ["GET"])
            .id("a&b<c>d\"e'f")
            .allowed_headers(["x-line\r\nbreak", "x-next\u{85}line", "x-sep\u{2028}x"]),
    ];
    store().await.put_cors(&target, &rules).await.unwrap();
    let put = moto
        .cors_calls(&bucket)
        .into_iter()
        .find(|r| r.method == "PUT")
        .expect("moto saw the PUT");
    let body = put.body().expect("moto recorded the body");
    assert_eq!(
        bucketcors::cors::config_xml_len(&rules),
        body.len(),
        "{}",
        String::from_utf8_lossy(&body)
    );
}

#[tokio::test]
async fn a_bucket_in_another_region_is_named_and_a_temporary_redirect_is_transient() {
    let moto = Moto::shared();
    let bucket = moto.new_bucket("adapter").await;
    let proxy = FaultProxy::start(&moto.endpoint()).await;
    let mut through_proxy = target(moto, &bucket);
    through_proxy.endpoint = Some(proxy.endpoint());
    let store = store().await;

    proxy.set(Fault::All(Failure::WrongRegion));
    let err = store.get_cors(&through_proxy).await.unwrap_err();
    assert_eq!(err.reason(), Reason::Rejected, "{err}");
    assert!(
        err.to_string()
            .contains("the bucket is in eu-west-1: set spec.region to eu-west-1"),
        "{err}"
    );

    proxy.set(Fault::All(Failure::TemporaryRedirect));
    let err = store.get_cors(&through_proxy).await.unwrap_err();
    assert_eq!(err.reason(), Reason::Unavailable, "{err}");
}

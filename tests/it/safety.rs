//! Never fight, never lose a configuration: one owner per bucket, adoption with a record of
//! what was there, Restore on delete, and the checksum a store wants.

use base64::Engine as _;
use bucketcors::api::{DeletionPolicy, PutChecksum};
use bucketcors::cors::CorsRule;
use bucketcors::s3::Checksum;

use crate::support::harness::{Harness, PROMPTLY, bucket_cors, eventually, put_behind_the_back};
use crate::support::moto::Moto;

fn rules_a() -> Vec<CorsRule> {
    vec![CorsRule::new(["https://a.example.com"], ["GET"]).id("a")]
}

fn rules_b() -> Vec<CorsRule> {
    vec![CorsRule::new(["https://b.example.com"], ["PUT"]).id("b")]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_object_owns_a_bucket_and_a_second_never_writes_until_it_is_gone() {
    let mut h = Harness::start().await;
    let moto = Moto::shared();
    let bucket = moto.new_bucket("safety").await;
    let mut first = h.spec(&bucket, rules_a());
    first.deletion_policy = DeletionPolicy::Retain;
    h.create("first", first).await;
    h.wait_reason("first", "Applied").await;
    h.create("second", h.spec(&bucket, rules_b())).await;

    let conflict = h.wait_reason("second", "Conflict").await;
    let message = &conflict.ready_condition().unwrap().message;
    assert!(
        message.contains("BucketCors \"first\" of this namespace"),
        "{message}"
    );

    // Many resyncs, and an operator restart in the middle: still only the owner's one write.
    let gets = moto.cors_calls(&bucket).len();
    eventually("three resyncs of the owner", PROMPTLY, || async {
        moto.cors_calls(&bucket).len() >= gets + 3
    })
    .await;
    h.restart_controller().await;
    let gets = moto.cors_calls(&bucket).len();
    eventually("three more resyncs after a restart", PROMPTLY, || async {
        moto.cors_calls(&bucket).len() >= gets + 3
    })
    .await;
    assert_eq!(moto.cors_writes(&bucket), 1, "the second object wrote");
    assert_eq!(bucket_cors(&moto.client(), &bucket).await, rules_a());
    assert_eq!(
        h.api
            .get("second")
            .await
            .unwrap()
            .ready_condition()
            .unwrap()
            .reason,
        "Conflict"
    );

    // The owner goes (keeping its rules); the other takes over.
    h.delete("first").await;
    h.wait_gone("first").await;
    h.wait_reason("second", "Applied").await;
    assert_eq!(bucket_cors(&moto.client(), &bucket).await, rules_b());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_loser_of_a_conflict_leaves_the_owners_rules_alone() {
    let h = Harness::start().await;
    let moto = Moto::shared();
    let bucket = moto.new_bucket("safety").await;
    h.create("owner", h.spec(&bucket, rules_a())).await;
    h.wait_reason("owner", "Applied").await;
    h.create("loser", h.spec(&bucket, rules_b())).await;
    h.wait_reason("loser", "Conflict").await;

    h.delete("loser").await;
    h.wait_gone("loser").await;

    assert_eq!(bucket_cors(&moto.client(), &bucket).await, rules_a());
    assert_eq!(moto.cors_writes(&bucket), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configuration_found_on_the_bucket_is_recorded_and_restore_puts_it_back() {
    let mut h = Harness::start().await;
    let moto = Moto::shared();
    let s3 = moto.client();
    let bucket = moto.new_bucket("safety").await;
    put_behind_the_back(&s3, &bucket, "https://legacy.example.com").await;
    let found = bucket_cors(&s3, &bucket).await;

    let mut spec = h.spec(&bucket, rules_a());
    spec.deletion_policy = DeletionPolicy::Restore;
    h.create("web", spec.clone()).await;
    let applied = h.wait_reason("web", "Applied").await;
    let recorded = applied
        .status
        .unwrap()
        .previous_configuration
        .expect("recorded");
    assert_eq!(recorded.cors_rules(), found);
    h.wait_event("web", |(t, r, n)| {
        t == "Normal" && r == "Adopted" && n.contains("1 rule(s)")
    })
    .await;

    // A restart and a later write keep the first record.
    h.restart_controller().await;
    spec.rules = rules_b();
    let updated = h.update("web", &spec).await;
    let after = h.wait_observed("web", updated.metadata.generation).await;
    assert_eq!(
        after
            .status
            .unwrap()
            .previous_configuration
            .unwrap()
            .cors_rules(),
        found
    );
    assert_eq!(bucket_cors(&s3, &bucket).await, rules_b());

    h.delete("web").await;
    h.wait_gone("web").await;
    assert_eq!(bucket_cors(&s3, &bucket).await, found);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_removes_the_configuration_when_the_bucket_had_none() {
    let h = Harness::start().await;
    let moto = Moto::shared();
    let bucket = moto.new_bucket("safety").await;
    let mut spec = h.spec(&bucket, rules_a());
    spec.deletion_policy = DeletionPolicy::Restore;
    h.create("web", spec).await;
    let applied = h.wait_reason("web", "Applied").await;
    assert_eq!(
        applied
            .status
            .unwrap()
            .previous_configuration
            .unwrap()
            .rules,
        vec![]
    );
    assert!(h.events("web").await.iter().all(|(_, r, _)| r != "Adopted"));

    h.delete("web").await;
    h.wait_gone("web").await;
    assert_eq!(bucket_cors(&moto.client(), &bucket).await, vec![]);
}

fn put_headers(moto: &Moto, bucket: &str) -> Vec<(bool, Option<String>, bool)> {
    moto.cors_calls(bucket)
        .into_iter()
        .filter(|r| r.method == "PUT")
        .map(|r| {
            let crc = r.header("x-amz-checksum-crc32").is_some();
            let md5 = r.header("Content-MD5").map(str::to_owned);
            let algorithm = r.header("x-amz-sdk-checksum-algorithm").is_some();
            (crc, md5, algorithm)
        })
        .collect()
}

fn md5_of_body(moto: &Moto, bucket: &str) -> String {
    let put = moto
        .cors_calls(bucket)
        .into_iter()
        .find(|r| r.method == "PUT")
        .unwrap();
    let body = put.body().expect("moto recorded the body");
    use md5::Digest;
    base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_can_ask_for_content_md5_instead_of_the_sdks_crc32() {
    let h = Harness::start().await;
    let moto = Moto::shared();
    let default_bucket = moto.new_bucket("safety").await;
    let md5_bucket = moto.new_bucket("safety").await;
    h.create("crc", h.spec(&default_bucket, rules_a())).await;
    let mut spec = h.spec(&md5_bucket, rules_a());
    spec.put_checksum = Some(PutChecksum::ContentMd5);
    h.create("md5", spec).await;
    h.wait_reason("crc", "Applied").await;
    h.wait_reason("md5", "Applied").await;

    assert_eq!(put_headers(moto, &default_bucket), [(true, None, true)]);
    let md5 = put_headers(moto, &md5_bucket);
    assert_eq!(md5.len(), 1);
    assert_eq!(md5[0], (false, Some(md5_of_body(moto, &md5_bucket)), false));
    assert_eq!(bucket_cors(&moto.client(), &md5_bucket).await, rules_a());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_wide_setting_applies_to_objects_that_choose_nothing() {
    let moto = Moto::shared();
    let h = Harness::start_configured(&moto.endpoint(), |s| s.put_checksum = Checksum::ContentMd5)
        .await;
    let bucket = moto.new_bucket("safety").await;
    h.create("web", h.spec(&bucket, rules_a())).await;
    h.wait_reason("web", "Applied").await;
    let headers = put_headers(moto, &bucket);
    assert_eq!(headers, [(false, Some(md5_of_body(moto, &bucket)), false)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_adoption_record_survives_a_put_whose_answer_was_lost() {
    use crate::support::fault_proxy::{Failure, Fault, FaultProxy};
    let moto = Moto::shared();
    let proxy = FaultProxy::start(&moto.endpoint()).await;
    let h = Harness::start_with(&proxy.endpoint()).await;
    let bucket = moto.new_bucket("safety").await;
    put_behind_the_back(&moto.client(), &bucket, "https://theirs.example.com").await;
    let theirs = bucket_cors(&moto.client(), &bucket).await;

    // The store commits the Put, but the operator never hears back.
    proxy.set(Fault::Writes(Failure::LoseAnswer));
    let mut spec = h.spec(&bucket, rules_a());
    spec.deletion_policy = DeletionPolicy::Restore;
    h.create("adopter", spec).await;
    let failed = h.wait_reason("adopter", "Unavailable").await;
    let recorded = |o: &bucketcors::api::BucketCors| {
        o.status
            .as_ref()
            .and_then(|s| s.previous_configuration.as_ref())
            .map(|p| p.cors_rules())
    };
    assert_eq!(
        recorded(&failed),
        Some(theirs.clone()),
        "recorded, then lost"
    );
    assert_eq!(bucket_cors(&moto.client(), &bucket).await, rules_a());

    // The next pass finds the bucket already as the spec says: the record must still be there.
    proxy.set(Fault::Pass);
    let in_sync = h.wait_reason("adopter", "InSync").await;
    assert_eq!(recorded(&in_sync), Some(theirs.clone()));
    let adopted = h
        .wait_event("adopter", |(_, reason, _)| reason == "Adopted")
        .await;
    let adopted = adopted.iter().filter(|(_, reason, _)| reason == "Adopted");
    assert_eq!(adopted.count(), 1, "the bucket was adopted more than once");

    h.delete("adopter").await;
    h.wait_gone("adopter").await;
    assert_eq!(bucket_cors(&moto.client(), &bucket).await, theirs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_holding_what_s3_refuses_is_recorded_as_it_was_and_restored() {
    use aws_sdk_s3::types::{CorsConfiguration, CorsRule as SdkRule};
    let test = "a_bucket_holding_what_s3_refuses_is_recorded_as_it_was_and_restored";
    let store = crate::support::stores::garage(test);
    let h = Harness::start_with(&store.endpoint).await;
    h.create_credentials_secret("store", &store.access_key, &store.secret_key)
        .await;
    let bucket = crate::support::unique_name("adopt");
    store.create_bucket(&bucket).await;
    // Garage accepts a method S3 refuses; the record must hold it all the same.
    let patch = SdkRule::builder()
        .allowed_origins("https://theirs.example.com")
        .allowed_methods("PATCH")
        .build()
        .unwrap();
    store
        .client()
        .put_bucket_cors()
        .bucket(&bucket)
        .cors_configuration(
            CorsConfiguration::builder()
                .cors_rules(patch)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let theirs = bucket_cors(&store.client(), &bucket).await;
    assert_eq!(theirs[0].allowed_methods, ["PATCH"]);

    let mut spec = h.spec_with_secret(&bucket, rules_a(), "store");
    spec.deletion_policy = DeletionPolicy::Restore;
    h.create("adopter", spec).await;
    let applied = h.wait_reason("adopter", "Applied").await;
    let recorded = applied.status.unwrap().previous_configuration.unwrap();
    assert_eq!(recorded.cors_rules(), theirs);

    h.delete("adopter").await;
    h.wait_gone("adopter").await;
    assert_eq!(bucket_cors(&store.client(), &bucket).await, theirs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_spellings_of_one_endpoint_name_one_bucket_with_one_owner() {
    let h = Harness::start().await;
    let moto = Moto::shared();
    let bucket = moto.new_bucket("safety").await;
    let mut upper = h.spec(&bucket, rules_a());
    upper.endpoint = Some(format!("http://LOCALHOST:{}/", moto.port));
    h.create("upper", upper).await;
    h.wait_reason("upper", "Applied").await;
    let mut lower = h.spec(&bucket, rules_b());
    lower.endpoint = Some(format!("http://localhost:{}", moto.port));
    h.create("lower", lower).await;
    h.wait_reason("lower", "Conflict").await;
    assert_eq!(moto.cors_writes(&bucket), 1);
    assert_eq!(bucket_cors(&moto.client(), &bucket).await, rules_a());
}

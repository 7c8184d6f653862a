//! Stores that do not run here, emulated from their documentation by the fault proxy in front
//! of moto (`support::fault_proxy::Emulation`, each citing its source): the operator with the
//! store's profile against the emulation, and, as proof that the emulation does what the store
//! does, the same object without the profile against it. Each test writes its results to
//! target/compat/emulated-<store>.json, from which scripts/compat-table.py makes rows marked
//! "emulated from documentation" in the README's table.

use std::time::Duration;

use bucketcors::api::{BucketCorsSpec, StoreProfile};
use bucketcors::cors::{self, CorsRule, Plan};
use serde_json::json;

use crate::support::fault_proxy::{Emulation, FaultProxy};
use crate::support::harness::{Harness, PROMPTLY, bucket_cors, eventually, put_behind_the_back};
use crate::support::moto::Moto;
use crate::support::process::repo_root;

/// The account moto answers for.
const MOTO_ACCOUNT: &str = "123456789012";

fn rules() -> Vec<CorsRule> {
    vec![
        CorsRule::new(["https://app.example.com"], ["GET", "PUT"])
            .id("app")
            .allowed_headers(["*"])
            .max_age(3000),
    ]
}

fn with_profile(mut spec: BucketCorsSpec, profile: StoreProfile) -> BucketCorsSpec {
    spec.store_profile = Some(profile);
    spec
}

/// Writes the emulated store's row: every check listed held (the test asserts each first). A
/// check named "without the profile…" is the proof that the emulation bites.
fn report(store: &str, emulation: Emulation, source: &str, checks: &[(&str, String)]) {
    let dir = repo_root().join("target/compat");
    std::fs::create_dir_all(&dir).unwrap();
    let results: Vec<_> = checks
        .iter()
        .map(|(scenario, detail)| {
            // What the emulation does without the profile: the quirk the profile handles.
            let proof = scenario.starts_with("without the profile");
            json!({"scenario": scenario, "passed": true, "detail": detail, "proof": proof})
        })
        .collect();
    let report = json!({
        "store": store,
        "version": "emulated from documentation",
        "emulated": format!("{emulation:?}"),
        "source": source,
        "results": results,
        "quirks": [],
    });
    let file = dir.join(format!(
        "emulated-{}.json",
        store.to_lowercase().replace(' ', "-")
    ));
    std::fs::write(file, serde_json::to_string_pretty(&report).unwrap()).unwrap();
}

fn message(obj: &bucketcors::api::BucketCors) -> String {
    obj.ready_condition().unwrap().message.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ionos_is_not_sent_the_expected_bucket_owner_it_does_not_take() {
    let moto = Moto::shared();
    let proxy = FaultProxy::emulating(&moto.endpoint(), Emulation::Ionos).await;
    let h = Harness::start_with(&proxy.endpoint()).await;

    let bucket = moto.new_bucket("ionos").await;
    let mut spec = with_profile(h.spec(&bucket, rules()), StoreProfile::Ionos);
    spec.expected_bucket_owner = Some(MOTO_ACCOUNT.into());
    h.create("web", spec).await;
    h.wait_reason("web", "Applied").await;
    assert_eq!(bucket_cors(&moto.client(), &bucket).await, rules());
    assert_eq!(
        proxy.requests_with_header("x-amz-expected-bucket-owner"),
        0,
        "no request carried the header"
    );

    // The emulation refuses the header: without the profile, the object is sent it and fails.
    let other = moto.new_bucket("ionos-generic").await;
    let mut spec = h.spec(&other, rules());
    spec.expected_bucket_owner = Some(MOTO_ACCOUNT.into());
    h.create("generic", spec).await;
    let refused = h.wait_reason("generic", "Unsupported").await;
    assert!(
        message(&refused).contains("x-amz-expected-bucket-owner"),
        "{}",
        message(&refused)
    );
    assert!(proxy.requests_with_header("x-amz-expected-bucket-owner") > 0);
    assert_eq!(bucket_cors(&moto.client(), &other).await, vec![]);

    report(
        "IONOS Object Storage",
        Emulation::Ionos,
        "https://docs.ionos.com/sections-test/api/ionos-object-storage/ionos-object-storage-for-user-owned-buckets/cors",
        &[
            (
                "apply with spec.expectedBucketOwner: the header is not sent",
                "Applied; 0 requests carried x-amz-expected-bucket-owner".into(),
            ),
            (
                "without the profile: the header is sent and refused",
                "Unsupported: NotImplemented: Header 'x-amz-expected-bucket-owner' not implemented"
                    .into(),
            ),
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backblaze_b2_gets_content_md5_and_its_merged_methods_cost_no_writes() {
    let moto = Moto::shared();
    let proxy = FaultProxy::emulating(&moto.endpoint(), Emulation::BackblazeB2).await;
    let h = Harness::start_with(&proxy.endpoint()).await;

    // Duplicate methods, which B2 merges on the way back.
    let doubled = vec![CorsRule::new(["https://app.example.com"], ["GET", "GET", "PUT"]).id("app")];
    let bucket = moto.new_bucket("b2").await;
    h.create(
        "web",
        with_profile(h.spec(&bucket, doubled.clone()), StoreProfile::BackblazeB2),
    )
    .await;
    h.wait_reason("web", "Applied").await;
    let held = bucket_cors(&moto.client(), &bucket).await;
    assert_eq!(cors::diff(&doubled, &held), Plan::NoChange, "{held:?}");
    // Several resyncs read the merged methods back: nothing more is written.
    let calls = proxy.cors_calls(&bucket).len();
    eventually("four more resyncs", PROMPTLY, || async {
        proxy.cors_calls(&bucket).len() >= calls + 4
    })
    .await;
    assert_eq!(proxy.cors_writes(&bucket), 1);
    assert_eq!(
        proxy.requests_with_header("x-amz-checksum-crc32"),
        0,
        "Content-MD5 only"
    );
    assert!(proxy.requests_with_header("content-md5") >= 1);

    // The emulation refuses the SDK's default checksum: without the profile, the put fails.
    let other = moto.new_bucket("b2-generic").await;
    h.create("generic", h.spec(&other, rules())).await;
    let refused = h.wait_reason("generic", "Rejected").await;
    assert!(
        message(&refused).contains("Unsupported header 'x-amz-checksum-crc32'"),
        "{}",
        message(&refused)
    );
    assert_eq!(bucket_cors(&moto.client(), &other).await, vec![]);

    // A max-age over a day, which B2 refuses, is refused before the call with the profile, and
    // by the emulation without it.
    let mut week = rules();
    week[0].max_age_seconds = Some(604_800);
    let long = moto.new_bucket("b2-week").await;
    h.create(
        "week",
        with_profile(h.spec(&long, week.clone()), StoreProfile::BackblazeB2),
    )
    .await;
    let invalid = h.wait_reason("week", "InvalidSpec").await;
    assert!(
        message(&invalid).contains("Backblaze B2 allows: maxAgeSeconds up to 86400"),
        "{}",
        message(&invalid)
    );
    assert!(proxy.cors_calls(&long).is_empty(), "no call was made");
    let long_generic = moto.new_bucket("b2-week-generic").await;
    let mut spec = h.spec(&long_generic, week);
    spec.put_checksum = Some(bucketcors::api::PutChecksum::ContentMd5);
    h.create("week-generic", spec).await;
    let refused_week = h.wait_reason("week-generic", "Rejected").await;
    assert!(
        message(&refused_week).contains("MaxAgeSeconds must be between 0 and 86400"),
        "{}",
        message(&refused_week)
    );

    report(
        "Backblaze B2",
        Emulation::BackblazeB2,
        "https://www.backblaze.com/docs/cloud-storage-enable-cors-with-the-s3-compatible-api",
        &[
            (
                "apply: PutBucketCors with Content-MD5, no x-amz-checksum-crc32",
                "Applied".into(),
            ),
            (
                "steady state: duplicate methods merged on read cost no writes",
                "1 write over 4 resyncs".into(),
            ),
            (
                "maxAgeSeconds over 86400: InvalidSpec, no call",
                message(&invalid),
            ),
            (
                "without the profile: the SDK's CRC32 is refused",
                "Rejected: InvalidArgument: Unsupported header 'x-amz-checksum-crc32' received for this API call."
                    .into(),
            ),
            (
                "without the profile: a max-age over a day is refused by the store",
                "Rejected: InvalidArgument (the emulation's own text)".into(),
            ),
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_wasabi_no_rules_is_its_default_configuration_not_a_delete_on_every_pass() {
    let moto = Moto::shared();
    let proxy = FaultProxy::emulating(&moto.endpoint(), Emulation::Wasabi).await;
    let h = Harness::start_with(&proxy.endpoint()).await;

    let bucket = moto.new_bucket("wasabi").await;
    put_behind_the_back(&moto.client(), &bucket, "https://custom.example.com").await;
    h.create(
        "web",
        with_profile(h.spec(&bucket, vec![]), StoreProfile::Wasabi),
    )
    .await;
    let settled = h
        .wait_for(
            "web",
            "InSync with Wasabi's default",
            Duration::from_secs(30),
            |o| {
                o.ready_condition()
                    .is_some_and(|c| c.reason == "InSync" && c.message.contains("Wasabi's default"))
            },
        )
        .await;
    assert_eq!(settled.status.as_ref().unwrap().rule_count, Some(1));
    assert_eq!(
        proxy.cors_writes(&bucket),
        1,
        "one delete, of the custom rules"
    );
    assert_eq!(bucket_cors(&moto.client(), &bucket).await, vec![]);
    let calls = proxy.cors_calls(&bucket).len();
    eventually("four more resyncs", PROMPTLY, || async {
        proxy.cors_calls(&bucket).len() >= calls + 4
    })
    .await;
    assert_eq!(proxy.cors_writes(&bucket), 1, "the default is left alone");

    // Custom rules written by hand are deleted again, once.
    put_behind_the_back(&moto.client(), &bucket, "https://again.example.com").await;
    eventually(
        "the hand-written rules deleted",
        Duration::from_secs(30),
        || async { proxy.cors_writes(&bucket) == 2 },
    )
    .await;
    eventually("four more resyncs", PROMPTLY, || async {
        proxy.cors_calls(&bucket).len() >= calls + 10
    })
    .await;
    assert_eq!(proxy.cors_writes(&bucket), 2);
    assert_eq!(bucket_cors(&moto.client(), &bucket).await, vec![]);

    // The emulation answers its default where there is no configuration: without the profile,
    // the operator deletes it, finds it back, and reports that the delete does not stick.
    let other = moto.new_bucket("wasabi-generic").await;
    h.create("generic", h.spec(&other, vec![])).await;
    h.wait_reason("generic", "NotPersisted").await;
    assert_eq!(proxy.cors_writes(&other), 1);

    report(
        "Wasabi",
        Emulation::Wasabi,
        "https://docs.wasabi.com/docs/cross-origin-resource-sharing-cors",
        &[
            (
                "no rules: one delete, then the default configuration is InSync",
                message(&settled),
            ),
            (
                "steady state and drift: the default costs no writes; hand-written rules are deleted once",
                "2 deletes over 10 resyncs".into(),
            ),
            (
                "without the profile: the default comes back after each delete",
                "NotPersisted after 1 delete: the default came back".into(),
            ),
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minio_community_and_storj_are_unsupported_with_what_to_do_instead() {
    let moto = Moto::shared();
    let proxy = FaultProxy::emulating(&moto.endpoint(), Emulation::MinIoCommunity).await;
    let h = Harness::start_with(&proxy.endpoint()).await;

    // A MinIO endpoint's host tells nothing; its answers name it (Server: MinIO).
    let bucket = moto.new_bucket("minio").await;
    h.create("web", h.spec(&bucket, rules())).await;
    let unsupported = h.wait_reason("web", "Unsupported").await;
    assert!(
        message(&unsupported).contains("set MINIO_API_CORS_ALLOW_ORIGIN"),
        "{}",
        message(&unsupported)
    );
    assert_eq!(
        message(&unsupported)
            .matches("MINIO_API_CORS_ALLOW_ORIGIN")
            .count(),
        1
    );
    // Named, the advice is given once too.
    let named = moto.new_bucket("minio-named").await;
    h.create(
        "named",
        with_profile(h.spec(&named, rules()), StoreProfile::MinIo),
    )
    .await;
    let unsupported_named = h.wait_reason("named", "Unsupported").await;
    assert_eq!(
        message(&unsupported_named)
            .matches("MINIO_API_CORS_ALLOW_ORIGIN")
            .count(),
        1,
        "{}",
        message(&unsupported_named)
    );

    // Storj has no bucket CORS API: nothing is sent.
    let storj = moto.new_bucket("storj").await;
    h.create(
        "storj",
        with_profile(h.spec(&storj, rules()), StoreProfile::Storj),
    )
    .await;
    let storj_outcome = h.wait_reason("storj", "Unsupported").await;
    assert!(
        message(&storj_outcome).contains("the store is Storj"),
        "{}",
        message(&storj_outcome)
    );
    assert!(proxy.cors_calls(&storj).is_empty());

    report(
        "MinIO (community)",
        Emulation::MinIoCommunity,
        "https://github.com/minio/minio/issues/21332",
        &[(
            "bucket CORS answered NotImplemented: Unsupported with the server-wide setting to use",
            message(&unsupported),
        )],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r2s_limits_are_refused_before_the_store_would_refuse_them() {
    let moto = Moto::shared();
    let proxy = FaultProxy::emulating(&moto.endpoint(), Emulation::CloudflareR2).await;
    let h = Harness::start_with(&proxy.endpoint()).await;
    let mut week = rules();
    week[0].max_age_seconds = Some(604_800);

    let bucket = moto.new_bucket("r2").await;
    h.create(
        "web",
        with_profile(h.spec(&bucket, week.clone()), StoreProfile::CloudflareR2),
    )
    .await;
    let invalid = h.wait_reason("web", "InvalidSpec").await;
    assert!(
        message(&invalid).contains("Cloudflare R2 allows: maxAgeSeconds up to 86400"),
        "{}",
        message(&invalid)
    );
    assert!(proxy.cors_calls(&bucket).is_empty(), "no call was made");

    // Within the limit, the store takes it.
    let day = moto.new_bucket("r2-day").await;
    let mut within = rules();
    within[0].max_age_seconds = Some(86_400);
    h.create(
        "day",
        with_profile(h.spec(&day, within.clone()), StoreProfile::CloudflareR2),
    )
    .await;
    h.wait_reason("day", "Applied").await;
    assert_eq!(bucket_cors(&moto.client(), &day).await, within);

    // The emulation refuses it: without the profile, the store's own answer.
    let other = moto.new_bucket("r2-generic").await;
    h.create("generic", h.spec(&other, week)).await;
    let rejected = h.wait_reason("generic", "Rejected").await;
    assert!(
        message(&rejected).contains("InvalidArgument"),
        "{}",
        message(&rejected)
    );

    report(
        "Cloudflare R2",
        Emulation::CloudflareR2,
        "https://developers.cloudflare.com/r2/buckets/cors/",
        &[
            (
                "maxAgeSeconds over 86400: InvalidSpec, no call",
                message(&invalid),
            ),
            ("maxAgeSeconds 86400: Applied", "Applied".into()),
            (
                "without the profile: the store refuses",
                "Rejected: InvalidArgument (the emulation's own text)".into(),
            ),
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ovhcloud_gets_content_md5_and_spaces_wildcards_are_refused_before_the_call() {
    let moto = Moto::shared();
    let ovh = FaultProxy::emulating(&moto.endpoint(), Emulation::OvhCloud).await;
    let h = Harness::start_with(&ovh.endpoint()).await;
    let bucket = moto.new_bucket("ovh").await;
    h.create(
        "web",
        with_profile(h.spec(&bucket, rules()), StoreProfile::OvhCloud),
    )
    .await;
    h.wait_reason("web", "Applied").await;
    assert_eq!(bucket_cors(&moto.client(), &bucket).await, rules());
    assert_eq!(ovh.requests_with_header("x-amz-checksum-crc32"), 0);
    let other = moto.new_bucket("ovh-generic").await;
    h.create("generic", h.spec(&other, rules())).await;
    let refused = h.wait_reason("generic", "Rejected").await;
    assert!(
        message(&refused).contains("x-amz-checksum-crc32 is not supported"),
        "{}",
        message(&refused)
    );
    report(
        "OVHcloud Object Storage",
        Emulation::OvhCloud,
        "https://github.com/earth-mover/icechunk/pull/2115",
        &[
            (
                "apply: PutBucketCors with Content-MD5, no x-amz-checksum-crc32",
                "Applied".into(),
            ),
            (
                "without the profile: the SDK's CRC32 is refused",
                "Rejected: InvalidRequest (the emulation's own text)".into(),
            ),
        ],
    );

    let spaces = FaultProxy::emulating(&moto.endpoint(), Emulation::DigitalOceanSpaces).await;
    let h = Harness::start_with(&spaces.endpoint()).await;
    let inside = vec![CorsRule::new(["https://app.*.example.com"], ["GET"])];
    let bucket = moto.new_bucket("spaces").await;
    h.create(
        "web",
        with_profile(
            h.spec(&bucket, inside.clone()),
            StoreProfile::DigitalOceanSpaces,
        ),
    )
    .await;
    let invalid = h.wait_reason("web", "InvalidSpec").await;
    assert!(
        message(&invalid)
            .contains("not at the start of the host name, which DigitalOcean Spaces refuses"),
        "{}",
        message(&invalid)
    );
    assert!(spaces.cors_calls(&bucket).is_empty(), "no call was made");
    let leading = vec![CorsRule::new(["https://*.example.com"], ["GET"])];
    let ok = moto.new_bucket("spaces-leading").await;
    h.create(
        "leading",
        with_profile(
            h.spec(&ok, leading.clone()),
            StoreProfile::DigitalOceanSpaces,
        ),
    )
    .await;
    h.wait_reason("leading", "Applied").await;
    assert_eq!(bucket_cors(&moto.client(), &ok).await, leading);
    let other = moto.new_bucket("spaces-generic").await;
    h.create("generic", h.spec(&other, inside)).await;
    h.wait_reason("generic", "Rejected").await;
    report(
        "DigitalOcean Spaces",
        Emulation::DigitalOceanSpaces,
        "https://docs.digitalocean.com/products/spaces/how-to/configure-cors/",
        &[
            (
                "a wildcard inside the host: InvalidSpec, no call",
                message(&invalid),
            ),
            (
                "a wildcard at the start of the host: Applied",
                "Applied".into(),
            ),
            (
                "without the profile: the store refuses",
                "Rejected: InvalidArgument (the emulation's own text)".into(),
            ),
        ],
    );
}

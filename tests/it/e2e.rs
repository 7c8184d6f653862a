//! The real controller against a real API server and a real S3 server. Every assertion about
//! a bucket reads it back from the S3 server; writes are counted in the server's request log.

use std::time::Duration;

use bucketcors::api::{DeletionPolicy, ManagementPolicy};
use bucketcors::cors::CorsRule;

use crate::support::harness::{
    Harness, PROMPTLY, RESYNC, bucket_cors, eventually, over_64_kb, put_behind_the_back,
};
use crate::support::moto::Moto;
use crate::support::unique_name;

fn app() -> CorsRule {
    CorsRule::new(
        ["https://app.example.com", "https://admin.example.com"],
        ["GET", "PUT"],
    )
    .id("app")
    .allowed_headers(["*"])
    .expose_headers(["ETag"])
    .max_age(3000)
}

fn public() -> CorsRule {
    CorsRule::new(["*"], ["GET"]).id("public")
}

fn uploads() -> CorsRule {
    CorsRule::new(["https://upload.example.com"], ["POST"]).allowed_headers(["Content-Type"])
}

// One resync, its jitter, and room for a slow reconcile on a busy machine.
const WITHIN_ONE_RESYNC: Duration = Duration::from_secs(RESYNC.as_secs() * 2 + 8);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_object_puts_its_rules_in_order_then_reports_in_sync() {
    let h = Harness::start().await;
    let moto = Moto::shared();
    let bucket = moto.new_bucket("e2e").await;

    let created = h
        .create("web", h.spec(&bucket, vec![app(), public(), uploads()]))
        .await;

    let applied = h.wait_reason("web", "Applied").await;
    assert_eq!(
        bucket_cors(&moto.client(), &bucket).await,
        vec![app(), public(), uploads()]
    );
    let ready = applied.ready_condition().unwrap();
    assert_eq!(ready.status, "True");
    assert_eq!(
        applied.status.as_ref().unwrap().observed_generation,
        created.metadata.generation
    );
    assert_eq!(applied.status.as_ref().unwrap().rule_count, Some(3));

    let in_sync = h.wait_reason("web", "InSync").await;
    assert_eq!(
        in_sync.ready_condition().unwrap().last_transition_time,
        ready.last_transition_time
    );
    assert_eq!(moto.cors_writes(&bucket), 1);
    h.wait_event("web", |(t, r, _)| t == "Normal" && r == "Applied")
        .await;

    let table = h.cluster.kubectl(&["get", "bcors", "-n", &h.namespace]);
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "BUCKET", "READY", "REASON", "RULES", "AGE"]
    );
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(&row[..5], ["web", bucket.as_str(), "True", "InSync", "3"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_reach_the_bucket_and_only_real_changes_are_written() {
    let h = Harness::start().await;
    let moto = Moto::shared();
    let bucket = moto.new_bucket("e2e").await;
    h.create("web", h.spec(&bucket, vec![app(), public()]))
        .await;
    h.wait_reason("web", "InSync").await;
    assert_eq!(moto.cors_writes(&bucket), 1);

    // New rules reach the bucket.
    let updated = h
        .update("web", &h.spec(&bucket, vec![app(), public(), uploads()]))
        .await;
    h.wait_observed("web", updated.metadata.generation).await;
    assert_eq!(
        bucket_cors(&moto.client(), &bucket).await,
        vec![app(), public(), uploads()]
    );
    assert_eq!(moto.cors_writes(&bucket), 2);

    // Reordering origins, methods and headers inside a rule changes nothing S3 does.
    let mut shuffled = app();
    shuffled.allowed_origins.reverse();
    shuffled.allowed_methods.reverse();
    shuffled.expose_headers = vec!["etag".into()];
    let reordered = h
        .update("web", &h.spec(&bucket, vec![shuffled, public(), uploads()]))
        .await;
    let seen = h.wait_observed("web", reordered.metadata.generation).await;
    assert_eq!(seen.ready_condition().unwrap().reason, "InSync");
    assert_eq!(
        moto.cors_writes(&bucket),
        2,
        "reordering inside a rule wrote"
    );

    // Reordering rules does: S3 uses the first match.
    let swapped = h
        .update("web", &h.spec(&bucket, vec![public(), app(), uploads()]))
        .await;
    h.wait_observed("web", swapped.metadata.generation).await;
    assert_eq!(
        bucket_cors(&moto.client(), &bucket).await,
        vec![public(), app(), uploads()]
    );
    assert_eq!(moto.cors_writes(&bucket), 3);

    // Resyncs with nothing changed write nothing.
    let gets_before = moto.cors_calls(&bucket).len();
    eventually("two more resyncs", PROMPTLY, || async {
        moto.cors_calls(&bucket).len() >= gets_before + 2
    })
    .await;
    assert_eq!(moto.cors_writes(&bucket), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_made_behind_the_operators_back_are_reverted_within_one_resync() {
    let h = Harness::start().await;
    let moto = Moto::shared();
    let s3 = moto.client();
    let bucket = moto.new_bucket("e2e").await;
    h.create("web", h.spec(&bucket, vec![app(), public()]))
        .await;
    h.wait_reason("web", "Applied").await;

    put_behind_the_back(&s3, &bucket, "https://evil.example.com").await;
    eventually("the rules to be restored", WITHIN_ONE_RESYNC, || async {
        bucket_cors(&s3, &bucket).await == vec![app(), public()]
    })
    .await;

    s3.delete_bucket_cors()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    eventually(
        "the deleted rules to be restored",
        WITHIN_ONE_RESYNC,
        || async { bucket_cors(&s3, &bucket).await == vec![app(), public()] },
    )
    .await;

    // The same Event three times (first write, two restores) is one Event with a series of
    // three, not three objects.
    let applied = || async {
        h.event_objects("web")
            .await
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some("Applied"))
            .collect::<Vec<_>>()
    };
    eventually("the third Applied Event", PROMPTLY, || async {
        let events = applied().await;
        events.len() > 1
            || events
                .iter()
                .any(|e| e.series.as_ref().is_some_and(|s| s.count >= 3))
    })
    .await;
    let events = applied().await;
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(
        events[0].series.as_ref().map(|s| s.count),
        Some(3),
        "{events:#?}"
    );
    assert_eq!(
        events[0].reporting_controller.as_deref(),
        Some("bucketcors")
    );
    assert_eq!(
        events[0].note.as_deref(),
        Some("put 2 rule(s) on the bucket")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observe_only_reports_drift_and_never_writes() {
    let h = Harness::start().await;
    let moto = Moto::shared();
    let s3 = moto.client();
    let bucket = moto.new_bucket("e2e").await;
    put_behind_the_back(&s3, &bucket, "https://other.example.com").await;
    let writes_before = moto.cors_writes(&bucket);

    let mut spec = h.spec(&bucket, vec![app()]);
    spec.management_policy = ManagementPolicy::ObserveOnly;
    h.create("watch", spec).await;

    let drifted = h.wait_reason("watch", "Drifted").await;
    let ready = drifted.ready_condition().unwrap();
    assert_eq!(ready.status, "False");
    assert!(
        ready.message.contains("rule 0 differs in"),
        "{}",
        ready.message
    );
    let gets = moto.cors_calls(&bucket).len();
    eventually("another resync", PROMPTLY, || async {
        moto.cors_calls(&bucket).len() > gets
    })
    .await;
    assert_eq!(moto.cors_writes(&bucket), writes_before);
    assert_eq!(
        bucket_cors(&s3, &bucket).await[0].allowed_origins,
        ["https://other.example.com"]
    );

    // Deleting an ObserveOnly object leaves the bucket alone too.
    h.delete("watch").await;
    h.wait_gone("watch").await;
    assert_eq!(moto.cors_writes(&bucket), writes_before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_with_policy_delete_removes_the_configuration() {
    let h = Harness::start().await;
    let moto = Moto::shared();
    let bucket = moto.new_bucket("e2e").await;
    h.create("web", h.spec(&bucket, vec![app()])).await;
    h.wait_reason("web", "Applied").await;

    h.delete("web").await;
    h.wait_gone("web").await;

    assert_eq!(bucket_cors(&moto.client(), &bucket).await, vec![]);
    let methods: Vec<String> = moto
        .cors_calls(&bucket)
        .into_iter()
        .map(|r| r.method)
        .collect();
    // Exactly one DELETE and no write after it (the trailing GET is this test's own read).
    let delete = methods
        .iter()
        .position(|m| m == "DELETE")
        .expect("a DELETE");
    assert!(
        methods[delete + 1..].iter().all(|m| m == "GET"),
        "{methods:?}"
    );
    assert_eq!(
        methods.iter().filter(|m| *m == "DELETE").count(),
        1,
        "{methods:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_with_policy_retain_keeps_the_rules() {
    let h = Harness::start().await;
    let moto = Moto::shared();
    let bucket = moto.new_bucket("e2e").await;
    let mut spec = h.spec(&bucket, vec![app(), public()]);
    spec.deletion_policy = DeletionPolicy::Retain;
    h.create("web", spec).await;
    h.wait_reason("web", "Applied").await;

    h.delete("web").await;
    h.wait_gone("web").await;

    assert_eq!(
        bucket_cors(&moto.client(), &bucket).await,
        vec![app(), public()]
    );
    assert_eq!(moto.cors_writes(&bucket), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_rules_remove_an_existing_configuration() {
    let h = Harness::start().await;
    let moto = Moto::shared();
    let s3 = moto.client();
    let bucket = moto.new_bucket("e2e").await;
    put_behind_the_back(&s3, &bucket, "https://old.example.com").await;

    h.create("none", h.spec(&bucket, vec![])).await;
    let applied = h.wait_reason("none", "Applied").await;

    assert_eq!(bucket_cors(&s3, &bucket).await, vec![]);
    assert_eq!(applied.status.unwrap().rule_count, Some(0));
    h.wait_event("none", |(t, r, _)| t == "Normal" && r == "Deleted")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_bucket_is_reported_and_converges_once_created() {
    let h = Harness::start().await;
    let moto = Moto::shared();
    let bucket = unique_name("later");
    h.create("web", h.spec(&bucket, vec![app()])).await;

    let missing = h.wait_reason("web", "BucketNotFound").await;
    assert!(missing.ready_condition().unwrap().message.contains(&bucket));
    h.wait_event("web", |(t, r, _)| t == "Warning" && r == "BucketNotFound")
        .await;

    moto.client()
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    h.wait_reason("web", "Applied").await;
    assert_eq!(bucket_cors(&moto.client(), &bucket).await, vec![app()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_s3_server_is_unavailable_and_the_operator_recovers() {
    let moto = Moto::dedicated();
    let mut h = Harness::start_with(&moto.endpoint()).await;
    moto.stop();
    let bucket = unique_name("outage");
    h.create("web", h.spec(&bucket, vec![app()])).await;

    let down = h.wait_reason("web", "Unavailable").await;
    assert_eq!(down.ready_condition().unwrap().status, "False");

    moto.start();
    moto.client()
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    h.wait_reason("web", "Applied").await;
    assert_eq!(bucket_cors(&moto.client(), &bucket).await, vec![app()]);
    // Through all of it the controller kept running, and it still shuts down cleanly.
    h.stop_controller().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_come_from_a_secret_in_the_objects_namespace() {
    let h = Harness::start().await;
    let moto = Moto::shared();
    let bucket = moto.new_bucket("e2e").await;
    let spec = h.spec_with_secret(&bucket, vec![app()], "s3-creds");
    h.create("web", spec).await;

    let missing = h.wait_reason("web", "CredentialsNotFound").await;
    let message = &missing.ready_condition().unwrap().message;
    assert!(
        message.contains(&format!("{}/s3-creds", h.namespace)),
        "{message}"
    );
    assert_eq!(
        moto.cors_calls(&bucket).len(),
        0,
        "no S3 call without credentials"
    );

    h.create_credentials_secret("s3-creds", "AKIASECRETREF", "do-not-print-me\n")
        .await;

    let applied = h.wait_reason("web", "Applied").await;
    assert_eq!(bucket_cors(&moto.client(), &bucket).await, vec![app()]);
    // The server saw requests signed with the Secret's key, not the operator's own.
    let put = moto
        .cors_calls(&bucket)
        .into_iter()
        .find(|r| r.method == "PUT")
        .unwrap();
    let authorization = put.header("Authorization").unwrap();
    assert!(
        authorization.contains("Credential=AKIASECRETREF/"),
        "{authorization}"
    );
    assert!(!format!("{:?}", applied.status).contains("do-not-print-me"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_spec_is_reported_without_any_s3_call() {
    let h = Harness::start().await;
    let moto = Moto::shared();
    let bucket = moto.new_bucket("e2e").await;
    // Passes the API server (schema and CEL), breaks S3's limit on the whole configuration.
    h.create("web", h.spec(&bucket, over_64_kb())).await;

    let invalid = h.wait_reason("web", "InvalidSpec").await;
    let message = &invalid.ready_condition().unwrap().message;
    assert!(message.contains("spec.rules: serialize to"), "{message}");
    assert!(message.contains("S3 allows at most 65536"), "{message}");
    assert!(moto.cors_calls(&bucket).is_empty());
    h.wait_event("web", |(t, r, _)| t == "Warning" && r == "InvalidSpec")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_server_refuses_what_the_schema_forbids() {
    let h = Harness::start().await;
    let manifest = |name: &str, rules: &str| {
        format!(
            "apiVersion: bucketcors.dev/v1alpha1\nkind: BucketCors\nmetadata: {{name: {name}, namespace: {}}}\nspec:\n  bucket: web-assets\n  rules: {rules}\n",
            h.namespace
        )
    };
    let too_many = format!(
        "[{}]",
        vec![r#"{allowedOrigins: ["*"], allowedMethods: [GET]}"#; 101].join(", ")
    );
    let cases = [
        (
            "patch",
            r#"[{allowedOrigins: ["*"], allowedMethods: [PATCH]}]"#.to_owned(),
            "allowedMethods",
        ),
        ("too-many", too_many, "spec.rules"),
        (
            "negative",
            r#"[{allowedOrigins: ["*"], allowedMethods: [GET], maxAgeSeconds: -1}]"#.to_owned(),
            "maxAgeSeconds",
        ),
        (
            "no-origin",
            r#"[{allowedOrigins: [], allowedMethods: [GET]}]"#.to_owned(),
            "allowedOrigins",
        ),
    ];
    for (name, rules, field) in cases {
        let (ok, output) = h
            .cluster
            .kubectl_with_input(&["apply", "-f", "-"], &manifest(name, &rules));
        assert!(!ok, "{name} was accepted: {output}");
        assert!(output.contains(field), "{name}: {output}");
    }
    let (ok, output) = h.cluster.kubectl_with_input(
        &["apply", "-f", "-"],
        &manifest(
            "fine",
            r#"[{allowedOrigins: ["*"], allowedMethods: [GET]}]"#,
        ),
    );
    assert!(ok, "{output}");
}

//! Deletion always finishes, and undoes only what the object itself did to its bucket.

use bucketcors::api::DeletionPolicy;
use bucketcors::cors::CorsRule;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::json;

use crate::support::harness::{Harness, bucket_cors, over_64_kb, put_behind_the_back};
use crate::support::moto::Moto;

fn rules() -> Vec<CorsRule> {
    vec![CorsRule::new(["https://app.example.com"], ["GET"]).id("app")]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_object_whose_secret_is_already_gone_finishes_and_says_what_it_skipped() {
    let h = Harness::start().await;
    let moto = Moto::shared();
    let bucket = moto.new_bucket("del-secret").await;
    h.create_credentials_secret("creds", "team-key", "team-secret")
        .await;
    h.create("web", h.spec_with_secret(&bucket, rules(), "creds"))
        .await;
    h.wait_reason("web", "Applied").await;

    // `kubectl delete -f` of a file that lists the Secret first.
    let secrets: Api<Secret> = Api::namespaced(h.client.clone(), &h.namespace);
    secrets
        .delete("creds", &DeleteParams::default())
        .await
        .unwrap();
    let writes = moto.cors_writes(&bucket);
    h.delete("web").await;
    h.wait_gone("web").await;

    h.wait_event("web", |(type_, reason, note)| {
        type_ == "Warning"
            && reason == "CleanupSkipped"
            && note.contains("CredentialsNotFound")
            && note.contains("removing the bucket's CORS configuration")
    })
    .await;
    // Nothing could be sent without credentials: the bucket keeps the rules.
    assert_eq!(moto.cors_writes(&bucket), writes);
    assert_eq!(bucket_cors(&moto.client(), &bucket).await, rules());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_invalid_object_leaves_the_configuration_it_never_wrote() {
    let h = Harness::start().await;
    let moto = Moto::shared();
    let bucket = moto.new_bucket("del-invalid").await;
    put_behind_the_back(&moto.client(), &bucket, "https://someone-else.example.com").await;
    let theirs = bucket_cors(&moto.client(), &bucket).await;

    h.create("too-big", h.spec(&bucket, over_64_kb())).await;
    h.wait_reason("too-big", "InvalidSpec").await;
    h.delete("too-big").await;
    h.wait_gone("too-big").await;

    assert_eq!(
        moto.cors_writes(&bucket),
        1,
        "only the other client's write"
    );
    assert_eq!(bucket_cors(&moto.client(), &bucket).await, theirs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_object_deleted_after_the_holder_leaves_the_holders_rules() {
    let mut h = Harness::start().await;
    let moto = Moto::shared();
    let bucket = moto.new_bucket("del-waiting").await;
    let mut holder = h.spec(&bucket, rules());
    holder.deletion_policy = DeletionPolicy::Retain;
    h.create("holder", holder).await;
    h.wait_reason("holder", "Applied").await;
    let waiting = h.spec(
        &bucket,
        vec![CorsRule::new(["https://other.example.com"], ["PUT"])],
    );
    h.create("waiting", waiting).await;
    h.wait_reason("waiting", "Conflict").await;

    // The holder is gone and the waiting object is deleted before it ever took the bucket:
    // with the operator stopped, so that it cannot take over in between.
    h.stop_controller().await;
    let release = Patch::Merge(json!({"metadata": {"finalizers": null}}));
    h.api
        .patch("holder", &PatchParams::default(), &release)
        .await
        .unwrap();
    h.delete("holder").await;
    h.wait_gone("holder").await;
    h.delete("waiting").await;
    h.restart_controller().await;
    h.wait_gone("waiting").await;

    assert_eq!(moto.cors_writes(&bucket), 1, "only the holder's write");
    assert_eq!(bucket_cors(&moto.client(), &bucket).await, rules());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_with_nothing_recorded_finishes_and_says_so() {
    let h = Harness::start().await;
    // The bucket does not exist: every pass fails before it reads anything to record.
    let bucket = crate::support::unique_name("never");
    let mut spec = h.spec(&bucket, rules());
    spec.deletion_policy = DeletionPolicy::Restore;
    h.create("web", spec).await;
    let missing = h.wait_reason("web", "BucketNotFound").await;
    let status = missing.status.unwrap();
    assert!(
        status.holding.is_some(),
        "it holds the bucket it cannot read"
    );
    assert_eq!(status.previous_configuration, None);

    h.delete("web").await;
    h.wait_gone("web").await;
    h.wait_event("web", |(type_, reason, note)| {
        type_ == "Warning"
            && reason == "CleanupSkipped"
            && note.contains("no record of what it held")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_object_deleted_says_so_in_the_log_as_well_as_in_an_event() {
    let h = Harness::without_controller().await;
    let log = std::env::temp_dir().join(format!(
        "{}.log",
        crate::support::unique_name("denied-delete")
    ));
    let mut operator = crate::support::operator::OperatorProcess::start(
        &h.cluster.kubeconfig,
        &["--namespace", &h.namespace, "--resync-interval", "2s"],
        &[("BUCKETCORS_SINGLE_TENANT", "false")],
        log,
    );
    let moto = Moto::shared();
    let bucket = moto.new_bucket("denied").await;
    // No store and no Secret: denied, nothing sent, now or on delete.
    h.create("web", h.spec(&bucket, rules())).await;
    h.wait_reason("web", "NotPermitted").await;
    h.delete("web").await;
    h.wait_gone("web").await;
    h.wait_event("web", |(type_, reason, _)| {
        type_ == "Warning" && reason == "CleanupSkipped"
    })
    .await;
    // In a namespace being deleted the Event may be refused: the log says it too.
    crate::support::harness::eventually(
        "the skip in the log",
        crate::support::harness::PROMPTLY,
        || async {
            let logs = operator.logs();
            logs.contains("CleanupSkipped") && logs.contains("deleted without touching the bucket")
        },
    )
    .await;
    assert_eq!(moto.cors_writes(&bucket), 0);
    operator.terminate();
}

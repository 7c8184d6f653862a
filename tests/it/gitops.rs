//! What GitOps tools read off the objects: the Argo CD health checks' test data are the real
//! objects this operator and the API server produce, and kstatus's conditions (Stalled,
//! Reconciling) are on them as the status module's table says.
//!
//! The test data under `argocd/resource_customizations/` are compared with the objects made
//! here, after normalisation (names made in the test, times, uids and resource versions replaced
//! by fixed values; a rule list over S3's size limit cut to its first rule, since health reads
//! only metadata and status). `BUCKETCORS_WRITE_TESTDATA=1` writes them instead.

use std::path::{Path, PathBuf};

use bucketcors::api::{BucketCors, DeletionPolicy, Expectation, FINALIZER, ManagementPolicy};
use bucketcors::cors::CorsRule;
use bucketcors::tenancy::{ClusterBucketStore, ClusterBucketStoreSpec, StoreCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::support::fault_proxy::{Failure, Fault, FaultProxy};
use crate::support::harness::{Harness, PROMPTLY, eventually, over_64_kb, put_behind_the_back};
use crate::support::moto::Moto;
use crate::support::unique_name;

const TIME: &str = "2026-12-01T10:00:00Z";

fn testdata(kind: &str, name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("argocd/resource_customizations/bucketcors.dev")
        .join(kind)
        .join("testdata")
        .join(format!("{name}.yaml"))
}

/// `obj` with what changes from run to run made fixed: `names` (made by the test) replaced,
/// identities, versions and times dropped or set to [`TIME`].
fn normalised(obj: &impl serde::Serialize, names: &[(&str, &str)]) -> Value {
    let mut text = serde_json::to_string(obj).unwrap();
    for (from, to) in names {
        text = text.replace(from, to);
    }
    let mut v: Value = serde_json::from_str(&text).unwrap();
    let meta = v["metadata"].as_object_mut().unwrap();
    for field in ["uid", "resourceVersion", "managedFields", "selfLink"] {
        meta.remove(field);
    }
    for field in ["creationTimestamp", "deletionTimestamp"] {
        if meta.contains_key(field) {
            meta.insert(field.into(), TIME.into());
        }
    }
    if let Some(status) = v.get_mut("status").and_then(Value::as_object_mut) {
        for field in ["lastSyncTime"] {
            if status.contains_key(field) {
                status.insert(field.into(), TIME.into());
            }
        }
        if let Some(record) = status
            .get_mut("previousConfiguration")
            .and_then(Value::as_object_mut)
        {
            record.insert("recordedAt".into(), TIME.into());
        }
        if let Some(holding) = status.get_mut("holding").and_then(Value::as_object_mut) {
            holding.insert("since".into(), TIME.into());
        }
        for c in status
            .get_mut("conditions")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            c["lastTransitionTime"] = TIME.into();
        }
    }
    v
}

/// Compares `obj` with its test data file, or writes it when asked.
fn check_testdata(kind: &str, name: &str, obj: &Value) {
    let path = testdata(kind, name);
    if std::env::var_os("BUCKETCORS_WRITE_TESTDATA").is_some() {
        let yaml = serde_saphyr::to_string(obj).unwrap();
        let header = "# A real object, made by tests/it/gitops.rs against the API server and the \
                      operator, then normalised (see there).\n";
        std::fs::write(&path, format!("{header}{yaml}")).unwrap();
        return;
    }
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let committed: Value = serde_saphyr::from_str(&text).unwrap();
    assert_eq!(
        &committed,
        obj,
        "{} is not what the operator produces now; BUCKETCORS_WRITE_TESTDATA=1 rewrites it",
        path.display()
    );
}

fn types(obj: &BucketCors) -> Vec<(String, String)> {
    obj.status
        .iter()
        .flat_map(|s| &s.conditions)
        .map(|c| (c.type_.clone(), c.status.clone()))
        .collect()
}

fn pair(a: &str, b: &str) -> (String, String) {
    (a.to_owned(), b.to_owned())
}

/// `NotPersisted` → `not-persisted`.
fn kebab(reason: &str) -> String {
    let mut out = String::new();
    for (i, c) in reason.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push('-');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

fn rules() -> Vec<CorsRule> {
    vec![CorsRule::new(["https://app.example.com"], ["GET", "HEAD"])]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argocd_test_data_are_real_objects_and_carry_the_kstatus_conditions() {
    let h = Harness::start().await;
    let moto = Moto::shared();
    let s3 = moto.client();
    let bucket = moto.new_bucket("gitops").await;
    let observed = moto.new_bucket("gitops-observed").await;
    let missing = unique_name("gitops-missing");
    put_behind_the_back(&s3, &observed, "https://other.example.com").await;

    h.create("site", h.spec(&bucket, rules())).await;
    // Two objects made in the same second rank by name ("second-claim" first) until one holds
    // the bucket: "site" must hold it before the other claim exists.
    h.wait_for("site", "Ready", PROMPTLY, BucketCors::is_ready)
        .await;
    h.create("second-claim", h.spec(&bucket, rules())).await;
    let mut observe = h.spec(&observed, rules());
    observe.management_policy = ManagementPolicy::ObserveOnly;
    h.create("observe", observe).await;
    h.create("no-bucket", h.spec(&missing, rules())).await;
    let mut too_big = h.spec(&bucket, over_64_kb());
    too_big.deletion_policy = DeletionPolicy::Retain;
    h.create("too-big", too_big).await;
    // Rules that break their own expectations: the app may not PUT.
    let mut expecting = h.spec(&bucket, rules());
    expecting.expectations = vec![
        Expectation::new("https://app.example.com", "GET", true),
        Expectation::new("https://app.example.com", "PUT", true).name("uploads"),
    ];
    h.create("expecting", expecting).await;

    // A namespace without a single-tenant operator: no store grants it anything.
    let strict = Harness::start_configured(&moto.endpoint(), |s| {
        s.tenancy.single_tenant = false;
    })
    .await;
    strict
        .create("not-granted", strict.spec(&bucket, rules()))
        .await;

    // A Secret that is not there.
    let mut no_secret = h.spec_with_secret(&bucket, rules(), "not-made-yet");
    no_secret.bucket = observed.clone();
    no_secret.management_policy = ManagementPolicy::ObserveOnly;
    h.create("no-secret", no_secret).await;
    // An endpoint of its own that the operator's policy refuses (plain http).
    let mut own_endpoint = strict.spec_with_secret(&bucket, rules(), "keys");
    own_endpoint.endpoint = Some("http://s3.internal.example:9000".into());
    strict
        .create_credentials_secret("keys", "AKIAKEYS", "secret")
        .await;
    strict.create("own-endpoint", own_endpoint).await;
    // Stores that answer each failure, through a proxy in front of moto.
    let failing = [
        (Failure::InternalError, "Unavailable"),
        (Failure::AccessDenied, "AccessDenied"),
        (Failure::NotImplemented, "Unsupported"),
        (Failure::WrongRegion, "Rejected"),
        (Failure::DropIds, "NotPersisted"),
    ];
    let mut through = Vec::new();
    for (failure, reason) in failing {
        let proxy = FaultProxy::start(&moto.endpoint()).await;
        proxy.set(Fault::All(failure));
        let store = Harness::start_with(&proxy.endpoint()).await;
        let mut with_id = rules();
        with_id[0].id = Some("kept-by-id".into());
        let target = moto.new_bucket("gitops-failing").await;
        store.create("failing", store.spec(&target, with_id)).await;
        through.push((proxy, store, target, reason));
    }

    // The holder's second pass (a resync) finds it in sync.
    let site = h.wait_reason("site", "InSync").await;
    let conflict = h.wait_reason("second-claim", "Conflict").await;
    let drifted = h.wait_reason("observe", "Drifted").await;
    let no_bucket = h.wait_reason("no-bucket", "BucketNotFound").await;
    let mut invalid = h.wait_reason("too-big", "InvalidSpec").await;
    let expectation_failed = h.wait_reason("expecting", "ExpectationFailed").await;
    let not_granted = strict.wait_reason("not-granted", "NotPermitted").await;

    let no_secret = h.wait_reason("no-secret", "CredentialsNotFound").await;
    let own_endpoint = strict
        .wait_reason("own-endpoint", "EndpointNotAllowed")
        .await;
    let mut failed = Vec::new();
    for (_, store, _, reason) in &through {
        failed.push(store.wait_reason("failing", reason).await);
    }

    // kstatus: nothing more on what is done, Reconciling while retrying, Stalled while
    // waiting for someone's change.
    assert_eq!(types(&site), [pair("Ready", "True")]);
    assert_eq!(types(&drifted), [pair("Ready", "False")]);
    assert_eq!(
        types(&no_bucket),
        [pair("Ready", "False"), pair("Reconciling", "True")]
    );
    let retried = [&no_bucket, &no_secret, &failed[0], &failed[1]];
    for retrying in retried {
        assert_eq!(
            types(retrying),
            [pair("Ready", "False"), pair("Reconciling", "True")],
            "{:?}",
            retrying.status
        );
    }
    let waiting = [&failed[2], &failed[3], &failed[4], &own_endpoint];
    for stalled in [&conflict, &invalid, &not_granted, &expectation_failed]
        .into_iter()
        .chain(waiting)
    {
        assert_eq!(
            types(stalled),
            [pair("Ready", "False"), pair("Stalled", "True")],
            "{:?}",
            stalled.metadata.name
        );
    }

    // What the README shows for scripts.
    let ns = h.namespace.as_str();
    let waited = h.cluster.kubectl(&[
        "wait",
        "--for=condition=Ready",
        "bcors/site",
        "-n",
        ns,
        "--timeout=60s",
    ]);
    assert!(waited.contains("condition met"), "{waited}");
    let why = h.cluster.kubectl(&[
        "get",
        "bcors",
        "too-big",
        "-n",
        ns,
        "-o",
        r#"jsonpath={.status.conditions[?(@.type=="Stalled")].message}"#,
    ]);
    assert!(why.contains("S3 allows at most 65536"), "{why}");

    // Objects no operator has seen yet, in a namespace nobody watches: one just made, one
    // whose spec changed after a pass (its status copied from the object in sync, as the
    // operator wrote it), one being deleted.
    let idle = Harness::new_namespace("gitops-idle").await;
    let api: Api<BucketCors> = Api::namespaced(h.client.clone(), &idle);
    let make = |name: &str, finalizers: Option<Vec<String>>| {
        let mut obj = BucketCors::new(name, h.spec(&bucket, rules()));
        obj.metadata.finalizers = finalizers;
        obj
    };
    let pending = api
        .create(&PostParams::default(), &make("pending", None))
        .await
        .unwrap();
    api.create(&PostParams::default(), &make("edited", None))
        .await
        .unwrap();
    let status = json!({ "status": site.status });
    api.patch_status("edited", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    let edit =
        json!({ "spec": { "rules": [CorsRule::new(["https://new.example.com"], ["GET"])] } });
    let edited = api
        .patch("edited", &PatchParams::default(), &Patch::Merge(&edit))
        .await
        .unwrap();
    assert_eq!(edited.metadata.generation, Some(2));
    api.create(
        &PostParams::default(),
        &make("deleting", Some(vec![FINALIZER.to_owned()])),
    )
    .await
    .unwrap();
    api.delete("deleting", &DeleteParams::default())
        .await
        .unwrap();
    let deleting = api.get("deleting").await.unwrap();
    assert!(deleting.metadata.deletion_timestamp.is_some());

    // The stores: one an administrator can use, one whose spec cannot be.
    let stores: Api<ClusterBucketStore> = Api::all(h.client.clone());
    let store = |name: &str, conditions: Vec<StoreCondition>| ClusterBucketStore {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        spec: ClusterBucketStoreSpec {
            endpoint: Some("https://s3.eu-west-1.amazonaws.com".into()),
            region: Some("eu-west-1".into()),
            force_path_style: None,
            put_checksum: None,
            profile: None,
            request_budget: None,
            credentials: None,
            conditions,
            buckets: vec!["team-a-*".into()],
        },
        status: None,
    };
    let (usable, unusable) = (unique_name("store"), unique_name("store"));
    stores
        .create(&PostParams::default(), &store(&usable, vec![]))
        .await
        .unwrap();
    let broken = StoreCondition {
        namespaces: vec![],
        namespace_selector: Some(LabelSelector {
            match_labels: None,
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "team".into(),
                operator: "In".into(),
                values: None,
            }]),
        }),
    };
    stores
        .create(&PostParams::default(), &store(&unusable, vec![broken]))
        .await
        .unwrap();
    let checked = |name: String, status: &'static str| {
        let stores = stores.clone();
        async move {
            eventually("the store's status", PROMPTLY, || {
                let (stores, name) = (stores.clone(), name.clone());
                async move {
                    stores.get(&name).await.ok().is_some_and(|s| {
                        s.status
                            .as_ref()
                            .and_then(|s| s.conditions.first())
                            .is_some_and(|ready| ready.status == status)
                    })
                }
            })
            .await;
            stores.get(&name).await.unwrap()
        }
    };
    let usable_store = checked(usable.clone(), "True").await;
    let unusable_store = checked(unusable.clone(), "False").await;
    let store_types: Vec<_> = unusable_store
        .status
        .iter()
        .flat_map(|s| &s.conditions)
        .map(|c| (c.type_.as_str(), c.status.as_str()))
        .collect();
    assert_eq!(store_types, [("Ready", "False"), ("Stalled", "True")]);

    // The object over S3's limit: its rules cut to the first.
    if let Some(rules) = invalid.spec.rules.get(..1) {
        invalid.spec.rules = rules.to_vec();
    }
    let endpoint = moto.endpoint();
    let names = [
        (endpoint.as_str(), "http://127.0.0.1:9000"),
        (h.namespace.as_str(), "web"),
        (strict.namespace.as_str(), "team-b"),
        (idle.as_str(), "web"),
        (bucket.as_str(), "web-assets"),
        (observed.as_str(), "shared-assets"),
        (missing.as_str(), "not-made-yet"),
        (usable.as_str(), "team-store"),
        (unusable.as_str(), "broken-store"),
    ];
    let mut objects: Vec<(&str, String, Value)> = vec![
        (
            "BucketCors",
            "degraded-credentials-not-found".into(),
            normalised(&no_secret, &names),
        ),
        (
            "BucketCors",
            "degraded-endpoint-not-allowed".into(),
            normalised(&own_endpoint, &names),
        ),
    ];
    for ((proxy, store, target, reason), obj) in through.iter().zip(&failed) {
        let proxied = proxy.endpoint();
        let names = [
            (proxied.as_str(), "http://127.0.0.1:9001"),
            (store.namespace.as_str(), "web"),
            (target.as_str(), "web-assets"),
        ];
        let file = format!("degraded-{}", kebab(reason));
        objects.push(("BucketCors", file, normalised(obj, &names)));
    }
    let fixed: [(&str, &str, Value); 12] = [
        ("BucketCors", "healthy", normalised(&site, &names)),
        (
            "BucketCors",
            "degraded-conflict",
            normalised(&conflict, &names),
        ),
        (
            "BucketCors",
            "suspended-drifted",
            normalised(&drifted, &names),
        ),
        (
            "BucketCors",
            "degraded-bucket-not-found",
            normalised(&no_bucket, &names),
        ),
        (
            "BucketCors",
            "degraded-invalid-spec",
            normalised(&invalid, &names),
        ),
        (
            "BucketCors",
            "degraded-expectation-failed",
            normalised(&expectation_failed, &names),
        ),
        (
            "BucketCors",
            "degraded-not-permitted",
            normalised(&not_granted, &names),
        ),
        (
            "BucketCors",
            "progressing-no-status",
            normalised(&pending, &names),
        ),
        (
            "BucketCors",
            "progressing-generation",
            normalised(&edited, &names),
        ),
        (
            "BucketCors",
            "progressing-deleting",
            normalised(&deleting, &names),
        ),
        (
            "ClusterBucketStore",
            "healthy",
            normalised(&usable_store, &names),
        ),
        (
            "ClusterBucketStore",
            "degraded",
            normalised(&unusable_store, &names),
        ),
    ];
    objects.extend(fixed.into_iter().map(|(k, n, v)| (k, n.to_owned(), v)));
    for (kind, name, obj) in &objects {
        check_testdata(kind, name, obj);
    }

    // Clean up what no operator will: the finalizer on the object being deleted, the stores.
    let release = json!({ "metadata": { "finalizers": null } });
    api.patch("deleting", &PatchParams::default(), &Patch::Merge(&release))
        .await
        .unwrap();
    for name in [usable, unusable] {
        stores
            .delete(&name, &DeleteParams::default())
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_tells_an_objects_story_from_create_to_delete() {
    let h = Harness::start().await;
    let moto = Moto::shared();
    let s3 = moto.client();
    let bucket = moto.new_bucket("story").await;
    // The bucket has a configuration of its own before the object exists.
    put_behind_the_back(&s3, &bucket, "https://before.example.com").await;
    let before = crate::support::harness::bucket_cors(&s3, &bucket).await;
    let mut spec = h.spec(&bucket, rules());
    spec.deletion_policy = DeletionPolicy::Restore;
    h.create("story", spec.clone()).await;
    h.wait_event("story", |(_, r, _)| r == "Applied").await;

    // Someone changes the bucket by hand: put back.
    put_behind_the_back(&s3, &bucket, "https://by-hand.example.com").await;
    let applied = |events: &[(String, String, i32)]| {
        events
            .iter()
            .filter(|(_, r, _)| r == "Applied")
            .map(|(_, _, n)| n)
            .sum::<i32>()
    };
    let story = || async {
        let mut events = h.event_objects("story").await;
        events.sort_by_key(|e| e.event_time.clone().map(|t| t.0));
        events
            .into_iter()
            .map(|e| {
                (
                    e.type_.unwrap_or_default(),
                    e.reason.unwrap_or_default(),
                    e.series.map_or(1, |s| s.count),
                )
            })
            .collect::<Vec<_>>()
    };
    eventually("the change by hand put back", PROMPTLY, || async {
        applied(&story().await) == 2
    })
    .await;

    // An edit that cannot work, then the fix.
    let mut broken = spec.clone();
    broken.rules = over_64_kb();
    h.update("story", &broken).await;
    h.wait_event("story", |(t, r, _)| t == "Warning" && r == "InvalidSpec")
        .await;
    // The invalid spec made no S3 call, so the fixed one finds the bucket in sync.
    h.update("story", &spec).await;
    h.wait_reason("story", "InSync").await;

    // `kubectl describe` shows it all.
    let described = h
        .cluster
        .kubectl(&["describe", "bcors", "story", "-n", &h.namespace]);
    let events = described
        .split_once("Events:")
        .map(|(_, events)| events)
        .unwrap_or_else(|| panic!("no Events in:\n{described}"));
    for reason in ["Adopted", "Applied", "InvalidSpec"] {
        assert!(
            events.contains(reason),
            "{reason} missing from:\n{described}"
        );
    }

    // Deleted with Restore: what the bucket had before comes back, and the story ends there.
    h.delete("story").await;
    h.wait_gone("story").await;
    assert_eq!(
        crate::support::harness::bucket_cors(&s3, &bucket).await,
        before
    );
    let story = story().await;
    let kinds: Vec<(&str, &str)> =
        story
            .iter()
            .map(|(t, r, _)| (t.as_str(), r.as_str()))
            .fold(Vec::new(), |mut seen, e| {
                if seen.last() != Some(&e) && !seen.contains(&e) {
                    seen.push(e);
                }
                seen
            });
    assert_eq!(
        kinds,
        [
            ("Normal", "Adopted"),
            ("Normal", "Applied"),
            ("Warning", "InvalidSpec"),
            ("Normal", "Restored"),
        ],
        "{story:?}"
    );
    assert_eq!(applied(&story), 2, "{story:?}");
}

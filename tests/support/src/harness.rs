//! One end-to-end test's world: its own namespace on the shared control plane, the real
//! controller running against it (the code path of `bucketcors run`), and an S3 server.

use std::future::Future;
use std::time::{Duration, Instant};

use aws_config::BehaviorVersion;
use aws_sdk_s3::config::{Credentials, Region, SharedCredentialsProvider};
use bucketcors::api::{BucketCors, BucketCorsSpec, DeletionPolicy, ManagementPolicy, SecretRef};
use bucketcors::controller::{self, Context, Settings};
use bucketcors::cors::CorsRule;
use bucketcors::s3::SdkStore;
use bucketcors::tenancy::EndpointPolicy;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::cluster::Cluster;
use super::moto::Moto;
use super::unique_name;

/// How often the controller under test re-reads each bucket.
pub const RESYNC: Duration = Duration::from_secs(2);
/// Generous bound for anything the controller should do promptly on a shared 2-core machine.
pub const PROMPTLY: Duration = Duration::from_secs(30);

pub struct Harness {
    pub cluster: &'static Cluster,
    pub s3_endpoint: String,
    pub client: kube::Client,
    pub namespace: String,
    pub api: Api<BucketCors>,
    settings: Settings,
    shutdown: Option<oneshot::Sender<()>>,
    controller: Option<JoinHandle<()>>,
    context: Option<std::sync::Arc<Context<SdkStore>>>,
}

impl Harness {
    /// A namespace of its own and a running controller, against the shared moto server.
    pub async fn start() -> Harness {
        Harness::start_with(&Moto::shared().endpoint()).await
    }

    pub async fn start_with(s3_endpoint: &str) -> Harness {
        Harness::start_configured(s3_endpoint, |_| {}).await
    }

    /// A namespace of its own with no controller in this process: for tests that run the
    /// operator binary themselves.
    pub async fn without_controller() -> Harness {
        Harness::new(&Moto::shared().endpoint(), |_| {}, false).await
    }

    /// Like `start_with`, with the controller's settings adjusted by `configure`.
    pub async fn start_configured(
        s3_endpoint: &str,
        configure: impl FnOnce(&mut Settings),
    ) -> Harness {
        Harness::new(s3_endpoint, configure, true).await
    }

    /// A namespace of its own that no harness watches yet, on the shared control plane.
    pub async fn new_namespace(prefix: &str) -> String {
        let client = Cluster::shared().client().await;
        let name = unique_name(prefix);
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                ..Default::default()
            },
            ..Default::default()
        };
        Api::<Namespace>::all(client)
            .create(&PostParams::default(), &ns)
            .await
            .unwrap();
        name
    }

    async fn new(
        s3_endpoint: &str,
        configure: impl FnOnce(&mut Settings),
        run_controller: bool,
    ) -> Harness {
        let cluster = Cluster::shared();
        let client = cluster.client().await;
        let namespace = unique_name("t");
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(namespace.clone()),
                ..Default::default()
            },
            ..Default::default()
        };
        namespaces
            .create(&PostParams::default(), &ns)
            .await
            .unwrap();

        let mut settings = Settings {
            namespaces: vec![namespace.clone()],
            resync_interval: RESYNC,
            concurrency: 4,
            ..Settings::default()
        };
        // Tests of other behaviours lend the operator's identity as a single-tenant cluster
        // does; the tenancy tests turn it off.
        settings.tenancy.single_tenant = true;
        configure(&mut settings);
        let mut harness = Harness {
            cluster,
            s3_endpoint: s3_endpoint.to_owned(),
            api: Api::namespaced(client.clone(), &namespace),
            client,
            namespace,
            settings,
            shutdown: None,
            controller: None,
            context: None,
        };
        if run_controller {
            harness.start_controller();
        }
        harness
    }

    fn start_controller(&mut self) {
        let ctx = std::sync::Arc::new(Context::new(
            self.client.clone(),
            ambient_store_guarded(self.settings.tenancy.endpoint_policy.clone()),
            self.settings.clone(),
        ));
        self.context = Some(ctx.clone());
        let (tx, rx) = oneshot::channel();
        self.controller = Some(tokio::spawn(controller::run(ctx, async {
            let _ = rx.await;
        })));
        self.shutdown = Some(tx);
    }

    /// What the running controller keeps in memory about objects: failure counts, statuses
    /// written ahead of the cache, last writes.
    pub fn kept(&self) -> (usize, usize, usize) {
        self.context.as_ref().expect("a controller runs").kept()
    }

    /// The running controller's metrics, as Prometheus text.
    pub fn metrics(&self) -> String {
        self.context
            .as_ref()
            .expect("a controller runs")
            .metrics
            .encode()
    }

    /// Asks the controller to stop without waiting for it.
    pub fn stop_controller_quietly(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Stops the controller and starts a fresh one, as an operator restart would: nothing
    /// carries over but what is in the API server and the bucket.
    pub async fn restart_controller(&mut self) {
        self.stop_controller().await;
        self.start_controller();
    }

    /// Stops the controller and waits for it to finish.
    pub async fn stop_controller(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(handle) = self.controller.take() {
            tokio::time::timeout(PROMPTLY, handle)
                .await
                .expect("the controller stops in time")
                .expect("the controller did not panic");
        }
    }

    /// A spec for `bucket` on this test's S3 server, with the defaults of the CRD.
    pub fn spec(&self, bucket: &str, rules: Vec<CorsRule>) -> BucketCorsSpec {
        spec_on(&self.s3_endpoint, bucket, rules)
    }

    /// [`Harness::spec`] with credentials from Secret `secret` (see
    /// [`Harness::create_credentials_secret`]).
    pub fn spec_with_secret(
        &self,
        bucket: &str,
        rules: Vec<CorsRule>,
        secret: &str,
    ) -> BucketCorsSpec {
        BucketCorsSpec {
            credentials_secret_ref: Some(SecretRef {
                name: secret.to_owned(),
            }),
            ..self.spec(bucket, rules)
        }
    }

    pub async fn create(&self, name: &str, spec: BucketCorsSpec) -> BucketCors {
        self.api
            .create(&PostParams::default(), &BucketCors::new(name, spec))
            .await
            .unwrap()
    }

    /// Replaces the spec with a merge patch, as `kubectl apply` would.
    pub async fn update(&self, name: &str, spec: &BucketCorsSpec) -> BucketCors {
        let patch = serde_json::json!({ "spec": spec });
        self.api
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap()
    }

    pub async fn delete(&self, name: &str) {
        self.api
            .delete(name, &DeleteParams::default())
            .await
            .unwrap();
    }

    /// Creates a Secret in this test's namespace with the keys the operator reads.
    pub async fn create_credentials_secret(
        &self,
        name: &str,
        access_key_id: &str,
        secret_access_key: &str,
    ) {
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            string_data: Some(
                [
                    ("AWS_ACCESS_KEY_ID".to_owned(), access_key_id.to_owned()),
                    (
                        "AWS_SECRET_ACCESS_KEY".to_owned(),
                        secret_access_key.to_owned(),
                    ),
                ]
                .into(),
            ),
            ..Default::default()
        };
        secrets
            .create(&PostParams::default(), &secret)
            .await
            .unwrap();
    }

    /// Waits until the status describes `generation` (the controller has seen that spec).
    pub async fn wait_observed(&self, name: &str, generation: Option<i64>) -> BucketCors {
        self.wait_for(name, "observed", PROMPTLY, |o| {
            o.status.as_ref().and_then(|s| s.observed_generation) == generation
        })
        .await
    }

    /// Waits until the object satisfies `check`, polling; panics after `deadline` with the last
    /// state seen.
    pub async fn wait_for(
        &self,
        name: &str,
        what: &str,
        deadline: Duration,
        check: impl Fn(&BucketCors) -> bool,
    ) -> BucketCors {
        let start = Instant::now();
        loop {
            let obj = self.api.get(name).await.unwrap();
            if check(&obj) {
                return obj;
            }
            assert!(
                start.elapsed() < deadline,
                "timed out after {deadline:?} waiting for {name} to be {what}; last status: {:?}",
                obj.status
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the Ready condition has `reason` for the object's current generation.
    pub async fn wait_reason(&self, name: &str, reason: &str) -> BucketCors {
        self.wait_reason_within(name, reason, PROMPTLY).await
    }

    pub async fn wait_reason_within(
        &self,
        name: &str,
        reason: &str,
        deadline: Duration,
    ) -> BucketCors {
        self.wait_for(name, reason, deadline, |obj| {
            let current =
                obj.status.as_ref().and_then(|s| s.observed_generation) == obj.metadata.generation;
            current && obj.ready_condition().is_some_and(|c| c.reason == reason)
        })
        .await
    }

    /// Waits until the object is gone from the API server.
    pub async fn wait_gone(&self, name: &str) {
        eventually(&format!("{name} to be deleted"), PROMPTLY, || async {
            self.api.get_opt(name).await.unwrap().is_none()
        })
        .await;
    }

    /// The Events about object `name`, as (type, reason, note).
    pub async fn events(&self, name: &str) -> Vec<(String, String, String)> {
        self.event_objects(name)
            .await
            .into_iter()
            .map(|e| {
                (
                    e.type_.unwrap_or_default(),
                    e.reason.unwrap_or_default(),
                    e.note.unwrap_or_default(),
                )
            })
            .collect()
    }

    /// Waits until an Event about object `name` matches `wanted`, then returns them all. An
    /// Event is published after the status write of its pass, so a test that has just seen the
    /// status must wait for it.
    pub async fn wait_event<F>(&self, name: &str, wanted: F) -> Vec<(String, String, String)>
    where
        F: Fn(&(String, String, String)) -> bool,
    {
        let start = Instant::now();
        loop {
            let events = self.events(name).await;
            if events.iter().any(&wanted) {
                return events;
            }
            assert!(
                start.elapsed() < PROMPTLY,
                "timed out after {PROMPTLY:?} waiting for an Event about {name}; have {events:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The Event objects about object `name`, as the API server holds them.
    pub async fn event_objects(&self, name: &str) -> Vec<Event> {
        let events: Api<Event> = Api::namespaced(self.client.clone(), &self.namespace);
        events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
            .collect()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Rules that each pass the CRD (its schema and CEL rules) but together break S3's 64 KB limit
/// on a configuration: the one kind of invalid spec a current API server lets through, and so
/// the way to reach the operator's own check.
pub fn over_64_kb() -> Vec<CorsRule> {
    let big = CorsRule::new(["https://app.example.com"], ["GET"])
        .allowed_headers((0..200).map(|i| format!("x-{}-{i:05}", "h".repeat(110))));
    vec![big; 3]
}

/// Polls `check` until it holds or panics after `deadline`.
pub async fn eventually<F, Fut>(what: &str, deadline: Duration, check: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The operator's store with test credentials as its ambient ones (no Secret referenced).
pub fn ambient_store() -> SdkStore {
    ambient_store_guarded(EndpointPolicy::default())
}

/// Like `ambient_store`, its guarded targets connecting only where `policy` allows.
pub fn ambient_store_guarded(policy: EndpointPolicy) -> SdkStore {
    let shared = aws_config::SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "ambient", "ambient", None, None, "tests",
        )))
        .build();
    SdkStore::with_policy(shared, None, policy)
}

/// What `bucket` holds, read by the tests' own client (not the operator's code).
pub async fn bucket_cors(s3: &aws_sdk_s3::Client, bucket: &str) -> Vec<CorsRule> {
    match s3.get_bucket_cors().bucket(bucket).send().await {
        Ok(out) => out
            .cors_rules()
            .iter()
            .map(|r| CorsRule {
                id: r.id().map(str::to_owned),
                allowed_origins: r.allowed_origins().to_vec(),
                allowed_methods: r.allowed_methods().to_vec(),
                allowed_headers: r.allowed_headers().to_vec(),
                expose_headers: r.expose_headers().to_vec(),
                max_age_seconds: r.max_age_seconds(),
            })
            .collect(),
        Err(err) => {
            use aws_sdk_s3::error::ProvideErrorMetadata;
            assert_eq!(err.code(), Some("NoSuchCORSConfiguration"), "{err:?}");
            Vec::new()
        }
    }
}

/// Sets `bucket`'s CORS as another client would, behind the operator's back.
pub async fn put_behind_the_back(s3: &aws_sdk_s3::Client, bucket: &str, origin: &str) {
    use aws_sdk_s3::types::{CorsConfiguration, CorsRule as SdkRule};
    let rule = SdkRule::builder()
        .allowed_origins(origin)
        .allowed_methods("DELETE")
        .build()
        .unwrap();
    s3.put_bucket_cors()
        .bucket(bucket)
        .cors_configuration(
            CorsConfiguration::builder()
                .cors_rules(rule)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
}

/// Deletes `bucket`'s CORS configuration as another client would, behind the operator's back.
pub async fn delete_behind_the_back(s3: &aws_sdk_s3::Client, bucket: &str) {
    s3.delete_bucket_cors().bucket(bucket).send().await.unwrap();
}

/// The spec every test and the benchmark start from: `rules` for `bucket`
/// at `endpoint`, credentials from the operator's environment, deletion
/// policy Delete, everything else defaulted.
pub fn spec_on(endpoint: &str, bucket: &str, rules: Vec<CorsRule>) -> BucketCorsSpec {
    BucketCorsSpec {
        bucket: bucket.to_owned(),
        region: None,
        endpoint: Some(endpoint.to_owned()),
        force_path_style: None,
        store_ref: None,
        credentials_secret_ref: None,
        expected_bucket_owner: None,
        deletion_policy: DeletionPolicy::Delete,
        management_policy: ManagementPolicy::Full,
        put_checksum: None,
        store_profile: None,
        rules,
        expectations: Vec::new(),
        verify: None,
    }
}

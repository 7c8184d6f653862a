//! The kube-runtime controller: watches BucketCors objects and drives each through
//! validate → read the bucket → plan → write → status.

mod events;
mod reconcile;
mod target;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::predicates;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Predicate, WatchStreamExt, watcher};
use kube::{Api, Client};
use rand::Rng;

pub use reconcile::Error;

use crate::admission;
use crate::api::{BucketCors, ManagementPolicy, PreviousConfiguration};
use crate::cors::CorsRule;
use crate::http::{Gauges, Readiness};
use crate::metrics::Metrics;
use crate::s3::{BucketTarget, Checksum, CorsStore, Operation, S3Error};

/// Name under which the operator writes status and Events.
pub const MANAGER: &str = "bucketcors";
// Backoff for failures that may clear by themselves.
const BACKOFF_BASE: Duration = Duration::from_secs(1);
const BACKOFF_CAP: Duration = Duration::from_secs(300);
// How long in-flight passes may run on after a shutdown request (Kubernetes' default
// termination grace period is 30 s).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// How the controller behaves; filled from the command line.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Namespaces to watch; all when empty.
    pub namespaces: Vec<String>,
    /// How often a bucket is checked when nothing happens to its object.
    pub resync_interval: Duration,
    /// Objects reconciled at the same time.
    pub concurrency: u16,
    /// Endpoint for objects that name none; AWS S3 when absent.
    pub default_endpoint: Option<String>,
    /// Integrity check for PutBucketCors when an object does not choose one.
    pub put_checksum: Checksum,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            namespaces: Vec::new(),
            resync_interval: Duration::from_secs(300),
            concurrency: 16,
            default_endpoint: None,
            put_checksum: Checksum::Crc32,
        }
    }
}

/// Everything a reconcile needs, built once.
pub struct Context<S> {
    pub client: Client,
    store: S,
    events: events::Events,
    pub settings: Settings,
    pub metrics: Arc<Metrics>,
    /// What /readyz reports: caches synced, or standing by for the Lease.
    pub readiness: Arc<Readiness>,
    /// Every watched namespace's cache holds its initial list.
    synced: Arc<Readiness>,
    failures: Mutex<HashMap<ObjectRef<BucketCors>, u32>>,
    // Adoption records this operator wrote that the cache does not show yet, by object uid:
    // a pass on a stale cached object must still carry them (server-side apply would drop
    // them) and must not record the bucket a second time.
    records: Mutex<HashMap<String, PreviousConfiguration>>,
    // False once this replica may no longer write (it lost the leader-election Lease): checked
    // right before every write to a bucket.
    may_write: AtomicBool,
    // The caches of every watched namespace, for telling who owns a bucket.
    stores: RwLock<Vec<Store<BucketCors>>>,
}

impl<S: CorsStore> Context<S> {
    pub fn new(client: Client, store: S, settings: Settings) -> Self {
        Context {
            events: events::Events::new(client.clone(), MANAGER, std::env::var("POD_NAME").ok()),
            client,
            store,
            settings,
            metrics: Arc::default(),
            readiness: Arc::default(),
            synced: Arc::default(),
            failures: Mutex::new(HashMap::new()),
            records: Mutex::new(HashMap::new()),
            may_write: AtomicBool::new(true),
            stores: RwLock::new(Vec::new()),
        }
    }

    /// The object that owns the bucket `obj` names, when it is another one. Among the
    /// objects that would write to the same endpoint and bucket (valid, `Full`), the one
    /// created first owns it. Creation times have one-second resolution, so on a tie the one
    /// that already holds the bucket (its status says it wrote or was Ready) keeps it, and
    /// then the lesser namespace/name wins: the answer is the same after a restart.
    pub async fn owner_other_than(&self, obj: &BucketCors) -> Option<ObjectRef<BucketCors>> {
        // Until every cache holds its initial list, an older object may not be in it yet.
        self.synced.wait().await;
        let stores: Vec<Store<BucketCors>> = self.stores.read().expect("poisoned").clone();
        let key = target::bucket_of(obj, self).key();
        // Only the objects naming the same bucket are copied out of the caches: a pass costs
        // one comparison per watched object, not a copy of every cache.
        let owner = stores
            .iter()
            .flat_map(|store| store.state_filter(|o| o.spec.bucket == obj.spec.bucket))
            .filter(|o| writes(o) && target::bucket_of(o, self).key() == key)
            .min_by(|a, b| {
                let rank = |o: &BucketCors| {
                    (
                        o.metadata.creation_timestamp.clone(),
                        !holds_bucket(o),
                        o.metadata.namespace.clone(),
                        o.metadata.name.clone(),
                    )
                };
                rank(a).cmp(&rank(b))
            })?;
        let owner = ObjectRef::from(owner.as_ref());
        (owner != ObjectRef::from(obj)).then_some(owner)
    }

    /// The adoption record of `obj`: from its status, or the one this operator wrote that the
    /// cache does not show yet.
    fn known_record(&self, obj: &BucketCors) -> Option<PreviousConfiguration> {
        obj.status
            .as_ref()
            .and_then(|s| s.previous_configuration.clone())
            .or_else(|| {
                let uid = obj.metadata.uid.as_deref()?;
                self.records.lock().expect("poisoned").get(uid).cloned()
            })
    }

    fn cache_shows_record(&self, obj: &BucketCors) -> bool {
        obj.status
            .as_ref()
            .is_some_and(|s| s.previous_configuration.is_some())
    }

    fn remember_record(&self, obj: &BucketCors, record: &PreviousConfiguration) {
        if let Some(uid) = obj.metadata.uid.clone() {
            self.records
                .lock()
                .expect("poisoned")
                .insert(uid, record.clone());
        }
    }

    fn forget_record(&self, obj: &BucketCors) {
        if let Some(uid) = obj.metadata.uid.as_deref() {
            self.records.lock().expect("poisoned").remove(uid);
        }
    }

    // Every S3 call goes through these three, so that each is counted once, by operation and
    // outcome.
    async fn get_cors(&self, target: &BucketTarget) -> Result<Vec<CorsRule>, S3Error> {
        let result = self.store.get_cors(target).await;
        self.metrics.s3(Operation::GetBucketCors, &result);
        result
    }

    /// From now on no pass writes to a bucket (the Lease was lost: another replica may be
    /// writing already).
    pub fn stop_writes(&self) {
        self.may_write.store(false, Ordering::SeqCst);
    }

    fn write_allowed(&self, operation: Operation, target: &BucketTarget) -> Result<(), S3Error> {
        if self.may_write.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(S3Error::Unavailable {
                operation,
                bucket: target.bucket.clone(),
                message: "this replica no longer holds the leader-election Lease".into(),
            })
        }
    }

    async fn put_cors(&self, target: &BucketTarget, rules: &[CorsRule]) -> Result<(), S3Error> {
        self.write_allowed(Operation::PutBucketCors, target)?;
        let result = self.store.put_cors(target, rules).await;
        self.metrics.s3(Operation::PutBucketCors, &result);
        result
    }

    async fn delete_cors(&self, target: &BucketTarget) -> Result<(), S3Error> {
        self.write_allowed(Operation::DeleteBucketCors, target)?;
        let result = self.store.delete_cors(target).await;
        self.metrics.s3(Operation::DeleteBucketCors, &result);
        result
    }

    /// When to look at the object again after a pass that ended well (or failed for good).
    fn resync(&self, object: &ObjectRef<BucketCors>) -> Action {
        self.failures.lock().expect("poisoned").remove(object);
        let interval = self.settings.resync_interval.as_secs_f64();
        // ±10% so that objects created together do not stay in lockstep.
        let jittered = interval * rand::rng().random_range(0.9..=1.1);
        Action::requeue(Duration::from_secs_f64(jittered))
    }

    /// When to retry after a failure that may clear by itself: exponential, with jitter,
    /// never later than the resync interval.
    fn backoff(&self, object: &ObjectRef<BucketCors>) -> Action {
        let attempt = {
            let mut failures = self.failures.lock().expect("poisoned");
            let n = failures.entry(object.clone()).or_insert(0);
            *n = n.saturating_add(1);
            *n
        };
        let cap = BACKOFF_CAP.min(self.settings.resync_interval);
        let exp = BACKOFF_BASE.saturating_mul(1u32 << attempt.min(16).saturating_sub(1));
        let delay = exp.min(cap).as_secs_f64() * rand::rng().random_range(0.5..=1.0);
        Action::requeue(Duration::from_secs_f64(delay))
    }
}

impl<S: CorsStore> Gauges for Context<S> {
    fn refresh(&self, metrics: &Metrics) {
        let stores = self.stores.read().expect("poisoned").clone();
        let objects: Vec<_> = stores.iter().flat_map(|s| s.state()).collect();
        let ready = objects.iter().filter(|o| o.is_ready()).count();
        metrics
            .managed_objects
            .set(i64::try_from(objects.len()).unwrap_or(i64::MAX));
        metrics
            .ready_objects
            .set(i64::try_from(ready).unwrap_or(i64::MAX));
    }
}

/// Whether `obj` has already taken its bucket: it recorded what was there before writing, or
/// it was Ready (a loser never is).
fn holds_bucket(obj: &BucketCors) -> bool {
    obj.status
        .as_ref()
        .is_some_and(|s| s.previous_configuration.is_some())
        || obj.is_ready()
}

/// Whether `obj` would write to its bucket (so that it competes for ownership).
fn writes(obj: &BucketCors) -> bool {
    obj.spec.management_policy == ManagementPolicy::Full && admission::validate(&obj.spec).is_ok()
}

/// Runs the controller until `shutdown` completes, then lets in-flight reconciles finish.
pub async fn run<S: CorsStore>(
    ctx: Arc<Context<S>>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let shutdown = shutdown.shared();
    let apis: Vec<Api<BucketCors>> = if ctx.settings.namespaces.is_empty() {
        vec![Api::all(ctx.client.clone())]
    } else {
        ctx.settings
            .namespaces
            .iter()
            .map(|ns| Api::namespaced(ctx.client.clone(), ns))
            .collect()
    };
    // Counted down as each namespace's initial list lands in its cache.
    let unsynced = Arc::new(AtomicUsize::new(apis.len()));
    let controllers: Vec<_> = apis
        .into_iter()
        .map(|api| {
            let (reader, writer) = reflector::store();
            ctx.stores.write().expect("poisoned").push(reader.clone());
            let mut listed = false;
            let (unsynced, synced, readiness) =
                (unsynced.clone(), ctx.synced.clone(), ctx.readiness.clone());
            // Status writes do not change the generation, so they do not wake the controller;
            // the finalizer is watched too because the helper waits for its own patch to land.
            let changes = watcher(api.clone(), watcher::Config::default().any_semantic())
                .default_backoff()
                // Server-side apply bookkeeping is most of an object's size and never read here.
                .modify(|obj: &mut BucketCors| {
                    obj.metadata.managed_fields = None;
                    // kubectl's last-applied-configuration copies the whole spec again.
                    obj.metadata.annotations = None;
                })
                .reflect(writer)
                .inspect(move |event| {
                    if !listed && matches!(event, Ok(watcher::Event::InitDone)) {
                        listed = true;
                        if unsynced.fetch_sub(1, Ordering::AcqRel) == 1 {
                            synced.set(true);
                            readiness.set(true);
                            tracing::info!("caches synced");
                        }
                    }
                })
                .applied_objects()
                .predicate_filter(
                    predicates::generation.combine(predicates::finalizers),
                    Default::default(),
                );
            Controller::for_stream(changes, reader)
                .with_config(ControllerConfig::default().concurrency(ctx.settings.concurrency))
                .graceful_shutdown_on(shutdown.clone())
                .run(reconcile::reconcile, reconcile::error_policy, ctx.clone())
                .for_each(|result| async move {
                    if let Err(err) = result {
                        tracing::debug!(error = %err, "reconcile request not completed");
                    }
                })
        })
        .collect();
    let synced = ctx.synced.clone();
    let overdue = async move {
        shutdown.await;
        // Before the first list lands nothing is in flight, and kube's controller would wait
        // for that list forever; after it, in-flight passes get a bounded time to finish.
        if synced.get() {
            tokio::time::sleep(SHUTDOWN_GRACE).await;
            tracing::warn!("in-flight passes did not finish in time; stopping anyway");
        }
    };
    tokio::select! {
        _ = futures::future::join_all(controllers) => {}
        () = overdue => {}
    }
    ctx.readiness.set(false);
}

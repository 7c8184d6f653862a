//! The kube-runtime controller: watches BucketCors objects and drives each through
//! validate → read the bucket → plan → write → status.

mod events;
#[cfg(test)]
mod fuzz;
mod grants;
mod index;
mod news;
mod reconcile;
mod repairs;
mod store;
mod target;
mod turns;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures::channel::mpsc;
use futures::{FutureExt, StreamExt, TryStreamExt};
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use rand::Rng;

pub use reconcile::Error;

use crate::api::{BucketCors, BucketCorsStatus, ManagementPolicy};
use crate::decide::{LastWrite, Ownership};
use crate::http::{Gauges, Readiness};
use crate::metrics::Metrics;
use crate::reason::Reason;
use crate::s3::{Budget, Checksum, CorsStore};
use crate::tenancy::{Denial, EndpointPolicy};

/// Name under which the operator writes status and Events.
pub const MANAGER: &str = "bucketcors";
// Backoff for failures that may clear by themselves.
const BACKOFF_BASE: Duration = Duration::from_secs(1);
const BACKOFF_CAP: Duration = Duration::from_secs(300);
// How long in-flight passes may run on after a shutdown request (Kubernetes' default
// termination grace period is 30 s).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// Objects in one page of a (re)list. A page is read whole, then parsed, before any object in
/// it is lightened: an object may be as large as the API server takes (well over a megabyte of
/// refused rules), and a page costs about four times its size while it is parsed, so a page
/// of kube's default 500 such objects would take gigabytes (25 took 185 MiB at the peak). Ten
/// stay within tens of MiB; 1,000 ordinary objects take 100 pages.
const LIST_PAGE: u32 = 10;

/// The request budget of a store that names none: well above what a resync of 10,000 objects
/// every 5 minutes asks (about 35 reads a second).
pub const DEFAULT_STORE_BUDGET: Budget = Budget {
    per_second: 200,
    burst: 200,
};

/// How the controller behaves; filled from the command line.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Namespaces to watch; all when empty.
    pub namespaces: Vec<String>,
    /// How often a bucket is checked when nothing happens to its object.
    pub resync_interval: Duration,
    /// Objects reconciled at the same time.
    pub concurrency: u16,
    /// Of the `concurrency` slots, how many namespaces that already run a pass may fill; the
    /// rest stay free for namespaces that run none, so that namespaces whose stores hang
    /// cannot take every slot. 0: three quarters of `concurrency` (at least one).
    pub namespace_concurrency: u16,
    /// Endpoint for objects that name none; AWS S3 when absent.
    pub default_endpoint: Option<String>,
    /// Integrity check for PutBucketCors when an object does not choose one.
    pub put_checksum: Checksum,
    /// The request budget of a store whose ClusterBucketStore sets none (and of the stores
    /// objects reach with their own credentials); none: no limit.
    pub store_budget: Option<Budget>,
    /// Who may act with which identity.
    pub tenancy: Tenancy,
}

/// Who may act with which identity, and where objects that bring their own may send requests.
#[derive(Clone, Debug, Default)]
pub struct Tenancy {
    /// Objects without a store act with the operator's own identity, and their endpoints are
    /// not checked: today's behaviour for a cluster of one team.
    pub single_tenant: bool,
    /// Where objects with their own credentials may send requests.
    pub endpoint_policy: EndpointPolicy,
    /// The namespace of the Secrets that stores name (the operator's own).
    pub secrets_namespace: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            namespaces: Vec::new(),
            resync_interval: Duration::from_secs(300),
            concurrency: 16,
            namespace_concurrency: 0,
            default_endpoint: None,
            put_checksum: Checksum::Crc32,
            store_budget: Some(DEFAULT_STORE_BUDGET),
            tenancy: Tenancy {
                secrets_namespace: "default".to_owned(),
                ..Tenancy::default()
            },
        }
    }
}

/// Everything a reconcile needs, built once.
pub struct Context<S> {
    pub client: Client,
    store: store::Gated<S>,
    events: events::Events,
    pub settings: Settings,
    pub metrics: Arc<Metrics>,
    /// What /readyz reports: caches synced, or standing by for the Lease.
    pub readiness: Arc<Readiness>,
    /// Every watched namespace's cache holds its initial list (or its list was refused).
    synced: Arc<Readiness>,
    /// The slots passes run in, shared fairly between namespaces.
    turns: Arc<turns::Scheduler>,
    failures: Mutex<HashMap<ObjectRef<BucketCors>, u32>>,
    // The last status this operator wrote for each object whose cached copy does not show it
    // yet, by uid: every pass starts from it, so that nothing it wrote (the adoption record
    // above all) is lost to a stale cache. Dropped once the cache catches up. Keyed by object,
    // with its uid: an object made again under the same name starts afresh.
    written: Mutex<HashMap<ObjectRef<BucketCors>, (String, BucketCorsStatus)>>,
    // Each object's last write while the bucket does not show its spec yet, by a hash of its
    // uid (an object made again under the same name starts afresh): 32 bytes per object
    // written, where a reference and a uid take ten times that.
    last_writes: Mutex<HashMap<u64, LastWrite>>,
    // Recent repairs of each object's bucket, by the same hash.
    repairs: Mutex<repairs::Repairs>,
    // Who holds each bucket, fed by the watches.
    buckets: Mutex<index::Buckets>,
    // The caches of every watched namespace, for the gauges and the re-grants.
    caches: RwLock<Vec<Store<BucketCors>>>,
    // The stores and the namespaces' labels.
    grants: grants::Grants,
    // Whether a pass could read the Secret each object with its own identity names, and its
    // name (by the same hash as `last_writes`): it competes for its bucket only while it could.
    proven: Mutex<HashMap<u64, (String, bool)>>,
    // The controllers' wake-up queues, one per watch.
    wakers: RwLock<Vec<mpsc::UnboundedSender<ObjectRef<BucketCors>>>>,
}

impl<S: CorsStore> Context<S> {
    pub fn new(client: Client, store: S, settings: Settings) -> Self {
        let metrics = Arc::new(Metrics::default());
        Context {
            events: events::Events::new(client.clone(), MANAGER, std::env::var("POD_NAME").ok()),
            client,
            store: store::Gated::new(store, metrics.clone()),
            turns: Arc::new(turns::Scheduler::new(
                settings.concurrency,
                settings.namespace_concurrency,
            )),
            settings,
            metrics,
            readiness: Arc::default(),
            synced: Arc::default(),
            failures: Mutex::new(HashMap::new()),
            written: Mutex::new(HashMap::new()),
            last_writes: Mutex::new(HashMap::new()),
            repairs: Mutex::default(),
            buckets: Mutex::new(index::Buckets::default()),
            caches: RwLock::new(Vec::new()),
            grants: grants::Grants::default(),
            proven: Mutex::default(),
            wakers: RwLock::default(),
        }
    }

    /// Waits for a slot for a pass of `namespace` (see `turns`). None once the operator is
    /// stopping.
    pub(crate) async fn turn(&self, namespace: &str) -> Option<turns::Turn> {
        self.turns.turn(namespace).await
    }

    /// Ends every wait for a turn: the operator is stopping, and passes that have not started
    /// end at once instead of holding up the shutdown.
    fn close_turns(&self) {
        self.turns.close();
    }

    /// The identity `obj` may act with, or why it may act with none: a store that grants its
    /// namespace the bucket; its own Secret toward an allowed endpoint; the operator's own
    /// identity only when single-tenant.
    pub(crate) fn access(&self, obj: &BucketCors) -> Result<target::Access, Denial> {
        let spec = &obj.spec;
        let namespace = obj.metadata.namespace.as_deref().unwrap_or("default");
        if let Some(store_ref) = &spec.store_ref {
            let labels = self.grants.labels(namespace);
            let store = self.grants.store(&store_ref.name);
            let Some(store) = store.filter(|s| s.serves(namespace, labels.as_ref())) else {
                // The same words whether the store exists or not: a namespace it does not
                // serve learns nothing of it.
                return Err(Denial::not_served(
                    &store_ref.name,
                    namespace,
                    labels.is_none(),
                ));
            };
            store.grants(namespace, labels.as_ref(), &spec.bucket)?;
            return Ok(target::Access::Store(store));
        }
        let tenancy = &self.settings.tenancy;
        if tenancy.single_tenant {
            return Ok(target::Access::Ambient);
        }
        if spec.credentials_secret_ref.is_none() {
            return Err(Denial::NotPermitted(format!(
                "no ClusterBucketStore grants namespace {namespace:?} bucket {:?}: name one in spec.storeRef, or name a Secret with this object's own credentials in spec.credentialsSecretRef (the operator lends its own identity only through stores)",
                spec.bucket
            )));
        }
        match &spec.endpoint {
            Some(endpoint) => {
                tenancy.endpoint_policy.check_url(endpoint)?;
                Ok(target::Access::Own { guarded: true })
            }
            // AWS, or the administrator's default endpoint.
            None => Ok(target::Access::Own { guarded: false }),
        }
    }

    /// Whether `obj` may write its bucket, or which object holds it. The index is told
    /// first what the pass found out about `obj` (its own Secret read, or not), so that it
    /// ranks the object as it is now.
    pub(crate) fn ownership(&self, obj: &BucketCors, access: &target::Access) -> Ownership {
        let key = target::bucket_of(obj, self, access).key();
        let object = lean(obj);
        let mut buckets = self.buckets.lock().expect("poisoned");
        let woken = buckets.apply(self.watch_of(&object), obj, self.entry(obj));
        self.wake_all(woken);
        match buckets.holder(&key) {
            Some(holder) if holder == object => Ownership::Holds,
            Some(holder) => Ownership::Waits {
                holder: (holder.namespace == object.namespace).then(|| holder.name.clone()),
            },
            // The index does not count it among the objects that could write the bucket.
            None => Ownership::Unknown,
        }
    }

    /// Whether `obj` is the first ranked for bucket `key` (see `index::Buckets::leads`).
    fn leads(&self, obj: &BucketCors, key: &str) -> bool {
        self.buckets
            .lock()
            .expect("poisoned")
            .leads(key, &lean(obj))
    }

    /// What the index should know of `obj`.
    fn entry(&self, obj: &BucketCors) -> index::Entry {
        let key = self
            .competes(obj)
            .map(|access| target::bucket_of(obj, self, &access).key());
        let status = obj.status.as_ref();
        index::Entry {
            mark: status
                .and_then(|s| s.holding.as_ref())
                .filter(|h| Some(&h.bucket) == key.as_ref())
                .map(|h| h.since.clone()),
            took: status.is_some_and(|s| s.previous_configuration.is_some()),
            key,
        }
    }

    /// The access `obj` would write its bucket with, when it competes for the bucket: only
    /// an object that could write does. Its spec is valid (its store's documented limits
    /// included) and meets its expectations, it is `Full`, and its access is proven: a store
    /// grants its namespace the bucket (the namespace's labels known), or the operator read
    /// its own Secret with both keys, toward an endpoint the policy allows.
    fn competes(&self, obj: &BucketCors) -> Option<target::Access> {
        let spec = &obj.spec;
        if spec.management_policy != ManagementPolicy::Full
            || crate::decide::admitted(obj).is_err()
            || crate::decide::expected(spec).is_err()
        {
            return None;
        }
        let access = self.access(obj).ok()?;
        if !target::within_profile(obj, self, &access) {
            return None;
        }
        if matches!(access, target::Access::Own { .. }) && !self.proven(obj) {
            return None;
        }
        Some(access)
    }

    /// Whether the last pass over `obj` read the Secret it names, with both keys. Before any
    /// pass has (after a restart), a holder's recorded mark stands for it: it held the bucket,
    /// so it had read its Secret, and the holder before a restart is the holder after.
    fn proven(&self, obj: &BucketCors) -> bool {
        let (Some(key), Some(secret)) = (uid_key(obj), &obj.spec.credentials_secret_ref) else {
            return false;
        };
        match self.proven.lock().expect("poisoned").get(&key) {
            Some((name, read)) if *name == secret.name => *read,
            _ => holds_bucket(obj.status.as_ref()),
        }
    }

    /// Notes whether a pass could read the Secret `obj` names (with both keys).
    fn prove(&self, obj: &BucketCors, read: bool) {
        let (Some(key), Some(secret)) = (uid_key(obj), &obj.spec.credentials_secret_ref) else {
            return;
        };
        let mut proven = self.proven.lock().expect("poisoned");
        proven.insert(key, (secret.name.clone(), read));
    }

    /// Wakes objects that took a bucket, or whose grant changed. Before everything is listed
    /// no pass has run yet: nobody to wake.
    fn wake_all(&self, objects: Vec<ObjectRef<BucketCors>>) {
        let wakers = self.wakers.read().expect("poisoned");
        for object in objects.into_iter().filter(|_| self.synced.get()) {
            if let Some(waker) = wakers.get(self.watch_of(&object)) {
                let _ = waker.unbounded_send(object);
            }
        }
    }

    /// The status a pass over `obj` starts from: the last one this operator wrote, unless the
    /// cached object already shows it.
    fn known_status(&self, obj: &BucketCors) -> Option<BucketCorsStatus> {
        let object = ObjectRef::from(obj);
        let mut written = self.written.lock().expect("poisoned");
        match written.get(&object) {
            Some((uid, w)) if obj.metadata.uid.as_ref() == Some(uid) => {
                if obj.status.as_ref() == Some(w) {
                    written.remove(&object);
                    obj.status.clone()
                } else {
                    Some(w.clone())
                }
            }
            _ => obj.status.clone(),
        }
    }

    /// The watch shows `obj`: a status written for it that the object now shows is no longer
    /// kept (memory stays bounded by what the cache lags behind, not by the objects written).
    fn caught_up(&self, obj: &BucketCors) {
        let object = ObjectRef::from(obj);
        let mut written = self.written.lock().expect("poisoned");
        if let Some((uid, status)) = written.get(&object)
            && (obj.metadata.uid.as_ref() != Some(uid) || obj.status.as_ref() == Some(status))
        {
            written.remove(&object);
        }
    }

    /// Notes that `status` is what the API holds for `obj` now.
    fn wrote_status(&self, obj: &BucketCors, status: &BucketCorsStatus) {
        let object = lean(obj);
        let mut written = self.written.lock().expect("poisoned");
        match &obj.metadata.uid {
            Some(uid) if obj.status.as_ref() != Some(status) => {
                written.insert(object, (uid.clone(), status.clone()));
            }
            _ => {
                written.remove(&object);
            }
        }
    }

    fn last_write(&self, obj: &BucketCors) -> Option<LastWrite> {
        let key = uid_key(obj)?;
        self.last_writes
            .lock()
            .expect("poisoned")
            .get(&key)
            .copied()
    }

    fn set_last_write(&self, obj: &BucketCors, write: Option<LastWrite>) {
        let Some(key) = uid_key(obj) else {
            return;
        };
        let mut writes = self.last_writes.lock().expect("poisoned");
        match write {
            Some(w) => writes.insert(key, w),
            None => writes.remove(&key),
        };
    }

    /// Notes that a pass put `obj`'s bucket back; the run of repairs to report, if this one
    /// makes them repeat.
    fn repaired(&self, obj: &BucketCors) -> Option<repairs::Repeated> {
        let key = uid_key(obj)?;
        let now = std::time::Instant::now();
        self.repairs.lock().expect("poisoned").record(key, now)
    }

    /// Forgets everything kept about `obj`: it is gone.
    fn forget(&self, obj: &BucketCors) {
        let object = ObjectRef::from(obj);
        self.failures.lock().expect("poisoned").remove(&object);
        self.written.lock().expect("poisoned").remove(&object);
        if let Some(key) = uid_key(obj) {
            self.last_writes.lock().expect("poisoned").remove(&key);
            self.repairs.lock().expect("poisoned").forget(key);
            self.proven.lock().expect("poisoned").remove(&key);
        }
    }

    /// After a (re)list of watch `watch`: forgets what is kept about its objects that are no
    /// longer there (deleted while the watch was down).
    fn forget_unlisted(&self, watch: usize) {
        let Some(store) = self.caches.read().expect("poisoned").get(watch).cloned() else {
            return;
        };
        let listed = |object: &ObjectRef<BucketCors>| {
            self.watch_of(object) != watch || store.get(object).is_some()
        };
        self.failures
            .lock()
            .expect("poisoned")
            .retain(|object, _| listed(object));
        self.written
            .lock()
            .expect("poisoned")
            .retain(|object, _| listed(object));
        // Kept by uid: whatever no cache holds any more is gone.
        let alive: std::collections::HashSet<u64> = self
            .caches
            .read()
            .expect("poisoned")
            .iter()
            .flat_map(|cache| cache.state())
            .filter_map(|obj| uid_key(&obj))
            .collect();
        let mut writes = self.last_writes.lock().expect("poisoned");
        writes.retain(|key, _| alive.contains(key));
        writes.shrink_to_fit();
        self.repairs
            .lock()
            .expect("poisoned")
            .retain(|key| alive.contains(key));
        self.proven
            .lock()
            .expect("poisoned")
            .retain(|key, _| alive.contains(key));
    }

    /// Objects and failure counts kept in memory: for tests that check nothing leaks. The
    /// last count is of objects with a last write or recent repairs kept.
    pub fn kept(&self) -> (usize, usize, usize) {
        (
            self.failures.lock().expect("poisoned").len(),
            self.written.lock().expect("poisoned").len(),
            self.last_writes.lock().expect("poisoned").len()
                + self.repairs.lock().expect("poisoned").len(),
        )
    }

    /// From now on no pass writes to a bucket (the Lease was lost: another replica may be
    /// writing already).
    pub fn stop_writes(&self) {
        self.store.stop_writes();
    }

    /// Feeds one event of watch `watch` to the bucket index. Returns the objects that took a
    /// bucket, to be woken.
    fn index_event(
        &self,
        watch: usize,
        event: &Result<watcher::Event<BucketCors>, watcher::Error>,
    ) -> Vec<ObjectRef<BucketCors>> {
        let Ok(event) = event else {
            return Vec::new();
        };
        let mut buckets = self.buckets.lock().expect("poisoned");
        match event {
            watcher::Event::Init => {
                buckets.list_started(watch);
                Vec::new()
            }
            watcher::Event::InitApply(obj) | watcher::Event::Apply(obj) => {
                self.caught_up(obj);
                buckets.apply(watch, obj, self.entry(obj))
            }
            watcher::Event::InitDone => {
                self.forget_unlisted(watch);
                buckets.list_done(watch)
            }
            watcher::Event::Delete(obj) => {
                self.forget(obj);
                buckets.delete(obj).into_iter().collect()
            }
        }
    }

    /// The watch (and controller) whose namespace holds `object`.
    fn watch_of(&self, object: &ObjectRef<BucketCors>) -> usize {
        self.settings
            .namespaces
            .iter()
            .position(|ns| object.namespace.as_deref() == Some(ns.as_str()))
            .unwrap_or(0)
    }

    /// When to look at `object` again: the one requeue policy. A spec that breaks a rule waits
    /// for a change; a failure that may clear by itself (or a Kubernetes error, `None`) is
    /// retried with exponential backoff and jitter, never later than the resync interval;
    /// anything else, a Conflict included (its object is woken when the holder goes), at the
    /// resync interval, ±10% so that objects created together do not stay in lockstep.
    fn requeue(&self, object: &ObjectRef<BucketCors>, reason: Option<Reason>) -> Action {
        let transient = reason.is_none_or(Reason::is_transient);
        if !transient {
            self.failures.lock().expect("poisoned").remove(object);
            if matches!(
                reason,
                Some(Reason::InvalidSpec | Reason::ExpectationFailed)
            ) {
                return Action::await_change();
            }
            let interval = self.settings.resync_interval.as_secs_f64();
            let jittered = interval * rand::rng().random_range(0.9..=1.1);
            return Action::requeue(Duration::from_secs_f64(jittered));
        }
        let attempt = {
            let mut failures = self.failures.lock().expect("poisoned");
            let mut key = object.clone();
            key.extra = Default::default();
            let n = failures.entry(key).or_insert(0);
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
        let stores = self.caches.read().expect("poisoned").clone();
        let objects: Vec<_> = stores.iter().flat_map(|store| store.state()).collect();
        metrics.set_objects(objects.iter().map(|obj| {
            (
                obj.ready_condition().map(|c| c.reason.as_str()),
                obj.is_ready(),
            )
        }));
    }
}

/// A reference to `obj` for keeping: without the resource version and uid it carries otherwise
/// (which equality and hashing ignore), so that thousands of them stay small.
/// A hash of the object's uid: what is kept per object for as long as it lives.
fn uid_key(obj: &BucketCors) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let uid = obj.metadata.uid.as_deref()?;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    uid.hash(&mut hasher);
    Some(hasher.finish())
}

fn lean(obj: &BucketCors) -> ObjectRef<BucketCors> {
    let mut object = ObjectRef::from(obj);
    object.extra = Default::default();
    object
}

/// Whether a status marks its object as the holder of its bucket.
fn holds_bucket(status: Option<&BucketCorsStatus>) -> bool {
    status.is_some_and(|s| s.holding.is_some())
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
    // Counted down as each namespace's initial list lands in its cache, and the stores' and
    // the namespaces' lists.
    let unsynced = Arc::new(AtomicUsize::new(apis.len() + 2));
    let listed_one = {
        let (unsynced, ctx) = (unsynced.clone(), ctx.clone());
        Arc::new(move || {
            if unsynced.fetch_sub(1, Ordering::AcqRel) == 1 {
                ctx.buckets.lock().expect("poisoned").set_synced();
                ctx.synced.set(true);
                ctx.readiness.set(true);
                tracing::info!("caches synced");
            }
        })
    };
    // A waiting object is woken through its watch's controller when it takes its bucket.
    let (wakers, woken): (Vec<_>, Vec<_>) = (0..apis.len()).map(|_| mpsc::unbounded()).unzip();
    *ctx.wakers.write().expect("poisoned") = wakers;
    let grant_watches = futures::future::join(
        grants::watch_stores(ctx.clone(), {
            let l = listed_one.clone();
            move || l()
        }),
        grants::watch_namespaces(ctx.clone(), {
            let l = listed_one.clone();
            move || l()
        }),
    );
    let controllers: Vec<_> = apis
        .into_iter()
        .zip(woken)
        .enumerate()
        .map(|(watch, (api, woken))| {
            let (reader, writer) = reflector::store();
            ctx.caches.write().expect("poisoned").push(reader.clone());
            let mut listed = false;
            let (listed_one, ctx_watch) = (listed_one.clone(), ctx.clone());
            let news_follow = Arc::new(Mutex::new(news::News::default()));
            let news_filter = news_follow.clone();
            // Status writes do not change the generation, so they do not wake the controller;
            // the finalizer is watched too because the helper waits for its own patch to land.
            let list = watcher::Config::default().any_semantic().page_size(LIST_PAGE);
            let changes = watcher(api.clone(), list)
                .default_backoff()
                // Server-side apply bookkeeping is most of an object's size and never read here.
                .modify(|obj: &mut BucketCors| {
                    obj.metadata.managed_fields = None;
                    // kubectl's last-applied-configuration copies the whole spec again; labels
                    // and owners (Helm's, Argo CD's) are never read either.
                    obj.metadata.annotations = None;
                    obj.metadata.labels = None;
                    obj.metadata.owner_references = None;
                    // A refused spec is kept as its verdict, not its rules.
                    crate::decide::lighten(obj);
                })
                .reflect(writer)
                .inspect(move |event| {
                    if let Ok(event) = event {
                        news_follow.lock().expect("poisoned").follow(event);
                    }
                    let ctx = &ctx_watch;
                    let first_list = match event {
                        Ok(watcher::Event::InitDone) => true,
                        // A namespace the operator may not list must not hold every other one
                        // at the synced wait; its objects are not reconciled, and it is retried.
                        Err(watcher::Error::InitialListFailed(kube::Error::Api(status)))
                            if status.code == 403 =>
                        {
                            if !listed {
                                ctx.metrics.watch_refused.inc();
                                tracing::error!(
                                    namespace = ctx.settings.namespaces.get(watch).map_or("(all)", String::as_str),
                                    error = %status.message,
                                    "the API server refuses to list BucketCors here; its objects are not reconciled until it allows it"
                                );
                            }
                            true
                        }
                        _ => false,
                    };
                    let taken = ctx.index_event(watch, event);
                    ctx.wake_all(taken);
                    if first_list && !listed {
                        listed = true;
                        listed_one();
                    }
                })
                .applied_objects()
                .try_filter(move |obj| {
                    futures::future::ready(news_filter.lock().expect("poisoned").is_news(obj))
                });
            // Every due pass is started at once and waits for its turn on the context's
            // permits, first in, first out: kube's own limit would take the waiting passes in
            // hash order, so that under overload the same objects would win every time.
            Controller::for_stream(changes, reader)
                .with_config(ControllerConfig::default().concurrency(0))
                .reconcile_on(woken)
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
    let stopping = ctx.clone();
    let overdue = async move {
        shutdown.await;
        stopping.close_turns();
        // Before the first list lands nothing is in flight, and kube's controller would wait
        // for that list forever; after it, in-flight passes get a bounded time to finish.
        if synced.get() {
            tokio::time::sleep(SHUTDOWN_GRACE).await;
            tracing::warn!("in-flight passes did not finish in time; stopping anyway");
        }
    };
    tokio::select! {
        _ = futures::future::join_all(controllers) => {}
        _ = grant_watches => {}
        () = overdue => {}
    }
    ctx.readiness.set(false);
}

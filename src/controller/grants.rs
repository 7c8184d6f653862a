//! What the operator knows of grants: the ClusterBucketStores and the labels of namespaces,
//! fed by two watches. A change that can change what an object may do re-computes its place in
//! the bucket index and wakes it at once, so that a grant or a revocation takes effect without
//! waiting for a resync (and without a backoff storm: nothing retries a denial).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, RwLock};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use super::{Context, MANAGER};
use crate::api::BucketCors;
use crate::s3::CorsStore;
use crate::status::READY;
use crate::tenancy::{ClusterBucketStore, ClusterBucketStoreStatus};

/// The stores by name and the labels of each namespace, as the watches last showed them.
#[derive(Default)]
pub struct Grants {
    stores: RwLock<HashMap<String, Arc<ClusterBucketStore>>>,
    labels: RwLock<HashMap<String, BTreeMap<String, String>>>,
}

impl Grants {
    pub fn store(&self, name: &str) -> Option<Arc<ClusterBucketStore>> {
        self.stores.read().expect("poisoned").get(name).cloned()
    }

    /// The labels of `namespace`, when the namespace watch has shown it.
    pub fn labels(&self, namespace: &str) -> Option<BTreeMap<String, String>> {
        self.labels
            .read()
            .expect("poisoned")
            .get(namespace)
            .cloned()
    }
}

/// Which objects a change concerns.
enum Concerns {
    Store(String),
    Namespace(String),
}

impl Concerns {
    fn matches(&self, obj: &BucketCors) -> bool {
        match self {
            Concerns::Store(name) => obj.spec.store_ref.as_ref().is_some_and(|r| &r.name == name),
            Concerns::Namespace(ns) => obj.metadata.namespace.as_deref() == Some(ns.as_str()),
        }
    }
}

/// Watches the stores: keeps the map, writes each store's Ready condition, and re-grants the
/// objects that name a store whose spec changed or that went. `listed` is called once, when
/// the first list is in (or refused).
pub async fn watch_stores<S: CorsStore>(ctx: Arc<Context<S>>, listed: impl Fn() + Send) {
    let api: Api<ClusterBucketStore> = Api::all(ctx.client.clone());
    let mut relisted: Option<HashSet<String>> = None;
    let mut first = true;
    let mut events = watcher(api.clone(), watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(event) = events.next().await {
        let mut changed = Vec::new();
        match event {
            Ok(watcher::Event::Init) => relisted = Some(HashSet::new()),
            Ok(watcher::Event::InitApply(store) | watcher::Event::Apply(store)) => {
                let name = store.name_any();
                if let Some(seen) = relisted.as_mut() {
                    seen.insert(name.clone());
                }
                write_status(&api, &store).await;
                let store = Arc::new(store);
                let before = ctx
                    .grants
                    .stores
                    .write()
                    .expect("poisoned")
                    .insert(name.clone(), store.clone());
                if before.is_none_or(|b| b.spec != store.spec) {
                    changed.push(Concerns::Store(name));
                }
            }
            Ok(watcher::Event::Delete(store)) => {
                let name = store.name_any();
                ctx.grants.stores.write().expect("poisoned").remove(&name);
                changed.push(Concerns::Store(name));
            }
            Ok(watcher::Event::InitDone) => {
                if let Some(seen) = relisted.take() {
                    let mut stores = ctx.grants.stores.write().expect("poisoned");
                    let gone: Vec<String> = stores
                        .keys()
                        .filter(|n| !seen.contains(*n))
                        .cloned()
                        .collect();
                    for name in gone {
                        stores.remove(&name);
                        changed.push(Concerns::Store(name));
                    }
                }
                if first {
                    first = false;
                    listed();
                }
            }
            Err(err) => {
                if first && refused(&err) {
                    tracing::error!(error = %err, "the API server refuses to list ClusterBucketStores (forbidden, or the CRD is not installed); objects that name a store are NotPermitted until it allows it");
                    ctx.metrics.watch_refused.inc();
                    first = false;
                    listed();
                } else {
                    tracing::warn!(error = %err, "ClusterBucketStore watch failed; retrying");
                }
            }
        }
        for concern in changed {
            ctx.regrant(&concern);
        }
    }
}

/// Watches the namespaces' labels (metadata only) and re-grants a namespace's objects when its
/// labels are first seen, change, or go.
pub async fn watch_namespaces<S: CorsStore>(ctx: Arc<Context<S>>, listed: impl Fn() + Send) {
    let api: Api<PartialObjectMeta<Namespace>> = Api::all(ctx.client.clone());
    let mut relisted: Option<HashSet<String>> = None;
    let mut first = true;
    let mut events = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(event) = events.next().await {
        let mut changed = Vec::new();
        let mut seen_labels = |ns: &PartialObjectMeta<Namespace>| {
            let name = ns.name_any();
            let labels = ns.labels().clone();
            let before = ctx
                .grants
                .labels
                .write()
                .expect("poisoned")
                .insert(name.clone(), labels.clone());
            if before.as_ref() != Some(&labels) {
                changed.push(Concerns::Namespace(name.clone()));
            }
            name
        };
        match event {
            Ok(watcher::Event::Init) => relisted = Some(HashSet::new()),
            Ok(watcher::Event::InitApply(ns) | watcher::Event::Apply(ns)) => {
                let name = seen_labels(&ns);
                if let Some(seen) = relisted.as_mut() {
                    seen.insert(name);
                }
            }
            Ok(watcher::Event::Delete(ns)) => {
                let name = ns.name_any();
                ctx.grants.labels.write().expect("poisoned").remove(&name);
                changed.push(Concerns::Namespace(name));
            }
            Ok(watcher::Event::InitDone) => {
                if let Some(seen) = relisted.take() {
                    let mut labels = ctx.grants.labels.write().expect("poisoned");
                    labels.retain(|n, _| seen.contains(n));
                }
                if first {
                    first = false;
                    listed();
                }
            }
            Err(err) => {
                if first && refused(&err) {
                    tracing::error!(error = %err, "the API server refuses to list Namespaces; stores grant by namespace name only until it allows it");
                    ctx.metrics.watch_refused.inc();
                    first = false;
                    listed();
                } else {
                    tracing::warn!(error = %err, "Namespace watch failed; retrying");
                }
            }
        }
        for concern in changed {
            ctx.regrant(&concern);
        }
    }
}

/// A list the API server will not give: forbidden, or the resource is not installed (the
/// ClusterBucketStore CRD missing after an upgrade that applied only the BucketCors one).
/// Nothing is waited for: objects that need what it would have said are NotPermitted.
fn refused(err: &watcher::Error) -> bool {
    matches!(err, watcher::Error::InitialListFailed(kube::Error::Api(s)) if s.code == 403 || s.code == 404)
}

/// Writes a store's Ready condition when it is not what the store's spec deserves.
async fn write_status(api: &Api<ClusterBucketStore>, store: &ClusterBucketStore) {
    let (status, reason, message) = match store.spec.problems() {
        Ok(()) => (
            "True",
            "Valid",
            "the store can be used by the namespaces it grants".to_owned(),
        ),
        Err(problem) => ("False", "InvalidSpec", problem),
    };
    let generation = store.metadata.generation;
    // A store whose spec cannot be used stays so until an administrator edits it: Stalled,
    // for kstatus (Flux), beside Ready.
    let wanted: Vec<(&str, &str)> = match status {
        "True" => vec![(READY, "True")],
        _ => vec![(READY, "False"), (crate::status::STALLED, "True")],
    };
    let current = store.status.as_ref().is_some_and(|s| {
        s.observed_generation == generation
            && s.conditions.len() == wanted.len()
            && s.conditions.iter().zip(&wanted).all(|(c, (type_, st))| {
                c.type_ == *type_ && c.status == *st && c.reason == reason && c.message == message
            })
    });
    if current {
        return;
    }
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let next = ClusterBucketStoreStatus {
        observed_generation: generation,
        conditions: wanted
            .into_iter()
            .map(|(type_, status)| crate::api::Condition {
                type_: type_.to_owned(),
                status: status.to_owned(),
                reason: reason.to_owned(),
                message: message.clone(),
                last_transition_time: now.clone(),
                observed_generation: generation,
            })
            .collect(),
    };
    let patch = json!({
        "apiVersion": ClusterBucketStore::api_version(&()),
        "kind": ClusterBucketStore::kind(&()),
        "status": next,
    });
    if let Err(err) = api
        .patch_status(
            &store.name_any(),
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
    {
        tracing::warn!(store = %store.name_any(), error = %err, "failed to write the store's status");
    }
}

impl<S: CorsStore> Context<S> {
    /// Re-computes the index entry of every object `concern` touches, all at once (so that the
    /// ranking, not the order of the cache, elects each bucket's holder), and wakes them all.
    fn regrant(&self, concern: &Concerns) {
        let caches = self.caches.read().expect("poisoned").clone();
        let touched: Vec<(usize, Arc<BucketCors>)> = caches
            .iter()
            .enumerate()
            .flat_map(|(watch, cache)| {
                cache
                    .state()
                    .into_iter()
                    .filter(|o| concern.matches(o))
                    .map(move |o| (watch, o))
            })
            .collect();
        let mut wake: Vec<ObjectRef<BucketCors>> = touched
            .iter()
            .map(|(_, obj)| ObjectRef::from(obj.as_ref()))
            .collect();
        let entries: Vec<_> = touched
            .iter()
            .map(|(watch, obj)| (*watch, obj.as_ref(), self.entry(obj)))
            .collect();
        wake.extend(self.buckets.lock().expect("poisoned").apply_all(entries));
        self.wake_all(wake);
    }
}

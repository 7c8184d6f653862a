//! Kubernetes Events (`events.k8s.io/v1`) about BucketCors objects.
//!
//! The same Event again within [`SERIES_WINDOW`] (same object, type, reason and note) bumps
//! the first one's series count instead of creating another object, as kubectl and the
//! Kubernetes event libraries do. Only a small key per recent Event is kept for that, never the
//! Event itself, so memory stays proportional to what happened in the last few minutes.

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::events::EventType;
use kube::{Api, Client, Resource, ResourceExt};

use crate::api::BucketCors;

/// How long a published Event can still grow a series (kube-runtime and client-go use
/// six minutes, too).
pub const SERIES_WINDOW: Duration = Duration::from_secs(6 * 60);
// What the operator was doing; every Event comes from a reconcile pass.
const ACTION: &str = "Reconcile";
// Longest Event name the API server takes (a DNS subdomain).
const NAME_MAX: usize = 253;
// Longest note the API server takes is 1 KiB.
const NOTE_MAX: usize = 1000;

fn type_name(type_: EventType) -> &'static str {
    match type_ {
        EventType::Normal => "Normal",
        EventType::Warning => "Warning",
    }
}

// What makes two Events the same (object uid, type, reason, note), hashed: 8 bytes per recent
// Event instead of four strings.
type SeriesKey = u64;

fn series_key(uid: &str, type_: EventType, reason: &str, note: &str) -> SeriesKey {
    let mut hasher = DefaultHasher::new();
    (uid, type_name(type_), reason, note).hash(&mut hasher);
    hasher.finish()
}

// The first Event of a series; it lives in the object's namespace.
struct Series {
    name: String,
    count: i32,
    last: Instant,
}

/// Publishes Events as one controller (and instance).
pub struct Events {
    client: Client,
    controller: String,
    instance: String,
    recent: Mutex<Recent>,
}

#[derive(Default)]
struct Recent {
    series: HashMap<SeriesKey, Series>,
    swept: Option<Instant>,
}

impl Recent {
    // Forgets Events too old to grow; at most once a minute, so publishing stays O(1).
    fn sweep(&mut self, now: Instant) {
        if self
            .swept
            .is_some_and(|at| now.duration_since(at) < Duration::from_secs(60))
        {
            return;
        }
        self.swept = Some(now);
        self.series
            .retain(|_, s| now.duration_since(s.last) < SERIES_WINDOW);
        self.series.shrink_to_fit();
    }
}

impl Events {
    /// `instance` names this replica (the Pod's name); the controller's name when absent.
    pub fn new(client: Client, controller: &str, instance: Option<String>) -> Self {
        Events {
            client,
            controller: controller.to_owned(),
            instance: instance.unwrap_or_else(|| controller.to_owned()),
            recent: Mutex::default(),
        }
    }

    /// Records an Event about `obj`, or counts it again when it repeats a recent one.
    pub async fn publish(
        &self,
        obj: &BucketCors,
        type_: EventType,
        reason: &str,
        note: &str,
    ) -> Result<(), kube::Error> {
        let namespace = obj.namespace().unwrap_or_else(|| "default".to_owned());
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        let note = crate::status::bounded(note, NOTE_MAX);
        let key = series_key(&obj.uid().unwrap_or_default(), type_, reason, &note);
        let now = Instant::now();
        let repeat = {
            let mut recent = self.recent.lock().expect("poisoned");
            recent.sweep(now);
            recent
                .series
                .get_mut(&key)
                .filter(|s| now.duration_since(s.last) < SERIES_WINDOW)
                .map(|s| {
                    s.count += 1;
                    s.last = now;
                    (s.name.clone(), s.count)
                })
        };
        if let Some((name, count)) = repeat {
            let series = serde_json::json!({
                "series": EventSeries { count, last_observed_time: MicroTime(Timestamp::now()) }
            });
            let patched = api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&series))
                .await;
            match patched {
                Ok(_) => return Ok(()),
                // Expired or deleted meanwhile: start a new one.
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(err) => return Err(err),
            }
        }

        let event = self.event(obj, &namespace, type_, reason, note);
        let name = event.metadata.name.clone().unwrap_or_default();
        api.create(&PostParams::default(), &event).await?;
        self.recent.lock().expect("poisoned").series.insert(
            key,
            Series {
                name,
                count: 1,
                last: now,
            },
        );
        Ok(())
    }

    fn event(
        &self,
        obj: &BucketCors,
        namespace: &str,
        type_: EventType,
        reason: &str,
        note: String,
    ) -> Event {
        let now = Timestamp::now();
        let suffix = format!(".{:x}", now.as_nanosecond());
        let object = obj.name_any();
        let prefix = &object[..object.floor_char_boundary(NAME_MAX - suffix.len())];
        Event {
            metadata: ObjectMeta {
                name: Some(format!("{prefix}{suffix}")),
                namespace: Some(namespace.to_owned()),
                ..ObjectMeta::default()
            },
            event_time: Some(MicroTime(now)),
            type_: Some(type_name(type_).to_owned()),
            reason: Some(reason.to_owned()),
            action: Some(ACTION.to_owned()),
            note: Some(note),
            regarding: Some(reference(obj)),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            ..Event::default()
        }
    }
}

fn reference(obj: &BucketCors) -> ObjectReference {
    ObjectReference {
        api_version: Some(BucketCors::api_version(&()).into_owned()),
        kind: Some(BucketCors::kind(&()).into_owned()),
        namespace: obj.namespace(),
        name: obj.meta().name.clone(),
        uid: obj.uid(),
        resource_version: obj.resource_version(),
        ..ObjectReference::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(name: &str, last: Instant) -> (SeriesKey, Series) {
        let key = series_key(name, EventType::Normal, "Applied", "note");
        let series = Series {
            name: name.into(),
            count: 1,
            last,
        };
        (key, series)
    }

    #[test]
    fn the_series_key_tells_apart_what_makes_events_different() {
        let key = series_key("uid", EventType::Normal, "Applied", "put 1 rule(s)");
        assert_eq!(
            key,
            series_key("uid", EventType::Normal, "Applied", "put 1 rule(s)")
        );
        for other in [
            series_key("uid2", EventType::Normal, "Applied", "put 1 rule(s)"),
            series_key("uid", EventType::Warning, "Applied", "put 1 rule(s)"),
            series_key("uid", EventType::Normal, "Deleted", "put 1 rule(s)"),
            series_key("uid", EventType::Normal, "Applied", "put 2 rule(s)"),
        ] {
            assert_ne!(key, other);
        }
    }

    fn names(recent: &Recent) -> Vec<String> {
        let mut names: Vec<_> = recent.series.values().map(|s| s.name.clone()).collect();
        names.sort();
        names
    }

    #[test]
    fn sweep_forgets_expired_series_at_most_once_a_minute() {
        let start = Instant::now();
        let mut recent = Recent::default();
        recent.series.extend([
            series("old", start),
            series("new", start + Duration::from_secs(5 * 60)),
        ]);
        recent.sweep(start + SERIES_WINDOW - Duration::from_secs(30));
        assert_eq!(
            names(&recent),
            ["new", "old"],
            "nothing is a window old yet"
        );

        // Within a minute of the last sweep nothing is swept, even what has expired.
        recent.sweep(start + SERIES_WINDOW + Duration::from_secs(10));
        assert_eq!(names(&recent), ["new", "old"]);

        recent.sweep(start + SERIES_WINDOW + Duration::from_secs(30));
        assert_eq!(names(&recent), ["new"]);
    }
}

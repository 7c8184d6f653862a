//! Who holds each bucket, fed by the watch: canonical bucket key → holder, answered in O(1).
//!
//! Among the objects that would write the same bucket (valid spec, `Full`), one holds it. The
//! holder keeps it for as long as it competes for it (until it is deleted, stops writing or
//! names another bucket); then the best-ranked waiting object takes it and is woken at once.
//! Until every watched namespace has been listed the holder is provisional, the best-ranked
//! object, so that a restart picks the same holder: the one whose status shows it took the
//! bucket, then the oldest, then the lesser namespace/name.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::reflector::ObjectRef;

use crate::api::BucketCors;

/// The order in which waiting objects take a bucket: the least first. Equal ranks are
/// ordered by the object's namespace and name, so that the order is total.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Rank {
    /// False when the object's status shows it took the bucket (it recorded the bucket or
    /// was Ready).
    not_holding: bool,
    created: Option<Time>,
}

struct Member {
    /// The bucket it competes for, shared with the bucket's slot.
    key: Arc<str>,
    rank: Rank,
    /// The watch it came from, for telling which objects a relist dropped.
    watch: usize,
}

struct Candidate {
    rank: Rank,
    object: ObjectRef<BucketCors>,
    /// It holds the bucket.
    holder: bool,
}

// Where a candidate sorts: by rank, then namespace and name.
fn order<'a>(rank: &'a Rank, object: &'a ObjectRef<BucketCors>) -> (&'a Rank, &'a str, &'a str) {
    (
        rank,
        object.namespace.as_deref().unwrap_or_default(),
        &object.name,
    )
}

// The objects that would write one bucket. Each object is kept here once: the holder is a
// flag on its candidate, and the member entry keeps only what finds that candidate again.
#[derive(Default)]
struct Slot {
    // Sorted by `order`, best first. A vector, not a B-tree: most buckets have one candidate,
    // and a B-tree node is sized for eleven.
    candidates: Vec<Candidate>,
}

impl Slot {
    fn holder(&self) -> Option<&Candidate> {
        self.candidates.iter().find(|c| c.holder)
    }

    fn find(&self, rank: &Rank, object: &ObjectRef<BucketCors>) -> Result<usize, usize> {
        let wanted = order(rank, object);
        self.candidates
            .binary_search_by(|c| order(&c.rank, &c.object).cmp(&wanted))
    }

    fn insert(&mut self, rank: Rank, object: ObjectRef<BucketCors>, holder: bool) {
        // A vector's first growth makes room for four; most buckets only ever have one.
        if self.candidates.is_empty() {
            self.candidates.reserve_exact(1);
        }
        let at = self.find(&rank, &object).unwrap_or_else(|at| at);
        self.candidates.insert(
            at,
            Candidate {
                rank,
                object,
                holder,
            },
        );
    }

    /// Removes the candidate; returns whether it held the bucket.
    fn remove(&mut self, rank: &Rank, object: &ObjectRef<BucketCors>) -> bool {
        match self.find(rank, object) {
            Ok(at) => self.candidates.remove(at).holder,
            Err(_) => false,
        }
    }
}

/// What the index needs to know about an object, computed by the controller.
pub struct Entry {
    /// The canonical key of the bucket it would write, when it competes for one.
    pub key: Option<String>,
    /// Whether its status shows it took the bucket.
    pub holding: bool,
}

#[derive(Default)]
pub struct Buckets {
    members: HashMap<ObjectRef<BucketCors>, Member>,
    slots: HashMap<Arc<str>, Slot>,
    /// Objects seen since each watch's (re)list began.
    listing: HashMap<usize, HashSet<ObjectRef<BucketCors>>>,
    synced: bool,
}

impl Buckets {
    /// The holder of the bucket `key`, if any object competes for it.
    pub fn holder(&self, key: &str) -> Option<ObjectRef<BucketCors>> {
        self.slots
            .get(key)
            .and_then(Slot::holder)
            .map(|c| c.object.clone())
    }

    /// Every watch has listed: from now on holders are sticky.
    pub fn set_synced(&mut self) {
        self.synced = true;
    }

    /// Watch `watch` starts a (re)list.
    pub fn list_started(&mut self, watch: usize) {
        self.listing.insert(watch, HashSet::new());
    }

    /// Watch `watch` finished its (re)list: its objects that were not in it are gone.
    /// Returns the objects that took a bucket.
    pub fn list_done(&mut self, watch: usize) -> Vec<ObjectRef<BucketCors>> {
        let Some(seen) = self.listing.remove(&watch) else {
            return Vec::new();
        };
        let gone: Vec<_> = self
            .members
            .iter()
            .filter(|(r, m)| m.watch == watch && !seen.contains(*r))
            .map(|(r, _)| r.clone())
            .collect();
        gone.iter().flat_map(|r| self.remove(r)).collect()
    }

    /// `obj`, seen by watch `watch`, is now as `entry` says. Returns the objects that took a
    /// bucket because of it (to be woken).
    pub fn apply(
        &mut self,
        watch: usize,
        obj: &BucketCors,
        entry: Entry,
    ) -> Vec<ObjectRef<BucketCors>> {
        let object = super::lean(obj);
        if let Some(seen) = self.listing.get_mut(&watch) {
            seen.insert(object.clone());
        }
        let Some(key) = entry.key else {
            return self.remove(&object).into_iter().collect();
        };
        let rank = Rank {
            not_holding: !entry.holding,
            created: obj.metadata.creation_timestamp.clone(),
        };
        let mut woken = Vec::new();
        let key: Arc<str> = match self.members.get_mut(&object) {
            Some(m) if *m.key == *key && m.rank == rank => return woken,
            Some(m) if *m.key == *key => {
                let slot = self.slots.get_mut(&m.key).expect("a member's slot exists");
                // The holder keeps the bucket when its rank changes.
                let holder = slot.remove(&m.rank, &object);
                slot.insert(rank.clone(), object.clone(), holder);
                m.rank = rank;
                m.watch = watch;
                m.key.clone()
            }
            _ => {
                woken.extend(self.remove(&object));
                let key: Arc<str> = match self.slots.get_key_value(key.as_str()) {
                    Some((shared, _)) => shared.clone(),
                    None => key.into(),
                };
                self.slots.entry(key.clone()).or_default().insert(
                    rank.clone(),
                    object.clone(),
                    false,
                );
                self.members.insert(
                    object.clone(),
                    Member {
                        key: key.clone(),
                        rank,
                        watch,
                    },
                );
                key
            }
        };
        // An object that takes a free bucket is being reconciled for this very change.
        woken.extend(self.elect(&key).filter(|holder| *holder != object));
        woken
    }

    /// `obj` is gone. Returns the object that took its bucket, if any.
    pub fn delete(&mut self, obj: &BucketCors) -> Option<ObjectRef<BucketCors>> {
        self.remove(&ObjectRef::from(obj))
    }

    fn remove(&mut self, object: &ObjectRef<BucketCors>) -> Option<ObjectRef<BucketCors>> {
        let member = self.members.remove(object)?;
        let slot = self.slots.get_mut(&member.key)?;
        slot.remove(&member.rank, object);
        if slot.candidates.is_empty() {
            self.slots.remove(&member.key);
            return None;
        }
        self.elect(&member.key)
    }

    /// Picks the holder of `key` when it has none (or, before every watch listed, the best
    /// ranked). Returns the new holder.
    fn elect(&mut self, key: &str) -> Option<ObjectRef<BucketCors>> {
        let synced = self.synced;
        let slot = self.slots.get_mut(key)?;
        let held = slot.holder().is_some();
        if held && synced {
            return None;
        }
        if slot.candidates.first().is_some_and(|c| c.holder) {
            return None;
        }
        for candidate in &mut slot.candidates {
            candidate.holder = false;
        }
        let best = slot.candidates.first_mut()?;
        best.holder = true;
        Some(best.object.clone())
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.members.len()
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.members.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;
    use serde_json::json;

    fn object(name: &str, created: i64) -> BucketCors {
        let spec = serde_json::from_value(json!({"bucket": "b", "rules": []})).unwrap();
        let mut obj = BucketCors::new(name, spec);
        obj.metadata.namespace = Some("ns".into());
        obj.metadata.creation_timestamp = Some(Time(Timestamp::from_second(created).unwrap()));
        obj
    }

    fn competes(key: &str) -> Entry {
        Entry {
            key: Some(key.into()),
            holding: false,
        }
    }

    fn name(r: Option<ObjectRef<BucketCors>>) -> Option<String> {
        r.map(|r| r.name)
    }

    #[test]
    fn before_the_lists_are_in_the_best_ranked_holds_then_the_holder_sticks() {
        let mut index = Buckets::default();
        let newer = object("newer", 200);
        let older = object("older", 100);
        index.apply(0, &newer, competes("aws/b"));
        assert_eq!(name(index.holder("aws/b")), Some("newer".into()));
        // Listed later but older: before sync, it takes the bucket.
        index.apply(0, &older, competes("aws/b"));
        assert_eq!(name(index.holder("aws/b")), Some("older".into()));
        index.set_synced();
        // After sync, a third, older object that becomes eligible does not take it.
        let oldest = object("oldest", 50);
        assert!(index.apply(0, &oldest, competes("aws/b")).is_empty());
        assert_eq!(name(index.holder("aws/b")), Some("older".into()));
    }

    #[test]
    fn a_status_that_shows_the_bucket_taken_outranks_age_after_a_restart() {
        let mut index = Buckets::default();
        index.apply(0, &object("old-waiter", 100), competes("aws/b"));
        index.apply(
            0,
            &object("young-holder", 200),
            Entry {
                key: Some("aws/b".into()),
                holding: true,
            },
        );
        index.set_synced();
        assert_eq!(name(index.holder("aws/b")), Some("young-holder".into()));
    }

    #[test]
    fn when_the_holder_goes_the_next_takes_the_bucket_and_is_woken() {
        let mut index = Buckets::default();
        let first = object("first", 100);
        let second = object("second", 200);
        let third = object("third", 300);
        index.apply(0, &first, competes("aws/b"));
        index.apply(0, &second, competes("aws/b"));
        index.apply(0, &third, competes("aws/b"));
        index.set_synced();
        // A waiter leaving wakes nobody.
        assert_eq!(index.delete(&third), None);
        assert_eq!(name(index.delete(&first)), Some("second".into()));
        assert_eq!(name(index.holder("aws/b")), Some("second".into()));
        // The last one leaving frees the key.
        assert_eq!(index.delete(&second), None);
        assert_eq!(index.holder("aws/b"), None);
        assert!(index.is_empty());
    }

    #[test]
    fn a_holder_that_stops_competing_or_moves_hands_over() {
        let mut index = Buckets::default();
        let first = object("first", 100);
        let second = object("second", 200);
        index.apply(0, &first, competes("aws/b"));
        index.apply(0, &second, competes("aws/b"));
        index.set_synced();
        // Spec made invalid, or ObserveOnly: no key.
        let woken = index.apply(
            0,
            &first,
            Entry {
                key: None,
                holding: true,
            },
        );
        assert_eq!(woken.len(), 1);
        assert_eq!(woken[0].name, "second");
        // Back again: it waits now.
        assert!(index.apply(0, &first, competes("aws/b")).is_empty());
        assert_eq!(name(index.holder("aws/b")), Some("second".into()));
        // The holder names another bucket: it holds that one (and is reconciled for that
        // change anyway), the other is handed over.
        let woken = index.apply(0, &second, competes("aws/other"));
        let names: Vec<_> = woken.into_iter().map(|r| r.name).collect();
        assert_eq!(names, ["first"]);
        assert_eq!(name(index.holder("aws/b")), Some("first".into()));
        assert_eq!(name(index.holder("aws/other")), Some("second".into()));
    }

    #[test]
    fn a_relist_drops_what_is_no_longer_there_and_only_from_its_own_watch() {
        let mut index = Buckets::default();
        let a = object("a", 100);
        let b = object("b", 200);
        let mut c = object("c", 50);
        c.metadata.namespace = Some("other".into());
        index.apply(0, &a, competes("aws/b"));
        index.apply(0, &b, competes("aws/b"));
        index.apply(1, &c, competes("aws/c"));
        index.set_synced();
        index.list_started(0);
        index.apply(0, &b, competes("aws/b"));
        let woken = index.list_done(0);
        assert_eq!(woken.len(), 1);
        assert_eq!(woken[0].name, "b");
        assert_eq!(index.len(), 2);
        assert_eq!(name(index.holder("aws/c")), Some("c".into()));
    }
}

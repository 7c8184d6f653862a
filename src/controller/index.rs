//! Who holds each bucket, fed by the watch: canonical bucket key → holder, answered in O(1).
//!
//! Among the objects that could write the same bucket (see `Context::competes`), one holds it.
//! The holder keeps it for as long as it competes for it (until it is deleted, stops writing,
//! loses its access or names another bucket); then the best-ranked waiting object takes it and
//! is woken at once. Until every watch has listed, the holder is provisional, the best-ranked
//! object, so that a restart picks the holder from before whatever the order of the lists: the
//! object whose status says it holds the bucket (the latest such mark first), then one that
//! took the bucket before (it recorded what the bucket held), then the oldest, then the lesser
//! namespace/name. Changes that concern many objects at once (a store appears, a namespace's
//! labels arrive) are applied together and the holder elected once, by the same ranking.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::reflector::ObjectRef;

use crate::api::BucketCors;

/// The order in which waiting objects take a bucket: the least first. Equal ranks are
/// ordered by the object's namespace and name, so that the order is total.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Rank {
    /// False when the object's status marks it as this bucket's holder...
    not_marked: bool,
    /// ...the latest mark first (RFC 3339 times compare as strings).
    since: Reverse<Option<String>>,
    /// False when the object took the bucket before (it recorded what the bucket held).
    not_took: bool,
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

// The objects that could write one bucket. Each object is kept here once: the holder is a
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
#[derive(Clone, Debug, Default)]
pub struct Entry {
    /// The canonical key of the bucket it could write, when it competes for one.
    pub key: Option<String>,
    /// When its status marks it as the holder of that same bucket: since when.
    pub mark: Option<String>,
    /// Whether it took the bucket before (it recorded what the bucket held).
    pub took: bool,
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

    /// Whether `object` is the first ranked of the candidates for `key`: the one a restart
    /// would elect. A holder that is not (it took the bucket back from one whose mark is
    /// later) renews its mark before it writes.
    pub fn leads(&self, key: &str, object: &ObjectRef<BucketCors>) -> bool {
        self.slots
            .get(key)
            .and_then(|slot| slot.candidates.first())
            .is_some_and(|c| c.object == *object)
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
        let keys: BTreeSet<Arc<str>> = gone.iter().filter_map(|r| self.remove(r)).collect();
        self.elect_all(keys, None)
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
        let keys = self.place(watch, obj, &object, entry);
        // An object that takes a free bucket is being reconciled for this very change.
        self.elect_all(keys, Some(&object))
    }

    /// Many objects at once, each with its watch and entry: every one is placed before any
    /// bucket's holder is elected, so that the ranking, not the order of `changes`, decides.
    /// Returns the objects that took a bucket.
    pub fn apply_all<'a>(
        &mut self,
        changes: impl IntoIterator<Item = (usize, &'a BucketCors, Entry)>,
    ) -> Vec<ObjectRef<BucketCors>> {
        let mut keys = BTreeSet::new();
        for (watch, obj, entry) in changes {
            keys.extend(self.place(watch, obj, &super::lean(obj), entry));
        }
        self.elect_all(keys, None)
    }

    /// `obj` is gone. Returns the object that took its bucket, if any.
    pub fn delete(&mut self, obj: &BucketCors) -> Option<ObjectRef<BucketCors>> {
        let key = self.remove(&ObjectRef::from(obj))?;
        self.elect(&key)
    }

    /// Puts `object` where `entry` says, electing nobody. Returns the buckets whose holder
    /// may have to be elected.
    fn place(
        &mut self,
        watch: usize,
        obj: &BucketCors,
        object: &ObjectRef<BucketCors>,
        entry: Entry,
    ) -> Vec<Arc<str>> {
        let Some(key) = entry.key else {
            return self.remove(object).into_iter().collect();
        };
        let rank = Rank {
            not_marked: entry.mark.is_none(),
            since: Reverse(entry.mark),
            not_took: !entry.took,
            created: obj.metadata.creation_timestamp.clone(),
        };
        match self.members.get_mut(object) {
            Some(m) if *m.key == *key && m.rank == rank => {
                m.watch = watch;
                vec![m.key.clone()]
            }
            Some(m) if *m.key == *key => {
                let slot = self.slots.get_mut(&m.key).expect("a member's slot exists");
                // The holder keeps the bucket when its rank changes.
                let holder = slot.remove(&m.rank, object);
                slot.insert(rank.clone(), object.clone(), holder);
                m.rank = rank;
                m.watch = watch;
                vec![m.key.clone()]
            }
            _ => {
                let mut keys: Vec<Arc<str>> = self.remove(object).into_iter().collect();
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
                keys.push(key);
                keys
            }
        }
    }

    /// Takes `object` out of its bucket's candidates, electing nobody. Returns the bucket.
    fn remove(&mut self, object: &ObjectRef<BucketCors>) -> Option<Arc<str>> {
        let member = self.members.remove(object)?;
        let slot = self.slots.get_mut(&member.key)?;
        slot.remove(&member.rank, object);
        if slot.candidates.is_empty() {
            self.slots.remove(&member.key);
            return None;
        }
        Some(member.key)
    }

    /// Elects the holder of each of `keys` that needs one; returns the new holders but
    /// `except`.
    fn elect_all(
        &mut self,
        keys: impl IntoIterator<Item = Arc<str>>,
        except: Option<&ObjectRef<BucketCors>>,
    ) -> Vec<ObjectRef<BucketCors>> {
        keys.into_iter()
            .filter_map(|key| self.elect(&key))
            .filter(|holder| Some(holder) != except)
            .collect()
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
            ..Entry::default()
        }
    }

    fn marked(key: &str, since: &str) -> Entry {
        Entry {
            key: Some(key.into()),
            mark: Some(since.into()),
            took: true,
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
            marked("aws/b", "2026-12-01T00:00:00Z"),
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
        let woken = index.apply(0, &first, Entry::default());
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

    /// A model of the election, on the index alone: objects are created, deleted, turned
    /// ObserveOnly or invalid, lose and regain their grant or their Secret (one by one or all
    /// at once), have their passes (which write or clear the holder's mark in their status),
    /// and the operator restarts (the index rebuilt from the recorded statuses, in any order).
    /// Whatever the sequence: a bucket that objects compete for has one holder, which
    /// competes; a holder that still competes keeps its bucket; and a holder whose mark is
    /// recorded keeps it across a restart.
    mod model {
        use super::*;
        use proptest::prelude::*;

        const OBJECTS: usize = 3;
        const KEYS: [&str; 2] = ["aws/one", "aws/two"];

        #[derive(Clone, Debug)]
        enum Op {
            Create(usize, usize),
            Delete(usize),
            Full(usize, bool),
            Valid(usize, bool),
            Grant(usize, bool),
            Secret(usize, bool),
            AllGranted(bool),
            Pass(usize),
            Restart(Vec<usize>),
        }

        fn op() -> impl Strategy<Value = Op> {
            let i = 0..OBJECTS;
            prop_oneof![
                3 => (i.clone(), 0..KEYS.len()).prop_map(|(i, k)| Op::Create(i, k)),
                1 => i.clone().prop_map(Op::Delete),
                1 => (i.clone(), any::<bool>()).prop_map(|(i, b)| Op::Full(i, b)),
                1 => (i.clone(), any::<bool>()).prop_map(|(i, b)| Op::Valid(i, b)),
                1 => (i.clone(), any::<bool>()).prop_map(|(i, b)| Op::Grant(i, b)),
                1 => (i.clone(), any::<bool>()).prop_map(|(i, b)| Op::Secret(i, b)),
                1 => any::<bool>().prop_map(Op::AllGranted),
                4 => i.clone().prop_map(Op::Pass),
                1 => Just(()).prop_perturb(|(), mut rng| {
                    let mut order: Vec<usize> = (0..OBJECTS).collect();
                    for at in (1..order.len()).rev() {
                        order.swap(at, rng.random_range(0..=at));
                    }
                    Op::Restart(order)
                }),
            ]
        }

        /// One object as the API server and the operator's memory hold it.
        #[derive(Clone, Debug)]
        struct Thing {
            obj: BucketCors,
            key: usize,
            full: bool,
            valid: bool,
            granted: bool,
            /// Its Secret exists with both keys...
            secret: bool,
            /// ...as the operator's last pass over it found (none since a start).
            proof: Option<bool>,
            /// The holder's mark in its status: the bucket and since when.
            mark: Option<(usize, String)>,
            took: bool,
        }

        impl Thing {
            /// As the operator sees it: until a pass reads the Secret, a recorded mark stands
            /// for it.
            fn competes(&self) -> bool {
                self.full && self.valid && self.granted && self.proof.unwrap_or(self.mark.is_some())
            }

            /// As it is.
            fn could_write(&self) -> bool {
                self.full && self.valid && self.granted && self.secret
            }

            fn entry(&self) -> Entry {
                let key = self.competes().then(|| KEYS[self.key].to_owned());
                Entry {
                    mark: self
                        .mark
                        .as_ref()
                        .filter(|(k, _)| self.competes() && *k == self.key)
                        .map(|(_, since)| since.clone()),
                    took: self.took,
                    key,
                }
            }
        }

        struct World {
            things: Vec<Option<Thing>>,
            index: Buckets,
            clock: i64,
        }

        impl World {
            fn holder_of(&self, key: usize) -> Option<String> {
                self.index.holder(KEYS[key]).map(|r| r.name)
            }

            fn apply(&mut self, i: usize) {
                if let Some(thing) = &self.things[i] {
                    self.index.apply(0, &thing.obj, thing.entry());
                }
            }

            /// The object's pass: a competing holder marks its status (before it may write,
            /// and then takes the bucket); anything else clears the mark.
            fn pass(&mut self, i: usize) {
                self.clock += 1;
                let clock = self.clock;
                // The pass reads the Secret first, and tells the index.
                if let Some(thing) = self.things[i].as_mut() {
                    thing.proof = Some(thing.secret);
                }
                self.apply(i);
                let holder = self.things[i]
                    .as_ref()
                    .map(|t| (t.competes(), t.key))
                    .and_then(|(competes, key)| competes.then_some(key))
                    .filter(|key| self.holder_of(*key) == Some(format!("o{i}")));
                let leads = holder.is_some_and(|key| {
                    self.index.leads(
                        KEYS[key],
                        &ObjectRef::from(&self.things[i].as_ref().unwrap().obj),
                    )
                });
                let Some(thing) = self.things[i].as_mut() else {
                    return;
                };
                match holder {
                    Some(key) => {
                        if !leads || thing.mark.as_ref().is_none_or(|(k, _)| *k != key) {
                            thing.mark = Some((key, format!("2026-01-01T00:00:{clock:05}Z")));
                        }
                        thing.took = true;
                    }
                    None => thing.mark = None,
                }
                self.apply(i);
            }

            fn restart(&mut self, order: &[usize]) {
                self.index = Buckets::default();
                for thing in self.things.iter_mut().flatten() {
                    thing.proof = None;
                }
                for &i in order {
                    self.apply(i);
                }
                self.index.set_synced();
            }

            /// The holder of each bucket that has one, with whether its mark is recorded and
            /// leads the others' (a holder writes only after a pass that makes it so).
            fn holders(&self) -> Vec<Option<(String, bool)>> {
                (0..KEYS.len())
                    .map(|key| {
                        self.holder_of(key).map(|name| {
                            let i: usize = name[1..].parse().unwrap();
                            let marked = self.things[i].as_ref().is_some_and(|t| {
                                t.mark.as_ref().is_some_and(|(k, _)| *k == key)
                                    && self.index.leads(KEYS[key], &ObjectRef::from(&t.obj))
                            });
                            (name, marked)
                        })
                    })
                    .collect()
            }

            /// The competitor for `key` the ranking puts first.
            fn best(&self, key: usize) -> Option<String> {
                self.things
                    .iter()
                    .enumerate()
                    .filter_map(|(i, t)| Some((i, t.as_ref()?)))
                    .filter(|(_, t)| t.competes() && t.key == key)
                    .min_by_key(|(i, t)| {
                        let mark = t.entry().mark;
                        (
                            mark.is_none(),
                            Reverse(mark),
                            !t.took,
                            t.obj.metadata.creation_timestamp.clone(),
                            *i,
                        )
                    })
                    .map(|(i, _)| format!("o{i}"))
            }

            fn competing(&self, name: &str) -> bool {
                let i: usize = name[1..].parse().unwrap();
                self.things[i].as_ref().is_some_and(Thing::competes)
            }

            fn could_write(&self, name: &str) -> bool {
                let i: usize = name[1..].parse().unwrap();
                self.things[i].as_ref().is_some_and(Thing::could_write)
            }
        }

        fn run(ops: &[Op]) -> Result<(), TestCaseError> {
            let mut world = World {
                things: vec![None; OBJECTS],
                index: Buckets::default(),
                clock: 0,
            };
            world.index.set_synced();
            for op in ops {
                let before = world.holders();
                match op.clone() {
                    Op::Create(i, key) => {
                        if world.things[i].is_none() {
                            world.clock += 1;
                            world.things[i] = Some(Thing {
                                obj: object(&format!("o{i}"), world.clock),
                                key,
                                full: true,
                                valid: true,
                                granted: true,
                                secret: true,
                                proof: None,
                                mark: None,
                                took: false,
                            });
                            world.apply(i);
                        }
                    }
                    Op::Delete(i) => {
                        if let Some(thing) = world.things[i].take() {
                            world.index.delete(&thing.obj);
                        }
                    }
                    Op::Full(i, on) | Op::Valid(i, on) | Op::Grant(i, on) | Op::Secret(i, on) => {
                        if let Some(thing) = world.things[i].as_mut() {
                            match op {
                                Op::Full(..) => thing.full = on,
                                Op::Valid(..) => thing.valid = on,
                                Op::Grant(..) => thing.granted = on,
                                _ => thing.secret = on,
                            }
                            world.apply(i);
                        }
                    }
                    Op::AllGranted(on) => {
                        for thing in world.things.iter_mut().flatten() {
                            thing.granted = on;
                        }
                        let changes: Vec<_> = world
                            .things
                            .iter()
                            .flatten()
                            .map(|t| (0, &t.obj, t.entry()))
                            .collect();
                        world.index.apply_all(changes);
                    }
                    Op::Pass(i) => world.pass(i),
                    Op::Restart(order) => world.restart(&order),
                }
                let after = world.holders();
                for (key, (was, now)) in before.iter().zip(&after).enumerate() {
                    // A bucket objects compete for has a holder, and the holder competes.
                    let wanted = world
                        .things
                        .iter()
                        .flatten()
                        .any(|t| t.competes() && t.key == key);
                    prop_assert_eq!(now.is_some(), wanted, "bucket {} after {:?}", key, op);
                    if let Some((name, _)) = now {
                        prop_assert!(world.competing(name), "{} holds without competing", name);
                    }
                    // A bucket that changes hands goes to the best ranked: the latest mark,
                    // then one that took the bucket before, then the oldest.
                    if was.as_ref().map(|(n, _)| n) != now.as_ref().map(|(n, _)| n) {
                        prop_assert_eq!(
                            now.as_ref().map(|(n, _)| n.clone()),
                            world.best(key),
                            "bucket {} after {:?}",
                            key,
                            op
                        );
                    }
                    // A holder that still competes keeps the bucket; across a restart, one
                    // whose mark is recorded does (one that never marked never wrote).
                    if let Some((name, marked)) = was {
                        let kept = match op {
                            Op::Restart(_) => *marked && world.could_write(name),
                            _ => world.competing(name),
                        };
                        if kept {
                            prop_assert_eq!(
                                now.as_ref().map(|(n, _)| n),
                                Some(name),
                                "bucket {} changed hands after {:?}",
                                key,
                                op
                            );
                        }
                    }
                }
            }
            Ok(())
        }

        #[test]
        fn a_former_holder_back_in_the_running_does_not_retake_the_bucket_at_a_restart() {
            use Op::*;
            run(&[
                Create(0, 0),
                Pass(0),
                Create(1, 0),
                Full(0, false),
                Pass(1),
                Full(0, true),
                Restart(vec![0, 1, 2]),
                Restart(vec![2, 1, 0]),
            ])
            .unwrap();
        }

        #[test]
        fn a_grant_that_comes_back_for_all_goes_to_the_one_that_took_the_bucket() {
            use Op::*;
            run(&[
                Create(2, 0),
                Create(1, 0),
                Create(0, 0),
                Pass(2),
                AllGranted(false),
                Pass(2),
                AllGranted(true),
                Pass(2),
                Restart(vec![0, 1, 2]),
            ])
            .unwrap();
        }

        #[test]
        fn a_holder_revalidated_keeps_the_bucket_at_a_restart() {
            use Op::*;
            run(&[
                Create(2, 0),
                Pass(2),
                AllGranted(false),
                Create(1, 0),
                Pass(1),
                Valid(1, false),
                Grant(2, true),
                Valid(1, true),
                Restart(vec![0, 1, 2]),
            ])
            .unwrap();
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(3000))]
            #[test]
            fn one_holder_per_bucket_that_changes_only_when_it_stops_competing(
                ops in proptest::collection::vec(op(), 1..60)
            ) {
                run(&ops)?;
            }
        }
    }
}

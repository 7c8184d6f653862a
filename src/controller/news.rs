//! Which objects the watch shows are news to the controller: an object it has not seen, a new
//! generation (a spec edit, or the deletion of an object with a finalizer) or other finalizers.
//! A status write is not news, the operator's own above all.
//!
//! kube's predicate filter does the same keeping each object's name, namespace and uid; this
//! keeps two hashes (16 bytes) per object, and forgets an object when the watch says it is gone
//! or a relist no longer shows it.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};

use kube::runtime::watcher::Event;

use crate::api::BucketCors;

fn hash(value: impl Hash) -> u64 {
    let mut hasher = DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}

fn uid(obj: &BucketCors) -> Option<u64> {
    super::uid_key(obj)
}

#[derive(Default)]
pub struct News {
    // Hash of the uid → hash of the generation and finalizers last seen.
    seen: HashMap<u64, u64>,
    // The uids a relist has shown so far.
    listing: Option<HashSet<u64>>,
}

impl News {
    /// Whether `obj` is news; from now on it is not, until it changes again.
    pub fn is_news(&mut self, obj: &BucketCors) -> bool {
        let Some(uid) = uid(obj) else {
            return true;
        };
        let what = hash((obj.metadata.generation, &obj.metadata.finalizers));
        self.seen.insert(uid, what) != Some(what)
    }

    /// Follows the watch, to forget the objects that are gone.
    pub fn follow(&mut self, event: &Event<BucketCors>) {
        match event {
            Event::Init => self.listing = Some(HashSet::new()),
            Event::InitApply(obj) => {
                if let (Some(listing), Some(uid)) = (&mut self.listing, uid(obj)) {
                    listing.insert(uid);
                }
            }
            Event::InitDone => {
                if let Some(listed) = self.listing.take() {
                    self.seen.retain(|uid, _| listed.contains(uid));
                    self.seen.shrink_to_fit();
                }
            }
            Event::Delete(obj) => {
                if let Some(uid) = uid(obj) {
                    self.seen.remove(&uid);
                }
            }
            Event::Apply(_) => {}
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.seen.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(uid: &str, generation: i64) -> BucketCors {
        let spec = serde_json::from_value(serde_json::json!({"bucket": "b", "rules": []})).unwrap();
        let mut obj = BucketCors::new("web", spec);
        obj.metadata.uid = Some(uid.into());
        obj.metadata.generation = Some(generation);
        obj
    }

    #[test]
    fn a_status_write_is_not_news_a_spec_edit_or_a_finalizer_is() {
        let mut news = News::default();
        let mut obj = object("u1", 1);
        assert!(news.is_news(&obj));
        assert!(!news.is_news(&obj));
        obj.status = Some(Default::default());
        assert!(!news.is_news(&obj), "a status write");
        obj.metadata.finalizers = Some(vec!["bucketcors.dev/cleanup".into()]);
        assert!(news.is_news(&obj), "a finalizer added");
        obj.metadata.generation = Some(2);
        assert!(news.is_news(&obj), "a spec edit");
        // The same name made again is another object.
        assert!(news.is_news(&object("u2", 2)));
    }

    #[test]
    fn what_is_gone_is_forgotten() {
        let mut news = News::default();
        let (a, b) = (object("a", 1), object("b", 1));
        news.is_news(&a);
        news.is_news(&b);
        news.follow(&Event::Delete(a.clone()));
        assert_eq!(news.len(), 1);
        assert!(news.is_news(&a), "made again after a delete: news");
        // A relist that no longer shows b (deleted while the watch was down).
        news.follow(&Event::Init);
        news.follow(&Event::InitApply(a.clone()));
        news.follow(&Event::InitDone);
        assert_eq!(news.len(), 1);
        assert!(!news.is_news(&a), "listed again unchanged: not news");
    }
}

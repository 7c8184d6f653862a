//! The caches of the SDK store (clients, request budgets), kept per owner: what an
//! administrator made (stores, the operator's own identity) apart from what a tenant may make
//! without end (its own Secrets), so that a tenant rotating identities evicts only the least
//! recently used of those, never a store's.

use std::collections::HashMap;
use std::hash::Hash;

/// At most `capacity` entries; a new one evicts the least recently used.
#[derive(Debug)]
pub struct Recent<K, V> {
    capacity: usize,
    entries: HashMap<K, (V, u64)>,
    clock: u64,
}

impl<K: Hash + Eq + Clone, V: Clone> Recent<K, V> {
    pub fn new(capacity: usize) -> Self {
        Recent {
            capacity: capacity.max(1),
            entries: HashMap::new(),
            clock: 0,
        }
    }

    /// The entry of `key`, made by `make` when there is none.
    pub fn get_or_insert_with(&mut self, key: K, make: impl FnOnce() -> V) -> V {
        self.clock += 1;
        if let Some((value, used)) = self.entries.get_mut(&key) {
            *used = self.clock;
            return value.clone();
        }
        if self.entries.len() >= self.capacity {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                self.entries.remove(&oldest);
            }
        }
        let value = make();
        self.entries.insert(key, (value.clone(), self.clock));
        value
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    #[cfg(test)]
    pub fn contains(&self, key: &K) -> bool {
        self.entries.contains_key(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_cache_evicts_the_least_recently_used_entry_only() {
        let mut cache = Recent::new(3);
        for key in ["a", "b", "c"] {
            cache.get_or_insert_with(key, || key.len());
        }
        // "a" is used again: "b" is now the least recently used.
        cache.get_or_insert_with("a", || unreachable!("a is cached"));
        cache.get_or_insert_with("d", || 1);
        assert_eq!(cache.len(), 3);
        assert!(cache.contains(&"a") && cache.contains(&"c") && cache.contains(&"d"));
        assert!(!cache.contains(&"b"));
    }
}

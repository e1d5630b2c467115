//! Bounded label cardinality: the `collection` label carries a collection's name only for the
//! first `metrics.max_collection_labels` distinct collections this process saw; every later
//! one is `other`, so a store with a collection per player cannot grow the exporter's memory
//! (or the monitoring system's) without bound.
//!
//! Each label comes with its metric keys built once ([`LabelKeys`]). An operation finds them
//! in a small per-thread memo of the last few (store, collection) pairs before the shared
//! map: the map's lock, taken by every read of every thread, moved its line between the
//! cores on every operation.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use metrics::SharedString;

use super::keys::LabelKeys;

/// The label value of collections past the bound.
pub(crate) const OTHER: &str = "other";

/// (Store, collection) pairs each thread remembers.
const MEMO: usize = 4;

/// The collections that have their own label value, with their keys.
pub(crate) struct CollectionLabels {
    /// Tells this store's memo entries from other stores' (unique per process).
    id: u64,
    max: usize,
    backend: &'static str,
    named: RwLock<HashMap<Arc<str>, Arc<LabelKeys>>>,
    other: Arc<LabelKeys>,
    store_wide: Arc<LabelKeys>,
}

/// A thread's memo: (store id, collection, its keys), the most recent last.
type Memo = Vec<(u64, Box<str>, Arc<LabelKeys>)>;

thread_local! {
    static RECENT: RefCell<Memo> = const { RefCell::new(Vec::new()) };
}

impl CollectionLabels {
    pub(crate) fn new(max: usize, backend: &'static str) -> Self {
        static IDS: AtomicU64 = AtomicU64::new(0);
        CollectionLabels {
            id: IDS.fetch_add(1, Ordering::Relaxed),
            max,
            backend,
            named: RwLock::new(HashMap::new()),
            other: Arc::new(LabelKeys::new(backend, &SharedString::const_str(OTHER))),
            store_wide: Arc::new(LabelKeys::new(backend, &SharedString::const_str(""))),
        }
    }

    /// Runs `f` with the keys of `collection`'s label (see [`label`](Self::label)).
    pub(crate) fn with_keys<R>(&self, collection: &str, f: impl Fn(&LabelKeys) -> R) -> R {
        if collection.is_empty() {
            return f(&self.store_wide);
        }
        // Used in place, not cloned out: the keys' reference count is shared by every
        // thread, and a clone per operation would write it.
        let memo = RECENT.try_with(|recent| {
            let recent = recent.try_borrow().ok()?;
            let (_, _, keys) = recent
                .iter()
                .rev()
                .find(|(id, name, _)| *id == self.id && **name == *collection)?;
            Some(f(keys))
        });
        if let Ok(Some(done)) = memo {
            return done;
        }
        let keys = self.keys(collection);
        let _ = RECENT.try_with(|recent| {
            if let Ok(mut recent) = recent.try_borrow_mut() {
                if recent.len() >= MEMO {
                    recent.remove(0);
                }
                recent.push((self.id, collection.into(), Arc::clone(&keys)));
            }
        });
        f(&keys)
    }

    /// The keys of `collection`'s label, from the shared map (naming it if there is room).
    fn keys(&self, collection: &str) -> Arc<LabelKeys> {
        if let Ok(named) = self.named.read()
            && let Some(keys) = named.get(collection)
        {
            return Arc::clone(keys);
        }
        let Ok(mut named) = self.named.write() else {
            return Arc::clone(&self.other);
        };
        if let Some(keys) = named.get(collection) {
            return Arc::clone(keys);
        }
        if named.len() >= self.max {
            return Arc::clone(&self.other);
        }
        let name: Arc<str> = Arc::from(collection);
        let keys = Arc::new(LabelKeys::new(
            self.backend,
            &SharedString::from(Arc::clone(&name)),
        ));
        named.insert(name, Arc::clone(&keys));
        keys
    }

    /// The label value for `collection`: its name while it is among the first `max`
    /// distinct ones, else [`OTHER`]. The empty name (operations on the whole store) is
    /// always itself.
    #[cfg(test)]
    pub(crate) fn label(&self, collection: &str) -> String {
        self.with_keys(collection, LabelKeys::collection)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collections_past_the_bound_are_other() {
        let labels = CollectionLabels::new(2, "sqlite");
        assert_eq!(labels.label("a"), "a");
        assert_eq!(labels.label("b"), "b");
        assert_eq!(labels.label("c"), OTHER);
        // The first ones keep their names; the store-wide label is not counted.
        assert_eq!(labels.label("a"), "a");
        assert_eq!(labels.label(""), "");
        assert_eq!(labels.label("d"), OTHER);
    }

    #[test]
    fn a_zero_bound_labels_every_collection_other() {
        let labels = CollectionLabels::new(0, "sqlite");
        assert_eq!(labels.label("games"), OTHER);
    }

    #[test]
    fn a_threads_memo_keeps_stores_apart() {
        // Two stores seen on one thread: each keeps its own bound (the memo is per store).
        let (full, roomy) = (
            CollectionLabels::new(0, "sqlite"),
            CollectionLabels::new(1, "sqlite"),
        );
        assert_eq!(full.label("games"), OTHER);
        assert_eq!(roomy.label("games"), "games");
        assert_eq!(full.label("games"), OTHER);
        // More collections than the memo holds: still the map's answers.
        for i in 0..2 * MEMO {
            assert_eq!(roomy.label(&format!("c{i}")), OTHER);
        }
        assert_eq!(roomy.label("games"), "games");
    }
}

//! Bounded label cardinality: the `collection` label carries a collection's name only for the
//! first `metrics.max_collection_labels` distinct collections this process saw; every later
//! one is `other`, so a store with a collection per player cannot grow the exporter's memory
//! (or the monitoring system's) without bound.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use metrics::SharedString;

/// The label value of collections past the bound.
pub(crate) const OTHER: &str = "other";

/// The collections that have their own label value.
pub(crate) struct CollectionLabels {
    max: usize,
    named: RwLock<HashSet<Arc<str>>>,
}

impl CollectionLabels {
    pub(crate) fn new(max: usize) -> Self {
        CollectionLabels {
            max,
            named: RwLock::new(HashSet::new()),
        }
    }

    /// The label value for `collection`: its name (shared, not copied) while it is among the
    /// first `max` distinct ones, else [`OTHER`]. The empty name (operations on the whole
    /// store) is always itself.
    pub(crate) fn label(&self, collection: &str) -> SharedString {
        if collection.is_empty() {
            return SharedString::const_str("");
        }
        if let Ok(named) = self.named.read()
            && let Some(name) = named.get(collection)
        {
            return SharedString::from(Arc::clone(name));
        }
        let Ok(mut named) = self.named.write() else {
            return SharedString::const_str(OTHER);
        };
        if let Some(name) = named.get(collection) {
            return SharedString::from(Arc::clone(name));
        }
        if named.len() >= self.max {
            return SharedString::const_str(OTHER);
        }
        let name: Arc<str> = Arc::from(collection);
        named.insert(Arc::clone(&name));
        SharedString::from(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collections_past_the_bound_are_other() {
        let labels = CollectionLabels::new(2);
        assert_eq!(&*labels.label("a"), "a");
        assert_eq!(&*labels.label("b"), "b");
        assert_eq!(&*labels.label("c"), OTHER);
        // The first ones keep their names; the store-wide label is not counted.
        assert_eq!(&*labels.label("a"), "a");
        assert_eq!(&*labels.label(""), "");
        assert_eq!(&*labels.label("d"), OTHER);
    }

    #[test]
    fn a_zero_bound_labels_every_collection_other() {
        let labels = CollectionLabels::new(0);
        assert_eq!(&*labels.label("games"), OTHER);
    }
}

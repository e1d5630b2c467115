//! The hasher of the set-based path's in-memory maps (`plan.rs`, `group.rs`): a bulk batch
//! hashes every key about five times and every content hash three times while it is
//! planned, on the writer's critical path (the server waits meanwhile), and std's SipHash
//! was ~2.3 k instructions a document of the plan's ~6 k.
//!
//! The maps use foldhash's fast hasher, seeded afresh for every map from a per-process
//! random secret: keys are the caller's, and a group is bounded, but which keys collide
//! cannot be worked out from outside the process.

use std::collections::HashMap;

/// A map keyed through foldhash, seeded per map.
pub(super) type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// An empty [`FastMap`] with room for `n` entries.
pub(super) fn map_with_capacity<K, V>(n: usize) -> FastMap<K, V> {
    HashMap::with_capacity_and_hasher(n, foldhash::fast::RandomState::default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    /// Two maps hash the same key differently (each is seeded on its own), and within a map
    /// equal keys meet.
    #[test]
    fn maps_are_seeded_apart_and_find_their_keys() {
        let mut a: FastMap<(&str, &str), i64> = map_with_capacity(4);
        let b: FastMap<(&str, &str), i64> = map_with_capacity(4);
        let key = ("games", "g-1");
        let differ = (0..8).any(|i| {
            let k = ("games", if i % 2 == 0 { "g-1" } else { "g-2" });
            a.hasher().hash_one(k) != b.hasher().hash_one(k)
        });
        assert!(differ, "two maps share a seed");
        a.insert(key, 7);
        assert_eq!(a.get(&("games", "g-1")), Some(&7));
        assert_eq!(a.get(&("games", "g-2")), None);
    }
}

//! The hasher of the set-based path's in-memory maps (`plan.rs`, `group.rs`): a bulk batch
//! hashes every key about five times and every content hash three times while it is
//! planned, on the writer's critical path (the server waits meanwhile), and std's SipHash
//! was ~2.3 k instructions a document of the plan's ~6 k.
//!
//! The maps use foldhash's fast hasher. Keys are the caller's (and a group is bounded), so
//! which keys collide must not be worked out from outside the process: its secrets come from
//! the operating system's random source, through std's [`RandomState`] — a per-process
//! shared seed, and a seed of its own for every map. Not foldhash's own
//! [`RandomState`](foldhash::fast::RandomState): its process seed is drawn from addresses
//! and the clock (address-space randomization, which its authors call "not great"), and
//! its per-map seeds from a stack address and a thread-local chain.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::OnceLock;

use foldhash::SharedSeed;
use foldhash::fast::{FoldHasher, SeedableRandomState};

/// A map keyed through foldhash, seeded per map (see the module documentation).
pub(super) type FastMap<K, V> = HashMap<K, V, Seeded>;

/// An empty [`FastMap`] with room for `n` entries.
pub(super) fn map_with_capacity<K, V>(n: usize) -> FastMap<K, V> {
    HashMap::with_capacity_and_hasher(n, Seeded::default())
}

/// The process's shared foldhash seed, from the operating system's random source (std's
/// [`RandomState`] keys are), drawn once.
fn process_seed() -> &'static SharedSeed {
    static SEED: OnceLock<SharedSeed> = OnceLock::new();
    SEED.get_or_init(|| SharedSeed::from_u64(RandomState::new().hash_one(0x5eed_u64)))
}

/// Builds the foldhash hashers of one map: the process's seed and the map's own.
#[derive(Debug, Clone)]
pub(super) struct Seeded(SeedableRandomState);

impl Seeded {
    /// With the map seed `per_map` (tests: [`Default`] draws one).
    fn with_map_seed(per_map: u64) -> Self {
        Seeded(SeedableRandomState::with_seed(per_map, process_seed()))
    }
}

impl Default for Seeded {
    fn default() -> Self {
        // Each std `RandomState` has keys of its own (the thread's random keys, stepped),
        // so each map gets a seed of its own: one SipHash of a word, per map.
        Seeded::with_map_seed(RandomState::new().hash_one(0x6d61_7073_u64))
    }
}

impl BuildHasher for Seeded {
    type Hasher = FoldHasher<'static>;

    fn build_hasher(&self) -> Self::Hasher {
        self.0.build_hasher()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two maps hash the same key differently (each is seeded on its own), and within a map
    /// equal keys meet.
    #[test]
    fn maps_are_seeded_apart_and_find_their_keys() {
        let mut a: FastMap<(&str, &str), i64> = map_with_capacity(4);
        let b: FastMap<(&str, &str), i64> = FastMap::default();
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

    /// Regression guard: the process's secret is not foldhash's own global seed (drawn from
    /// addresses and the clock): with the same map seed, the two hash every key apart.
    #[test]
    fn the_process_seed_is_not_foldhashs_address_derived_one() {
        let ours = Seeded::with_map_seed(42);
        let theirs = SeedableRandomState::with_seed(42, SharedSeed::global_random());
        let keys: [(&str, &str); 4] = [("games", "g-1"), ("games", "g-2"), ("a", ""), ("", "")];
        for k in keys {
            assert_ne!(ours.hash_one(k), theirs.hash_one(k), "{k:?}");
        }
        // The map seed still matters: another one hashes apart.
        assert_ne!(
            Seeded::with_map_seed(43).hash_one(keys[0]),
            ours.hash_one(keys[0])
        );
    }
}

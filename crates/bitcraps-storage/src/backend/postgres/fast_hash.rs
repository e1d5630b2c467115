//! The hasher of the set-based path's in-memory maps (`plan.rs`, `group.rs`): a bulk batch
//! hashes every key about five times and every content hash three times while it is
//! planned, on the writer's critical path (the server waits meanwhile), and std's SipHash
//! was ~2.3 k instructions a document of the plan's ~6 k.
//!
//! [`Folded`] multiplies each 8-byte word, mixed into the state, by a per-process secret and
//! folds the 128-bit product's halves together (the construction of foldhash and of
//! wyhash). The secret comes from std's [`RandomState`], so which keys collide cannot be
//! worked out from outside the process: keys are the caller's, and a group is bounded, but
//! a map of them should not degrade on crafted input either.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::OnceLock;

/// A map keyed through [`Folded`].
pub(super) type FastMap<K, V> = HashMap<K, V, Seeded>;

/// An empty [`FastMap`] with room for `n` entries.
pub(super) fn map_with_capacity<K, V>(n: usize) -> FastMap<K, V> {
    HashMap::with_capacity_and_hasher(n, Seeded::default())
}

/// Builds [`Folded`] hashers with the process's secret.
#[derive(Debug, Clone, Copy)]
pub(super) struct Seeded {
    secret: u64,
}

impl Default for Seeded {
    fn default() -> Self {
        static SECRET: OnceLock<u64> = OnceLock::new();
        // Odd, so the multiplication loses no bit.
        let secret = *SECRET.get_or_init(|| RandomState::new().hash_one(0x5eed_u64) | 1);
        Seeded { secret }
    }
}

impl BuildHasher for Seeded {
    type Hasher = Folded;

    fn build_hasher(&self) -> Folded {
        Folded {
            state: self.secret.rotate_left(29),
            secret: self.secret,
        }
    }
}

/// A folded-multiply hasher; see the module documentation.
#[derive(Debug, Clone, Copy)]
pub(super) struct Folded {
    state: u64,
    secret: u64,
}

impl Folded {
    fn mix(&mut self, word: u64) {
        let (low, high) = split(u128::from(self.state ^ word) * u128::from(self.secret));
        self.state = low ^ high;
    }
}

impl Hasher for Folded {
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            let mut w = [0u8; 8];
            w.copy_from_slice(word);
            self.mix(u64::from_le_bytes(w));
        }
        let tail = words.remainder();
        if !tail.is_empty() {
            let mut w = [0u8; 8];
            w[..tail.len()].copy_from_slice(tail);
            self.mix(u64::from_le_bytes(w));
        }
        // The length, so "ab" + "c" and "a" + "bc" differ (str's hash adds 0xff too).
        self.mix(u64::try_from(bytes.len()).unwrap_or(u64::MAX));
    }

    fn write_u8(&mut self, n: u8) {
        self.mix(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.mix(n);
    }

    fn write_i64(&mut self, n: i64) {
        self.mix(u64::from_le_bytes(n.to_le_bytes()));
    }

    fn write_usize(&mut self, n: usize) {
        self.mix(u64::try_from(n).unwrap_or(u64::MAX));
    }

    fn finish(&self) -> u64 {
        // One more round, so the last word's bits reach the top bits hashbrown groups by.
        let product = u128::from(self.state) * u128::from(self.secret.rotate_left(17) | 1);
        let (low, high) = split(product);
        low ^ high
    }
}

#[expect(
    clippy::cast_possible_truncation,
    reason = "the product's halves are taken apart on purpose"
)]
fn split(product: u128) -> (u64, u64) {
    (product as u64, (product >> 64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_keys_hash_equal_and_near_keys_apart() {
        let s = Seeded::default();
        assert_eq!(
            s.hash_one(("c", "k1")),
            Seeded::default().hash_one(("c", "k1"))
        );
        assert_ne!(s.hash_one(("c", "k1")), s.hash_one(("c", "k2")));
        assert_ne!(s.hash_one(("ab", "c")), s.hash_one(("a", "bc")));
        assert_ne!(s.hash_one(7i64), s.hash_one(8i64));
        assert_ne!(s.hash_one([0u8; 32]), s.hash_one([1u8; 32]));
    }

    #[test]
    fn sequential_keys_spread_over_the_top_and_bottom_bits() {
        // hashbrown picks a bucket from the low bits and a tag from the top 7.
        let s = Seeded::default();
        let mut low = std::collections::HashSet::new();
        let mut top = std::collections::HashSet::new();
        for i in 0..4096i64 {
            let h = s.hash_one(i);
            low.insert(h & 0xfff);
            top.insert(h >> 57);
        }
        assert!(low.len() > 2400, "{} low buckets", low.len());
        assert_eq!(top.len(), 128);
    }
}

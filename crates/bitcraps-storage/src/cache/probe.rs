//! A cache filled with synthetic entries, to measure what an entry really costs in memory
//! (`examples/cache_entry_memory.rs`; the measurement behind [`super::ENTRY_OVERHEAD`]).

use super::{CacheStatistics, CachedValue, ValueCache, cache_key};

/// A value cache holding synthetic documents (feature `testing`).
pub struct FilledCache(ValueCache);

impl FilledCache {
    /// A cache of `capacity_bytes` (no typed tier, no maximum age), after `writes` commits
    /// of distinct keys, each entry `entry_len` bytes (key and stored bytes, the way the
    /// weigher counts them). With a capacity below what the writes need, entries are evicted
    /// as they would be in a store.
    pub fn fill(capacity_bytes: u64, writes: usize, entry_len: usize) -> Self {
        let cache = ValueCache::with_max_age(capacity_bytes, 0, None);
        for i in 0..writes {
            let key = cache_key("games", &format!("g-{i:08}"));
            let stored = vec![b'x'; entry_len.saturating_sub(key.len())];
            cache.committed(&key, Some(CachedValue::plain(&key, &stored)));
        }
        FilledCache(cache)
    }

    /// The cache's statistics (entries held, bytes charged).
    pub fn statistics(&self) -> CacheStatistics {
        self.0.statistics()
    }
}

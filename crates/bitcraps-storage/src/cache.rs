//! The in-memory read cache: serialized documents, bounded in bytes (moka), kept exactly
//! coherent with the database.
//!
//! Coherence protocol. Keys hash to one of [`STRIPES`] stripes, each a mutex around a
//! generation counter. The writer, after a commit, locks the key's stripe, bumps its
//! generation and installs the new value (or removes the old one) — in commit order. A reader
//! that misses notes the stripe generation *before* reading the database and, afterwards,
//! installs what it read only if the generation is unchanged, under the same lock. So a value
//! read before a commit can never be installed after that commit's invalidation.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use moka::sync::Cache;

/// Number of generation stripes.
pub const STRIPES: usize = 256;

/// Bytes charged per entry on top of key and value, for moka's own bookkeeping.
const ENTRY_OVERHEAD: usize = 96;

/// A cheap, non-cryptographic hash (FNV-1a) of a cache key, used only to pick a lock shard or
/// stripe, here and in the access tracker.
pub fn shard_hash(cache_key: &str) -> usize {
    let mut h: u32 = 0x811c_9dc5;
    for b in cache_key.bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    usize::try_from(h).unwrap_or(0)
}

/// Cache key: `collection` NUL `key` (NUL cannot appear in either).
pub fn cache_key(collection: &str, key: &str) -> String {
    let mut k = String::with_capacity(collection.len() + key.len() + 1);
    k.push_str(collection);
    k.push('\0');
    k.push_str(key);
    k
}

/// Cache statistics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStatistics {
    /// Entries held.
    pub entry_count: u64,
    /// Bytes charged against the capacity.
    pub weighted_bytes: u64,
    /// The capacity in bytes (0 when the cache is disabled).
    pub capacity_bytes: u64,
    /// Lookups that found a value.
    pub hits: u64,
    /// Lookups that did not.
    pub misses: u64,
    /// Fills skipped because a write raced with the read that produced them.
    pub raced_fills: u64,
}

/// A generation observed before a database read, to be presented when filling.
#[derive(Debug, Clone, Copy)]
pub struct FillTicket {
    stripe: usize,
    generation: u64,
}

/// The value cache.
pub struct ValueCache {
    cache: Option<Cache<String, Arc<[u8]>>>,
    stripes: [Mutex<u64>; STRIPES],
    capacity: u64,
    hits: AtomicU64,
    misses: AtomicU64,
    raced_fills: AtomicU64,
}

impl ValueCache {
    /// A cache of at most `capacity_bytes` (0 disables it).
    pub fn new(capacity_bytes: u64) -> Self {
        let cache = (capacity_bytes > 0).then(|| {
            Cache::builder()
                .max_capacity(capacity_bytes)
                .weigher(|k: &String, v: &Arc<[u8]>| {
                    u32::try_from(k.len() + v.len() + ENTRY_OVERHEAD).unwrap_or(u32::MAX)
                })
                .build()
        });
        ValueCache {
            cache,
            stripes: std::array::from_fn(|_| Mutex::new(0)),
            capacity: capacity_bytes,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            raced_fills: AtomicU64::new(0),
        }
    }

    fn stripe_of(key: &str) -> usize {
        shard_hash(key) % STRIPES
    }

    fn lock(&self, stripe: usize) -> std::sync::MutexGuard<'_, u64> {
        // A poisoned stripe only means a panic elsewhere while holding it; the counter is
        // still meaningful, so keep going.
        // The modulo keeps the index in bounds of the fixed-size array.
        match self.stripes[stripe % STRIPES].lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Looks a document up, counting the hit or miss.
    pub fn get(&self, key: &str) -> Option<Arc<[u8]>> {
        let found = self.cache.as_ref().and_then(|c| c.get(key));
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Whether `key` is cached, without counting a hit or miss.
    pub fn contains(&self, key: &str) -> bool {
        self.cache.as_ref().is_some_and(|c| c.contains_key(key))
    }

    /// Takes a ticket before reading `key` from the database.
    pub fn ticket(&self, key: &str) -> FillTicket {
        let stripe = Self::stripe_of(key);
        FillTicket {
            stripe,
            generation: *self.lock(stripe),
        }
    }

    /// Installs a document read from the database, unless a write raced with the read.
    pub fn fill(&self, key: String, ticket: FillTicket, value: Arc<[u8]>) {
        let Some(cache) = &self.cache else { return };
        let guard = self.lock(ticket.stripe);
        if *guard == ticket.generation {
            cache.insert(key, value);
        } else {
            self.raced_fills.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records a committed write: installs the new document, or removes the key on delete.
    pub fn committed(&self, key: String, value: Option<Arc<[u8]>>) {
        let mut guard = self.lock(Self::stripe_of(&key));
        *guard = guard.wrapping_add(1);
        if let Some(cache) = &self.cache {
            match value {
                Some(v) => cache.insert(key, v),
                None => cache.invalidate(&key),
            }
        }
    }

    /// Runs moka's pending maintenance (expiry and eviction bookkeeping).
    pub fn run_pending_tasks(&self) {
        if let Some(c) = &self.cache {
            c.run_pending_tasks();
        }
    }

    /// A snapshot of the statistics.
    pub fn statistics(&self) -> CacheStatistics {
        self.run_pending_tasks();
        let (entry_count, weighted_bytes) = self
            .cache
            .as_ref()
            .map(|c| (c.entry_count(), c.weighted_size()))
            .unwrap_or((0, 0));
        CacheStatistics {
            entry_count,
            weighted_bytes,
            capacity_bytes: self.capacity,
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            raced_fills: self.raced_fills.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_after_racing_write_is_dropped() {
        let cache = ValueCache::new(1 << 20);
        let key = cache_key("c", "k");
        let ticket = cache.ticket(&key);
        // A write commits between the reader's database read and its fill.
        cache.committed(key.clone(), Some(Arc::from(&b"new"[..])));
        cache.fill(key.clone(), ticket, Arc::from(&b"old"[..]));
        assert_eq!(cache.get(&key).as_deref(), Some(&b"new"[..]));
        assert_eq!(cache.statistics().raced_fills, 1);
        // A delete also invalidates, and a stale fill cannot resurrect the value.
        let ticket = cache.ticket(&key);
        cache.committed(key.clone(), None);
        cache.fill(key.clone(), ticket, Arc::from(&b"new"[..]));
        assert_eq!(cache.get(&key), None);
        let ticket = cache.ticket(&key);
        cache.fill(key.clone(), ticket, Arc::from(&b"fresh"[..]));
        assert_eq!(cache.get(&key).as_deref(), Some(&b"fresh"[..]));
        let stats = cache.statistics();
        assert_eq!((stats.hits, stats.misses), (2, 1));
    }

    #[test]
    fn disabled_cache_holds_nothing() {
        let cache = ValueCache::new(0);
        cache.committed("a".into(), Some(Arc::from(&b"x"[..])));
        assert_eq!(cache.get("a"), None);
    }
}

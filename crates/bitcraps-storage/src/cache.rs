//! The in-memory read cache: documents in their stored, compressed form
//! ([`CachedValue`]), bounded in bytes (moka), kept exactly coherent with the database.
//!
//! Coherence protocol. Keys hash to one of [`STRIPES`] stripes, each a mutex around a
//! generation counter. The writer, after a commit, locks the key's stripe, bumps its
//! generation and installs the new value (or removes the old one) — in commit order. A reader
//! that misses notes the stripe generation *before* reading the database and, afterwards,
//! installs what it read only if the generation is unchanged, under the same lock. So a value
//! read before a commit can never be installed after that commit's invalidation.
//!
//! Other nodes' writes (with the Redis tier) arrive as [`ValueCache::invalidate`], which bumps
//! the stripe generation exactly like a local commit. While the tier's subscription is down
//! the cache is *untrusted* ([`ValueCache::set_trusted`]): neither read nor filled, and it is
//! flushed entirely ([`ValueCache::invalidate_all`]) before it is trusted again.
//!
//! Stampede protection: concurrent misses of one key under the same stripe generation share
//! one load ([`ValueCache::join_load`]). A reader arriving after a commit sees a newer
//! generation and starts its own load, so it never receives a value read before its write.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use moka::sync::Cache;

use crate::cached::CachedValue;

/// Number of generation stripes.
pub const STRIPES: usize = 256;

/// Bytes charged per entry on top of the key and stored bytes: moka's bookkeeping and the
/// allocations around an entry. Measured, not guessed: 200,000 entries of 154 bytes raised
/// the resident memory by 539 bytes each (moka 0.12, glibc malloc), so the capacity bounds
/// the memory the cache really takes, not only the bytes of the documents.
pub const ENTRY_OVERHEAD: usize = 384;

/// moka's hasher for the cache's `u64` keys, which are already keyed hashes.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are hashed; fold anything else in (never taken).
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Entries = Cache<u64, CachedValue, BuildHasherDefault<PassThrough>>;

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
    /// Misses that joined another reader's load of the same key instead of loading again.
    pub coalesced: u64,
}

/// A generation observed before a database read, to be presented when filling.
#[derive(Debug, Clone, Copy)]
pub struct FillTicket {
    stripe: usize,
    generation: u64,
}

/// One load of a key from L2 or the database, shared by the readers that missed together.
/// Empty until the load succeeds; a failed load leaves it empty and the next waiter loads.
pub type Load = Arc<tokio::sync::OnceCell<Option<Arc<[u8]>>>>;

/// A stripe: its generation and the loads in flight for its keys (each tagged with the
/// generation it started under).
#[derive(Default)]
struct Stripe {
    generation: u64,
    loads: HashMap<String, (u64, Load)>,
}

/// The value cache. moka is keyed by a keyed 64-bit hash of the cache key (an integer key
/// is compared in the bucket, with no pointer to chase); the entry holds the full key, and a
/// lookup whose entry is another key's (a hash collision) is a miss.
pub struct ValueCache {
    cache: Option<Entries>,
    hasher: RandomState,
    stripes: [Mutex<Stripe>; STRIPES],
    capacity: u64,
    trusted: AtomicBool,
    hits: AtomicU64,
    misses: AtomicU64,
    raced_fills: AtomicU64,
    coalesced: AtomicU64,
    /// Bumped by every invalidation that comes from another node (before it takes effect).
    remote_invalidations: AtomicU64,
}

impl ValueCache {
    /// A cache of at most `capacity_bytes` (0 disables it).
    pub fn new(capacity_bytes: u64) -> Self {
        let cache = (capacity_bytes > 0).then(|| {
            Cache::builder()
                .max_capacity(capacity_bytes)
                .weigher(|_: &u64, v: &CachedValue| {
                    u32::try_from(v.len() + ENTRY_OVERHEAD).unwrap_or(u32::MAX)
                })
                .build_with_hasher(BuildHasherDefault::default())
        });
        ValueCache {
            cache,
            hasher: RandomState::new(),
            stripes: std::array::from_fn(|_| Mutex::new(Stripe::default())),
            capacity: capacity_bytes,
            trusted: AtomicBool::new(true),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            raced_fills: AtomicU64::new(0),
            coalesced: AtomicU64::new(0),
            remote_invalidations: AtomicU64::new(0),
        }
    }

    fn slot(&self, key: &str) -> u64 {
        self.hasher.hash_one(key)
    }

    fn stripe_of(key: &str) -> usize {
        shard_hash(key) % STRIPES
    }

    fn lock(&self, stripe: usize) -> std::sync::MutexGuard<'_, Stripe> {
        // A poisoned stripe only means a panic elsewhere while holding it; the counter is
        // still meaningful, so keep going.
        // The modulo keeps the index in bounds of the fixed-size array.
        match self.stripes[stripe % STRIPES].lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Whether entries may be read and filled (always, unless the Redis tier says otherwise).
    fn usable(&self) -> Option<&Entries> {
        self.cache
            .as_ref()
            .filter(|_| self.trusted.load(Ordering::Acquire))
    }

    /// Marks the cache trusted or not. Untrusted, it is neither read nor filled (the Redis
    /// tier's subscription is down, so other nodes' invalidations may be missed).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub fn set_trusted(&self, trusted: bool) {
        self.trusted.store(trusted, Ordering::Release);
    }

    /// Looks a document up, counting the hit or miss.
    pub fn get(&self, key: &str) -> Option<CachedValue> {
        let found = self
            .usable()
            .and_then(|c| c.get(&self.slot(key)))
            .filter(|v| v.is_for(key));
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
        self.usable()
            .and_then(|c| c.get(&self.slot(key)))
            .is_some_and(|v| v.is_for(key))
    }

    /// Takes a ticket before reading `key` from the database (readers get theirs from
    /// [`ValueCache::join_load`]).
    #[cfg(test)]
    pub fn ticket(&self, key: &str) -> FillTicket {
        let stripe = Self::stripe_of(key);
        FillTicket {
            stripe,
            generation: self.lock(stripe).generation,
        }
    }

    /// Installs a document read from the database, unless a write raced with the read.
    pub fn fill(&self, ticket: FillTicket, value: CachedValue, key: &str) {
        let Some(cache) = self.usable() else { return };
        let guard = self.lock(ticket.stripe);
        if guard.generation == ticket.generation {
            cache.insert(self.slot(key), value);
        } else {
            self.raced_fills.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records a committed write: installs the new document, or removes the key on delete.
    pub fn committed(&self, key: &str, value: Option<CachedValue>) {
        let mark = self.remote_mark();
        self.committed_since(key, value, mark);
    }

    /// Drops `key`'s entry (one that failed to decode), and defeats fills that read before.
    pub fn discard(&self, key: &str) {
        self.committed(key, None);
    }

    /// A mark to take before committing, for [`ValueCache::committed_since`].
    pub fn remote_mark(&self) -> u64 {
        self.remote_invalidations.load(Ordering::Acquire)
    }

    /// Like [`ValueCache::committed`], but installs the document only if no other node's
    /// invalidation arrived since `mark` (taken before the commit); otherwise only removes the
    /// key. Another node may have committed the same key after this commit, and its message
    /// may already be processed — installing now would leave this node's older value cached
    /// with no message left to remove it. (Without the Redis tier nothing bumps the mark.)
    pub fn committed_since(&self, key: &str, value: Option<CachedValue>, mark: u64) {
        let mut guard = self.lock(Self::stripe_of(key));
        guard.generation = guard.generation.wrapping_add(1);
        if let Some(cache) = &self.cache {
            match value {
                Some(v) if self.remote_mark() == mark => cache.insert(self.slot(key), v),
                // Removes whatever holds the slot: this key's entry, or (after a hash
                // collision) another key's, which only costs that key a miss.
                _ => cache.invalidate(&self.slot(key)),
            }
        }
    }

    /// Another node changed `key`: drop it and defeat fills that read it before.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub fn invalidate(&self, key: &str) {
        // The mark moves first: a writer that checks it after this sees the change, and one
        // that installed before is undone by the removal below (same stripe lock).
        self.remote_invalidations.fetch_add(1, Ordering::AcqRel);
        let mut guard = self.lock(Self::stripe_of(key));
        guard.generation = guard.generation.wrapping_add(1);
        if let Some(cache) = &self.cache {
            cache.invalidate(&self.slot(key));
        }
    }

    /// Drops everything and defeats every fill in progress (after missed invalidations).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub fn invalidate_all(&self) {
        self.remote_invalidations.fetch_add(1, Ordering::AcqRel);
        for stripe in 0..STRIPES {
            let mut guard = self.lock(stripe);
            guard.generation = guard.generation.wrapping_add(1);
        }
        // Entries installed before the bumps are removed here; later fills carry old tickets.
        if let Some(cache) = &self.cache {
            cache.invalidate_all();
        }
    }

    /// After a miss: the reader's ticket (as [`ValueCache::ticket`]) and the load of `key`
    /// under that generation — an existing one (counted as coalesced, `true`) or a new one
    /// this reader performs (`false`). One stripe lock for both.
    pub fn join_load(&self, key: &str) -> (FillTicket, Load, bool) {
        let stripe = Self::stripe_of(key);
        let mut guard = self.lock(stripe);
        let ticket = FillTicket {
            stripe,
            generation: guard.generation,
        };
        if let Some((generation, load)) = guard.loads.get(key)
            && *generation == ticket.generation
        {
            let load = Arc::clone(load);
            drop(guard);
            self.coalesced.fetch_add(1, Ordering::Relaxed);
            return (ticket, load, true);
        }
        let load = Load::default();
        guard
            .loads
            .insert(key.to_owned(), (ticket.generation, Arc::clone(&load)));
        (ticket, load, false)
    }

    /// A reader is done with `load`; the first to finish removes it (if it is still the one
    /// registered), so later misses load afresh.
    pub fn finish_load(&self, key: &str, ticket: FillTicket, load: &Load) {
        let mut guard = self.lock(ticket.stripe);
        if guard
            .loads
            .get(key)
            .is_some_and(|(_, current)| Arc::ptr_eq(current, load))
        {
            guard.loads.remove(key);
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
            coalesced: self.coalesced.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(key: &str, bytes: &[u8]) -> CachedValue {
        CachedValue::plain(key, bytes)
    }

    /// The cached document under `key`, decoded (counts a hit or miss like `get`).
    fn raw(cache: &ValueCache, key: &str) -> Option<Vec<u8>> {
        cache
            .get(key)
            .map(|c| c.decode(|| key.to_owned()).map(|r| r.into_owned()))
            .transpose()
            .ok()
            .flatten()
    }

    #[test]
    fn an_entry_in_a_slot_is_found_only_by_its_own_key() {
        // A hash collision, staged: key b's slot holds key a's entry.
        let cache = ValueCache::new(1 << 20);
        let (a, b) = (cache_key("c", "a"), cache_key("c", "b"));
        cache.fill(cache.ticket(&b), v(&a, b"a's document"), &b);
        assert_eq!(raw(&cache, &b), None, "another key's entry is a miss");
        assert!(!cache.contains(&b));
        assert_eq!(raw(&cache, &a), None, "a's own slot is empty");
        cache.committed(&b, Some(v(&b, b"b's document")));
        assert_eq!(raw(&cache, &b), Some(b"b's document".to_vec()));
        assert_eq!(cache.statistics().misses, 2);
    }

    #[test]
    fn a_discarded_entry_is_gone_and_older_fills_lose() {
        let cache = ValueCache::new(1 << 20);
        let key = cache_key("c", "k");
        let ticket = cache.ticket(&key);
        cache.committed(&key, Some(v(&key, b"undecodable")));
        cache.discard(&key);
        assert_eq!(raw(&cache, &key), None);
        cache.fill(ticket, v(&key, b"read before the discard"), &key);
        assert_eq!(raw(&cache, &key), None);
        cache.fill(cache.ticket(&key), v(&key, b"fresh"), &key);
        assert_eq!(raw(&cache, &key), Some(b"fresh".to_vec()));
    }

    #[test]
    fn fill_after_racing_write_is_dropped() {
        let cache = ValueCache::new(1 << 20);
        let key = cache_key("c", "k");
        let ticket = cache.ticket(&key);
        // A write commits between the reader's database read and its fill.
        cache.committed(&key, Some(v(&key, b"new")));
        cache.fill(ticket, v(&key, b"old"), &key);
        assert_eq!(raw(&cache, &key), Some(b"new".to_vec()));
        assert_eq!(cache.statistics().raced_fills, 1);
        // A delete also invalidates, and a stale fill cannot resurrect the value.
        let ticket = cache.ticket(&key);
        cache.committed(&key, None);
        cache.fill(ticket, v(&key, b"new"), &key);
        assert_eq!(raw(&cache, &key), None);
        let ticket = cache.ticket(&key);
        cache.fill(ticket, v(&key, b"fresh"), &key);
        assert_eq!(raw(&cache, &key), Some(b"fresh".to_vec()));
        let stats = cache.statistics();
        assert_eq!((stats.hits, stats.misses), (2, 1));
    }

    #[test]
    fn remote_invalidation_defeats_fills_and_untrusted_cache_is_bypassed() {
        let cache = ValueCache::new(1 << 20);
        let key = cache_key("c", "k");
        cache.committed(&key, Some(v(&key, b"v1")));
        let ticket = cache.ticket(&key);
        cache.invalidate(&key);
        assert_eq!(
            raw(&cache, &key),
            None,
            "another node's write drops the entry"
        );
        cache.fill(ticket, v(&key, b"v1"), &key);
        assert_eq!(
            raw(&cache, &key),
            None,
            "a fill from before the invalidation loses"
        );
        cache.committed(&key, Some(v(&key, b"v2")));
        cache.set_trusted(false);
        assert_eq!(raw(&cache, &key), None, "untrusted: not read");
        assert!(!cache.contains(&key));
        let ticket = cache.ticket(&key);
        cache.invalidate_all();
        cache.set_trusted(true);
        assert_eq!(
            raw(&cache, &key),
            None,
            "flushed before being trusted again"
        );
        cache.fill(ticket, v(&key, b"old"), &key);
        assert_eq!(
            raw(&cache, &key),
            None,
            "a fill from before the flush loses"
        );
    }

    #[test]
    fn a_write_is_not_installed_over_a_later_remote_invalidation() {
        let cache = ValueCache::new(1 << 20);
        let key = cache_key("c", "k");
        let mark = cache.remote_mark();
        // While this node commits, another node commits the same key and its message lands.
        cache.invalidate(&key);
        cache.committed_since(&key, Some(v(&key, b"mine")), mark);
        assert_eq!(
            raw(&cache, &key),
            None,
            "maybe older than the other node's write"
        );
        let mark = cache.remote_mark();
        cache.committed_since(&key, Some(v(&key, b"mine")), mark);
        assert_eq!(raw(&cache, &key), Some(b"mine".to_vec()));
    }

    #[test]
    fn loads_are_shared_within_one_generation_only() {
        let cache = ValueCache::new(0);
        let key = cache_key("c", "k");
        let (ticket, first, joined) = cache.join_load(&key);
        assert!(!joined);
        let (_, second, joined) = cache.join_load(&key);
        assert!(joined && Arc::ptr_eq(&first, &second));
        // A commit in between: a later reader must not get a value read before it.
        cache.committed(&key, None);
        let (later, third, joined) = cache.join_load(&key);
        assert!(!joined && !Arc::ptr_eq(&first, &third));
        assert_ne!(later.generation, ticket.generation);
        cache.finish_load(&key, ticket, &first);
        cache.finish_load(&key, later, &third);
        let (_, fourth, joined) = cache.join_load(&key);
        assert!(!joined && !Arc::ptr_eq(&third, &fourth));
        assert_eq!(cache.statistics().coalesced, 1);
    }

    #[test]
    fn disabled_cache_holds_nothing() {
        let cache = ValueCache::new(0);
        cache.committed("a", Some(v("a", b"x")));
        assert_eq!(raw(&cache, "a"), None);
    }
}

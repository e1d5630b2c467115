//! The in-memory read cache: documents in their stored, compressed form
//! ([`CachedValue`]), bounded in bytes (quick_cache), kept exactly coherent with the database.
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

use std::hash::{BuildHasherDefault, Hasher, RandomState};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use quick_cache::sync::Cache;
use quick_cache::{Lifecycle, OptionsBuilder, Weighter};

use crate::prefetch::Ledger;
use crate::striped::Striped;

mod doc_key;
mod entry;
mod inflight;
#[cfg(feature = "testing")]
mod probe;
mod stripes;
#[cfg(test)]
mod tests;
mod typed;

pub use doc_key::DocKey;
pub use entry::{CachedValue, TYPED_BYTES_PER_JSON_BYTE, TYPED_FIXED_CHARGE};
#[cfg(feature = "testing")]
pub use probe::FilledCache;
use stripes::Stripes;
pub use stripes::{FillTicket, STRIPES};
use typed::TypedTier;

/// Bytes charged per entry on top of the key and stored bytes: the cache's bookkeeping and
/// the allocations around an entry. Measured, not guessed (`examples/cache_entry_memory.rs`):
/// a full cache holding 100,000 entries of 154 bytes after 400,000 writes (so with the ghost
/// entries its admission keeps) took 364 resident bytes an entry, 210 beyond the entry's own
/// (quick_cache 0.6, glibc malloc; 242-244 before the entry's fields were packed into one
/// 112-byte allocation, `entry.rs`; moka took 385), so the capacity bounds the memory the
/// cache really takes, not only the bytes of the documents.
pub const ENTRY_OVERHEAD: usize = 216;

/// The hasher for the cache's `u64` keys, which are already keyed hashes.
#[derive(Default, Clone)]
pub(crate) struct PassThrough(u64);

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

pub(crate) type Slots = BuildHasherDefault<PassThrough>;

/// The keyed hasher of document keys ([`DocKey`]), one per process: the cache's slots and the
/// access tracker's map share it, so a read hashes its key once.
fn key_hasher() -> &'static RandomState {
    static HASHER: OnceLock<RandomState> = OnceLock::new();
    HASHER.get_or_init(RandomState::new)
}

/// An entry's weight: its bytes and [`ENTRY_OVERHEAD`].
#[derive(Clone)]
struct Charge;

impl Weighter<u64, CachedValue> for Charge {
    fn weight(&self, _: &u64, v: &CachedValue) -> u64 {
        charge(v)
    }
}

/// What the cache accounts for as entries leave it.
#[derive(Clone)]
struct Accounts {
    /// What became of prefetched entries (`prefetch`).
    ledger: Arc<Ledger>,
    /// Bytes charged for promoted entries (hot documents re-stored decompressed) in the cache.
    promoted: Arc<AtomicU64>,
}

impl Accounts {
    /// Accounts for an entry that left the cache (evicted, refused, expired, replaced by a
    /// write, invalidated): a prefetched entry nobody read is waste; a promoted one returns
    /// its bytes to the promotion budget. Each once, however many paths retire the entry.
    /// Its decoded value, if it held one, goes (no read can reach it any more).
    fn retire(&self, v: &CachedValue) {
        v.clear_typed();
        if let Some(origin) = v.take_prefetched() {
            self.ledger.wasted(origin, charge(v));
        }
        if v.take_promoted() {
            self.promoted.fetch_sub(charge(v), Ordering::AcqRel);
        }
    }
}

/// Evictions (and entries refused for their size) are retired, and their holds in the typed
/// tier let go (else the tier went on charging a decoded value no entry held).
#[derive(Clone)]
struct Evictions(Accounts, Arc<TypedTier>);

impl Lifecycle<u64, CachedValue> for Evictions {
    type RequestState = ();

    fn begin_request(&self) {}

    fn on_evict(&self, (): &mut (), slot: u64, v: CachedValue) {
        self.0.retire(&v);
        self.1.forget(slot, &v);
    }
}

/// The share of the byte cache (1/n) that promoted entries — hot documents re-stored
/// decompressed, so their reads decompress nothing — may take. A promoted game document is
/// charged ~3× its compressed entry, so the share is small: at the default 64 MiB, 2 MiB
/// (~1,700 documents, the ones that take ~60 % of the reads under zipf(0.99) over 200,000).
/// An eighth (8 MiB) cost the benchmark's full run 47 % more misses (hit rate 0.975 →
/// 0.963) and 8 MiB of peak RSS for no CPU saved per read (BENCHMARKS.md).
const PROMOTED_SHARE: u64 = 32;

type Entries = Cache<u64, CachedValue, Charge, Slots, Evictions>;

/// The smallest share of the capacity a shard of a cache gets: an entry larger than its
/// shard's share is refused, so small caches (tests, tiny configurations) are one shard.
const MIN_SHARD_BYTES: u64 = 4 << 20;

/// Shards for a cache of `capacity` bytes: one per [`MIN_SHARD_BYTES`], at most 16 (reads
/// take a shard's read lock; more shards than a few per core buy nothing).
fn shards(capacity: u64) -> usize {
    let n = usize::try_from(capacity / MIN_SHARD_BYTES).unwrap_or(usize::MAX);
    n.clamp(1, 16)
}

/// A weighted, sharded cache (quick_cache: CLOCK-Pro-like, with a ghost queue for
/// admission) of at most `capacity` bytes, for entries of about `typical` bytes each.
fn bounded<V, W, L>(
    capacity: u64,
    typical: u64,
    weigher: W,
    lifecycle: L,
) -> Cache<u64, V, W, Slots, L>
where
    V: Clone,
    W: Weighter<u64, V> + Clone,
    L: Lifecycle<u64, V> + Clone,
{
    let items = usize::try_from(capacity / typical.max(1)).unwrap_or(usize::MAX);
    let options = OptionsBuilder::new()
        .shards(shards(capacity))
        .weight_capacity(capacity)
        .estimated_items_capacity(items.max(1))
        .build();
    match options {
        Ok(options) => Cache::with_options(options, weigher, Slots::default(), lifecycle),
        // Unreachable: both required options are set above.
        Err(_) => Cache::with(items.max(1), capacity, weigher, Slots::default(), lifecycle),
    }
}

/// A cheap, non-cryptographic hash (FNV-1a) of a cache key, used only to pick a lock shard or
/// stripe, here and in the access tracker.
pub fn shard_hash(cache_key: &str) -> usize {
    usize::try_from(fnv_extend(FNV_OFFSET, cache_key.as_bytes())).unwrap_or(0)
}

/// FNV-1a's starting state.
const FNV_OFFSET: u32 = 0x811c_9dc5;

/// FNV-1a of `bytes` continued from `h` (so a key hashed in parts hashes as a whole).
fn fnv_extend(mut h: u32, bytes: &[u8]) -> u32 {
    for b in bytes {
        h = (h ^ u32::from(*b)).wrapping_mul(0x0100_0193);
    }
    h
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
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
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
    /// Entries that also hold their document decoded (the typed tier of `retrieve_shared`).
    pub typed_entries: u64,
    /// Bytes charged for those decoded documents (part of `weighted_bytes`).
    pub typed_bytes: u64,
    /// Typed reads (`retrieve_shared`) of a cached entry answered by its held decoded value:
    /// no decompression, no parsing.
    pub typed_hits: u64,
    /// Typed reads of a cached entry that decoded and parsed it (no decoded value held).
    pub typed_decodes: u64,
    /// Bytes charged for hot documents re-stored decompressed, so their reads decompress
    /// nothing (part of `weighted_bytes`; at most 1/32 of the byte cache).
    pub promoted_bytes: u64,
    /// Decoded keyframes of deltas held (`chunk/keyframes.rs`; bounded on their own, apart
    /// from `capacity_bytes`).
    pub keyframe_entries: u64,
    /// Their bytes.
    pub keyframe_bytes: u64,
}

/// The value cache. Entries are keyed by a keyed 64-bit hash of the cache key (an integer
/// key is compared in the bucket, with no pointer to chase); the entry holds the full key, and
/// a lookup whose entry is another key's (a hash collision) is a miss.
pub struct ValueCache {
    cache: Option<Entries>,
    typed: Arc<TypedTier>,
    stripes: Stripes,
    capacity: u64,
    /// How long an entry may serve reads after its install (the Redis tier's
    /// `l1_max_age`), measured from `epoch`.
    max_age: Option<Duration>,
    epoch: Instant,
    trusted: AtomicBool,
    /// What reads count, striped per thread (`striped.rs`): a counter every reader adds
    /// to, on one line beside `trusted` (read by every lookup), moved that line between the
    /// cores on every read.
    reads: Striped<ReadCounts>,
    raced_fills: AtomicU64,
    coalesced: AtomicU64,
    /// Bumped by every invalidation that comes from another node (before it takes effect).
    remote_invalidations: AtomicU64,
    /// What leaving entries are accounted for: the prefetch ledger, the promoted bytes.
    accounts: Accounts,
    /// Most bytes promoted entries may be charged (0: none is promoted).
    promote_budget: u64,
}

/// One thread's read counts.
#[derive(Debug, Default)]
struct ReadCounts {
    hits: AtomicU64,
    misses: AtomicU64,
    typed_hits: AtomicU64,
    typed_decodes: AtomicU64,
}

/// The bytes an entry is charged (its weight).
fn charge(v: &CachedValue) -> u64 {
    u64::try_from(v.len() + ENTRY_OVERHEAD).unwrap_or(u64::MAX)
}

/// What a typical entry is charged: a compressed game document (~150 bytes) and its key.
const TYPICAL_CHARGE: u64 = 180 + ENTRY_OVERHEAD as u64;

impl ValueCache {
    /// A cache of at most `capacity_bytes` (0 disables it), a quarter of it for decoded
    /// values, without a maximum age.
    #[cfg(test)]
    pub fn new(capacity_bytes: u64) -> Self {
        Self::with_max_age(capacity_bytes, 25, None)
    }

    /// A cache of at most `capacity_bytes`, `typed_percent` of them for decoded values (the
    /// typed tier) and the rest for stored forms, whose entries expire `max_age` after they
    /// were installed (the Redis tier's `l1_max_age`: bounds how long a writer partitioned
    /// from Redis can leave this node's entries stale).
    pub fn with_max_age(
        capacity_bytes: u64,
        typed_percent: u32,
        max_age: Option<Duration>,
    ) -> Self {
        let typed_capacity = capacity_bytes / 100 * u64::from(typed_percent.min(100));
        let stored_capacity = capacity_bytes - typed_capacity;
        let accounts = Accounts {
            ledger: Arc::new(Ledger::default()),
            promoted: Arc::new(AtomicU64::new(0)),
        };
        let typed = Arc::new(TypedTier::new(if stored_capacity > 0 {
            typed_capacity
        } else {
            0
        }));
        let cache = (stored_capacity > 0).then(|| {
            bounded(
                stored_capacity,
                TYPICAL_CHARGE,
                Charge,
                Evictions(accounts.clone(), Arc::clone(&typed)),
            )
        });
        ValueCache {
            cache,
            typed,
            stripes: Stripes::new(),
            capacity: capacity_bytes,
            max_age,
            epoch: Instant::now(),
            trusted: AtomicBool::new(true),
            reads: Striped::default(),
            raced_fills: AtomicU64::new(0),
            coalesced: AtomicU64::new(0),
            remote_invalidations: AtomicU64::new(0),
            accounts,
            promote_budget: stored_capacity / PROMOTED_SHARE,
        }
    }

    /// The prefetch ledger this cache reports into.
    pub fn ledger(&self) -> &Arc<Ledger> {
        &self.accounts.ledger
    }

    fn slot(&self, key: &str) -> u64 {
        DocKey::of(key).hash()
    }

    /// Whether entries may be read and filled (always, unless the Redis tier says otherwise).
    fn usable(&self) -> Option<&Entries> {
        self.cache
            .as_ref()
            .filter(|_| self.trusted.load(Ordering::Acquire))
    }

    /// Milliseconds since the cache was made (only read with a maximum age).
    fn clock_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// `value`, stamped with the instant (on the cache's clock) from which it serves no more
    /// reads, when entries have a maximum age.
    fn stamped(&self, value: CachedValue) -> CachedValue {
        match self.max_age {
            None => value,
            Some(age) => {
                let age = u64::try_from(age.as_millis()).unwrap_or(u64::MAX);
                value.stale_from(self.clock_ms().saturating_add(age))
            }
        }
    }

    /// Whether `value`, found in the cache, is younger than the maximum age.
    fn fresh(&self, value: &CachedValue) -> bool {
        self.max_age.is_none() || self.clock_ms() < value.stale_at()
    }

    /// The entry of `key` (under `slot`), if it is there, the key's own and not too old. One
    /// past its maximum age is removed (what a TTL would have done).
    fn lookup(&self, cache: &Entries, doc: &DocKey<'_>) -> Option<CachedValue> {
        let slot = doc.hash();
        let found = cache.get(&slot).filter(|v| v.is_for_doc(doc))?;
        if self.fresh(&found) {
            return Some(found);
        }
        if let Some((_, old)) = cache.remove_if(&slot, |v| v.same_entry(&found)) {
            self.accounts.retire(&old);
        }
        None
    }

    /// Installs `value` under `slot`, accounting for the entry it replaces. One `insert`
    /// replaces the old entry: removing it first would let a reader miss in between and load
    /// the replaced value from elsewhere (L2 of a writer whose invalidation is slow) under the
    /// generation the write left.
    fn install(&self, cache: &Entries, slot: u64, value: CachedValue) {
        let old = cache.peek(&slot);
        cache.insert(slot, self.stamped(value));
        if let Some(old) = old {
            // Counted once even if an eviction retired it meanwhile (`take_prefetched`).
            self.accounts.retire(&old);
        }
    }

    /// Removes whatever holds `slot`, accounting for it.
    fn remove_slot(&self, cache: &Entries, slot: u64) {
        if let Some((_, old)) = cache.remove(&slot) {
            self.accounts.retire(&old);
        }
    }

    /// Marks the cache trusted or not. Untrusted, it is neither read nor filled (the Redis
    /// tier's subscription is down, so other nodes' invalidations may be missed).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub fn set_trusted(&self, trusted: bool) {
        self.trusted.store(trusted, Ordering::Release);
    }

    /// Looks a document up, counting the hit or miss. A record expired at `now_ms` (the
    /// store's clock) is a miss.
    pub fn get(&self, key: &str, now_ms: i64) -> Option<CachedValue> {
        self.get_tracked(key, now_ms).map(|(v, _)| v)
    }

    /// [`get`](Self::get), also saying whether the hit was the first read of a prefetched
    /// entry (counted used in the ledger).
    pub fn get_tracked(&self, key: &str, now_ms: i64) -> Option<(CachedValue, bool)> {
        self.get_doc(&DocKey::of(key), now_ms)
    }

    /// [`get_tracked`](Self::get_tracked) by a [`DocKey`] (the read path: no joined key is
    /// built, and the key's hash is the one the access tracker uses too).
    pub fn get_doc(&self, doc: &DocKey<'_>, now_ms: i64) -> Option<(CachedValue, bool)> {
        let found = self
            .usable()
            .and_then(|c| self.lookup(c, doc))
            .filter(|v| v.live_at(now_ms));
        let counts = self.reads.local();
        let counter = if found.is_some() {
            &counts.hits
        } else {
            &counts.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        crate::observe::cache_request(crate::observe::Tier::L1, found.is_some());
        found.map(|v| {
            let prefetched = v.take_prefetched().is_some();
            if prefetched {
                self.accounts.ledger.used(charge(&v));
            }
            (v, prefetched)
        })
    }

    /// Whether `key` is cached and live at `now_ms`, without counting a hit or miss.
    pub fn contains(&self, key: &str, now_ms: i64) -> bool {
        self.usable()
            .and_then(|c| self.lookup(c, &DocKey::of(key)))
            .is_some_and(|v| v.live_at(now_ms))
    }

    /// Installs a document a read missed and loaded, unless a write raced with the read. The
    /// read counts as the entry's first: its next read holds or promotes it
    /// ([`CachedValue::read_again`]), as an entry a write installed is held from its second read.
    pub fn fill(&self, ticket: FillTicket, value: CachedValue, key: &str) {
        let Some(cache) = self.usable() else { return };
        let guard = self.stripes.lock(ticket.stripe);
        if guard.generation == ticket.generation {
            value.mark_read();
            self.install(cache, self.slot(key), value);
        } else {
            self.raced_fills.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Installs a prefetched document, exactly like [`fill`](Self::fill) (refused if a write
    /// raced with the read), marked with its `origin` until it is read or removed. `true` when
    /// it was installed.
    pub fn fill_prefetched(
        &self,
        ticket: FillTicket,
        value: CachedValue,
        key: &str,
        origin: u32,
    ) -> bool {
        let Some(cache) = self.usable() else {
            return false;
        };
        let doc = DocKey::of(key);
        let slot = doc.hash();
        // A reader that filled the key since the prefetch looked needs nothing from it.
        if self.lookup(cache, &doc).is_some() {
            return false;
        }
        let guard = self.stripes.lock(ticket.stripe);
        if guard.generation != ticket.generation {
            self.raced_fills.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        value.mark_prefetched(origin);
        self.accounts.ledger.installed(charge(&value));
        self.install(cache, slot, value);
        true
    }

    /// Whether decoded documents may be kept beside entries (the typed tier has a budget).
    pub fn keeps_typed(&self) -> bool {
        self.typed.enabled()
    }

    /// Counts a typed read of a cached entry: answered by its held decoded value (`hit`), or
    /// decoded and parsed.
    pub fn count_typed(&self, hit: bool) {
        let counts = self.reads.local();
        let counter = if hit {
            &counts.typed_hits
        } else {
            &counts.typed_decodes
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a typed read of `doc` answered by its held value (see `typed.rs`; a lookup of
    /// a slot the tier does not hold changes nothing, so reads that decode skip it).
    pub fn touch_typed_doc(&self, doc: &DocKey<'_>) {
        self.typed.touch(doc.hash());
    }

    /// Hands `entry`, whose decoded value was just set, to the typed tier — if it is still the
    /// entry of `key`; otherwise (a write replaced it meanwhile) its decoded value is dropped.
    #[cfg(test)]
    pub fn hold_typed(&self, key: &str, entry: &CachedValue) {
        self.hold_typed_doc(&DocKey::of(key), entry);
    }

    /// Hands `entry`, whose decoded value was just set, to the typed tier — if it is still the
    /// entry of `doc`; otherwise (a write replaced it meanwhile) its decoded value is dropped.
    pub fn hold_typed_doc(&self, doc: &DocKey<'_>, entry: &CachedValue) {
        if let Some(cache) = self.usable() {
            let slot = doc.hash();
            let let_go = {
                // The stripe lock orders this with commits and invalidations of the key.
                let _guard = self.stripes.lock(doc.stripe());
                cache
                    .peek(&slot)
                    .is_some_and(|c| c.same_entry(entry))
                    .then(|| self.typed.hold(slot, entry))
            };
            if let Some(let_go) = let_go {
                // Outside the tier's lock and the stripe's: the entries the tier let go of
                // drop their decoded values, if they are still cached. (One a write replaced
                // meanwhile dropped it as it was retired; a stale address naming a newer
                // entry only costs that entry a decode.)
                for (slot, held) in let_go {
                    if let Some(current) = cache.peek(&slot)
                        && held.is_of(&current)
                    {
                        current.clear_typed();
                    }
                }
                return;
            }
        }
        entry.clear_typed();
    }

    /// Re-stores a hot entry decompressed: `entry`, just read again as `doc`, is replaced by
    /// [`CachedValue::promoted`] of `raw` (its JSON), so later reads decompress nothing —
    /// while promoted entries' charges stay within `1/PROMOTED_SHARE` of the capacity (what
    /// they take is charged like any entry, so the cache's bound holds), only if `entry` is
    /// still the key's current entry (the stripe lock orders this with commits and
    /// invalidations, as for a fill), and not for an entry that is stored uncompressed or
    /// already holds a decoded value (the typed tier serves it better). `true` when promoted.
    pub fn promote(&self, doc: &DocKey<'_>, entry: &CachedValue, raw: &[u8]) -> bool {
        let Some(cache) = self.usable() else {
            return false;
        };
        if self.promote_budget == 0 || !entry.is_compressed() || entry.has_typed() {
            return false;
        }
        let promoted = &self.accounts.promoted;
        let room = self
            .promote_budget
            .saturating_sub(promoted.load(Ordering::Acquire));
        let plain_cost =
            u64::try_from(raw.len() + entry.key_len() + ENTRY_OVERHEAD).unwrap_or(u64::MAX);
        if plain_cost > room {
            // Spent (checked again below): no copy made for nothing on every hit.
            return false;
        }
        let plain = entry.promoted(raw);
        let cost = charge(&plain);
        let reserved = promoted.fetch_update(Ordering::AcqRel, Ordering::Acquire, |p| {
            let after = p.saturating_add(cost);
            (after <= self.promote_budget).then_some(after)
        });
        if reserved.is_err() {
            // The budget is spent: the entry stays compressed (and cannot be charged twice).
            plain.take_promoted();
            return false;
        }
        let slot = doc.hash();
        let _guard = self.stripes.lock(doc.stripe());
        if !cache.peek(&slot).is_some_and(|c| c.same_entry(entry)) {
            // A write replaced the entry meanwhile: its promotion is moot.
            if plain.take_promoted() {
                promoted.fetch_sub(cost, Ordering::AcqRel);
            }
            return false;
        }
        // Not `install`: the promoted entry keeps the original's maximum-age stamp.
        cache.insert(slot, plain);
        self.accounts.retire(entry);
        true
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
        // Held until the entry changes, so no fill can slip in between.
        let mut guard = self.stripes.lock_key(key);
        guard.bump();
        let slot = self.slot(key);
        self.typed.release(slot);
        if let Some(cache) = &self.cache {
            match value {
                Some(v) if self.remote_mark() == mark => self.install(cache, slot, v),
                // Removes whatever holds the slot: this key's entry, or (after a hash
                // collision) another key's, which only costs that key a miss.
                _ => self.remove_slot(cache, slot),
            }
        }
    }

    /// Another node changed `key` (or a shred destroyed it): drop it and defeat fills that
    /// read it before.
    pub fn invalidate(&self, key: &str) {
        // The mark moves first: a writer that checks it after this sees the change, and one
        // that installed before is undone by the removal below (same stripe lock).
        self.remote_invalidations.fetch_add(1, Ordering::AcqRel);
        // Held until the entry changes, so no fill can slip in between.
        let mut guard = self.stripes.lock_key(key);
        guard.bump();
        let slot = self.slot(key);
        self.typed.release(slot);
        if let Some(cache) = &self.cache {
            self.remove_slot(cache, slot);
        }
    }

    /// Drops everything and defeats every fill in progress (after missed invalidations).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub fn invalidate_all(&self) {
        self.remote_invalidations.fetch_add(1, Ordering::AcqRel);
        for stripe in 0..STRIPES {
            self.stripes.lock(stripe).bump();
        }
        // Entries installed before the bumps are removed here; later fills carry old tickets.
        self.typed.release_all();
        if let Some(cache) = &self.cache {
            for (_, old) in cache.drain() {
                self.accounts.retire(&old);
            }
        }
    }

    /// Kept for the maintenance schedule: the cache evicts and expires as it goes, so there
    /// is no deferred work left to run.
    pub fn run_pending_tasks(&self) {}

    /// A snapshot of the statistics.
    pub fn statistics(&self) -> CacheStatistics {
        let (entry_count, weighted_bytes) = self
            .cache
            .as_ref()
            .map(|c| (u64::try_from(c.len()).unwrap_or(u64::MAX), c.weight()))
            .unwrap_or((0, 0));
        let (typed_entries, typed_bytes) = self.typed.usage();
        let sum = |count: fn(&ReadCounts) -> &AtomicU64| {
            self.reads.iter().fold(0u64, |total, counts| {
                total.wrapping_add(count(counts).load(Ordering::Relaxed))
            })
        };
        CacheStatistics {
            entry_count,
            weighted_bytes: weighted_bytes.saturating_add(typed_bytes),
            capacity_bytes: self.capacity,
            typed_entries,
            typed_bytes,
            typed_hits: sum(|c| &c.typed_hits),
            typed_decodes: sum(|c| &c.typed_decodes),
            promoted_bytes: self.accounts.promoted.load(Ordering::Acquire),
            hits: sum(|c| &c.hits),
            misses: sum(|c| &c.misses),
            raced_fills: self.raced_fills.load(Ordering::Relaxed),
            coalesced: self.coalesced.load(Ordering::Relaxed),
            // Filled in by the store (`chunk/keyframes.rs`).
            keyframe_entries: 0,
            keyframe_bytes: 0,
        }
    }
}

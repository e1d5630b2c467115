//! Access tracking without a write per read: reads are counted in memory and flushed to the
//! database in batches by the writer (on a timer, when many are pending, and on close).
//! A crash loses at most the reads since the last flush, never the order of magnitude.
//!
//! A flush is written in key order. The records table is keyed by (collection, key), so an
//! `UPDATE` per record rewrites the page that holds it: 5,000 counts of records scattered
//! over the table dirtied most of its pages, each then written to the WAL, synced and
//! checkpointed, while 5,000 neighbouring records dirty a few hundred. An early flush
//! therefore takes its whole share of counts at once, sorted ([`AccessTracker::drain`]),
//! and hands them to the writer a chunk of neighbours at a time. It takes the records read
//! once first: under zipfian reads the hot records came back right after every early flush
//! and were written by each; kept, they are written by the interval's flush.
//!
//! Counts are kept per thread (`striped.rs`): a read counts into its thread's shard, whose
//! lock no other reader takes. Shards by key hash had the readers of a zipfian workload meet
//! on the hot keys' shards, each read moving a lock's line between the cores. A record read
//! on several threads is then counted in several shards until a flush adds them up: its
//! counts are exact ([`AccessTracker::pending`] adds the shards up), and it counts once per
//! such shard in [`AccessTracker::pending_keys`].

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::backend::WriteOp;
use crate::cache::{DocKey, Slots};

/// Lock shards: one per thread stripe.
const SHARDS: usize = crate::striped::STRIPES;

/// Buffered reads of one record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PendingAccess {
    /// Reads not yet flushed.
    pub count: u64,
    /// Time of the latest, in milliseconds since the Unix epoch.
    pub last_ms: i64,
}

impl PendingAccess {
    fn add(&mut self, count: u64, last_ms: i64) {
        self.count = self.count.saturating_add(count);
        self.last_ms = self.last_ms.max(last_ms);
    }
}

/// One shard's counts. A record's counts live in `by_hash` under its [`DocKey`] hash (a
/// read finds them by that hash, already computed for the cache, and one key comparison),
/// unless another record holds that hash already (a 64-bit collision): then in `collided`,
/// by joined key. A record is never in both: it enters `collided` only while another holds
/// its hash, and `by_hash` only when it is not in `collided`.
#[derive(Debug, Default)]
struct Shard {
    by_hash: HashMap<u64, (Box<str>, PendingAccess), Slots>,
    collided: HashMap<Box<str>, PendingAccess>,
}

impl Shard {
    /// Adds reads of `doc`; `true` when the record had none pending.
    fn add(&mut self, doc: &DocKey<'_>, count: u64, last_ms: i64) -> bool {
        match self.by_hash.entry(doc.hash()) {
            Entry::Occupied(mut held) => {
                let (key, pending) = held.get_mut();
                if doc.matches(key.as_bytes()) {
                    pending.add(count, last_ms);
                    return false;
                }
            }
            Entry::Vacant(free) => {
                if self.collided.is_empty() {
                    free.insert((doc.joined().into(), PendingAccess { count, last_ms }));
                    return true;
                }
                if let Some(pending) = self.collided.get_mut(doc.joined().as_str()) {
                    pending.add(count, last_ms);
                    return false;
                }
                free.insert((doc.joined().into(), PendingAccess { count, last_ms }));
                return true;
            }
        }
        let mut fresh = false;
        self.collided
            .entry(doc.joined().into())
            .or_insert_with(|| {
                fresh = true;
                PendingAccess::default()
            })
            .add(count, last_ms);
        fresh
    }

    fn get(&self, doc: &DocKey<'_>) -> Option<PendingAccess> {
        match self.by_hash.get(&doc.hash()) {
            Some((key, pending)) if doc.matches(key.as_bytes()) => Some(*pending),
            _ if self.collided.is_empty() => None,
            _ => self.collided.get(doc.joined().as_str()).copied(),
        }
    }

    fn remove(&mut self, doc: &DocKey<'_>) -> bool {
        if let Entry::Occupied(held) = self.by_hash.entry(doc.hash())
            && doc.matches(held.get().0.as_bytes())
        {
            held.remove();
            return true;
        }
        !self.collided.is_empty() && self.collided.remove(doc.joined().as_str()).is_some()
    }

    fn take(&mut self) -> impl Iterator<Item = (Box<str>, PendingAccess)> {
        let by_hash = std::mem::take(&mut self.by_hash).into_values();
        by_hash.chain(std::mem::take(&mut self.collided))
    }

    /// Takes the counts of records read once since the last flush, leaving those read more
    /// (likely read again, they would be written again by the next flush).
    fn take_read_once(&mut self) -> Vec<(Box<str>, PendingAccess)> {
        let mut once: Vec<(Box<str>, PendingAccess)> = self
            .by_hash
            .extract_if(|_, (_, p)| p.count <= 1)
            .map(|(_, held)| held)
            .collect();
        once.extend(self.collided.extract_if(|_, p| p.count <= 1));
        once
    }

    fn len(&self) -> usize {
        self.by_hash.len() + self.collided.len()
    }
}

/// The in-memory counters.
#[derive(Debug)]
pub struct AccessTracker {
    shards: [Mutex<Shard>; SHARDS],
    /// Counts taken from the shards for the flush under way, by joined key (so in the
    /// records table's order), written a chunk per group. A record read again meanwhile is
    /// counted in its shard too: the two are added up on disk.
    backlog: Mutex<BTreeMap<Box<str>, PendingAccess>>,
    /// Entries in the shards and in the backlog.
    pending_keys: AtomicUsize,
    /// The shard a partial drain starts at (round-robin, so none waits behind the others).
    next_shard: AtomicUsize,
    /// Records nothing (a read-only store, which cannot write the counts).
    disabled: bool,
}

impl Default for AccessTracker {
    fn default() -> Self {
        AccessTracker {
            shards: std::array::from_fn(|_| Mutex::new(Shard::default())),
            backlog: Mutex::new(BTreeMap::new()),
            pending_keys: AtomicUsize::new(0),
            next_shard: AtomicUsize::new(0),
            disabled: false,
        }
    }
}

impl AccessTracker {
    /// A tracker that records nothing (for read-only stores).
    pub fn disabled() -> Self {
        AccessTracker {
            disabled: true,
            ..AccessTracker::default()
        }
    }
}

impl AccessTracker {
    fn lock(&self, index: usize) -> std::sync::MutexGuard<'_, Shard> {
        // The modulo keeps the index in bounds.
        match self.shards[index % SHARDS].lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// This thread's shard.
    fn local(&self) -> std::sync::MutexGuard<'_, Shard> {
        self.lock(crate::striped::stripe())
    }

    /// Counts one read of the record behind `cache_key` (see [`crate::cache::cache_key`]).
    pub fn record(&self, cache_key: &str, now_ms: i64) {
        self.record_doc(&DocKey::of(cache_key), now_ms);
    }

    /// [`record`](Self::record) by a [`DocKey`] (the read path: its hash is the cache's, and
    /// no key is built unless the record had no reads pending).
    pub fn record_doc(&self, doc: &DocKey<'_>, now_ms: i64) {
        if self.disabled {
            return;
        }
        if self.local().add(doc, 1, now_ms) {
            self.pending_keys.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn backlog(&self) -> std::sync::MutexGuard<'_, BTreeMap<Box<str>, PendingAccess>> {
        match self.backlog.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Reads of a record not yet flushed (in every thread's shard and the flush under way).
    pub fn pending(&self, cache_key: &str) -> Option<PendingAccess> {
        let doc = DocKey::of(cache_key);
        let counted = (0..SHARDS).map(|i| self.lock(i).get(&doc));
        let flushing = self.backlog().get(cache_key).copied();
        counted
            .chain(std::iter::once(flushing))
            .flatten()
            .reduce(|mut a, b| {
                a.add(b.count, b.last_ms);
                a
            })
    }

    /// Forgets buffered reads of a deleted record.
    pub fn forget(&self, cache_key: &str) {
        let doc = DocKey::of(cache_key);
        for i in 0..SHARDS {
            if self.lock(i).remove(&doc) {
                self.pending_keys.fetch_sub(1, Ordering::Relaxed);
            }
        }
        if self.backlog().remove(cache_key).is_some() {
            self.pending_keys.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Number of records with buffered reads (one read again while its flush is under way
    /// counts twice until that flush reaches it, and one read on several threads counts once
    /// per thread until a flush takes its counts).
    pub fn pending_keys(&self) -> usize {
        self.pending_keys.load(Ordering::Relaxed)
    }

    /// Takes buffered counts, as touch operations for the writer, in key order: `limit` of
    /// them (`usize::MAX`: every one) from the flush under way. When that holds fewer, the
    /// next one starts with the records read once, then whole shards, round-robin from
    /// where the previous one stopped, until at least `batch` counts are taken. Whole
    /// shards, so a record that keeps being read cannot keep others of its shard waiting;
    /// round-robin, so no shard waits behind busier ones; a batch sorted at once, so each
    /// group's chunk holds neighbouring records.
    pub fn drain(&self, limit: usize, batch: usize) -> Vec<WriteOp> {
        if limit == 0 {
            return Vec::new();
        }
        let mut backlog = self.backlog();
        if limit == usize::MAX {
            self.refill(&mut backlog, usize::MAX);
            let all = std::mem::take(&mut *backlog);
            drop(backlog);
            self.pending_keys.fetch_sub(all.len(), Ordering::Relaxed);
            return all.into_iter().filter_map(touch).collect();
        }
        if backlog.len() < limit {
            let held = backlog.len();
            self.refill(&mut backlog, batch.max(limit) - held);
        }
        let mut ops = Vec::with_capacity(limit.min(backlog.len()));
        while ops.len() < limit
            && let Some((k, p)) = backlog.pop_first()
        {
            self.pending_keys.fetch_sub(1, Ordering::Relaxed);
            ops.extend(touch((k, p)));
        }
        ops
    }

    /// Moves counts into `backlog`, round-robin over the shards, until at least `at_least`
    /// more entries are there or every shard was taken: for a partial flush, first the
    /// records read once (a record read more is likely read again, and would be written
    /// again by the next flush; it waits for the interval or a flush that needs it), then
    /// whole shards.
    fn refill(&self, backlog: &mut BTreeMap<Box<str>, PendingAccess>, at_least: usize) {
        let mut taken = 0;
        // A partial flush first takes the records read once, round-robin, and whole shards
        // only if those are too few.
        let passes: &[bool] = if at_least == usize::MAX {
            &[false]
        } else {
            &[true, false]
        };
        for &read_once in passes {
            let start = self.next_shard.load(Ordering::Relaxed);
            for step in 0..SHARDS {
                if taken >= at_least {
                    return;
                }
                let index = (start + step) % SHARDS;
                self.next_shard
                    .store((index + 1) % SHARDS, Ordering::Relaxed);
                let entries: Vec<(Box<str>, PendingAccess)> = {
                    let mut shard = self.lock(index);
                    if read_once {
                        shard.take_read_once()
                    } else {
                        let mut entries = Vec::with_capacity(shard.len());
                        entries.extend(shard.take());
                        entries
                    }
                };
                taken += entries.len();
                self.add_to_backlog(backlog, entries);
            }
        }
    }

    /// Moves counts taken from a shard into `backlog`.
    fn add_to_backlog(
        &self,
        backlog: &mut BTreeMap<Box<str>, PendingAccess>,
        entries: Vec<(Box<str>, PendingAccess)>,
    ) {
        for (k, p) in entries {
            match backlog.entry(k) {
                std::collections::btree_map::Entry::Vacant(free) => {
                    free.insert(p);
                }
                // Already in the backlog: one entry now, not two.
                std::collections::btree_map::Entry::Occupied(mut held) => {
                    held.get_mut().add(p.count, p.last_ms);
                    self.pending_keys.fetch_sub(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Puts counts back after a failed flush, so they are not lost.
    pub fn restore(&self, ops: &[WriteOp]) {
        for op in ops {
            if let WriteOp::Touch {
                collection,
                key,
                count,
                last_ms,
            } = op
            {
                let doc = DocKey::new(collection, key);
                if self.local().add(&doc, *count, *last_ms) {
                    self.pending_keys.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

/// The touch operation of a record's buffered counts, by its joined key.
fn touch((k, p): (Box<str>, PendingAccess)) -> Option<WriteOp> {
    let (collection, key) = k.split_once('\0')?;
    Some(WriteOp::Touch {
        collection: collection.to_owned(),
        key: key.to_owned(),
        count: p.count,
        last_ms: p.last_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::cache_key;

    #[test]
    fn counts_drain_and_restore() {
        let t = AccessTracker::default();
        let k = cache_key("games", "g-1");
        t.record(&k, 10);
        t.record(&k, 5);
        t.record(&cache_key("games", "g-2"), 7);
        assert_eq!(
            t.pending(&k),
            Some(PendingAccess {
                count: 2,
                last_ms: 10
            })
        );
        assert_eq!(t.pending_keys(), 2);
        assert!(t.drain(0, 0).is_empty());
        let ops = t.drain(usize::MAX, 0);
        assert_eq!(ops.len(), 2);
        assert_eq!(t.pending_keys(), 0);
        assert_eq!(t.pending(&k), None);
        t.restore(&ops);
        assert_eq!(
            t.pending(&k),
            Some(PendingAccess {
                count: 2,
                last_ms: 10
            })
        );
        t.forget(&k);
        assert_eq!(t.pending_keys(), 1);
    }

    #[test]
    fn a_record_read_on_several_threads_is_counted_once_in_total() {
        // Each thread counts into its own shard; the totals, the flush and a delete see the
        // shards added up.
        let t = std::sync::Arc::new(AccessTracker::default());
        let (k, gone) = (cache_key("games", "g-1"), cache_key("games", "g-2"));
        let threads: Vec<_> = (0..4i64)
            .map(|i| {
                let (t, k, gone) = (std::sync::Arc::clone(&t), k.clone(), gone.clone());
                std::thread::spawn(move || {
                    for _ in 0..10 {
                        t.record(&k, 100 + i);
                        t.record(&gone, 1);
                    }
                })
            })
            .collect();
        for th in threads {
            th.join().expect("a reading thread panicked");
        }
        assert_eq!(
            t.pending(&k),
            Some(PendingAccess {
                count: 40,
                last_ms: 103
            })
        );
        t.forget(&gone);
        assert_eq!(t.pending(&gone), None);
        let ops = t.drain(usize::MAX, 0);
        assert_eq!(ops.len(), 1, "{ops:?}");
        assert!(
            matches!(&ops[0], WriteOp::Touch { key, count: 40, last_ms: 103, .. } if key == "g-1"),
            "{ops:?}"
        );
        assert_eq!(t.pending_keys(), 0);
    }

    #[test]
    fn records_whose_hashes_collide_keep_their_own_counts() {
        // Two records staged under one 64-bit hash: the second is counted apart (by its
        // key), found, forgotten and drained on its own, and never merged with the first.
        let mut shard = Shard::default();
        let a = DocKey::with_hash("games", "g-a", 42);
        let b = DocKey::with_hash("games", "g-b", 42);
        assert!(shard.add(&a, 1, 10));
        assert!(shard.add(&b, 1, 20));
        assert!(!shard.add(&b, 2, 5));
        assert!(!shard.add(&a, 1, 30));
        assert_eq!(
            shard.get(&a),
            Some(PendingAccess {
                count: 2,
                last_ms: 30
            })
        );
        assert_eq!(
            shard.get(&b),
            Some(PendingAccess {
                count: 3,
                last_ms: 20
            })
        );
        assert_eq!(shard.len(), 2);
        // a leaves its hash free; b is still found in its place, and counted there again
        // (never a second copy under the hash).
        assert!(shard.remove(&a));
        assert_eq!(shard.get(&a), None);
        assert!(!shard.add(&b, 1, 40));
        assert_eq!(
            shard.get(&b),
            Some(PendingAccess {
                count: 4,
                last_ms: 40
            })
        );
        assert_eq!(shard.len(), 1);
        assert!(shard.add(&a, 1, 50));
        let mut taken: Vec<(Box<str>, PendingAccess)> = shard.take().collect();
        taken.sort_by(|x, y| x.0.cmp(&y.0));
        assert_eq!(
            taken,
            [
                (
                    cache_key("games", "g-a").into(),
                    PendingAccess {
                        count: 1,
                        last_ms: 50
                    }
                ),
                (
                    cache_key("games", "g-b").into(),
                    PendingAccess {
                        count: 4,
                        last_ms: 40
                    }
                ),
            ]
        );
        assert_eq!(shard.len(), 0);
    }

    #[test]
    fn drains_in_chunks_without_losing_counts() {
        let t = AccessTracker::default();
        for i in 0..100 {
            t.record(&cache_key("games", &format!("g-{i}")), i);
        }
        let mut seen = std::collections::HashSet::new();
        loop {
            let chunk = t.drain(30, 30);
            // Whole shards: at least the limit while enough are pending.
            assert!(chunk.len() >= 30.min(100 - seen.len()), "{}", chunk.len());
            if chunk.is_empty() {
                break;
            }
            for op in chunk {
                if let WriteOp::Touch { key, count, .. } = op {
                    assert_eq!(count, 1);
                    assert!(seen.insert(key), "a count drained twice");
                }
            }
            assert_eq!(t.pending_keys(), 100 - seen.len());
        }
        assert_eq!(seen.len(), 100);
    }

    #[test]
    fn an_early_flush_hands_out_neighbouring_records_in_key_order() {
        // Regression: a partial drain returned whole shards, i.e. records in hash order,
        // scattered over the records table: each chunk of 5,000 rewrote most of its pages.
        let t = AccessTracker::default();
        let keys: Vec<String> = (0..200)
            .map(|i| cache_key("games", &format!("g-{:04}", (i * 7919) % 200)))
            .collect();
        for k in &keys {
            t.record(k, 1);
        }
        let mut written = Vec::new();
        for _ in 0..10 {
            let chunk = t.drain(20, 200);
            assert_eq!(chunk.len(), 20);
            written.extend(chunk.into_iter().filter_map(|op| match op {
                WriteOp::Touch {
                    collection, key, ..
                } => Some(cache_key(&collection, &key)),
                _ => None,
            }));
            assert_eq!(t.pending_keys(), 200 - written.len());
        }
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(written, sorted, "chunks out of key order");
        assert!(t.drain(20, 200).is_empty());
    }

    #[test]
    fn a_record_read_during_its_flush_keeps_every_count() {
        let t = AccessTracker::default();
        let (a, b, c) = (
            cache_key("games", "a"),
            cache_key("games", "b"),
            cache_key("games", "c"),
        );
        for k in [&a, &b, &c] {
            t.record(k, 1);
        }
        // The flush takes all three and writes `a` first; `b` and `c` wait in key order.
        assert_eq!(t.drain(1, 3).len(), 1);
        t.record(&b, 9);
        t.record(&c, 2);
        assert_eq!(t.pending_keys(), 4);
        assert_eq!(
            t.pending(&b),
            Some(PendingAccess {
                count: 2,
                last_ms: 9
            })
        );
        // A deleted record's counts go from both places.
        t.forget(&c);
        assert_eq!(t.pending(&c), None);
        assert_eq!(t.pending_keys(), 2);
        let mut total = 0;
        for op in t.drain(usize::MAX, 0) {
            if let WriteOp::Touch { key, count, .. } = op {
                assert_eq!(key, "b");
                total += count;
            }
        }
        assert_eq!(total, 2);
        assert_eq!(t.pending_keys(), 0);
    }

    #[test]
    fn partial_drains_reach_every_shard_while_hot_keys_come_back() {
        // Regression: partial drains always started at shard 0, so records in later shards
        // could wait forever while hot records in early shards were read again and again.
        let t = AccessTracker::default();
        let keys: Vec<String> = (0..100)
            .map(|i| cache_key("games", &format!("g-{i}")))
            .collect();
        for k in &keys {
            t.record(k, 1);
        }
        let mut drained_once = std::collections::HashSet::new();
        for _ in 0..4 * SHARDS {
            let chunk = t.drain(10, 10);
            for op in &chunk {
                if let WriteOp::Touch {
                    collection, key, ..
                } = op
                {
                    drained_once.insert(cache_key(collection, key));
                }
            }
            // Every drained record is read again before the next flush.
            t.restore(&chunk);
        }
        assert_eq!(
            drained_once.len(),
            keys.len(),
            "some records were never flushed"
        );
    }

    #[test]
    fn a_partial_flush_takes_the_records_read_once_first() {
        // A record read again and again was written by every early flush of the zipfian
        // reads: it comes back right after each. Read once, the others likely will not.
        let t = AccessTracker::default();
        let hot = cache_key("games", "a-hot");
        for ms in 0..5 {
            t.record(&hot, ms);
        }
        for i in 0..10 {
            t.record(&cache_key("games", &format!("c-{i}")), 1);
        }
        let chunk = t.drain(10, 10);
        assert_eq!(chunk.len(), 10);
        for op in &chunk {
            assert!(
                matches!(op, WriteOp::Touch { key, count: 1, .. } if key.starts_with("c-")),
                "{op:?}"
            );
        }
        assert_eq!(
            t.pending(&hot),
            Some(PendingAccess {
                count: 5,
                last_ms: 4
            })
        );
        assert_eq!(t.pending_keys(), 1);
        // Too few read once: whole shards, the hot record too.
        let rest = t.drain(10, 10);
        assert!(
            matches!(&rest[..], [WriteOp::Touch { key, count: 5, .. }] if key == "a-hot"),
            "{rest:?}"
        );
        assert_eq!(t.pending_keys(), 0);
    }
}

//! Access tracking without a write per read: reads are counted in memory and flushed to the
//! database in batches by the writer (on a timer, when many are pending, and on close).
//! A crash loses at most the reads since the last flush, never the order of magnitude.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::backend::WriteOp;

const SHARDS: usize = 16;

/// Buffered reads of one record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PendingAccess {
    /// Reads not yet flushed.
    pub count: u64,
    /// Time of the latest, in milliseconds since the Unix epoch.
    pub last_ms: i64,
}

/// The in-memory counters.
#[derive(Debug)]
pub struct AccessTracker {
    shards: [Mutex<HashMap<String, PendingAccess>>; SHARDS],
    pending_keys: AtomicUsize,
    /// The shard a partial drain starts at (round-robin, so none waits behind the others).
    next_shard: AtomicUsize,
    /// Records nothing (a read-only store, which cannot write the counts).
    disabled: bool,
}

impl Default for AccessTracker {
    fn default() -> Self {
        AccessTracker {
            shards: std::array::from_fn(|_| Mutex::new(HashMap::new())),
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

fn shard_of(cache_key: &str) -> usize {
    crate::cache::shard_hash(cache_key) % SHARDS
}

impl AccessTracker {
    fn shard(&self, cache_key: &str) -> std::sync::MutexGuard<'_, HashMap<String, PendingAccess>> {
        // The modulo in shard_of keeps the index in bounds.
        match self.shards[shard_of(cache_key) % SHARDS].lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Counts one read of the record behind `cache_key` (see [`crate::cache::cache_key`]).
    pub fn record(&self, cache_key: &str, now_ms: i64) {
        if self.disabled {
            return;
        }
        let mut shard = self.shard(cache_key);
        if let Some(p) = shard.get_mut(cache_key) {
            p.count = p.count.saturating_add(1);
            p.last_ms = p.last_ms.max(now_ms);
        } else {
            shard.insert(
                cache_key.to_owned(),
                PendingAccess {
                    count: 1,
                    last_ms: now_ms,
                },
            );
            self.pending_keys.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Reads of a record not yet flushed.
    pub fn pending(&self, cache_key: &str) -> Option<PendingAccess> {
        self.shard(cache_key).get(cache_key).copied()
    }

    /// Forgets buffered reads of a deleted record.
    pub fn forget(&self, cache_key: &str) {
        if self.shard(cache_key).remove(cache_key).is_some() {
            self.pending_keys.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Number of records with buffered reads.
    pub fn pending_keys(&self) -> usize {
        self.pending_keys.load(Ordering::Relaxed)
    }

    /// Takes buffered counts, as touch operations for the writer: whole shards, round-robin
    /// from where the previous drain stopped, until at least `limit` are taken (`usize::MAX`:
    /// all). Whole shards, so a record that keeps being read cannot keep others of its shard
    /// waiting; round-robin, so no shard waits behind busier ones.
    pub fn drain(&self, limit: usize) -> Vec<WriteOp> {
        let mut ops = Vec::new();
        if limit == 0 {
            return ops;
        }
        let start = self.next_shard.load(Ordering::Relaxed);
        for step in 0..SHARDS {
            if ops.len() >= limit {
                break;
            }
            let index = (start + step) % SHARDS;
            self.next_shard
                .store((index + 1) % SHARDS, Ordering::Relaxed);
            let taken = match self.shards[index].lock() {
                Ok(mut g) => std::mem::take(&mut *g),
                Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
            };
            self.pending_keys.fetch_sub(taken.len(), Ordering::Relaxed);
            ops.extend(taken.into_iter().filter_map(|(k, p)| {
                let (collection, key) = k.split_once('\0')?;
                Some(WriteOp::Touch {
                    collection: collection.to_owned(),
                    key: key.to_owned(),
                    count: p.count,
                    last_ms: p.last_ms,
                })
            }));
        }
        ops
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
                let k = crate::cache::cache_key(collection, key);
                let mut shard = self.shard(&k);
                let entry = shard.entry(k).or_insert_with(|| {
                    self.pending_keys.fetch_add(1, Ordering::Relaxed);
                    PendingAccess::default()
                });
                entry.count = entry.count.saturating_add(*count);
                entry.last_ms = entry.last_ms.max(*last_ms);
            }
        }
    }
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
        assert!(t.drain(0).is_empty());
        let ops = t.drain(usize::MAX);
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
    fn drains_in_chunks_without_losing_counts() {
        let t = AccessTracker::default();
        for i in 0..100 {
            t.record(&cache_key("games", &format!("g-{i}")), i);
        }
        let mut seen = std::collections::HashSet::new();
        loop {
            let chunk = t.drain(30);
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
            let chunk = t.drain(10);
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
}

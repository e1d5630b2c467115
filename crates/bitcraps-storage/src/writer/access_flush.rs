//! When the writer flushes buffered access counts. The interval bounds how long any count
//! waits: when it is up, or when someone asks, every buffered count is written, in one group.
//! Between, too many pending records start an early flush down to half the threshold, a
//! chunk per group (the tracker takes the flush's counts at once from its shards,
//! round-robin, so no shard waits behind busier ones, and hands them out in key order, so a
//! chunk rewrites few pages), so the writes queued meanwhile commit between the chunks.

use std::time::{Duration, Instant};

use crate::error::Result;

/// Buffered access counts are flushed early once this many records have some (about
/// 80 bytes of memory each), down to half of it.
pub(super) const FLUSH_AT_PENDING_KEYS: usize = 50_000;

/// Most access counts written by one group commit. A flush of many keys rewrites many
/// pages; in chunks, the writes queued meanwhile commit between them instead of waiting for
/// the whole flush.
pub(super) const TOUCHES_PER_GROUP: usize = 5_000;

/// `limit` meaning "every pending count".
pub(super) const ALL: usize = usize::MAX;

/// The flush policy's state, owned by the writer thread.
pub(super) struct AccessFlush {
    interval: Duration,
    last_flush: Instant,
    /// Access counts still to write in chunks, from an early flush that was due.
    to_drain: usize,
}

impl AccessFlush {
    pub(super) fn new(interval: Duration) -> Self {
        AccessFlush {
            interval,
            last_flush: Instant::now(),
            to_drain: 0,
        }
    }

    /// How long the writer waits for a request before looking at the timer again.
    pub(super) fn tick(&self) -> Duration {
        self.interval
            .clamp(Duration::from_millis(10), Duration::from_secs(1))
    }

    /// Mid-flush: the writer takes what is queued, but does not wait for more.
    pub(super) fn draining(&self) -> bool {
        self.to_drain > 0
    }

    /// How many of the `pending` counts the next group writes; `asked` when a caller of
    /// `flush()` waits.
    pub(super) fn limit(&mut self, pending: usize, asked: bool) -> usize {
        let timer_due = pending > 0 && self.last_flush.elapsed() >= self.interval;
        if self.to_drain == 0 && pending >= FLUSH_AT_PENDING_KEYS {
            self.to_drain = pending - FLUSH_AT_PENDING_KEYS / 2;
        }
        if asked || timer_due {
            ALL
        } else {
            self.to_drain.min(TOUCHES_PER_GROUP)
        }
    }

    /// How many counts an early flush that starts now takes from the tracker, to write in
    /// key order a chunk per group (see `AccessTracker::drain`).
    pub(super) fn batch(&self) -> usize {
        self.to_drain
    }

    /// Nothing to write this round: with no count pending, the interval starts afresh.
    pub(super) fn idle(&mut self, pending: usize) {
        if pending == 0 {
            self.last_flush = Instant::now();
        }
    }

    /// A group wrote up to `limit` counts; `flushed` is how many, or why it failed.
    pub(super) fn done(&mut self, limit: usize, flushed: &Result<usize>) {
        if limit == ALL {
            self.to_drain = 0;
            self.last_flush = Instant::now();
        } else if limit > 0 {
            self.to_drain = match flushed {
                Ok(drained) if *drained > 0 => self.to_drain.saturating_sub(*drained),
                // Failed (the counts were put back; the timer retries) or nothing left.
                _ => 0,
            };
        }
    }
}

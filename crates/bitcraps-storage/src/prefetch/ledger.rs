//! The prefetch ledger: what prefetching put in the cache and what became of it. The cache
//! reports into it (a hit takes an entry's prefetch mark: used; a removal that finds the mark
//! still there: wasted), the sequential detector reads each stream's waste from it to shrink
//! that stream's window, and the budget is the bytes of prefetched entries not yet read.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Origin of a co-access prefetch (a partner of a key just read).
pub(crate) const CO_ACCESS: u32 = 1;

/// Number of sequential streams (one per collection hashed to a slot).
pub(crate) const STREAMS: usize = 64;

/// The origin of stream `index`'s readahead.
pub(crate) fn stream_origin(index: usize) -> u32 {
    // STREAMS is far below u32::MAX.
    u32::try_from(index % STREAMS).unwrap_or(0) + 2
}

/// The stream an origin names, if it is a stream's.
fn stream_index(origin: u32) -> Option<usize> {
    origin
        .checked_sub(2)
        .and_then(|i| usize::try_from(i).ok())
        .filter(|i| *i < STREAMS)
}

/// Counts of prefetched entries (the statistics' `prefetch_*` fields).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct PrefetchCounts {
    pub(crate) issued: u64,
    pub(crate) used: u64,
    pub(crate) wasted: u64,
}

/// The live counters.
pub(crate) struct Ledger {
    issued: AtomicU64,
    used: AtomicU64,
    wasted: AtomicU64,
    /// Bytes charged for prefetched entries that were neither read nor removed yet.
    outstanding: AtomicU64,
    /// Entries of each stream wasted since the stream last looked.
    stream_waste: [AtomicU32; STREAMS],
}

impl Default for Ledger {
    fn default() -> Self {
        Ledger {
            issued: AtomicU64::new(0),
            used: AtomicU64::new(0),
            wasted: AtomicU64::new(0),
            outstanding: AtomicU64::new(0),
            stream_waste: std::array::from_fn(|_| AtomicU32::new(0)),
        }
    }
}

impl Ledger {
    /// A prefetched entry of `bytes` was installed.
    pub(crate) fn installed(&self, bytes: u64) {
        self.issued.fetch_add(1, Ordering::Relaxed);
        self.outstanding.fetch_add(bytes, Ordering::Relaxed);
    }

    fn settle(&self, bytes: u64) {
        // Never below zero, whatever the interleaving of installs and settles.
        let _ = self
            .outstanding
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                Some(b.saturating_sub(bytes))
            });
    }

    /// A prefetched entry of `bytes` was read (its first read takes the mark).
    pub(crate) fn used(&self, bytes: u64) {
        self.used.fetch_add(1, Ordering::Relaxed);
        self.settle(bytes);
    }

    /// A prefetched entry of `bytes`, from `origin`, left the cache unread (evicted, expired,
    /// replaced by a write or invalidated).
    pub(crate) fn wasted(&self, origin: u32, bytes: u64) {
        self.wasted.fetch_add(1, Ordering::Relaxed);
        self.settle(bytes);
        if let Some(waste) = stream_index(origin).and_then(|i| self.stream_waste.get(i)) {
            waste.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Takes stream `index`'s count of wasted entries.
    pub(crate) fn take_stream_waste(&self, index: usize) -> u32 {
        self.stream_waste
            .get(index)
            .map_or(0, |w| w.swap(0, Ordering::Relaxed))
    }

    /// Bytes of prefetched entries not read yet.
    pub(crate) fn outstanding_bytes(&self) -> u64 {
        self.outstanding.load(Ordering::Relaxed)
    }

    /// The counts so far.
    pub(crate) fn counts(&self) -> PrefetchCounts {
        PrefetchCounts {
            issued: self.issued.load(Ordering::Relaxed),
            used: self.used.load(Ordering::Relaxed),
            wasted: self.wasted.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_used_or_wasted_and_waste_reaches_its_stream() {
        let ledger = Ledger::default();
        ledger.installed(100);
        ledger.installed(50);
        ledger.installed(10);
        assert_eq!(ledger.outstanding_bytes(), 160);
        ledger.used(100);
        ledger.wasted(stream_origin(3), 50);
        ledger.wasted(CO_ACCESS, 10);
        assert_eq!(
            ledger.counts(),
            PrefetchCounts {
                issued: 3,
                used: 1,
                wasted: 2
            }
        );
        assert_eq!(ledger.outstanding_bytes(), 0);
        assert_eq!(ledger.take_stream_waste(3), 1);
        assert_eq!(ledger.take_stream_waste(3), 0, "taken once");
        assert_eq!(
            ledger.take_stream_waste(0),
            0,
            "co-access waste is no stream's"
        );
        // More settled than installed (never expected) stays at zero.
        ledger.used(1_000);
        assert_eq!(ledger.outstanding_bytes(), 0);
    }
}

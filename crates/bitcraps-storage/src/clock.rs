//! The store's clock: what "now" means for expiry. Every expiry decision — a read hiding a
//! record, a write treating an expired key as absent, a sweep — takes its time from here, so
//! a test moves time forward with [`PersistentStorageManager::advance_clock`] (feature
//! `testing`) instead of sleeping. Without the feature the offset is always zero and this is
//! the system clock.

use std::sync::atomic::{AtomicI64, Ordering};

use crate::backend::now_ms;

/// The system clock plus an offset only tests move.
#[derive(Debug, Default)]
pub(crate) struct StoreClock {
    offset_ms: AtomicI64,
}

impl StoreClock {
    /// Milliseconds since the Unix epoch by this store's clock.
    pub(crate) fn now_ms(&self) -> i64 {
        self.at(now_ms())
    }

    /// This store's time when the system clock reads `wall_ms` (one clock read serves a
    /// caller that needs both).
    pub(crate) fn at(&self, wall_ms: i64) -> i64 {
        wall_ms.saturating_add(self.offset_ms.load(Ordering::Acquire))
    }

    /// Moves this store's clock forward by `by`.
    #[cfg(feature = "testing")]
    pub(crate) fn advance(&self, by: std::time::Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        let _ = self
            .offset_ms
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |o| {
                Some(o.saturating_add(ms))
            });
    }
}

#[cfg(feature = "testing")]
impl crate::PersistentStorageManager {
    /// Moves this store's expiry clock forward by `by` (feature `testing`): records whose
    /// TTL ends within `by` read as expired at once. Each store handle opened separately has
    /// its own clock; a test of two nodes advances both.
    pub fn advance_clock(&self, by: std::time::Duration) {
        self.shared().clock.advance(by);
    }
}

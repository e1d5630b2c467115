//! The newest backup taken and the newest verified, as this process saw them: the source of
//! `StorageStatistics::last_backup_at_ms` and the backup age gauges.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

/// Creation times (ms since the epoch; 0 = none) of the newest backup taken and verified.
#[derive(Debug, Default)]
pub(crate) struct Marks {
    created: AtomicI64,
    verified: AtomicI64,
    scanned: AtomicBool,
}

impl Marks {
    /// A backup created at `ms` completed (or was found in the directory).
    pub(crate) fn created(&self, ms: i64) {
        self.created.fetch_max(ms, Ordering::Relaxed);
        self.scanned.store(true, Ordering::Relaxed);
        crate::observe::backup_created(self.created.load(Ordering::Relaxed));
    }

    /// The backup created at `ms` verified.
    pub(crate) fn verified(&self, ms: i64) {
        self.verified.fetch_max(ms, Ordering::Relaxed);
        crate::observe::backup_verified(self.verified.load(Ordering::Relaxed));
    }

    /// Whether the directory was listed (or a backup taken), so that it need not be again;
    /// marks it listed.
    pub(crate) fn scanned(&self) -> bool {
        self.scanned.swap(true, Ordering::Relaxed)
    }

    pub(crate) fn last_created(&self) -> Option<i64> {
        Some(self.created.load(Ordering::Relaxed)).filter(|ms| *ms > 0)
    }

    pub(crate) fn last_verified(&self) -> Option<i64> {
        Some(self.verified.load(Ordering::Relaxed)).filter(|ms| *ms > 0)
    }
}

//! Scheduled work: [`MaintenanceConfig`].

use std::time::Duration;

/// What maintenance does and when the background tasks run it (TOML `[maintenance]`,
/// environment `BITCRAPS_STORAGE_MAINTENANCE_*`).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct MaintenanceConfig {
    /// Run the background tasks (statistics, cache upkeep, maintenance, scrub) while the
    /// store is open. Default: `true`.
    pub background_tasks: bool,
    /// Hours between background maintenance runs (0 disables them). Default: 1.
    pub interval_hours: u32,
    /// Interval of the statistics report (tracing and `metrics`; zero disables it).
    /// Default: 60 s.
    pub statistics_interval: Duration,
    /// Maintenance vacuums when free pages exceed this percentage of the file. Default: 25.
    pub vacuum_free_percent: u32,
    /// Interval of the background scrub, which verifies every stored document (decoded and
    /// hashed) a budget at a time, resuming where it stopped (zero disables it).
    /// Default: 60 s.
    pub scrub_interval: Duration,
    /// Stored bytes one scrub run reads at most (its I/O budget; a run reads at least one
    /// page of blobs). Default: 16 MiB, so a 1 GiB store is verified every ~64 minutes.
    pub scrub_bytes_per_run: u64,
    /// Interval of the background sweep of expired records (zero disables it; maintenance
    /// still sweeps). An expired record is never returned from its expiry on; the sweep
    /// removes it within this interval after (plus the time to remove the records ahead of
    /// it, in chunks). Default: 30 s.
    pub expiry_sweep_interval: Duration,
    /// Stored bytes one re-encryption step reads at most: after a data-key rotation, each
    /// maintenance run seals this much of the blobs under older keys again under the
    /// current key (`PersistentStorageManager::reencrypt`). Default: 64 MiB.
    pub reencrypt_bytes_per_run: u64,
    /// How long the change log keeps a change (`changes_since`, `watch`): maintenance
    /// removes older ones, and a read after a removed change is
    /// [`StorageError::ChangesPruned`](crate::StorageError::ChangesPruned). Default: 7 days.
    pub change_retention: Duration,
    /// How often a change-feed watch looks for changes committed by other processes
    /// (changes of its own process wake it at once, those of other PostgreSQL nodes through
    /// `LISTEN`/`NOTIFY`; polling also covers a missed notification). Default: 1 s.
    pub change_poll_interval: Duration,
}

impl Default for MaintenanceConfig {
    fn default() -> Self {
        MaintenanceConfig {
            background_tasks: true,
            interval_hours: 1,
            statistics_interval: Duration::from_secs(60),
            vacuum_free_percent: 25,
            scrub_interval: Duration::from_secs(60),
            scrub_bytes_per_run: 16 << 20,
            expiry_sweep_interval: Duration::from_secs(30),
            reencrypt_bytes_per_run: 64 << 20,
            change_retention: crate::feed::DEFAULT_CHANGE_RETENTION,
            change_poll_interval: Duration::from_secs(1),
        }
    }
}

impl MaintenanceConfig {
    /// Refuses a zero `change_poll_interval` (a watch would spin).
    pub(crate) fn validate(&self) -> crate::Result<()> {
        if self.change_poll_interval.is_zero() {
            return Err(crate::StorageError::Config(
                "maintenance.change_poll_interval must be more than zero".into(),
            ));
        }
        Ok(())
    }

    /// Sets [`background_tasks`](Self::background_tasks).
    #[must_use]
    pub fn background_tasks(mut self, enabled: bool) -> Self {
        self.background_tasks = enabled;
        self
    }

    /// Sets [`interval_hours`](Self::interval_hours).
    #[must_use]
    pub fn interval_hours(mut self, hours: u32) -> Self {
        self.interval_hours = hours;
        self
    }

    /// Sets [`statistics_interval`](Self::statistics_interval).
    #[must_use]
    pub fn statistics_interval(mut self, interval: Duration) -> Self {
        self.statistics_interval = interval;
        self
    }

    /// Sets [`vacuum_free_percent`](Self::vacuum_free_percent).
    #[must_use]
    pub fn vacuum_free_percent(mut self, percent: u32) -> Self {
        self.vacuum_free_percent = percent;
        self
    }

    /// Sets [`scrub_interval`](Self::scrub_interval).
    #[must_use]
    pub fn scrub_interval(mut self, interval: Duration) -> Self {
        self.scrub_interval = interval;
        self
    }

    /// Sets [`scrub_bytes_per_run`](Self::scrub_bytes_per_run).
    #[must_use]
    pub fn scrub_bytes_per_run(mut self, bytes: u64) -> Self {
        self.scrub_bytes_per_run = bytes;
        self
    }

    /// Sets [`reencrypt_bytes_per_run`](Self::reencrypt_bytes_per_run).
    #[must_use]
    pub fn reencrypt_bytes_per_run(mut self, bytes: u64) -> Self {
        self.reencrypt_bytes_per_run = bytes;
        self
    }

    /// Sets [`change_retention`](Self::change_retention).
    #[must_use]
    pub fn change_retention(mut self, retention: Duration) -> Self {
        self.change_retention = retention;
        self
    }

    /// Sets [`change_poll_interval`](Self::change_poll_interval).
    #[must_use]
    pub fn change_poll_interval(mut self, interval: Duration) -> Self {
        self.change_poll_interval = interval;
        self
    }

    /// Sets [`expiry_sweep_interval`](Self::expiry_sweep_interval).
    #[must_use]
    pub fn expiry_sweep_interval(mut self, interval: Duration) -> Self {
        self.expiry_sweep_interval = interval;
        self
    }
}

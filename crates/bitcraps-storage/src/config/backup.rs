//! Backups: [`BackupConfig`], and the defaults of the [`RetentionPolicy`] it holds.

use std::path::PathBuf;

use crate::backup::RetentionPolicy;

/// Where backups go, when maintenance takes them, and which are kept (TOML `[backup]`,
/// environment `BITCRAPS_STORAGE_BACKUP_*`).
///
/// The retention rules are the backup layer's own [`RetentionPolicy`], held whole; the TOML
/// file and the environment spell its fields flat (`backup.keep_last`,
/// `BITCRAPS_STORAGE_BACKUP_KEEP_LAST`; `within_days` is `backup.retention_days`).
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct BackupConfig {
    /// Where backups go; `None` means `<data_path>/backups` (see
    /// [`StorageConfig::backup_directory`](crate::StorageConfig::backup_directory)).
    /// Default: `None`.
    pub dir: Option<PathBuf>,
    /// Maintenance verifies every document, creates a backup and applies retention.
    /// Default: `None`, which means yes for an embedded (SQLite) store and no on PostgreSQL,
    /// where every node runs maintenance against the same database: set `Some(true)` on the
    /// one node that should back it up.
    pub on_maintenance: Option<bool>,
    /// The most bytes the backup directory may hold. A backup that would take the directory's
    /// complete backups past it is not kept
    /// ([`StorageError::BackupTooLarge`](crate::StorageError::BackupTooLarge)), and retention deletes the oldest backups it would
    /// otherwise keep (never the newest one) until the rest fit. Default: `None` (no cap).
    pub max_total_bytes: Option<u64>,
    /// Which backups retention keeps. Default: [`RetentionPolicy::default`] (7 days, the last
    /// 3, 7 daily, 4 weekly, 6 monthly).
    pub retention: RetentionPolicy,
}

impl BackupConfig {
    /// Sets [`dir`](Self::dir).
    #[must_use]
    pub fn dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    /// Sets [`on_maintenance`](Self::on_maintenance).
    #[must_use]
    pub fn on_maintenance(mut self, enabled: bool) -> Self {
        self.on_maintenance = Some(enabled);
        self
    }

    /// Sets [`max_total_bytes`](Self::max_total_bytes).
    #[must_use]
    pub fn max_total_bytes(mut self, bytes: u64) -> Self {
        self.max_total_bytes = Some(bytes);
        self
    }

    /// Whether maintenance takes a backup: [`on_maintenance`](Self::on_maintenance), or by
    /// default only for a store that is not shared through a database server.
    pub(crate) fn takes_maintenance_backups(&self, embedded: bool) -> bool {
        self.on_maintenance.unwrap_or(embedded)
    }

    /// Sets [`retention`](Self::retention).
    #[must_use]
    pub fn retention(mut self, policy: RetentionPolicy) -> Self {
        self.retention = policy;
        self
    }
}

// The defaults and builder of `RetentionPolicy` live here, beside the configuration whose
// documented defaults they are; the rules themselves are the backup layer's
// (`backup/retention.rs`).
impl Default for RetentionPolicy {
    /// Keep every backup younger than 7 days, the last 3, and the newest of each of the last
    /// 7 days, 4 weeks and 6 months.
    fn default() -> Self {
        RetentionPolicy {
            within_days: 7,
            keep_last: 3,
            keep_daily: 7,
            keep_weekly: 4,
            keep_monthly: 6,
        }
    }
}

impl RetentionPolicy {
    /// Sets [`within_days`](Self::within_days).
    #[must_use]
    pub fn within_days(mut self, days: u32) -> Self {
        self.within_days = days;
        self
    }

    /// Sets [`keep_last`](Self::keep_last).
    #[must_use]
    pub fn keep_last(mut self, n: u32) -> Self {
        self.keep_last = n;
        self
    }

    /// Sets [`keep_daily`](Self::keep_daily).
    #[must_use]
    pub fn keep_daily(mut self, n: u32) -> Self {
        self.keep_daily = n;
        self
    }

    /// Sets [`keep_weekly`](Self::keep_weekly).
    #[must_use]
    pub fn keep_weekly(mut self, n: u32) -> Self {
        self.keep_weekly = n;
        self
    }

    /// Sets [`keep_monthly`](Self::keep_monthly).
    #[must_use]
    pub fn keep_monthly(mut self, n: u32) -> Self {
        self.keep_monthly = n;
        self
    }
}

//! What an acknowledged write guarantees and how writes are committed: [`WriteConfig`] and
//! [`Durability`].

use std::str::FromStr;
use std::time::Duration;

use crate::error::{Result, StorageError};

/// How hard an acknowledged write is pushed towards the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Durability {
    /// Every acknowledged write is fsync'd (SQLite `synchronous=FULL`; on PostgreSQL the
    /// server's `synchronous_commit` as configured). Survives power loss. Concurrent writers
    /// share one fsync through group commit. The default.
    #[default]
    Full,
    /// Writes reach the OS before they are acknowledged but are fsync'd only at checkpoints
    /// (SQLite `synchronous=NORMAL` in WAL mode; on PostgreSQL write transactions run with
    /// `synchronous_commit = off`): survives a process crash, may lose the last transactions
    /// on power loss (or a PostgreSQL server crash).
    Normal,
}

impl FromStr for Durability {
    type Err = StorageError;

    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "full" => Ok(Durability::Full),
            "normal" => Ok(Durability::Normal),
            other => Err(StorageError::Config(format!(
                "unknown durability {other:?} (expected \"full\" or \"normal\")"
            ))),
        }
    }
}

/// The write path: durability, group commit and the limits a write is checked against
/// (TOML `[write]`, environment `BITCRAPS_STORAGE_WRITE_*`).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct WriteConfig {
    /// What an acknowledged write guarantees. Default: [`Durability::Full`].
    pub durability: Durability,
    /// Largest accepted serialized value, in bytes. At least 1. Default: 64 MiB.
    pub max_value_size: usize,
    /// Most write requests that group commit puts in one transaction. At least 1.
    /// Default: 1024.
    pub max_batch_requests: usize,
    /// How often buffered access statistics (reads are counted in memory, never written one by
    /// one) are written to the database. Default: 30 s.
    pub access_flush_interval: Duration,
    /// Most attempts of one `update` (read, modify, conditional write) before it gives up
    /// with [`StorageError::Conflict`](crate::StorageError::Conflict). At least 1. Updates of
    /// one key within one process never conflict with each other (they take turns); attempts
    /// are spent only on writes from other processes or nodes, or plain `store`s racing the
    /// update. Default: 64.
    pub update_max_attempts: u32,
}

impl Default for WriteConfig {
    fn default() -> Self {
        WriteConfig {
            durability: Durability::Full,
            max_value_size: 64 * 1024 * 1024,
            max_batch_requests: 1024,
            access_flush_interval: Duration::from_secs(30),
            update_max_attempts: 64,
        }
    }
}

impl WriteConfig {
    /// Sets [`durability`](Self::durability).
    #[must_use]
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Sets [`max_value_size`](Self::max_value_size).
    #[must_use]
    pub fn max_value_size(mut self, bytes: usize) -> Self {
        self.max_value_size = bytes;
        self
    }

    /// Sets [`max_batch_requests`](Self::max_batch_requests).
    #[must_use]
    pub fn max_batch_requests(mut self, requests: usize) -> Self {
        self.max_batch_requests = requests;
        self
    }

    /// Sets [`access_flush_interval`](Self::access_flush_interval).
    #[must_use]
    pub fn access_flush_interval(mut self, interval: Duration) -> Self {
        self.access_flush_interval = interval;
        self
    }

    /// Sets [`update_max_attempts`](Self::update_max_attempts).
    #[must_use]
    pub fn update_max_attempts(mut self, attempts: u32) -> Self {
        self.update_max_attempts = attempts;
        self
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if self.update_max_attempts == 0 {
            return Err(StorageError::Config(
                "write.update_max_attempts must be at least 1".into(),
            ));
        }
        if self.max_batch_requests == 0 {
            return Err(StorageError::Config(
                "write.max_batch_requests must be at least 1".into(),
            ));
        }
        if self.max_value_size == 0 {
            return Err(StorageError::Config(
                "write.max_value_size must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

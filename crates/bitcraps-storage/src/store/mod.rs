//! [`PersistentStorageManager`]: the async handle users hold, a thin handle over
//! `Arc<Inner>`. It validates input and delegates: `write` (the value pipeline, then the
//! writer thread), `read` (cache, Redis tier, database), `query` (listing, metadata,
//! statistics), `open` (building a store from its configuration). Blocking database work never
//! runs on the async runtime's threads.

mod batch;
mod delta;
mod encode;
#[cfg(feature = "testing")]
mod hooks;
mod inline_delta;
mod json;
mod keys;
mod many;
mod next_keyframe;
mod open;
mod prefetch;
mod query;
mod read;
mod shared;
mod turns;
mod versioned;
mod write;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use crate::background::Background;
use crate::backup::BackupManager;
use crate::config::StorageConfig;
use crate::error::{Result, StorageError};
use crate::rt::blocking;
use crate::stats::Counters;
use crate::value::Pipeline;
use crate::writer::Writer;

pub(crate) use shared::Shared;

/// The storage handle: cheap to clone, `Send + Sync`, usable from many tasks at once.
///
/// ```no_run
/// # async fn demo() -> bitcraps_storage::Result<()> {
/// use bitcraps_storage::{ListOptions, PersistentStorageManager, StorageConfig};
///
/// let storage = PersistentStorageManager::open(StorageConfig::with_data_path("./data")).await?;
/// storage.store("games", "g-1", &serde_json::json!({"point": 6})).await?;
/// let game: Option<serde_json::Value> = storage.retrieve("games", "g-1").await?;
/// let page = storage.list("games", ListOptions::default().prefix("g-")).await?;
/// storage.close().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PersistentStorageManager {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    shared: Arc<Shared>,
    writer: Writer,
    pipeline: Pipeline,
    config: StorageConfig,
    backups: BackupManager,
    background: std::sync::Mutex<Option<Background>>,
    closed: AtomicBool,
    /// The store runs with a Redis tier and this process has none: writes are refused.
    redis_tier_required: bool,
    /// Updates of one key in this process take turns (`turns.rs`).
    turns: turns::Turns,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Not closed explicitly: let the writer finish its queue and flush in the background.
        drop(self.writer.shutdown());
    }
}

impl std::fmt::Debug for PersistentStorageManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PersistentStorageManager")
            .field("data_path", &self.inner.config.database.data_path)
            .finish_non_exhaustive()
    }
}

/// A reference to a store that does not keep it open (background tasks hold one).
#[derive(Clone)]
pub(crate) struct WeakStore(Weak<Inner>);

impl WeakStore {
    /// The store, while any handle to it exists.
    pub(crate) fn upgrade(&self) -> Option<PersistentStorageManager> {
        self.0
            .upgrade()
            .map(|inner| PersistentStorageManager { inner })
    }
}

impl PersistentStorageManager {
    /// The state the writer, the readers and the background tasks share.
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.inner.shared
    }

    /// The writer thread's handle.
    pub(crate) fn writer(&self) -> &Writer {
        &self.inner.writer
    }

    /// The running background tasks, if any (`background.rs` asks them for runs).
    #[cfg(feature = "testing")]
    pub(crate) fn background(&self) -> &std::sync::Mutex<Option<Background>> {
        &self.inner.background
    }

    /// A reference that does not keep the store open.
    pub(crate) fn downgrade(&self) -> WeakStore {
        WeakStore(Arc::downgrade(&self.inner))
    }

    /// The backup manager of this store (`<data_path>/backups` unless configured).
    pub fn backups(&self) -> BackupManager {
        self.inner.backups.clone()
    }

    /// The configuration the store was opened with.
    pub fn config(&self) -> &StorageConfig {
        &self.inner.config
    }

    pub(crate) fn check_open(&self) -> Result<()> {
        if self.inner.closed.load(Ordering::Acquire) {
            Err(StorageError::Closed)
        } else {
            Ok(())
        }
    }

    /// [`check_open`](Self::check_open), and refuses writes when the store runs with a Redis
    /// tier this process lacks ([`StorageError::RedisTierRequired`]).
    pub(crate) fn check_writable(&self) -> Result<()> {
        self.check_open()?;
        self.check_read_write("a write")?;
        if self.inner.redis_tier_required {
            return Err(StorageError::RedisTierRequired);
        }
        Ok(())
    }

    /// [`StorageError::ReadOnly`] for `operation` when the store was opened read-only.
    pub(crate) fn check_read_write(&self, operation: &'static str) -> Result<()> {
        if self.inner.config.database.read_only {
            return Err(StorageError::ReadOnly { operation });
        }
        Ok(())
    }

    /// Runs a public operation: observed (span, duration, outcome; `observe/`) and, when it
    /// fails, counted once in `StorageStatistics::errors`.
    async fn public_call<T>(
        &self,
        operation: crate::observe::Operation,
        collection: &str,
        key: Option<&str>,
        work: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let result = self
            .observer()
            .observed(operation, collection, key, work)
            .await;
        self.count_error(result)
    }

    fn count_error<T>(&self, result: Result<T>) -> Result<T> {
        if result.is_err() {
            Counters::add(&self.inner.shared.counters.errors, 1);
        }
        result
    }

    /// Finishes queued writes, flushes access statistics, and stops the writer. Every clone of
    /// the handle sees the store as closed afterwards. Closing twice is harmless.
    ///
    /// On SQLite, `close` returns once no connection to the file is left open: reads still
    /// running are let finish, for at most `database.connection_timeout`. If one outlasts
    /// that, `close` fails with [`crate::StorageError::PoolTimeout`]; the store is closed
    /// anyway (its lock released), and the WAL file stays until that read's connection closes.
    pub async fn close(&self) -> Result<()> {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let background = self.inner.background.lock().ok().and_then(|mut b| b.take());
        if let Some(background) = background {
            background.stop().await;
        }
        // Prefetches read the database: let them end before it closes.
        self.inner.shared.prefetch.settled().await;
        if let Some(thread) = self.inner.writer.shutdown() {
            blocking(move || {
                thread
                    .join()
                    .map_err(|_| StorageError::Task("the writer thread panicked".into()))
            })
            .await?;
        }
        // After the writer's last invalidations.
        if let Some(remote) = &self.inner.shared.remote {
            remote.shutdown();
        }
        let backend = Arc::clone(&self.inner.shared.backend);
        blocking(move || backend.close()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The handle is shared across tasks and threads; losing `Send`/`Sync` breaks every user
    /// at compile time, so this test fails to build if it happens.
    #[test]
    fn handles_are_send_sync_and_cheap_to_clone() {
        fn shareable<T: Send + Sync + Clone + 'static>() {}
        shareable::<PersistentStorageManager>();
        shareable::<BackupManager>();
    }
}

//! Retention of the change log: changes older than `maintenance.change_retention` (default
//! 7 days, by the store's clock) are removed by [`maintenance`](PersistentStorageManager::maintenance)
//! through the writer, [`PRUNE_CHUNK`] per transaction, oldest first and always a prefix of
//! the log. The highest seq removed is kept, so a read after it is
//! [`StorageError::ChangesPruned`].

use crate::PersistentStorageManager;
use crate::backend::{OpOutcome, WriteOp};
use crate::error::{Result, StorageError};

/// Changes one retention transaction removes at most.
pub(crate) const PRUNE_CHUNK: usize = 5_000;

impl PersistentStorageManager {
    /// Removes the changes written more than `maintenance.change_retention` ago (the store's
    /// clock), in chunks; returns how many it removed. [`maintenance`](Self::maintenance)
    /// calls it.
    pub async fn prune_changes(&self) -> Result<u64> {
        self.check_writable()?;
        let retention = self.config().maintenance.change_retention;
        let keep_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
        let mut total = 0u64;
        loop {
            let op = WriteOp::PruneChanges {
                before_ms: self.shared().clock.now_ms().saturating_sub(keep_ms),
                limit: PRUNE_CHUNK,
            };
            let outcomes = self.writer().write(vec![op]).await?;
            let removed = match outcomes.first() {
                Some(OpOutcome::Pruned { removed, .. }) => *removed,
                _ => {
                    return Err(StorageError::Task(
                        "the backend did not report the pruned changes".into(),
                    ));
                }
            };
            total = total.saturating_add(removed);
            if removed < u64::try_from(PRUNE_CHUNK).unwrap_or(u64::MAX) {
                return Ok(total);
            }
            tokio::task::yield_now().await;
        }
    }
}

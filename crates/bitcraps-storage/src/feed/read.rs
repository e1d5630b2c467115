//! Reading the change log: [`changes_since`](PersistentStorageManager::changes_since) and
//! [`change_head`](PersistentStorageManager::change_head).

use std::sync::Arc;

use super::Change;
use crate::PersistentStorageManager;
use crate::error::Result;
use crate::rt::blocking;

/// The most changes one read returns, whatever `limit` asks.
pub const MAX_CHANGES_PER_READ: usize = 10_000;

impl PersistentStorageManager {
    /// Up to `limit` (at most 10,000) changes with a seq above `seq`, in seq order: every
    /// committed put, delete and expiry, from every node sharing the store. Resumable after a
    /// restart and on another node: pass the last seq a consumer processed (0 for the
    /// beginning of the log). An empty answer means the consumer is at the head.
    ///
    /// [`StorageError::ChangesPruned`](crate::StorageError::ChangesPruned) when retention
    /// (`maintenance.change_retention`) already removed changes after `seq`: the consumer
    /// missed them and must resynchronize; the log never skips them silently.
    /// [`StorageError::ChangesAhead`](crate::StorageError::ChangesAhead) when `seq` is beyond
    /// the log's head: the consumer followed another history (the store was restored from a
    /// backup, say), whose later seqs this store would hand out again for other changes.
    ///
    /// Works on a store opened read-only, beside the process that writes.
    pub async fn changes_since(&self, seq: u64, limit: usize) -> Result<Vec<Change>> {
        self.check_open()?;
        let limit = limit.min(MAX_CHANGES_PER_READ);
        if limit == 0 {
            return Ok(Vec::new());
        }
        let backend = Arc::clone(&self.shared().backend);
        blocking(move || {
            let page = backend.changes_since(seq, limit)?;
            // At the head: a consumer ahead of it is on another history. (The head only
            // grows, so a head read after the page is at least the page's.)
            if page.is_empty() {
                let head = backend.change_head()?;
                if seq > head {
                    return Err(crate::StorageError::ChangesAhead { after: seq, head });
                }
            }
            Ok(page)
        })
        .await
    }

    /// The seq of the last committed change (0 when there was none): where a consumer that
    /// only wants changes from now on starts.
    pub async fn change_head(&self) -> Result<u64> {
        self.check_open()?;
        let backend = Arc::clone(&self.shared().backend);
        blocking(move || backend.change_head()).await
    }
}

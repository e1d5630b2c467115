//! The sweep of expired records. Expiry itself is exact without it: every read compares a
//! record's `expires_at` with the store's clock (`clock.rs`) on every tier, and every write
//! treats an expired record as absent. The sweep only gives the space back: it removes
//! expired records through the writer, [`SWEEP_CHUNK`] at a time, each chunk one unit of a
//! group commit (so writers queue between chunks, never behind the whole sweep), releasing
//! their content by reference count exactly as deletes do.

use crate::PersistentStorageManager;
use crate::backend::{OpOutcome, WriteOp};
use crate::error::{Result, StorageError};

/// Expired records one sweep transaction removes at most.
pub(crate) const SWEEP_CHUNK: usize = 500;

impl PersistentStorageManager {
    /// Removes every record that has expired by now (the store's clock), in chunks of at most
    /// 500 records per transaction; returns how many it removed. The background task
    /// (`maintenance.expiry_sweep_interval`) and [`maintenance`](Self::maintenance) call it;
    /// expired records are never returned whether or not they were swept yet.
    pub async fn sweep_expired(&self) -> Result<u64> {
        self.check_writable()?;
        let mut total = 0u64;
        loop {
            let op = WriteOp::SweepExpired {
                now_ms: self.shared().clock.now_ms(),
                limit: SWEEP_CHUNK,
            };
            let outcomes = self.writer().write(vec![op]).await?;
            let removed = match outcomes.first() {
                Some(OpOutcome::Swept { removed }) => removed.len(),
                _ => {
                    return Err(StorageError::Task(
                        "the backend did not report the swept records".into(),
                    ));
                }
            };
            total = total.saturating_add(u64::try_from(removed).unwrap_or(u64::MAX));
            if removed < SWEEP_CHUNK {
                return Ok(total);
            }
            tokio::task::yield_now().await;
        }
    }
}

//! The bridge between the async edge and the blocking core: database work never runs on the
//! async runtime's threads.

use crate::error::{Result, StorageError};

/// Runs blocking work off the async runtime.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T>
where
    F: FnOnce() -> Result<T> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StorageError::Task(format!("blocking task failed: {e}")))?
}

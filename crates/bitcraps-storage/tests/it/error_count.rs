//! `StorageStatistics::errors` counts operations that returned an error: one failed call is
//! one error.
//!
//! Regression (fails on main at da55a75): a write whose unit failed in the writer — a
//! condition that did not hold, or a commit that failed — was counted twice, once by the
//! writer's group commit (`writer/group.rs`) and once more at the API edge (`count_error`),
//! so the demo reported 126 errors for 63 conflicts.

use crate::common;

use bitcraps_storage::{Expect, PersistentStorageManager, StorageError, WriteBatch};
use common::sqlite_fixture;

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

async fn errors(s: &PersistentStorageManager) -> Result<u64> {
    Ok(s.statistics().await?.errors)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_condition_is_one_error() -> Result {
    let f = sqlite_fixture();
    let s = PersistentStorageManager::open(f.config.clone()).await?;
    s.store("games", "g", &1).await?;
    assert_eq!(errors(&s).await?, 0);

    let stale = s.store_if("games", "g", &2, Expect::Absent).await;
    assert!(
        matches!(stale, Err(StorageError::Conflict { .. })),
        "{stale:?}"
    );
    assert_eq!(errors(&s).await?, 1, "one failed store_if");

    let mut batch = WriteBatch::new();
    batch.store("games", "h", &3)?;
    batch.expect("games", "g", Expect::Absent);
    let applied = s.apply(batch).await;
    assert!(
        matches!(applied, Err(StorageError::Conflict { .. })),
        "{applied:?}"
    );
    assert_eq!(
        errors(&s).await?,
        2,
        "one failed store_if and one failed apply"
    );
    s.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_error_is_one_error() -> Result {
    // The edge alone counts errors that never reach the writer: the baseline the writes
    // above must match.
    let f = sqlite_fixture();
    let s = PersistentStorageManager::open(f.config.clone()).await?;
    s.store("games", "g", &"text").await?;
    assert!(s.retrieve::<u32>("games", "g").await.is_err());
    assert_eq!(errors(&s).await?, 1);
    s.close().await?;
    Ok(())
}

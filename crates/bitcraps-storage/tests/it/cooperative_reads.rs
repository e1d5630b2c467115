//! An operation the cache answers completes without awaiting anything. Typed reads spent
//! Tokio's cooperative budget on their way (a task reading in a loop yielded about every 128
//! reads), but `exists` spent none: a task calling it in a loop never gave its worker back,
//! and every other task on that worker waited for the whole loop. Every operation now spends
//! one unit of the budget as it starts, as Tokio's own resources do, and yields once the
//! task's budget is spent.
//!
//! On a current-thread runtime a spawned task runs only when the test's task yields.

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bitcraps_storage::PersistentStorageManager;
use common::{Game, game, sqlite_fixture};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Calls `read` in a loop until another task has run, and fails if it has not after 10,000
/// calls of `what`.
async fn another_task_runs<F, Fut>(what: &str, mut read: F) -> Result
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result>,
{
    let ran = Arc::new(AtomicBool::new(false));
    let other = tokio::spawn({
        let ran = Arc::clone(&ran);
        async move { ran.store(true, Ordering::SeqCst) }
    });
    let mut reads = 0;
    while !ran.load(Ordering::SeqCst) && reads < 10_000 {
        read().await?;
        reads += 1;
    }
    assert!(
        ran.load(Ordering::SeqCst),
        "10,000 `{what}` calls never let another task run"
    );
    other.await?;
    Ok(())
}

#[tokio::test(flavor = "current_thread")]
async fn cached_reads_in_a_loop_let_other_tasks_run() -> Result {
    let f = sqlite_fixture();
    let s = PersistentStorageManager::open(f.config.clone()).await?;
    s.store("games", "g-1", &game("g-1", 3)).await?;
    // Read twice first: from here on every read is a cache hit (the typed tier holds the
    // value from its second read).
    for _ in 0..2 {
        let _: Option<Game> = s.retrieve("games", "g-1").await?;
        let _: Option<Arc<Game>> = s.retrieve_shared("games", "g-1").await?;
    }
    another_task_runs("retrieve", || async {
        let _: Option<Game> = s.retrieve("games", "g-1").await?;
        Ok(())
    })
    .await?;
    another_task_runs("retrieve_shared", || async {
        let _: Option<Arc<Game>> = s.retrieve_shared("games", "g-1").await?;
        Ok(())
    })
    .await?;
    another_task_runs("exists", || async {
        assert!(s.exists("games", "g-1").await?);
        Ok(())
    })
    .await?;
    s.close().await?;
    Ok(())
}

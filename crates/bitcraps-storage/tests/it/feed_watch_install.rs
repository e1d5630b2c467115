//! A watch hands out a change of this process only once a read of the record returns it.
//!
//! The writer commits a group to the database before it installs the group's values in the
//! cache. A watch that read the log in between — here woken by its poll interval while the
//! `before_installing` hook holds the writer right after the commit — used to deliver the
//! change at once, and its consumer, reading the record it was told of, got the replaced
//! version from the cache ("the watch reported version 2, the read returned 1"). The hook
//! lets the writer go on only once the watch has read the log twice since the commit (it
//! counts the watch's waits), so with the old order the consumer has read by then.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

const PATIENCE: Duration = Duration::from_secs(30);

async fn a_watched_change_reads_back_as_logged(fixture: Option<common::Fixture>) -> Result {
    let Some(f) = fixture else {
        return Ok(());
    };
    let mut config = f.config.clone();
    config.maintenance.background_tasks = false;
    // Short, so the watch reads the log while the writer is held between commit and install.
    config.maintenance.change_poll_interval = Duration::from_millis(5);
    let store = f.open(config).await?;
    store.store("tables", "t-1", &1u64).await?;
    // The cache now holds version 1.
    assert_eq!(store.retrieve::<u64>("tables", "t-1").await?, Some(1));

    let mut waits = store.watch_waits();
    let mut watch = store.watch("tables", "").await?;
    let reader = store.clone();
    let consumer = tokio::spawn(async move {
        let change = watch.next().await.ok_or("the watch ended")??;
        let read = reader.retrieve::<u64>("tables", &change.key).await?;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>((change.key, read))
    });
    tokio::time::timeout(PATIENCE, waits.wait_for(|n| *n > 0)).await??;

    let runtime = tokio::runtime::Handle::current();
    let watched = store.watch_waits();
    let held_too_long = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = Arc::clone(&held_too_long);
    store.before_installing(Some(Arc::new(move || {
        let mut waits = watched.clone();
        let seen = *waits.borrow_and_update();
        let read_twice = runtime.block_on(async {
            tokio::time::timeout(PATIENCE, waits.wait_for(|n| *n >= seen.wrapping_add(2)))
                .await
                .is_ok_and(|r| r.is_ok())
        });
        if !read_twice {
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    })));
    store.store("tables", "t-1", &2u64).await?;
    store.before_installing(None);

    let (key, read) = tokio::time::timeout(PATIENCE, consumer).await???;
    assert_eq!(key, "t-1");
    assert_eq!(
        read,
        Some(2),
        "the watch reported the write of version 2, the read returned the replaced value"
    );
    assert!(
        !held_too_long.load(std::sync::atomic::Ordering::SeqCst),
        "the watch did not read the log while the writer was held"
    );
    store.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_watched_change_reads_back_as_logged() -> Result {
    a_watched_change_reads_back_as_logged(Some(common::sqlite_fixture())).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_a_watched_change_reads_back_as_logged() -> Result {
    a_watched_change_reads_back_as_logged(Some(common::memory_fixture())).await
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_watched_change_reads_back_as_logged() -> Result {
    a_watched_change_reads_back_as_logged(common::pg_fixture()).await
}

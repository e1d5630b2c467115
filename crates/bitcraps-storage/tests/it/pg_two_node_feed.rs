//! Live changes across PostgreSQL nodes come by `LISTEN`/`NOTIFY`, not by polling: node B
//! watches with a poll interval of an hour; each time its watch has read the log to the end
//! and waits (`watch_waits`), node A commits, and the change must reach B's watch (the test
//! fails after 30 s, long before B would poll). Needs `BITCRAPS_TEST_POSTGRES_URL`; skipped
//! (with a notice) without.
#![cfg(feature = "postgres")]

use crate::common;

use std::time::Duration;

use bitcraps_storage::{Change, ChangeKind, PersistentStorageManager};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

const PATIENCE: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_nodes_commits_wake_a_watch_without_polling() -> Result {
    let Some(f) = common::pg_fixture() else {
        return Ok(());
    };
    let mut config = f.config.clone();
    config.maintenance.background_tasks = false;
    let a = PersistentStorageManager::open(config.clone()).await?;
    config.maintenance.change_poll_interval = Duration::from_secs(3600);
    let b = PersistentStorageManager::open(config).await?;
    let mut waits = b.watch_waits();
    let mut watch = b.watch("lobby", "t-1/").await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Change>();
    let consumer = tokio::spawn(async move {
        while let Some(change) = watch.next().await {
            if tx.send(change?).is_err() {
                break;
            }
        }
        Ok::<_, bitcraps_storage::StorageError>(())
    });
    for i in 0..6u64 {
        // B's watch has read everything and waits: only a wake-up can bring A's change.
        tokio::time::timeout(PATIENCE, waits.wait_for(|n| *n > i)).await??;
        let key = format!("t-1/seat-{i}");
        if i < 5 {
            a.store("lobby", &key, &i).await?;
        } else {
            assert!(a.delete("lobby", "t-1/seat-0").await?);
        }
        let change = tokio::time::timeout(PATIENCE, rx.recv())
            .await
            .map_err(|_| "node A's commit never woke node B's watch")?
            .ok_or("the watch ended")?;
        let want = if i < 5 {
            (key, ChangeKind::Put)
        } else {
            ("t-1/seat-0".to_owned(), ChangeKind::Delete)
        };
        assert_eq!((change.key, change.kind), want);
    }
    consumer.abort();
    a.close().await?;
    b.close().await?;
    Ok(())
}

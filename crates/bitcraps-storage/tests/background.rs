//! Background tasks run on their schedule, keep the store healthy, survive failing runs, and
//! are stopped and joined by `close()`.

mod common;

use std::time::Duration;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bitcraps_storage::{PersistentStorageManager, StorageConfig};
use common::faulty::Faulty;
use common::{game, sqlite_fixture};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn fast(mut config: StorageConfig) -> StorageConfig {
    config.statistics_interval = Duration::from_millis(20);
    config.cache_upkeep_interval = Duration::from_millis(20);
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_tasks_run_and_stop_on_close() -> Result {
    let f = sqlite_fixture();
    let s = PersistentStorageManager::open(fast(f.config.clone())).await?;
    s.store("games", "g", &game("g", 1)).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(s.statistics().await?.background_failures, 0);
    s.close().await?;
    // Closed and joined: the database is released and can be opened again right away.
    let again = PersistentStorageManager::open(f.config.clone()).await?;
    again.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_runs_are_counted_and_the_store_keeps_working() -> Result {
    let f = sqlite_fixture();
    let backend = Arc::new(Faulty::new(common::sqlite_backend(&f.config)?));
    backend.panic_on_statistics.store(true, Ordering::SeqCst);
    let s = PersistentStorageManager::with_backend(fast(f.config.clone()), backend.clone())?;
    s.store("games", "g", &game("g", 1)).await?;
    // Let several scheduled statistics runs hit the injected panic.
    tokio::time::sleep(Duration::from_millis(300)).await;
    backend.panic_on_statistics.store(false, Ordering::SeqCst);
    let stats = s.statistics().await?;
    assert!(
        stats.background_failures > 0,
        "failing background runs were not counted"
    );
    // The store still serves reads and writes.
    s.store("games", "h", &game("h", 2)).await?;
    assert_eq!(s.retrieve("games", "h").await?, Some(game("h", 2)));
    s.close().await?;
    Ok(())
}

/// A due flush of more access counts than one group writes (5,000) is written in chunks,
/// without anyone calling `flush()`, and every count reaches the database exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn due_access_counts_reach_the_database_in_chunks() -> Result {
    let f = common::sqlite_fixture_fast();
    let mut config = f.config.clone();
    config.access_flush_interval = Duration::from_millis(50);
    let s = PersistentStorageManager::open(config).await?;
    let keys: Vec<String> = (0..12_000).map(|i| format!("g-{i:05}")).collect();
    for chunk in keys.chunks(1_000) {
        let items: Vec<(String, common::Game)> =
            chunk.iter().map(|k| (k.clone(), game(k, 3))).collect();
        s.store_batch("games", &items).await?;
    }
    for k in &keys {
        assert!(s.retrieve::<common::Game>("games", k).await?.is_some());
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while s.statistics().await?.pending_access_updates > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "access counts were never flushed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let db = rusqlite::Connection::open(f.config.data_path.join("bitcraps.db"))?;
    let (rows, total): (i64, i64) = db.query_row(
        "SELECT count(*), sum(access_count) FROM records WHERE access_count > 0",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    assert_eq!((rows, total), (12_000, 12_000));
    s.close().await?;
    Ok(())
}

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
    config.maintenance.statistics_interval = Duration::from_millis(20);
    config.cache.upkeep_interval = Duration::from_millis(20);
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

/// Store `n` small documents, 1,000 per batch.
async fn store_each(s: &PersistentStorageManager, n: usize) -> Result<Vec<String>> {
    let keys: Vec<String> = (0..n).map(|i| format!("g-{i:05}")).collect();
    for chunk in keys.chunks(1_000) {
        let items: Vec<(&String, u32)> = chunk.iter().map(|k| (k, 7)).collect();
        s.store_batch("games", &items).await?;
    }
    Ok(keys)
}

/// Read each key once.
async fn read_each(s: &PersistentStorageManager, keys: &[String]) -> Result {
    for k in keys {
        assert_eq!(s.retrieve::<u32>("games", k).await?, Some(7));
    }
    Ok(())
}

/// (records with a count on disk, the sum of those counts), read beside the open store.
fn counts_on_disk(config: &StorageConfig) -> Result<(i64, i64)> {
    let db = rusqlite::Connection::open(config.database.data_path.join("bitcraps.db"))?;
    Ok(db.query_row(
        "SELECT count(*), coalesce(sum(access_count), 0) FROM records WHERE access_count > 0",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?)
}

/// When the interval is up, every buffered count is written without anyone calling
/// `flush()`, exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_counts_reach_the_database_within_the_interval() -> Result {
    let f = common::sqlite_fixture_fast();
    let mut config = f.config.clone();
    config.write.access_flush_interval = Duration::from_millis(50);
    let s = PersistentStorageManager::open(config).await?;
    read_each(&s, &store_each(&s, 12_000).await?).await?;
    // Taken from the tracker, the counts are on disk once their group commits.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let pending = s.statistics().await?.pending_access_updates;
        let (rows, total) = counts_on_disk(&f.config)?;
        assert_eq!(rows, total, "each record was read once");
        if pending == 0 && rows == 12_000 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "access counts were never flushed: {pending} pending, {rows} on disk"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.close().await?;
    Ok(())
}

/// Too many pending records (50,000) start an early flush before the interval (here an
/// hour), down to about half of them, in chunks of whole shards over several group commits;
/// every count is either on disk or still pending, never lost or doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_pending_access_counts_flush_early_in_chunks() -> Result {
    let f = common::sqlite_fixture_fast();
    let mut config = f.config.clone();
    config.write.access_flush_interval = Duration::from_secs(3600);
    let s = PersistentStorageManager::open(config).await?;
    let keys = store_each(&s, 60_000).await?;
    let before = s.statistics().await?.group_commits;
    read_each(&s, &keys).await?;
    // A chunk taken from the tracker is neither pending nor on disk until its group commits,
    // so poll until the two add up (they never may exceed the reads).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let (stats, rows) = loop {
        let stats = s.statistics().await?;
        let (rows, total) = counts_on_disk(&f.config)?;
        assert_eq!(rows, total, "each record was read once");
        let accounted = u64::try_from(rows)? + stats.pending_access_updates;
        assert!(accounted <= 60_000, "counts doubled: {accounted}");
        // It starts at 50,000 pending and writes at least 25,000; the reads end at 60,000.
        if stats.pending_access_updates <= 35_000 && accounted == 60_000 {
            break (stats, rows);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no early flush, or counts lost: {} pending, {rows} on disk",
            stats.pending_access_updates
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(rows >= 25_000, "only {rows} records flushed");
    // Nothing else was written since `before`: every group commit was part of the flush.
    let flush_groups = stats.group_commits - before;
    assert!(flush_groups >= 3, "the flush took {flush_groups} group(s)");
    s.close().await?;
    Ok(())
}

//! Background tasks run on their schedule, keep the store healthy, survive failing runs, and
//! are stopped and joined by `close()`.

use crate::common;

use std::time::{Duration, Instant};

use bitcraps_storage::testing::BackgroundTask;
use bitcraps_storage::{PersistentStorageManager, StorageConfig, StorageError};
use common::faulty::{Fault, Method, When, faulty_sqlite};
use common::{game, sqlite_fixture};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// How long a test waits for scheduled runs before it fails: generous, as the other tests of
/// the binary may hold both cores.
const PATIENCE: Duration = Duration::from_secs(30);

fn fast(mut config: StorageConfig) -> StorageConfig {
    config.maintenance.statistics_interval = Duration::from_millis(20);
    config.cache.upkeep_interval = Duration::from_millis(20);
    config
}

/// Scheduled, but never due during a test: runs happen only when the test asks for them.
fn by_hand(mut config: StorageConfig) -> StorageConfig {
    config.maintenance.statistics_interval = Duration::from_secs(3600);
    config.cache.upkeep_interval = Duration::from_secs(3600);
    config
}

/// Waits until `task` has finished `runs` runs on its own schedule, or fails the test.
async fn scheduled_runs(s: &PersistentStorageManager, task: BackgroundTask, runs: u64) -> Result {
    let deadline = Instant::now() + PATIENCE;
    while s.background_runs(task) < runs {
        if Instant::now() >= deadline {
            return Err(format!(
                "{task:?} ran {} time(s) in {PATIENCE:?}, expected {runs}",
                s.background_runs(task)
            )
            .into());
        }
        // Polling pace only: the condition above decides.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_tasks_run_and_stop_on_close() -> Result {
    let f = sqlite_fixture();
    let s = PersistentStorageManager::open(fast(f.config.clone())).await?;
    s.store("games", "g", &game("g", 1)).await?;
    scheduled_runs(&s, BackgroundTask::Statistics, 3).await?;
    scheduled_runs(&s, BackgroundTask::CacheUpkeep, 3).await?;
    assert_eq!(s.statistics().await?.background_failures, 0);
    s.close().await?;
    assert!(matches!(
        s.run_background_task(BackgroundTask::Statistics).await,
        Err(StorageError::Closed)
    ));
    // Closed and joined: the database is released and can be opened again right away.
    let again = PersistentStorageManager::open(f.config.clone()).await?;
    again.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_runs_are_counted_and_the_store_keeps_working() -> Result {
    let f = sqlite_fixture();
    let backend = faulty_sqlite(&f.config)?;
    backend.inject(Method::Statistics, When::Always, Fault::Panic);
    let s = PersistentStorageManager::with_backend(fast(f.config.clone()), backend.clone())?;
    s.store("games", "g", &game("g", 1)).await?;
    // Several scheduled statistics runs hit the injected panic.
    scheduled_runs(&s, BackgroundTask::Statistics, 3).await?;
    backend.clear(Method::Statistics);
    let stats = s.statistics().await?;
    assert!(
        stats.background_failures > 0,
        "failing background runs were not counted"
    );
    assert!(stats.background_failures >= 3, "each panicked run counts");
    // The task kept its schedule after the panics.
    let ran = s.background_runs(BackgroundTask::Statistics);
    scheduled_runs(&s, BackgroundTask::Statistics, ran + 2).await?;
    // The store still serves reads and writes.
    s.store("games", "h", &game("h", 2)).await?;
    assert_eq!(s.retrieve("games", "h").await?, Some(game("h", 2)));
    s.close().await?;
    Ok(())
}

/// A run asked for goes through the scheduled task: its outcome comes back, a panic counts
/// as exactly one failure, and the task goes on. No clock involved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requested_run_counts_like_a_scheduled_one() -> Result {
    let f = sqlite_fixture();
    let backend = faulty_sqlite(&f.config)?;
    let s = PersistentStorageManager::with_backend(by_hand(f.config.clone()), backend.clone())?;
    s.store("games", "g", &game("g", 1)).await?;
    backend.inject(Method::Statistics, When::Always, Fault::Panic);
    let panicked = s.run_background_task(BackgroundTask::Statistics).await;
    assert!(
        matches!(&panicked, Err(StorageError::Task(_))),
        "{panicked:?}"
    );
    backend.clear(Method::Statistics);
    assert_eq!(s.statistics().await?.background_failures, 1);
    s.run_background_task(BackgroundTask::Statistics).await?;
    s.run_background_task(BackgroundTask::CacheUpkeep).await?;
    s.run_background_task(BackgroundTask::Maintenance).await?;
    assert_eq!(s.background_runs(BackgroundTask::Statistics), 2);
    assert_eq!(s.background_runs(BackgroundTask::CacheUpkeep), 1);
    assert_eq!(s.background_runs(BackgroundTask::Maintenance), 1);
    assert_eq!(s.statistics().await?.background_failures, 1);
    s.close().await?;
    Ok(())
}

/// A task the configuration does not schedule still runs when asked, inline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unscheduled_task_runs_inline_when_asked() -> Result {
    let f = sqlite_fixture();
    let backend = faulty_sqlite(&f.config)?;
    let mut config = by_hand(f.config.clone());
    config.maintenance.statistics_interval = Duration::ZERO;
    let s = PersistentStorageManager::with_backend(config, backend.clone())?;
    backend.inject(Method::Statistics, When::Always, Fault::Panic);
    assert!(
        s.run_background_task(BackgroundTask::Statistics)
            .await
            .is_err()
    );
    backend.clear(Method::Statistics);
    s.run_background_task(BackgroundTask::Statistics).await?;
    assert_eq!(s.background_runs(BackgroundTask::Statistics), 0);
    assert_eq!(s.statistics().await?.background_failures, 1);
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
    let deadline = Instant::now() + PATIENCE;
    loop {
        let pending = s.statistics().await?.pending_access_updates;
        let (rows, total) = counts_on_disk(&f.config)?;
        assert_eq!(rows, total, "each record was read once");
        if pending == 0 && rows == 12_000 {
            break;
        }
        assert!(
            Instant::now() < deadline,
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
    let deadline = Instant::now() + PATIENCE;
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
            Instant::now() < deadline,
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

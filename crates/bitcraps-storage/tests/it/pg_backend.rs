//! The PostgreSQL backend through the seam: safe to call and drop from async code, dangling
//! records are corruption, closing refuses later work. Needs `BITCRAPS_TEST_POSTGRES_URL`;
//! skipped without.

#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use std::time::Duration;

use bitcraps_storage::testing::postgres::{PostgresBackend, PostgresOptions};
use bitcraps_storage::testing::{Backend, Maintenance};
use bitcraps_storage::{PersistentStorageManager, StorageError};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn options(url: String) -> PostgresOptions {
    PostgresOptions {
        url,
        replica_url: None,
        pool_size: 2,
        connection_timeout: Duration::from_secs(10),
        deduplicate: true,
        durability: bitcraps_storage::Durability::Full,
    }
}

/// The blocking calls go through the backend's own runtime and a std channel, so calling them
/// (and dropping the backend) on a worker of the caller's runtime neither panics nor hangs
/// (`Handle::block_on` or dropping a runtime there would panic).
#[tokio::test(flavor = "current_thread")]
async fn blocking_calls_and_drop_are_safe_inside_a_runtime() -> Result {
    let Some(fixture) = common::pg_fixture() else {
        return Ok(());
    };
    let url = fixture.config.database.url.clone().expect("url");
    let backend = PostgresBackend::open(&options(url))?;
    assert!(backend.dictionaries()?.is_empty());
    assert_eq!(backend.statistics()?.backend, "postgres");
    assert!(backend.check()?.is_ok());
    backend.vacuum()?;
    backend.close()?;
    assert!(matches!(backend.collections(), Err(StorageError::Closed)));
    assert!(matches!(backend.apply(&[]), Err(StorageError::Closed)));
    drop(backend);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dangling_record_is_corruption() -> Result {
    let Some(fixture) = common::pg_fixture() else {
        return Ok(());
    };
    let mut config = fixture.config.clone();
    config.maintenance.background_tasks = false;
    let s = PersistentStorageManager::open(config).await?;
    s.store("c", "k", &1).await?;
    let url = fixture.config.database.url.clone().expect("url");
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
    let task = tokio::spawn(conn);
    client
        .batch_execute("UPDATE records SET blob_id = 999999 WHERE key = 'k'")
        .await?;
    let err = s.retrieve::<i32>("c", "k").await.expect_err("dangling");
    assert_eq!(
        err.to_string(),
        "corrupted data at c/k: the record refers to blob 999999, which does not exist"
    );
    let report = s.check_consistency().await?;
    assert_eq!(report.dangling_records, 1, "{report:?}");
    assert_eq!(report.orphaned_blobs, 1, "{report:?}");
    drop(client);
    let _ = task.await;
    s.close().await?;
    Ok(())
}

/// A store on the test server without background tasks (nothing analyzes but the writes),
/// and a plain client to its schema, with the fixture that drops the schema when dropped;
/// `None` without a server.
async fn store_and_client() -> Result<
    Option<(
        common::Fixture,
        PersistentStorageManager,
        tokio_postgres::Client,
        tokio::task::JoinHandle<std::result::Result<(), tokio_postgres::Error>>,
    )>,
> {
    let Some(fixture) = common::pg_fixture() else {
        return Ok(None);
    };
    let mut config = fixture.config.clone();
    config.maintenance.background_tasks = false;
    let s = PersistentStorageManager::open(config).await?;
    let url = fixture.config.database.url.clone().expect("url");
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
    Ok(Some((fixture, s, client, tokio::spawn(conn))))
}

/// What it costs: the analyses after a large load ran with the server's default statistics
/// target (100: 30,000 rows sampled a table), 0.36 s of a 200,000-document load's ~4.5 s on
/// the writer thread. They now sample as a target of 10 would (3,000 rows), which still
/// gives the plans the tables' sizes: the keys' histogram has at most 11 bounds, not 101.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_loads_analysis_takes_a_small_sample() -> Result {
    use bitcraps_storage::testing::postgres::ANALYZE_AFTER_PUTS;
    let Some((_fixture, s, client, task)) = store_and_client().await? else {
        return Ok(());
    };
    let docs: Vec<(String, u64)> = (0..ANALYZE_AFTER_PUTS)
        .map(|i| (format!("g-{i:06}"), i))
        .collect();
    s.store_batch("games", &docs).await?;
    let row = client
        .query_one(
            "SELECT array_length(histogram_bounds::text::text[], 1) FROM pg_stats \
             WHERE schemaname = current_schema() AND tablename = 'records' \
               AND attname = 'key'",
            &[],
        )
        .await?;
    let bounds: Option<i32> = row.get(0);
    assert!(
        bounds.is_some_and(|n| (2..=11).contains(&n)),
        "the keys' histogram after the load has {bounds:?} bounds"
    );
    drop(client);
    let _ = task.await;
    s.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_that_does_not_exist_is_a_clear_error() -> Result {
    let Some(base) = common::postgres_url() else {
        return Ok(());
    };
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}options=-csearch_path%3Dbcs_no_such_schema_x");
    let err = PostgresBackend::open(&options(url)).expect_err("no schema");
    assert!(
        err.to_string()
            .contains("search_path names no existing schema"),
        "{err}"
    );
    Ok(())
}

/// What broke: a freshly bulk-loaded table kept the statistics of an empty one until
/// autovacuum got to it, and the planner then read each page of a listing with a bitmap scan
/// and a sort of the whole key range (27 ms a page at 200,000 records, against 0.09 ms by the
/// primary key). The backend now analyzes its tables right after the commit that brings its
/// puts to `ANALYZE_AFTER_PUTS` (and again at each doubling).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_load_is_analyzed_right_after_its_commit() -> Result {
    use bitcraps_storage::testing::postgres::ANALYZE_AFTER_PUTS;
    let Some((_fixture, s, client, task)) = store_and_client().await? else {
        return Ok(());
    };
    let analyzed = || async {
        client
            .batch_execute("SELECT pg_stat_clear_snapshot()")
            .await?;
        let row = client
            .query_one(
                "SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables \
                 WHERE relid = 'records'::regclass",
                &[],
            )
            .await?;
        Ok::<bool, tokio_postgres::Error>(row.get(0))
    };
    let batch = |from: u64, n: u64| {
        (from..from + n)
            .map(|i| (format!("g-{i:06}"), i))
            .collect::<Vec<_>>()
    };
    let below = ANALYZE_AFTER_PUTS - 1;
    s.store_batch("games", &batch(0, below)).await?;
    assert!(!analyzed().await?, "analyzed before the threshold");
    s.store_batch("games", &batch(below, 1)).await?;
    assert!(
        analyzed().await?,
        "not analyzed after {ANALYZE_AFTER_PUTS} puts"
    );
    drop(client);
    let _ = task.await;
    s.close().await?;
    Ok(())
}

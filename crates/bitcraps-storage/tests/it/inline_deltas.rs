//! Small deltas kept in their record's row (schema version 13, issue #16,
//! `backend/sqlite/inline.rs`): they read back exactly, count in the statistics, give way to
//! the next keyframe and to a delete with exact reference counts, and travel through a
//! backup — restored into a SQLite store as they are, and into PostgreSQL (which stores a
//! delta as a blob of its own) as delta blobs with exact counts.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[cfg(feature = "postgres")]
use crate::common;

use std::path::Path;

use bitcraps_storage::{PersistentStorageManager, StorageConfig};
use serde_json::{Value, json};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// A game log of `rolls` rolls of game `game` (~130 bytes each; 800 is ~100 KiB).
fn log(game: u64, rolls: u64) -> Value {
    let rolls: Vec<Value> = (0..rolls)
        .map(|n| {
            json!({"n": n, "dice": [n % 6 + 1, (n * 7 + game) % 6 + 1], "shooter": format!("p-{}", n % 7),
                   "bets": [{"kind": "pass", "amount": 10 + n % 90}], "point": 4 + n % 7})
        })
        .collect();
    json!({"game": game, "rolls": rolls})
}

/// Records of the SQLite store in `dir` that hold an inline delta.
fn inline_rows(dir: &Path) -> Result<i64> {
    let conn = rusqlite::Connection::open(dir.join("bitcraps.db"))?;
    Ok(conn.query_row(
        "SELECT count(*) FROM records WHERE delta IS NOT NULL",
        [],
        |r| r.get(0),
    )?)
}

/// Every key's raw bytes, in key order.
async fn contents(s: &PersistentStorageManager) -> Result<Vec<(String, Option<Vec<u8>>)>> {
    let mut out = Vec::new();
    for key in ["a", "b", "c", "small"] {
        out.push((
            key.to_owned(),
            s.retrieve_raw("logs", key).await?.map(|b| b.to_vec()),
        ));
    }
    Ok(out)
}

fn config(dir: &Path) -> StorageConfig {
    let mut config = StorageConfig::with_data_path(dir);
    config.maintenance.background_tasks = false;
    config.cache.size_mb = 0;
    config.compression.keyframe_interval = 4;
    config
}

/// A store whose "a" is an inline delta over a keyframe shared (deduplicated) with "b", whose
/// "c" is an inline delta over a keyframe of its own, and a small document.
async fn populate(s: &PersistentStorageManager) -> Result {
    s.store("logs", "a", &log(1, 800)).await?;
    s.store("logs", "b", &log(1, 800)).await?;
    s.store("logs", "c", &log(2, 800)).await?;
    s.store("logs", "small", &json!({"x": 1})).await?;
    for n in 801..803 {
        s.store("logs", "a", &log(1, n)).await?;
        s.store("logs", "c", &log(2, n)).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_deltas_read_back_and_keep_counts_exact() -> Result {
    let dir = tempfile::tempdir()?;
    let s = PersistentStorageManager::open(config(dir.path())).await?;
    populate(&s).await?;
    assert_eq!(inline_rows(dir.path())?, 2, "the test needs inline deltas");
    let meta = s.metadata("logs", "a").await?.expect("a");
    assert!(meta.is_delta && meta.stored_bytes < 1_000, "{meta:?}");
    assert_eq!(
        meta.size_bytes,
        serde_json::to_vec(&log(1, 802))?.len() as u64
    );
    let stats = s.statistics().await?.database_stats;
    assert_eq!(stats.delta_blobs, 2, "{stats:?}");
    let want = |g, n| {
        serde_json::to_vec(&log(g, n))
            .ok()
            .map(std::sync::Arc::<[u8]>::from)
    };
    assert_eq!(s.retrieve_raw("logs", "a").await?, want(1, 802));
    assert_eq!(s.retrieve_raw("logs", "b").await?, want(1, 800));
    assert!(s.check_consistency_deep().await?.is_ok());
    // The next keyframe (interval 4) replaces the inline delta; a delete drops the other.
    s.store("logs", "a", &log(1, 803)).await?;
    s.store("logs", "a", &log(1, 804)).await?;
    s.delete("logs", "c").await?;
    assert_eq!(s.retrieve_raw("logs", "a").await?, want(1, 804));
    assert_eq!(s.retrieve_raw("logs", "b").await?, want(1, 800));
    assert!(s.check_consistency_deep().await?.is_ok());
    s.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_with_inline_deltas_restores_into_sqlite() -> Result {
    let dir = tempfile::tempdir()?;
    let s = PersistentStorageManager::open(config(dir.path())).await?;
    populate(&s).await?;
    let before = contents(&s).await?;
    let info = s.backups().create_backup().await?;
    let target_dir = tempfile::tempdir()?;
    let target = config(target_dir.path());
    s.backups().restore_backup_into(&info.id, &target).await?;
    s.close().await?;
    let r = PersistentStorageManager::open(target).await?;
    assert_eq!(inline_rows(target_dir.path())?, 2);
    assert_eq!(contents(&r).await?, before);
    assert!(r.check_consistency_deep().await?.is_ok());
    r.close().await?;
    Ok(())
}

/// Regression: the snapshot row stream other backends load named a record's blob only, so
/// a record holding an inline delta would have come back as its keyframe's document.
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_with_inline_deltas_restores_into_postgres() -> Result {
    let Some(pg) = common::pg_fixture() else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let s = PersistentStorageManager::open(config(dir.path())).await?;
    populate(&s).await?;
    let before = contents(&s).await?;
    let info = s.backups().create_backup().await?;
    let mut target = pg.config.clone();
    target.maintenance.background_tasks = false;
    s.backups().restore_backup_into(&info.id, &target).await?;
    s.close().await?;
    let r = PersistentStorageManager::open(target).await?;
    assert_eq!(contents(&r).await?, before);
    let stats = r.statistics().await?.database_stats;
    assert_eq!(stats.delta_blobs, 2, "{stats:?}");
    assert!(r.check_consistency_deep().await?.is_ok());
    r.close().await?;
    Ok(())
}

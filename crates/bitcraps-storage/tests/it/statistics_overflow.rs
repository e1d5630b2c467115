//! Byte totals past `i64::MAX` saturate instead of failing: SQLite's `sum()` raises "integer
//! overflow" when its integer total leaves i64, and took the whole statistics call (and a
//! collection's usage, and the reference repair's count of removed bytes) with it. The rows are written raw: no store
//! holds 8 EiB, but a damaged or hostile length must not take statistics down.

use bitcraps_storage::testing::Backend;
use bitcraps_storage::testing::sqlite::SqliteBackend;
use bitcraps_storage::{PersistentStorageManager, StorageConfig};

use crate::common::game;

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Over half of `i64::MAX`: two of them overflow an integer sum.
const HUGE: i64 = 5_000_000_000_000_000_000;
const SATURATED: u64 = i64::MAX.unsigned_abs();

#[tokio::test]
async fn byte_totals_past_i64_max_saturate_in_statistics_usage_and_repair() -> Result {
    let dir = tempfile::tempdir()?;
    let mut config = StorageConfig::with_data_path(dir.path());
    config.maintenance.background_tasks = false;
    let s = PersistentStorageManager::open(config).await?;
    s.store("games", "g-1", &game("g-1", 3)).await?;
    s.store("games", "g-2", &game("g-2", 4)).await?;
    s.close().await?;
    drop(s);

    let path = dir.path().join("bitcraps.db");
    let raw = rusqlite::Connection::open(&path)?;
    raw.execute("UPDATE blobs SET raw_len = ?1, stored_len = ?1", [HUGE])?;
    // Two orphan blobs and two orphan chunks, each of HUGE stored bytes, for the repair.
    for _ in 0..2 {
        raw.execute(
            "INSERT INTO blobs (hash, codec, raw_len, stored_len, refcount, data)
             VALUES (randomblob(32), 0, ?1, ?1, 0, x'00')",
            [HUGE],
        )?;
        raw.execute(
            "INSERT INTO chunks (hash, codec, raw_len, stored_len, data)
             VALUES (randomblob(32), 0, ?1, ?1, x'00')",
            [HUGE],
        )?;
    }
    drop(raw);

    let backend = SqliteBackend::open(&crate::common::sqlite_options(path, 1))?;
    let usage = backend.usage("games", 0)?;
    assert_eq!(usage.records, 2);
    assert_eq!(usage.bytes, SATURATED);
    let stats = backend.statistics()?;
    assert_eq!(stats.record_count, 2);
    assert_eq!(stats.logical_bytes, SATURATED);
    assert_eq!(stats.unique_bytes, SATURATED);
    assert_eq!(stats.stored_bytes, SATURATED);

    let repaired = backend.maintenance().repair_references()?;
    assert_eq!(repaired.orphans_removed, 2);
    assert_eq!(repaired.orphan_bytes_removed, SATURATED);
    assert_eq!(repaired.orphan_chunks_removed, 2);
    assert_eq!(repaired.orphan_chunk_bytes_removed, SATURATED);
    Ok(())
}

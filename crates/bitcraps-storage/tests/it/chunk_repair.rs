//! The reference repair of chunks (issue #16): a wrong chunk reference count, an orphaned
//! chunk and a chunk list whose blob is gone are found by the consistency check and fixed by
//! maintenance, and every document still reads back. On SQLite, and on PostgreSQL when
//! `BITCRAPS_TEST_POSTGRES_URL` is set.

use crate::common;

use bitcraps_storage::{PersistentStorageManager, StorageConfig};
use serde_json::{Value, json};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn log(game: u32) -> Value {
    let rolls: Vec<Value> = (0..3000u32)
        .map(|n| json!({"n": n, "dice": [n % 6 + 1, (n * 5 + game) % 6 + 1], "game": game}))
        .collect();
    json!({"rolls": rolls})
}

/// Damage on the closed store: one chunk counted three times too often, an orphaned chunk
/// (a copy of an existing one), and a chunk list of a blob that does not exist.
const DAMAGE: &str =
    "UPDATE chunk_refs SET refcount = refcount + 3 WHERE chunk_id = (SELECT min(id) FROM chunks);
     INSERT INTO chunks (hash, codec, raw_len, stored_len, data, dict_id)
         SELECT hash, codec, raw_len, stored_len, data, dict_id FROM chunks
         WHERE id = (SELECT max(id) FROM chunks);
     INSERT INTO chunk_refs (chunk_id, refcount) SELECT max(id), 1 FROM chunks;
     INSERT INTO blob_chunks (blob_id, seq, chunk_id)
         SELECT 987654, 0, min(id) FROM chunks;";

async fn write(config: &StorageConfig) -> Result {
    let s = PersistentStorageManager::open(config.clone()).await?;
    s.store("games", "a", &log(1)).await?;
    s.store("games", "b", &log(2)).await?;
    s.close().await?;
    Ok(())
}

async fn repair(config: &StorageConfig) -> Result {
    let s = PersistentStorageManager::open(config.clone()).await?;
    let report = s.check_consistency().await?;
    // The orphan's count (1, nothing lists it) is wrong too; so is the count of the chunk
    // the stray list names (it is not counted for that list).
    assert_eq!(report.orphaned_chunks, 2, "{report:?}");
    assert!(report.chunk_refcount_mismatches >= 1, "{report:?}");
    assert_eq!(report.dangling_chunks, 0, "{report:?}");
    assert!(report.is_sound() && !report.is_ok(), "{report:?}");
    let m = s.maintenance().await?;
    assert!(m.errors.is_empty(), "{:?}", m.errors);
    assert_eq!(m.references.orphan_chunks_removed, 1, "{:?}", m.references);
    assert_eq!(m.references.chunk_refcounts_fixed, 1, "{:?}", m.references);
    let report = s.check_consistency_deep().await?;
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(s.retrieve::<Value>("games", "a").await?, Some(log(1)));
    assert_eq!(s.retrieve::<Value>("games", "b").await?, Some(log(2)));
    s.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunk_references_are_repaired_on_sqlite() -> Result {
    let f = common::sqlite_fixture();
    let mut config = f.config.clone();
    config.maintenance.background_tasks = false;
    write(&config).await?;
    let conn = rusqlite::Connection::open(config.database.data_path.join("bitcraps.db"))?;
    conn.execute_batch(DAMAGE)?;
    drop(conn);
    repair(&config).await
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunk_references_are_repaired_on_postgres() -> Result {
    let Some(f) = common::pg_fixture() else {
        return Ok(());
    };
    let mut config = f.config.clone();
    config.maintenance.background_tasks = false;
    write(&config).await?;
    let url = config.database.url.clone().ok_or("no url")?;
    common::postgres_execute(&url, DAMAGE.to_owned());
    repair(&config).await
}

//! Regression (schema 15): `changes_since` reads the log's rows and, when its first row has
//! no time of its own (NULL: the same as the previous row's), looks the time up below it. It
//! did so in a second statement outside any read transaction, so a prune that removed exactly
//! the rows up to the reader's `after` in between (re-timing the new first row, which the
//! reader had already read as NULL) left no row below, and the read failed with a corruption
//! error ("no time before it") on a healthy log. The read now runs in one read transaction.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bitcraps_storage::testing::sqlite::SqliteBackend;
use bitcraps_storage::testing::{Backend, WriteOp};
use bitcraps_storage::{PersistentStorageManager, StorageConfig, StorageError};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feed_read_racing_a_prune_finds_the_time_before_its_first_row() -> Result {
    let dir = tempfile::tempdir()?;
    let mut config = StorageConfig::with_data_path(dir.path());
    config.maintenance.background_tasks = false;
    // Create a schema-15 store, then give it a long log of one batch's time, as the writer
    // stores it: a time on every 64th row, NULL between.
    let s = PersistentStorageManager::open(config.clone()).await?;
    s.close().await?;
    drop(s);
    let path = dir.path().join("bitcraps.db");
    const ROWS: i64 = 20_000;
    {
        let conn = rusqlite::Connection::open(&path)?;
        conn.execute_batch("BEGIN; INSERT INTO collection_ids (id, name) VALUES (1, 'games');")?;
        {
            let mut insert = conn.prepare(
                "INSERT INTO changes (seq, collection_id, key, kind_offset, at)
                 VALUES (?1, 1, ?2, -4, ?3)",
            )?;
            for seq in 1..=ROWS {
                let at = ((seq - 1) % 64 == 0).then_some(1_000i64);
                insert.execute(rusqlite::params![seq, format!("k{seq}"), at])?;
            }
        }
        conn.execute_batch("COMMIT;")?;
    }
    let backend = Arc::new(SqliteBackend::open(&crate::common::sqlite_options(
        path, 2,
    ))?);
    let done = Arc::new(AtomicBool::new(false));
    let pruner = {
        let (backend, done) = (Arc::clone(&backend), Arc::clone(&done));
        std::thread::spawn(move || -> Result {
            // One row per transaction: every step is a window for the reader.
            for _ in 0..ROWS {
                let out = backend.apply(&[vec![WriteOp::PruneChanges {
                    before_ms: 2_000,
                    limit: 1,
                }]])?;
                if out.iter().any(|r| r.is_err()) {
                    return Err(format!("prune failed: {out:?}").into());
                }
                if done.load(Ordering::Relaxed) {
                    break;
                }
            }
            done.store(true, Ordering::Relaxed);
            Ok(())
        })
    };
    let reader = {
        let (backend, done) = (Arc::clone(&backend), Arc::clone(&done));
        std::thread::spawn(move || -> std::result::Result<(), String> {
            let mut after = 0u64;
            while !done.load(Ordering::Relaxed) {
                match backend.changes_since(after, 4) {
                    Ok(_) => {}
                    Err(StorageError::ChangesPruned { pruned_through, .. }) => {
                        // One ahead of retention: its next step removes exactly
                        // through `after`, which is still retained.
                        after = pruned_through + 1;
                    }
                    Err(e) => {
                        done.store(true, Ordering::Relaxed);
                        return Err(format!("changes_since({after}) on a healthy log: {e}"));
                    }
                }
            }
            Ok(())
        })
    };
    pruner.join().map_err(|_| "pruner panicked")??;
    let read = reader.join().map_err(|_| "reader panicked")?;
    assert!(read.is_ok(), "{read:?}");
    Ok(())
}

//! A cache miss of a small document on SQLite is read on the caller's thread: one indexed
//! lookup through an idle read connection, no task handed to the blocking pool. Documents
//! that are more than one row (chunk lists) still go to the pool. The answers are the same
//! as before: the current value when a write races the miss, and `Corruption` for a record
//! whose page or bytes are damaged.
//!
//! Each test runs on a current-thread runtime, so
//! `PersistentStorageManager::blocking_tasks_started_on_this_thread` counts the hand-offs of
//! its own calls.

use crate::common;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bitcraps_storage::{PersistentStorageManager, StorageConfig};
use common::{Game, game, game_log, sqlite_fixture};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn hand_offs() -> u64 {
    PersistentStorageManager::blocking_tasks_started_on_this_thread()
}

/// A SQLite store whose reads plan no prefetches (they would hand reads to the pool).
fn fixture() -> common::Fixture {
    let mut f = sqlite_fixture();
    f.config.cache.prefetch = false;
    f
}

fn db_path(config: &StorageConfig) -> PathBuf {
    config.database.data_path.join("bitcraps.db")
}

#[tokio::test]
async fn a_miss_of_a_small_document_is_read_without_the_blocking_pool() -> Result {
    let f = fixture();
    let s = PersistentStorageManager::open(f.config.clone()).await?;
    s.store("games", "g-1", &game("g-1", 3)).await?;
    // ~100 KiB: stored as a chunk list.
    let log = game_log(800);
    s.store("logs", "l-1", &log).await?;
    s.close().await?;
    drop(s);

    // Reopened: nothing is cached.
    let s = PersistentStorageManager::open(f.config.clone()).await?;
    let before = hand_offs();
    assert_eq!(
        s.retrieve::<Game>("games", "g-1").await?,
        Some(game("g-1", 3))
    );
    assert_eq!(s.retrieve::<Game>("games", "g-2").await?, None);
    assert_eq!(
        hand_offs(),
        before,
        "a miss of a one-row document (and of an absent key) went to the blocking pool"
    );
    assert_eq!(
        s.retrieve::<serde_json::Value>("logs", "l-1").await?,
        Some(log)
    );
    assert_eq!(
        hand_offs(),
        before + 1,
        "a chunk list is read on the blocking pool"
    );
    // The miss filled the cache: the next read is a hit.
    let hits = s.statistics().await?.cache_hits;
    assert_eq!(
        s.retrieve::<Game>("games", "g-1").await?,
        Some(game("g-1", 3))
    );
    assert_eq!(s.statistics().await?.cache_hits, hits + 1);
    s.close().await?;
    Ok(())
}

/// A miss while a write of the key is committed but not yet in this process's cache, and
/// while it is: the read returns the written value or the one before it, and every read
/// after the write returns the written value.
#[tokio::test]
async fn a_miss_racing_a_write_returns_the_written_or_the_previous_value() -> Result {
    let f = fixture();
    let s = PersistentStorageManager::open(f.config.clone()).await?;
    s.store("games", "g-1", &game("g-1", 1)).await?;
    s.close().await?;
    drop(s);

    for (name, in_window) in [("committed, not installed", true), ("installed", false)] {
        let s = PersistentStorageManager::open(f.config.clone()).await?;
        let seen: Arc<Mutex<Vec<Option<Game>>>> = Arc::default();
        let (reader, out) = (s.clone(), Arc::clone(&seen));
        let hook: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
            // On the writer thread: a runtime of its own for the read.
            let read = tokio::runtime::Builder::new_current_thread()
                .build()
                .ok()
                .and_then(|rt| rt.block_on(reader.retrieve::<Game>("games", "g-1")).ok());
            out.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(read.flatten());
        });
        if in_window {
            s.before_installing(Some(hook));
        } else {
            s.before_acknowledging(Some(hook));
        }
        s.store("games", "g-1", &game("g-1", 2)).await?;
        s.before_installing(None);
        s.before_acknowledging(None);

        let seen = seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
        assert_eq!(seen.len(), 1, "{name}: the hook ran once");
        let allowed = if in_window {
            vec![Some(game("g-1", 1)), Some(game("g-1", 2))]
        } else {
            vec![Some(game("g-1", 2))]
        };
        assert!(allowed.contains(&seen[0]), "{name}: read {:?}", seen[0]);
        assert_eq!(
            s.retrieve::<Game>("games", "g-1").await?,
            Some(game("g-1", 2)),
            "{name}: a read after the write"
        );
        s.store("games", "g-1", &game("g-1", 1)).await?;
        s.close().await?;
    }
    Ok(())
}

/// Reads every key of `keys` from a freshly opened store: the corruption errors, after
/// checking that every other read returned its document and that none went to the pool.
async fn read_all(config: &StorageConfig, keys: &[String]) -> Result<usize> {
    let s = PersistentStorageManager::open(config.clone()).await?;
    let before = hand_offs();
    let mut corrupt = 0;
    for (i, key) in keys.iter().enumerate() {
        match s.retrieve::<Game>("games", key).await {
            Ok(found) => assert_eq!(found, Some(game(key, u32::try_from(i)?)), "{key}"),
            Err(e) if e.is_corruption() => corrupt += 1,
            Err(e) => return Err(format!("{key}: not a corruption error: {e}").into()),
        }
    }
    assert_eq!(hand_offs(), before, "the reads went to the blocking pool");
    drop(s.close().await);
    Ok(corrupt)
}

#[tokio::test]
async fn a_damaged_record_reads_as_corruption_on_the_callers_thread() -> Result {
    let f = fixture();
    let mut config = f.config.clone();
    config.maintenance.scrub_interval = std::time::Duration::ZERO;
    let s = PersistentStorageManager::open(config.clone()).await?;
    let keys: Vec<String> = (0..600).map(|i| format!("g-{i:04}")).collect();
    let items: Vec<(String, Game)> = keys
        .iter()
        .zip(0u32..)
        .map(|(k, i)| (k.clone(), game(k, i)))
        .collect();
    s.store_batch("games", &items).await?;
    s.close().await?;
    drop(s);
    let db = db_path(&config);

    // One stored byte changed (a page SQLite reads fine): the content check fails.
    {
        let conn = rusqlite::Connection::open(&db)?;
        let (id, mut data): (i64, Vec<u8>) = conn.query_row(
            "SELECT b.id, b.data FROM blobs b JOIN records r ON r.blob_id = b.id
             WHERE r.collection = 'games' AND r.key = 'g-0007'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let last = data.last_mut().ok_or("an empty blob")?;
        *last ^= 0x20;
        let changed = conn.execute(
            "UPDATE blobs SET data = ?1 WHERE id = ?2",
            rusqlite::params![data, id],
        )?;
        assert_eq!(changed, 1);
    }
    assert_eq!(read_all(&config, &keys).await?, 1, "the changed blob");

    // A page of garbage: SQLite reports it corrupt.
    common::damage::damage_a_leaf(&db, "blobs")?;
    assert!(
        read_all(&config, &keys).await? > 1,
        "the damaged page's records"
    );
    Ok(())
}

/// Regression: with `chunk_threshold = 0` (or a document written under a higher threshold)
/// a large document is one row, and its miss was decompressed and hashed whole on the
/// runtime's thread — work bounded by nothing but the document's size. Such a document is
/// read on the blocking pool, like a chunk list.
#[tokio::test]
async fn a_large_document_stored_whole_is_not_decoded_on_the_runtime() -> Result {
    a_large_document_stored_whole_is_read_on_the_pool(fixture()).await
}

/// The test above on the store of `f` (`encrypted_miss_at_once.rs` runs it encrypted).
pub(crate) async fn a_large_document_stored_whole_is_read_on_the_pool(
    mut f: common::Fixture,
) -> Result {
    f.config.compression.chunk_threshold = 0;
    let s = PersistentStorageManager::open(f.config.clone()).await?;
    // ~100 KiB, stored whole (one row) under a threshold of 0.
    let log = game_log(800);
    s.store("logs", "l-1", &log).await?;
    s.close().await?;
    drop(s);

    let s = PersistentStorageManager::open(f.config.clone()).await?;
    let before = hand_offs();
    assert_eq!(
        s.retrieve::<serde_json::Value>("logs", "l-1").await?,
        Some(log)
    );
    assert_eq!(
        hand_offs(),
        before + 1,
        "a large document stored whole is read on the blocking pool"
    );
    s.close().await?;
    Ok(())
}

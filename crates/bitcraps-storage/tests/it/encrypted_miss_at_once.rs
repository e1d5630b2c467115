//! An encrypted SQLite store reads a cache miss of a small document on the caller's thread,
//! like a plaintext one (`read_miss_at_once.rs`): the row through an idle read connection,
//! opened under a data key already in memory. Only then: a collection shredded is refused
//! without reading anything, a record sealed under a key this node does not hold and a
//! large document go to the blocking pool, and a record that does not open is `Corruption`
//! as before.
//!
//! Each test runs on a current-thread runtime, so
//! `PersistentStorageManager::blocking_tasks_started_on_this_thread` counts the hand-offs of
//! its own calls.

use crate::common;

use bitcraps_storage::{PersistentStorageManager, StorageConfig, StorageError};
use common::{Game, game, game_log};
use rusqlite::Connection;

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn hand_offs() -> u64 {
    PersistentStorageManager::blocking_tasks_started_on_this_thread()
}

/// An encrypted SQLite store whose reads plan no prefetches (they would hand reads to the
/// pool).
fn fixture() -> common::Fixture {
    let mut f = common::sqlite_encrypted_fixture();
    f.config.cache.prefetch = false;
    f
}

fn db(config: &StorageConfig) -> rusqlite::Result<Connection> {
    Connection::open(config.database.data_path.join("bitcraps.db"))
}

fn blob_of(db: &Connection, collection: &str, key: &str) -> rusqlite::Result<i64> {
    db.query_row(
        "SELECT blob_id FROM records WHERE collection = ?1 AND key = ?2",
        [collection, key],
        |r| r.get(0),
    )
}

/// Stores `games`/`g-0`…`g-{n-1}` (game `i` under `g-i`), then closes the store.
async fn stored(config: &StorageConfig, n: u32) -> Result {
    let s = PersistentStorageManager::open(config.clone()).await?;
    for i in 0..n {
        let k = format!("g-{i}");
        s.store("games", &k, &game(&k, i)).await?;
    }
    s.close().await?;
    Ok(())
}

/// [`stored`], and `bank`/`alice` (another collection, under a data key of its own).
async fn stored_with_bank(config: &StorageConfig, n: u32) -> Result {
    stored(config, n).await?;
    let s = PersistentStorageManager::open(config.clone()).await?;
    s.store("bank", "alice", &serde_json::json!({"chips": 10}))
        .await?;
    s.close().await?;
    Ok(())
}

#[tokio::test]
async fn a_miss_of_a_small_encrypted_document_is_read_without_the_blocking_pool() -> Result {
    let f = fixture();
    stored(&f.config, 3).await?;
    let s = PersistentStorageManager::open(f.config.clone()).await?;
    // ~100 KiB: stored as a chunk list.
    let log = game_log(800);
    s.store("logs", "l-1", &log).await?;
    s.close().await?;
    drop(s);

    // Reopened: nothing is cached; the data keys were loaded at open.
    let s = PersistentStorageManager::open(f.config.clone()).await?;
    let before = hand_offs();
    for i in 0..3 {
        let k = format!("g-{i}");
        assert_eq!(s.retrieve::<Game>("games", &k).await?, Some(game(&k, i)));
    }
    assert_eq!(s.retrieve::<Game>("games", "g-9").await?, None);
    assert_eq!(
        hand_offs(),
        before,
        "a miss of a one-row encrypted document (and of an absent key) went to the pool"
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
    let hits = s.statistics().await?.cache_hits;
    assert_eq!(
        s.retrieve::<Game>("games", "g-1").await?,
        Some(game("g-1", 1))
    );
    assert_eq!(
        s.statistics().await?.cache_hits,
        hits + 1,
        "the miss filled"
    );
    s.close().await?;
    Ok(())
}

/// Records sealed under a collection's first key and under its rotated one are both read in
/// place: every version's key is loaded at open.
#[tokio::test]
async fn records_under_an_old_and_a_rotated_key_are_read_in_place() -> Result {
    let f = fixture();
    stored(&f.config, 4).await?;
    let s = PersistentStorageManager::open(f.config.clone()).await?;
    assert_eq!(s.rotate_data_key("games").await?, 2);
    for i in 4..8 {
        let k = format!("g-{i}");
        s.store("games", &k, &game(&k, i)).await?;
    }
    s.close().await?;
    drop(s);
    let keys: Vec<i64> = db(&f.config)?
        .prepare(
            "SELECT DISTINCT substr(b.data, 2, 8) FROM blobs b JOIN records r ON r.blob_id = b.id",
        )?
        .query_map([], |r| r.get::<_, Vec<u8>>(0))?
        .map(|k| Ok(i64::from_be_bytes(k?.as_slice().try_into()?)))
        .collect::<Result<_>>()?;
    assert_eq!(keys.len(), 2, "records under both key versions: {keys:?}");

    let s = PersistentStorageManager::open(f.config.clone()).await?;
    let before = hand_offs();
    for i in 0..8 {
        let k = format!("g-{i}");
        assert_eq!(s.retrieve::<Game>("games", &k).await?, Some(game(&k, i)));
    }
    assert_eq!(hand_offs(), before, "a miss went to the blocking pool");
    s.close().await?;
    Ok(())
}

/// A collection whose data key is destroyed while its rows are still there (what another
/// node's shred leaves until its transaction reaches this file, here written by SQL) is
/// refused with `Shredded` before any row is read, and its record never served; a shred
/// through the store is refused the same way, and other collections still read in place.
#[tokio::test]
async fn a_shredded_collections_record_is_never_served_in_place() -> Result {
    let f = fixture();
    stored_with_bank(&f.config, 3).await?;
    let destroyed = db(&f.config)?.execute(
        "UPDATE data_keys SET wrapped = x'' WHERE collection = 'games'",
        [],
    )?;
    assert_eq!(destroyed, 1);

    let s = PersistentStorageManager::open(f.config.clone()).await?;
    let before = hand_offs();
    let err = s.retrieve::<Game>("games", "g-1").await.err();
    assert!(
        matches!(&err, Some(StorageError::Shredded { collection }) if collection == "games"),
        "{err:?}"
    );
    assert_eq!(hand_offs(), before, "the refusal reads nothing");
    assert_eq!(
        s.retrieve::<serde_json::Value>("bank", "alice").await?,
        Some(serde_json::json!({"chips": 10}))
    );
    assert_eq!(hand_offs(), before, "another collection is read in place");

    // Shredded through the store: its reads are refused in place too.
    assert_eq!(s.shred_collection("bank").await?, 1);
    let before = hand_offs();
    let err = s.retrieve::<serde_json::Value>("bank", "alice").await.err();
    assert!(
        matches!(&err, Some(StorageError::Shredded { collection }) if collection == "bank"),
        "{err:?}"
    );
    assert_eq!(hand_offs(), before, "the refusal reads nothing");
    s.close().await?;
    Ok(())
}

/// What does not open is `Corruption` naming the record and the key, as on the blocking
/// pool: a flipped byte and another collection's ciphertext are named in place (their keys
/// are in memory); a header naming a key this node does not hold goes to the pool, which
/// reads the key table again before it names the error. The other records read fine.
#[tokio::test]
async fn corruption_and_a_wrong_key_stay_corruption() -> Result {
    let f = fixture();
    stored_with_bank(&f.config, 4).await?;
    {
        let db = db(&f.config)?;
        // A flipped byte in g-0's ciphertext.
        let g0 = blob_of(&db, "games", "g-0")?;
        let mut data: Vec<u8> =
            db.query_row("SELECT data FROM blobs WHERE id = ?1", [g0], |r| r.get(0))?;
        let last = data.last_mut().ok_or("an empty blob")?;
        *last ^= 0x01;
        db.execute(
            "UPDATE blobs SET data = ?1 WHERE id = ?2",
            rusqlite::params![data, g0],
        )?;
        // g-1 pointed at bank's blob: sealed under another collection's key.
        let alice = blob_of(&db, "bank", "alice")?;
        db.execute(
            "UPDATE records SET blob_id = ?1 WHERE collection = 'games' AND key = 'g-1'",
            [alice],
        )?;
        db.execute(
            "UPDATE blobs SET refcount = refcount + 1 WHERE id = ?1",
            [alice],
        )?;
        // g-2's header names a key id no key has.
        let g2 = blob_of(&db, "games", "g-2")?;
        let mut data: Vec<u8> =
            db.query_row("SELECT data FROM blobs WHERE id = ?1", [g2], |r| r.get(0))?;
        let id = data.get_mut(1..9).ok_or("a short blob")?;
        id.copy_from_slice(&7_i64.to_be_bytes());
        db.execute(
            "UPDATE blobs SET data = ?1 WHERE id = ?2",
            rusqlite::params![data, g2],
        )?;
    }

    let s = PersistentStorageManager::open(f.config.clone()).await?;
    let before = hand_offs();
    common::expect_key_corruption(s.retrieve::<Game>("games", "g-0").await, "games/g-0");
    common::expect_key_corruption(s.retrieve::<Game>("games", "g-1").await, "games/g-1");
    assert_eq!(hand_offs(), before, "named in place");
    common::expect_key_corruption(s.retrieve::<Game>("games", "g-2").await, "games/g-2");
    assert_eq!(
        hand_offs(),
        before + 1,
        "a key this node does not hold is looked for on the blocking pool"
    );
    assert_eq!(
        s.retrieve::<Game>("games", "g-3").await?,
        Some(game("g-3", 3))
    );
    assert_eq!(hand_offs(), before + 1);
    s.close().await?;
    Ok(())
}

/// A large document stored whole (`chunk_threshold = 0`) is decrypted and decoded on the
/// blocking pool, not on the runtime's thread.
#[tokio::test]
async fn a_large_encrypted_document_stored_whole_is_not_opened_on_the_runtime() -> Result {
    crate::read_miss_at_once::a_large_document_stored_whole_is_read_on_the_pool(fixture()).await
}

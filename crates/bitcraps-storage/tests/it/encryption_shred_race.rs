//! A crypto-shred racing a write of the same collection.
//!
//! What broke: a group commit checked the collection's key, sealed, and only then began its
//! transaction; a shred that listed the collection's records and destroyed its keys in
//! between missed the new record. The write was acknowledged into a shredded collection,
//! its record stayed behind sealed under a destroyed key, and its plaintext stayed in the
//! in-process cache. Now a group commit holds the keyring's write gate from its key checks
//! through its commit, and a shred takes it exclusively, so the record is committed before
//! the shred lists the collection (and is shredded with it) or the write fails.

use crate::common;

use std::time::Duration;

use bitcraps_storage::testing::Method;
use bitcraps_storage::{PersistentStorageManager, StorageError};
use common::faulty::faulty_sqlite;
use serde_json::json;

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_held_before_its_commit_is_shredded_with_its_collection() -> Result {
    let dir = tempfile::tempdir()?;
    let (_key_dir, key) = common::key_file();
    let config = common::keyed_config(dir.path(), &key);
    let backend = faulty_sqlite(&config)?;
    let s = PersistentStorageManager::with_backend(config, backend.clone())?;
    // The collection has a key and no record left.
    s.store("players", "p-1", &json!({"secret": "first"}))
        .await?;
    assert!(s.delete("players", "p-1").await?);

    // The next group commit stops after its key checks and sealing, before the database.
    let gate = backend.hold_next(Method::Apply, false);
    let writer = s.clone();
    let write = tokio::spawn(async move {
        writer
            .store("players", "p-new", &json!({"secret": "racing the shred"}))
            .await
    });
    assert!(
        gate.wait_for_arrivals(1, Duration::from_secs(30)),
        "the write never reached the database"
    );
    let shredder = s.clone();
    let mut shred = tokio::spawn(async move { shredder.shred_collection("players").await });
    // Give the shred every chance to finish while the write is held (it must not: it waits
    // for the write's commit), then let the write through.
    let early = tokio::time::timeout(Duration::from_millis(500), &mut shred).await;
    gate.open();
    let (finished_early, shredded) = match early {
        Ok(done) => (true, done??),
        Err(_) => (false, shred.await??),
    };
    let written = write.await?;
    assert_eq!(
        (finished_early, shredded, written.is_ok()),
        (false, 1, true),
        "the shred ran while a checked write was uncommitted: it destroyed {shredded} \
         records and the write returned {written:?}"
    );
    finish(&s, written).await
}

/// After the write and the shred: the record is gone with its collection, whatever the write
/// returned, and no tier serves its plaintext.
async fn finish(s: &PersistentStorageManager, written: bitcraps_storage::Result<()>) -> Result {
    if let Err(e) = &written {
        assert!(matches!(e, StorageError::Shredded { .. }), "{e:?}");
    }
    let read = s.retrieve::<serde_json::Value>("players", "p-new").await;
    assert!(
        matches!(read, Err(StorageError::Shredded { .. })),
        "a shredded collection's record was read: {read:?}"
    );
    let listed = s
        .list("players", bitcraps_storage::ListOptions::default())
        .await
        .map(|p| p.keys);
    assert!(
        !matches!(&listed, Ok(keys) if !keys.is_empty()),
        "a record of the shredded collection is left: {listed:?}"
    );
    s.close().await?;
    Ok(())
}

/// Regression (review): a put into a shredded collection failed its whole group commit, so
/// the writes of other callers that happened to share the group failed with `Shredded` too.
/// Now only its own unit fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_into_a_shredded_collection_fails_alone_in_its_group() -> Result {
    let dir = tempfile::tempdir()?;
    let (_key_dir, key) = common::key_file();
    let config = common::keyed_config(dir.path(), &key);
    let backend = faulty_sqlite(&config)?;
    let s = PersistentStorageManager::with_backend(config, backend.clone())?;
    s.store("players", "p-1", &json!({"chips": 1})).await?;
    s.store("tables", "t-1", &json!({"open": true})).await?;
    assert_eq!(s.shred_collection("players").await?, 1);

    // Hold one group commit; the two writes behind it queue up and form the next group.
    let gate = backend.hold_next(Method::Apply, false);
    let first = tokio::spawn({
        let s = s.clone();
        async move { s.store("tables", "t-0", &json!({"open": 0})).await }
    });
    assert!(
        gate.wait_for_arrivals(1, Duration::from_secs(30)),
        "the first write never reached the database"
    );
    let mut queued = s.statistics().await?.queued_write_bytes;
    let mut writes = Vec::new();
    for (collection, key) in [("players", "p-2"), ("tables", "t-2")] {
        let writer = s.clone();
        writes.push(tokio::spawn(async move {
            writer.store(collection, key, &json!({"n": 2})).await
        }));
        queued = wait_for_more_queued(&s, queued).await?;
    }
    gate.open();
    first.await??;
    let into_tables = writes.pop().ok_or("write")?.await?;
    let into_players = writes.pop().ok_or("write")?.await?;
    assert!(
        matches!(&into_players, Err(StorageError::Shredded { .. })),
        "{into_players:?}"
    );
    assert!(
        into_tables.is_ok(),
        "a write grouped with a put into a shredded collection failed: {into_tables:?}"
    );
    assert_eq!(
        s.retrieve::<serde_json::Value>("tables", "t-2").await?,
        Some(json!({"n": 2}))
    );
    s.close().await?;
    Ok(())
}

/// Waits (bounded) until the writer's queue holds more bytes than `before`: a write was
/// queued.
async fn wait_for_more_queued(s: &PersistentStorageManager, before: u64) -> Result<u64> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let now = s.statistics().await?.queued_write_bytes;
        if now > before {
            return Ok(now);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "a write was never queued"
        );
        tokio::task::yield_now().await;
    }
}

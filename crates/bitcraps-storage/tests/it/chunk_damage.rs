//! A damaged chunk (issue #16): one byte flipped in a chunk that two large documents share
//! (on a closed store). A read of either is `Corruption` at that record, naming the chunk;
//! the deep check and the scrub name both records — and not the third, whose chunks are
//! intact; maintenance refuses to certify (back up) the SQLite store. On SQLite, and on PostgreSQL when
//! `BITCRAPS_TEST_POSTGRES_URL` is set.

#![allow(
    clippy::expect_used,
    clippy::panic,
    reason = "tests: a failed step is a failed test"
)]

use crate::common;

use std::time::Duration;

use bitcraps_storage::testing::BackgroundTask;
use bitcraps_storage::{PersistentStorageManager, StorageConfig, StorageError};
use serde_json::{Value, json};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// A ~200 KiB game log; `variant` changes only its last rolls, so two variants share every
/// chunk but the last ones.
fn log(variant: u32) -> Value {
    let rolls: Vec<Value> = (0..3000u32)
        .map(|n| {
            let tail = if n > 2950 { variant } else { 0 };
            json!({"n": n, "dice": [n % 6 + 1, (n * 7) % 6 + 1], "tail": tail,
                   "note": format!("roll {n} of the shooter")})
        })
        .collect();
    json!({"game": "shared-opening", "rolls": rolls})
}

/// A document of its own (no chunk in common with [`log`]).
fn other() -> Value {
    let items: Vec<Value> = (0..3000u32)
        .map(|n| json!({"bet": n, "kind": "come", "stake": n * 3}))
        .collect();
    json!({"ledger": items})
}

fn config_of(f: &common::Fixture) -> StorageConfig {
    let mut config = f.config.clone();
    config.maintenance.scrub_interval = Duration::from_secs(3600);
    config
}

async fn write_documents(config: &StorageConfig) -> Result {
    let s = PersistentStorageManager::open(config.clone()).await?;
    s.store("games", "a", &log(1)).await?;
    s.store("games", "b", &log(2)).await?;
    s.store("games", "c", &other()).await?;
    let stats = s.statistics().await?.database_stats;
    assert_eq!(stats.chunked_blobs, 3, "{stats:?}");
    assert!(stats.chunk_dedup_saved_bytes > 0, "{stats:?}");
    s.close().await?;
    Ok(())
}

/// The chunks `a` and `b` share: listed by both documents' blobs.
const SHARED_CHUNK: &str = "SELECT c.id FROM chunks c JOIN chunk_refs cr ON cr.chunk_id = c.id
     WHERE cr.refcount = 2
       AND EXISTS (SELECT 1 FROM blob_chunks bc JOIN records r ON r.blob_id = bc.blob_id
                   WHERE bc.chunk_id = c.id AND r.key = 'a')
     ORDER BY c.id LIMIT 1";

/// `data` with one byte in its middle flipped.
fn flip(mut data: Vec<u8>) -> Vec<u8> {
    let mid = data.len() / 2;
    if let Some(b) = data.get_mut(mid) {
        *b ^= 0x20;
    }
    data
}

fn damage_sqlite(config: &StorageConfig) -> Result {
    let conn = rusqlite::Connection::open(config.database.data_path.join("bitcraps.db"))?;
    let (id, data): (i64, Vec<u8>) = conn.query_row(
        &format!("SELECT id, data FROM chunks WHERE id = ({SHARED_CHUNK})"),
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    conn.execute(
        "UPDATE chunks SET data = ?1 WHERE id = ?2",
        rusqlite::params![flip(data), id],
    )?;
    Ok(())
}

/// `certifies`: maintenance backs the store up (SQLite's default), and so must refuse.
async fn find_and_name(config: &StorageConfig, certifies: bool) -> Result {
    let s = PersistentStorageManager::open(config.clone()).await?;
    for key in ["a", "b"] {
        match s.retrieve::<Value>("games", key).await {
            Err(StorageError::Corruption { location, detail }) => {
                assert_eq!(location, format!("games/{key}"));
                assert!(detail.starts_with("chunk "), "{detail}");
            }
            other => panic!("expected corruption of games/{key}, got {other:?}"),
        }
    }
    assert_eq!(s.retrieve::<Value>("games", "c").await?, Some(other()));
    // The shallow check counts references only: they are exact.
    assert!(s.check_consistency().await?.is_ok());
    let deep = s.check_consistency_deep().await?;
    let named: Vec<&str> = deep.damaged.iter().map(|d| d.key.as_str()).collect();
    assert_eq!(named, ["a", "b"], "{deep:?}");
    assert_eq!(deep.damaged_blobs, 2);
    assert!(
        deep.problems().contains("games/a, games/b"),
        "{}",
        deep.problems()
    );

    // The scrub: one step reads everything (the default budget); it fails naming both.
    let err = s
        .run_background_task(BackgroundTask::Scrub)
        .await
        .expect_err("the scrub meets the damaged chunk");
    assert!(err.is_corruption(), "{err}");
    let text = err.to_string();
    assert!(text.contains("games/a, games/b"), "{text}");
    let pass = s
        .statistics()
        .await?
        .last_scrub
        .ok_or("the scrub pass did not complete")?;
    let named: Vec<&str> = pass.damaged.iter().map(|d| d.key.as_str()).collect();
    assert_eq!(named, ["a", "b"]);

    if certifies {
        let err = s
            .maintenance()
            .await
            .expect_err("a damaged store is not certified");
        assert!(err.to_string().contains("games/a, games/b"), "{err}");
    }
    s.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_shared_chunk_names_every_record_on_sqlite() -> Result {
    let f = common::sqlite_fixture();
    let config = config_of(&f);
    write_documents(&config).await?;
    damage_sqlite(&config)?;
    find_and_name(&config, true).await
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_shared_chunk_names_every_record_on_postgres() -> Result {
    let Some(f) = common::pg_fixture() else {
        return Ok(());
    };
    let config = config_of(&f);
    write_documents(&config).await?;
    let url = config.database.url.clone().ok_or("no url")?;
    common::postgres_execute(
        &url,
        format!(
            "UPDATE chunks
             SET data = set_byte(data, length(data) / 2, get_byte(data, length(data) / 2) # 32)
             WHERE id = ({SHARED_CHUNK})"
        ),
    );
    find_and_name(&config, false).await
}

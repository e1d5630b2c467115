//! Re-encryption after a data-key rotation: budgeted steps seal every blob under an older
//! key of its collection again under the current key, while the store keeps being written;
//! every document reads back as the model says, the deep check passes, and (on SQLite, read
//! raw) no blob names the old key afterwards. On SQLite, in memory and on PostgreSQL.

use crate::common;

use std::collections::BTreeMap;

use bitcraps_storage::{PersistentStorageManager, StorageError};
use common::{Fixture, IntoFixture};
use serde_json::{Value, json};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

const OLD: usize = 300;

fn doc(i: usize, round: u32) -> Value {
    json!({"player": format!("p-{i}"), "chips": i * 7 + round as usize, "round": round})
}

/// Steps until a pass completes; returns the blobs resealed in that pass.
async fn pass(s: &PersistentStorageManager) -> Result<u64> {
    let mut resealed = 0;
    for _ in 0..1000 {
        let step = s.reencrypt().await?;
        assert_eq!(step.blobs_damaged, 0);
        resealed += step.blobs_resealed;
        if step.pass_complete {
            return Ok(resealed);
        }
    }
    Err("re-encryption never completed a pass".into())
}

async fn blobs_are_resealed_while_the_store_is_written(fixture: impl IntoFixture) -> Result {
    let Some(f) = fixture.into_fixture() else {
        return Ok(());
    };
    let f: Fixture = common::encrypted(f);
    let mut config = f.config.clone();
    config.maintenance.background_tasks = false;
    // One page of blobs per step: a pass takes several steps.
    config.maintenance.reencrypt_bytes_per_run = 1;
    let s = f.open(config.clone()).await?;
    let mut model: BTreeMap<(String, String), Value> = BTreeMap::new();
    for i in 0..OLD {
        let (key, value) = (format!("p-{i}"), doc(i, 0));
        s.store("bank", &key, &value).await?;
        model.insert(("bank".into(), key), value);
    }
    for i in 0..5 {
        let (key, value) = (format!("seat-{i}"), doc(i, 0));
        s.store("lobby", &key, &value).await?;
        model.insert(("lobby".into(), key), value);
    }
    // Nothing under an older key yet: a step is a no-op.
    let idle = s.reencrypt().await?;
    assert!(idle.pass_complete);
    assert_eq!((idle.blobs_examined, idle.blobs_resealed), (0, 0));

    assert_eq!(s.rotate_data_key("bank").await?, 2);
    // The first step runs before any write under the new key.
    let first = s.reencrypt().await?;
    assert!(!first.pass_complete);
    let mut resealed = first.blobs_resealed;
    assert!(resealed > 0);
    // Written between steps: overwrites, deletes and new records (all under version 2).
    for i in (0..OLD).step_by(10) {
        let key = format!("p-{i}");
        if i % 20 == 0 {
            s.delete("bank", &key).await?;
            model.remove(&("bank".to_owned(), key));
        } else {
            let value = doc(i, 1);
            s.store("bank", &key, &value).await?;
            model.insert(("bank".into(), key), value);
        }
    }
    for i in OLD..OLD + 10 {
        let (key, value) = (format!("p-{i}"), doc(i, 0));
        s.store("bank", &key, &value).await?;
        model.insert(("bank".into(), key), value);
    }
    resealed += pass(&s).await?;
    // Every old blob of `bank` was sealed again exactly once, except those the writes
    // replaced or deleted before the pass reached them; `lobby` was not rotated.
    assert!(resealed <= OLD as u64, "{resealed}");
    assert!(resealed >= (OLD - OLD / 10) as u64, "{resealed}");
    // A second pass finds nothing left under the old key.
    assert_eq!(pass(&s).await?, 0);

    for ((collection, key), value) in &model {
        assert_eq!(
            s.retrieve::<Value>(collection, key).await?.as_ref(),
            Some(value),
            "{collection}/{key}"
        );
    }
    let report = s.check_consistency_deep().await?;
    assert!(report.is_ok(), "{report:?}");
    s.close().await?;

    // Reopened (no cache), the documents still read back.
    let s = f.open(config).await?;
    for ((collection, key), value) in &model {
        assert_eq!(
            s.retrieve::<Value>(collection, key).await?.as_ref(),
            Some(value)
        );
    }
    s.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_blobs_are_resealed_while_the_store_is_written() -> Result {
    blobs_are_resealed_while_the_store_is_written(common::sqlite_fixture()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_blobs_are_resealed_while_the_store_is_written() -> Result {
    blobs_are_resealed_while_the_store_is_written(common::memory_fixture()).await
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_blobs_are_resealed_while_the_store_is_written() -> Result {
    blobs_are_resealed_while_the_store_is_written(common::pg_fixture()).await
}

/// Read raw, after maintenance: no blob names an old key, and maintenance reported each step
/// (and stopped looking once a pass found nothing, until the next rotation).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_leaves_no_blob_under_a_rotated_key() -> Result {
    let f = common::sqlite_encrypted_fixture();
    let mut config = f.config.clone();
    config.maintenance.background_tasks = false;
    let s = f.open(config.clone()).await?;
    for i in 0..50 {
        s.store("bank", &format!("p-{i}"), &doc(i, 0)).await?;
        s.store("lobby", &format!("s-{i}"), &doc(i, 0)).await?;
    }
    s.rotate_data_key("bank").await?;
    let report = s.maintenance().await?;
    let step = report
        .steps
        .iter()
        .find(|st| st.name == "re-encrypt")
        .ok_or("maintenance ran no re-encryption step")?;
    assert!(step.ok, "{step:?}");
    // The next run finds nothing left; from then on there is no such step.
    let report = s.maintenance().await?;
    let step = report.steps.iter().find(|st| st.name == "re-encrypt");
    assert!(
        step.is_some_and(|st| st.detail.starts_with("0 of 100 blobs")),
        "{step:?}"
    );
    let report = s.maintenance().await?;
    assert!(!report.steps.iter().any(|st| st.name == "re-encrypt"));
    // A new rotation makes it pending again.
    s.rotate_data_key("lobby").await?;
    let report = s.maintenance().await?;
    let step = report.steps.iter().find(|st| st.name == "re-encrypt");
    assert!(
        step.is_some_and(|st| st.detail.starts_with("50 of 100 blobs")),
        "{step:?}"
    );
    s.close().await?;

    let conn = rusqlite::Connection::open(config.database.data_path.join("bitcraps.db"))?;
    let keys: BTreeMap<i64, (String, i64)> = conn
        .prepare("SELECT id, collection, version FROM data_keys")?
        .query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))?
        .collect::<rusqlite::Result<_>>()?;
    let mut named: BTreeMap<(String, i64), usize> = BTreeMap::new();
    let mut stmt = conn.prepare("SELECT data FROM blobs")?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let data: Vec<u8> = row.get(0)?;
        let id = i64::from_be_bytes(data[1..9].try_into()?);
        let key = keys.get(&id).ok_or("a blob names an unknown key")?;
        *named.entry(key.clone()).or_default() += 1;
    }
    let expected: BTreeMap<(String, i64), usize> =
        [(("bank".to_owned(), 2), 50), (("lobby".to_owned(), 2), 50)].into();
    assert_eq!(named, expected);
    Ok(())
}

/// A game log over the chunking threshold (64 KiB), `rolls` rolls long.
fn large(rolls: usize) -> Value {
    let rolls: Vec<Value> = (0..rolls)
        .map(|i| json!({"roll": i, "dice": [i % 6 + 1, (i * 5) % 6 + 1], "note": format!("roll {i} of the long game")}))
        .collect();
    json!({"game": "g-1", "rolls": rolls})
}

/// Steps until a pass completes; returns the chunks resealed in that pass.
async fn chunk_pass(s: &PersistentStorageManager) -> Result<u64> {
    let mut resealed = 0;
    for _ in 0..1000 {
        let step = s.reencrypt().await?;
        assert_eq!(step.blobs_damaged, 0);
        resealed += step.chunks_resealed;
        if step.pass_complete {
            return Ok(resealed);
        }
    }
    Err("re-encryption never completed a pass".into())
}

/// Chunks of large documents are sealed again too: those of a document written before the
/// rotation, and those a version written after it still shares with the older one.
async fn chunks_are_resealed(fixture: impl IntoFixture) -> Result<Option<Fixture>> {
    let Some(f) = fixture.into_fixture() else {
        return Ok(None);
    };
    let f: Fixture = common::encrypted(f);
    let mut config = f.config.clone();
    config.maintenance.background_tasks = false;
    let s = f.open(config.clone()).await?;
    s.store("logs", "old", &large(2_000)).await?;
    s.store("logs", "grown", &large(2_000)).await?;
    s.rotate_data_key("logs").await?;
    // A new version after the rotation shares most chunks with the one before.
    s.store("logs", "grown", &large(2_010)).await?;
    let resealed = chunk_pass(&s).await?;
    assert!(resealed > 0, "no chunk was sealed again");
    assert_eq!(chunk_pass(&s).await?, 0, "a second pass finds none left");
    assert_eq!(
        s.retrieve::<Value>("logs", "old").await?,
        Some(large(2_000))
    );
    assert_eq!(
        s.retrieve::<Value>("logs", "grown").await?,
        Some(large(2_010))
    );
    let report = s.check_consistency_deep().await?;
    assert!(report.is_ok(), "{report:?}");
    s.close().await?;
    // Reopened (no cache), they still read back.
    let s = f.open(config).await?;
    assert_eq!(
        s.retrieve::<Value>("logs", "old").await?,
        Some(large(2_000))
    );
    s.close().await?;
    Ok(Some(f))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_chunks_are_resealed_and_none_names_the_old_key() -> Result {
    let f = chunks_are_resealed(common::sqlite_fixture())
        .await?
        .ok_or("no fixture")?;
    let conn = rusqlite::Connection::open(f.config.database.data_path.join("bitcraps.db"))?;
    let current: i64 = conn.query_row(
        "SELECT id FROM data_keys WHERE collection = 'logs' AND version = 2",
        [],
        |r| r.get(0),
    )?;
    let mut stmt = conn.prepare("SELECT data FROM chunks")?;
    let mut rows = stmt.query([])?;
    let mut chunks = 0;
    while let Some(row) = rows.next()? {
        let data: Vec<u8> = row.get(0)?;
        let id = i64::from_be_bytes(data.get(1..9).ok_or("short chunk")?.try_into()?);
        assert_eq!(id, current, "a chunk is still sealed under an older key");
        chunks += 1;
    }
    assert!(chunks > 4, "the documents are chunked ({chunks} chunks)");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_chunks_are_resealed() -> Result {
    chunks_are_resealed(common::memory_fixture()).await?;
    Ok(())
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_chunks_are_resealed() -> Result {
    chunks_are_resealed(common::pg_fixture()).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plaintext_store_has_nothing_to_reencrypt() -> Result {
    let f = common::sqlite_fixture();
    let s = f.open(f.config.clone()).await?;
    let err = s.reencrypt().await.err();
    assert!(
        matches!(&err, Some(StorageError::Config(m)) if m.contains("not encrypted")),
        "{err:?}"
    );
    s.close().await?;
    Ok(())
}

/// The data key id in a sealed value's header (format byte, then 8 bytes big-endian).
fn sealed_key_id(data: &[u8]) -> Option<i64> {
    let bytes: [u8; 8] = data.get(1..9)?.try_into().ok()?;
    Some(i64::from_be_bytes(bytes))
}

/// Regression (review of SQLite schema 13): re-encryption walked the `blobs` table only, so a
/// delta kept in its record's row stayed sealed under the rotated-out key while the pass
/// reported everything resealed. Now the pass reads those rows too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deltas_kept_in_record_rows_are_resealed() -> Result {
    let f: Fixture = common::sqlite_encrypted_fixture();
    let dir = f.config.database.data_path.clone();
    let mut config = f.config.clone();
    config.maintenance.background_tasks = false;
    config.compression.keyframe_interval = 4;
    let log = common::game_log;
    let s = f.open(config.clone()).await?;
    s.store("logs", "g-7", &log(800)).await?;
    s.store("logs", "g-7", &log(801)).await?;
    s.rotate_data_key("logs").await?;
    // A document written after the rotation names the new key.
    s.store("logs", "fresh", &json!({"x": 1})).await?;
    let read = |sql: &str| -> Result<Vec<u8>> {
        let db = rusqlite::Connection::open(dir.join("bitcraps.db"))?;
        Ok(db.query_row(sql, [], |r| r.get(0))?)
    };
    let read_delta =
        || read("SELECT substr(delta, 53) FROM records WHERE collection = 'logs' AND key = 'g-7'");
    let new_key = sealed_key_id(&read(
        "SELECT b.data FROM records r JOIN blobs b ON b.id = r.blob_id
         WHERE r.collection = 'logs' AND r.key = 'fresh'",
    )?)
    .ok_or("a sealed blob")?;
    let before = read_delta()?;
    assert_ne!(
        sealed_key_id(&before),
        Some(new_key),
        "the delta was written before the rotation"
    );
    pass(&s).await?;
    let after = read_delta()?;
    assert_eq!(
        sealed_key_id(&after),
        Some(new_key),
        "the inline delta is still sealed under the older key"
    );
    assert_eq!(s.retrieve::<Value>("logs", "g-7").await?, Some(log(801)));
    assert!(s.check_consistency_deep().await?.is_ok());
    // A complete pass with nothing left under an older key settles.
    assert_eq!(pass(&s).await?, 0);
    s.close().await?;
    Ok(())
}

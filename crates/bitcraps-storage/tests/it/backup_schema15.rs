//! A backup taken before schema 16 (its copy at schema 15: a change's kind and version
//! offset in two columns, a record's inline delta in three, every blob's stored length set)
//! still verifies and restores after the upgrade: the checks read the copy at the schema it
//! has, and the restored store reads its documents as the schema-15 build exported them.

use crate::common;

use bitcraps_storage::{PersistentStorageManager, StorageConfig};
use rusqlite::Connection;
use serde_json::Value;

use crate::schema15_upgrade::fixture;

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// `(record_count, blob_count, logical_bytes, stored_bytes)` as the schema-15 build counted
/// them in a copy of that schema.
fn counts_v15(c: &Connection) -> Result<(i64, i64, i64, i64)> {
    Ok(c.query_row(
        "SELECT (SELECT count(*) FROM records r JOIN blobs b ON b.id = r.blob_id),
                (SELECT count(*) FROM blobs),
                (SELECT coalesce(sum(coalesce(r.delta_raw_len, b.raw_len)), 0)
                 FROM records r JOIN blobs b ON b.id = r.blob_id),
                (SELECT coalesce(sum(stored_len), 0) FROM blobs)
                + (SELECT coalesce(sum(stored_len), 0) FROM chunks)
                + (SELECT coalesce(sum(length(delta_data)), 0) FROM records)",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )?)
}

/// The schema-15 build's export of `collection/key`.
fn exported(collection: &str, key: &str) -> Result<Value> {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/schema-v15.jsonl"),
    )?;
    for line in text.lines() {
        let mut v: Value = serde_json::from_str(line)?;
        if v["collection"] == collection && v["key"] == key {
            return Ok(v["value"].take());
        }
    }
    Err(format!("{collection}/{key} not exported").into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_15_backup_verifies_and_restores_after_the_upgrade() -> Result {
    let f = common::sqlite_fixture();
    let s = PersistentStorageManager::open(f.config.clone()).await?;
    s.store("games", "g", &serde_json::json!({"n": 1})).await?;
    let info = s.backups().create_backup().await?;
    // The backup becomes one the schema-15 build took: its archive holds the fixture.
    let (_fixture_dir, db) = fixture()?;
    let (records, blobs, logical, stored) = counts_v15(&Connection::open(&db)?)?;
    let raw = std::fs::read(&db)?;
    let archive = zstd::stream::encode_all(raw.as_slice(), 3)?;
    let dir = s.backups().directory().to_path_buf();
    std::fs::write(dir.join(format!("{}.db.zst", info.id)), &archive)?;
    let manifest_path = dir.join(format!("{}.json", info.id));
    let mut manifest: Value = serde_json::from_slice(&std::fs::read(&manifest_path)?)?;
    manifest["archive_bytes"] = archive.len().into();
    manifest["archive_blake3"] = blake3::hash(&archive).to_hex().to_string().into();
    manifest["database_bytes"] = raw.len().into();
    manifest["snapshot"] = serde_json::json!({
        "schema_version": 15,
        "record_count": records,
        "blob_count": blobs,
        "logical_bytes": logical,
        "stored_bytes": stored,
    });
    std::fs::write(&manifest_path, serde_json::to_vec(&manifest)?)?;

    let verified = s.backups().verify_backup(&info.id).await?;
    assert_eq!(verified.snapshot.schema_version, 15);
    assert!(verified.blobs_decoded > 0);
    let target = tempfile::tempdir()?.path().join("restored");
    let report = s.backups().restore_backup(&info.id, &target).await?;
    assert_eq!(
        i64::try_from(report.snapshot.record_count)?,
        records,
        "{report:?}"
    );
    s.close().await?;

    let restored = PersistentStorageManager::open(StorageConfig::with_data_path(&target)).await?;
    for (collection, key) in [
        ("logs", "big"),
        ("imports", "i-0008"),
        ("imports", "i-0100"),
    ] {
        assert_eq!(
            restored.retrieve::<Value>(collection, key).await?,
            Some(exported(collection, key)?),
            "{collection}/{key}"
        );
    }
    assert!(restored.check_consistency().await?.is_ok());
    restored.close().await?;
    Ok(())
}

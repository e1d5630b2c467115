//! Review probe (footprint, schema 14): a store written by the build before schema 14
//! (`fixtures/schema-v13-frames.db`: schema 13, dictionary frames stored with zstd's magic
//! number, the 8-byte hash-prefix index, a chunked document whose second version is an
//! inline delta) upgrades, reads back, deduplicates against its old blobs through the new
//! 4-byte index, takes new dictionary frames (without the magic) beside the old ones, and
//! passes the deep check, reopened.

use bitcraps_storage::{PersistentStorageManager, StorageConfig};
use rusqlite::Connection;
use serde_json::{Value, json};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// The fixture's documents (as the build before schema 14 wrote them).
fn doc(i: usize) -> Value {
    json!({"id": format!("game-{i:06}"), "table": i % 7, "state": "point_on",
           "players": [{"name": format!("p{}", i % 13), "balance": i * 37}], "rolls": [[i % 6 + 1, (i * 7) % 6 + 1]]})
}

fn big() -> Vec<Value> {
    let mut big: Vec<Value> = (0..3000).map(doc).collect();
    big.push(doc(99_999));
    big
}

fn count(db: &Connection, sql: &str) -> Result<i64> {
    Ok(db.query_row(sql, [], |r| r.get(0))?)
}

async fn reads_back(s: &PersistentStorageManager, extra: usize) -> Result {
    for i in 0..200 {
        assert_eq!(
            s.retrieve::<Value>("games", &format!("g-{i:04}")).await?,
            Some(doc(i)),
            "{i}"
        );
    }
    for i in 0..extra {
        let k = format!("new-{i:04}");
        assert_eq!(
            s.retrieve::<Value>("games", &k).await?,
            Some(doc(5000 + i)),
            "{k}"
        );
    }
    assert_eq!(s.retrieve::<Vec<Value>>("logs", "big").await?, Some(big()));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_13_store_upgrades_and_mixes_old_and_new_dictionary_frames() -> Result {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("bitcraps.db");
    std::fs::copy(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/schema-v13-frames.db"),
        &db,
    )?;
    {
        let c = Connection::open(&db)?;
        assert_eq!(count(&c, "PRAGMA user_version")?, 13);
        let magic = count(
            &c,
            "SELECT count(*) FROM blobs WHERE dict_id IS NOT NULL AND substr(data, 1, 4) = X'28B52FFD'",
        )?;
        assert!(magic > 50, "{magic} old dictionary frames");
    }
    let mut config = StorageConfig::with_data_path(dir.path());
    config.maintenance.background_tasks = false;
    config.compression.dictionary_training_samples = 64;
    let s = PersistentStorageManager::open(config.clone()).await?;
    reads_back(&s, 0).await?;
    // Content already stored (an old frame, found through the new index): shared.
    let before = count(&Connection::open(&db)?, "SELECT count(*) FROM blobs")?;
    for i in 0..50 {
        s.store("games", &format!("dup-{i:04}"), &doc(i)).await?;
    }
    let after = count(&Connection::open(&db)?, "SELECT count(*) FROM blobs")?;
    assert_eq!(
        after, before,
        "old blobs were not found through the 4-byte index"
    );
    for i in 0..100 {
        s.store("games", &format!("new-{i:04}"), &doc(5000 + i))
            .await?;
    }
    reads_back(&s, 100).await?;
    s.close().await?;
    drop(s);
    {
        let c = Connection::open(&db)?;
        assert_eq!(count(&c, "PRAGMA user_version")?, 16);
        let bare = count(
            &c,
            "SELECT count(*) FROM blobs WHERE dict_id IS NOT NULL AND substr(data, 1, 4) <> X'28B52FFD'",
        )?;
        assert!(bare > 50, "{bare} new dictionary frames without the magic");
        let ok: String = c.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
        assert_eq!(ok, "ok");
    }
    let s = PersistentStorageManager::open(config).await?;
    reads_back(&s, 100).await?;
    for i in 0..50 {
        assert_eq!(
            s.retrieve::<Value>("games", &format!("dup-{i:04}")).await?,
            Some(doc(i))
        );
    }
    let report = s.check_consistency_deep().await?;
    assert!(report.is_ok(), "{report:?}");
    s.close().await?;
    Ok(())
}

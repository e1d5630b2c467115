//! Documents sealed in layout v1 (format byte 0xE2 or 0xE1: the plain content hash inside
//! the ciphertext, what every release before layout v2 wrote) beside documents sealed in v2
//! (0xE3 or 0xE4: the compressed bytes alone, verified against the keyed address). Both
//! read back through every reader of an opened blob: reads, pages, `metadata`, the deep
//! check, re-encryption after a data key rotation, and a backup's verification.
//!
//! One test in this file: the layout override is process-wide.

mod common;

use bitcraps_storage::testing::seal_documents_v1;
use bitcraps_storage::{ListOptions, PersistentStorageManager};
use rusqlite::Connection;
use serde_json::{Value, json};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

const EACH: usize = 150;

fn doc(i: usize) -> Value {
    json!({"player": format!("p-{i}"), "chips": i * 13, "note": "the same words in every document"})
}

/// Format byte and length of each record's blob in `collection`, by key.
fn formats(db: &Connection, collection: &str) -> Result<Vec<(String, u8, usize)>> {
    let mut st = db.prepare(
        "SELECT r.key, b.data FROM records r JOIN blobs b ON b.id = r.blob_id \
         WHERE r.collection = ?1 ORDER BY r.key",
    )?;
    let rows = st.query_map([collection], |r| {
        let data: Vec<u8> = r.get(1)?;
        Ok((r.get(0)?, data.first().copied().unwrap_or(0), data.len()))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

fn is_v1(format: u8) -> bool {
    format == 0xE1 || format == 0xE2
}

fn is_v2(format: u8) -> bool {
    format == 0xE3 || format == 0xE4
}

async fn reads_everything(s: &PersistentStorageManager) -> Result {
    for collection in ["old", "new"] {
        for i in 0..EACH {
            let got: Option<Value> = s.retrieve(collection, &format!("k-{i:04}")).await?;
            assert_eq!(got, Some(doc(i)), "{collection} {i}");
        }
        let page = s
            .scan::<Value>(collection, ListOptions::default().limit(100))
            .await?;
        assert_eq!(page.items.len(), 100);
        for (key, value) in &page.items {
            let i: usize = key.trim_start_matches("k-").parse()?;
            assert_eq!(value, &doc(i));
        }
        let keys: Vec<String> = (0..EACH).map(|i| format!("k-{i:04}")).collect();
        let many: Vec<Option<Value>> = s.retrieve_many(collection, &keys).await?;
        assert_eq!(many.len(), EACH);
        assert!(
            many.iter()
                .enumerate()
                .all(|(i, v)| v.as_ref() == Some(&doc(i)))
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_documents_read_beside_v2_everywhere() -> Result {
    let dir = tempfile::tempdir()?;
    let (_key_dir, key) = common::key_file();
    let config = common::keyed_config(dir.path(), &key);
    let s = PersistentStorageManager::open(config.clone()).await?;
    // The same documents under two collections: one written as before layout v2.
    seal_documents_v1(true);
    for i in 0..EACH {
        s.store("old", &format!("k-{i:04}"), &doc(i)).await?;
    }
    seal_documents_v1(false);
    for i in 0..EACH {
        s.store("new", &format!("k-{i:04}"), &doc(i)).await?;
    }
    s.close().await?;
    drop(s);

    let db = Connection::open(dir.path().join("bitcraps.db"))?;
    let old = formats(&db, "old")?;
    let new = formats(&db, "new")?;
    drop(db);
    assert_eq!((old.len(), new.len()), (EACH, EACH));
    for ((k, f1, len1), (_, f2, len2)) in old.iter().zip(&new) {
        assert!(is_v1(*f1) && is_v2(*f2), "{k}: {f1:#x} {f2:#x}");
        assert_eq!(len1 - len2, 32, "{k}: v2 drops the 32-byte plain hash");
    }

    let s = PersistentStorageManager::open(config.clone()).await?;
    reads_everything(&s).await?;
    // `metadata`'s content hash is blake3 of the document in both layouts (what `migrate`
    // compares across stores).
    for i in [0, 7, EACH - 1] {
        let k = format!("k-{i:04}");
        let raw = s.retrieve_raw("new", &k).await?.ok_or("no raw")?;
        let expected = blake3::hash(&raw).to_hex().to_string();
        for collection in ["old", "new"] {
            let meta = s.metadata(collection, &k).await?.ok_or("no metadata")?;
            assert_eq!(meta.content_hash, expected, "{collection}/{k}");
        }
    }
    let report = s.check_consistency_deep().await?;
    assert!(report.is_ok(), "{report:?}");

    // A backup of both layouts verifies.
    let backups = s.backups();
    let info = backups.create_backup().await?;
    let verified = backups.verify_backup(&info.id).await?;
    assert_eq!(verified.blobs_decoded, 2 * EACH as u64);

    // Rotation and re-encryption keep each blob's layout, under the new key.
    for collection in ["old", "new"] {
        s.rotate_data_key(collection).await?;
    }
    let mut resealed = 0;
    for _ in 0..1000 {
        let step = s.reencrypt().await?;
        assert_eq!(step.blobs_damaged, 0);
        resealed += step.blobs_resealed;
        if step.pass_complete {
            break;
        }
    }
    assert_eq!(resealed, 2 * EACH as u64);
    s.close().await?;
    drop(s);
    // Reopened: nothing read before comes from the cache.
    let s = PersistentStorageManager::open(config.clone()).await?;
    reads_everything(&s).await?;
    let report = s.check_consistency_deep().await?;
    assert!(report.is_ok(), "{report:?}");
    s.close().await?;
    drop(s);

    let db = Connection::open(dir.path().join("bitcraps.db"))?;
    assert!(formats(&db, "old")?.iter().all(|(_, f, _)| is_v1(*f)));
    assert!(formats(&db, "new")?.iter().all(|(_, f, _)| is_v2(*f)));
    drop(db);

    // An overwrite of a v1 document is written in v2.
    let s = PersistentStorageManager::open(config).await?;
    s.store("old", "k-0000", &json!({"fresh": true})).await?;
    s.close().await?;
    drop(s);
    let db = Connection::open(dir.path().join("bitcraps.db"))?;
    let first = formats(&db, "old")?;
    assert!(first.first().is_some_and(|(_, f, _)| is_v2(*f)));
    Ok(())
}

//! Master-key rotation and crypto-shredding. Rotation re-wraps the data keys in one
//! transaction: the new key opens and reads everything, the old one is refused. Shredding a
//! collection makes its reads and writes fail with `Shredded` (also after reopening) while
//! other collections read fine, and after maintenance none of its ciphertext and none of its
//! wrapped key is left in any file of the data directory.

use crate::common;

use std::sync::Arc;

use bitcraps_storage::{KeySource, PersistentStorageManager, StorageConfig, StorageError};
use common::sentinel::{contains, files};
use serde_json::json;

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn config(dir: &std::path::Path, key: &std::path::Path) -> StorageConfig {
    let mut config = common::keyed_config(dir, key);
    config.compression.dictionary_training_samples = 32;
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_rotation_the_new_key_opens_everything_and_the_old_one_nothing() -> Result {
    let dir = tempfile::tempdir()?;
    let (_a_dir, old) = common::key_file();
    let (_b_dir, new) = common::key_file();
    let s = PersistentStorageManager::open(config(dir.path(), &old)).await?;
    for i in 0..60 {
        s.store(
            "bank",
            &format!("p-{i}"),
            &json!({"chips": i, "note": "rotation"}),
        )
        .await?;
        s.store("games", &format!("g-{i}"), &json!({"point": i % 6}))
            .await?;
    }
    let rotated = s
        .rotate_master_key(Arc::new(KeySource::File(new.clone())))
        .await?;
    assert_eq!(rotated, 2, "one data key per collection");
    // The open handle goes on; a collection created now gets a key under the new master key.
    assert_eq!(
        s.retrieve::<serde_json::Value>("bank", "p-3").await?,
        Some(json!({"chips": 3, "note": "rotation"}))
    );
    s.store("later", "x", &json!("after the rotation")).await?;
    s.close().await?;
    drop(s);

    let err = PersistentStorageManager::open(config(dir.path(), &old))
        .await
        .err();
    assert!(
        matches!(err, Some(StorageError::KeyMismatch { .. })),
        "{err:?}"
    );
    let s = PersistentStorageManager::open(config(dir.path(), &new)).await?;
    for i in 0..60 {
        assert_eq!(
            s.retrieve::<serde_json::Value>("bank", &format!("p-{i}"))
                .await?,
            Some(json!({"chips": i, "note": "rotation"}))
        );
    }
    assert_eq!(
        s.retrieve::<String>("later", "x").await?.as_deref(),
        Some("after the rotation")
    );
    let report = s.check_consistency_deep().await?;
    assert!(report.is_ok(), "{report:?}");
    s.close().await?;
    Ok(())
}

/// Bytes of the collection's ciphertext and wrapped keys, read from the closed database.
fn fragments(db: &std::path::Path, collection: &str) -> Result<Vec<Vec<u8>>> {
    let conn = rusqlite::Connection::open(db)?;
    let mut out = Vec::new();
    let mut blobs = conn.prepare(
        "SELECT b.data FROM blobs b JOIN records r ON r.blob_id = b.id WHERE r.collection = ?1",
    )?;
    for data in blobs.query_map([collection], |r| r.get::<_, Vec<u8>>(0))? {
        let data = data?;
        // The nonce and the first ciphertext bytes (a small v2 document's blob is under 72
        // bytes: no plain hash inside).
        let body = data.get(9..).ok_or("short blob")?;
        out.push(body.get(..32).unwrap_or(body).to_vec());
    }
    let mut keys = conn.prepare("SELECT wrapped FROM data_keys WHERE collection = ?1")?;
    for wrapped in keys.query_map([collection], |r| r.get::<_, Vec<u8>>(0))? {
        out.push(wrapped?.get(24..56).ok_or("short key")?.to_vec());
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shredded_collection_is_gone_and_the_others_read_fine() -> Result {
    let dir = tempfile::tempdir()?;
    let (_key_dir, key) = common::key_file();
    let s = PersistentStorageManager::open(config(dir.path(), &key)).await?;
    for i in 0..80 {
        let doc = json!({"player": format!("player-{i}"), "chips": i * 10, "history": [1, 2, 3]});
        s.store("players", &format!("p-{i:03}"), &doc).await?;
        s.store("games", &format!("g-{i:03}"), &json!({"point": i % 6}))
            .await?;
    }
    s.close().await?;
    drop(s);
    let db = dir.path().join("bitcraps.db");
    let gone = fragments(&db, "players")?;
    assert!(gone.len() > 80, "blobs and the key: {}", gone.len());
    let kept = fragments(&db, "games")?;

    let s = PersistentStorageManager::open(config(dir.path(), &key)).await?;
    // Read once so the in-process cache holds some of them: a shred must drop those too.
    assert!(
        s.retrieve::<serde_json::Value>("players", "p-001")
            .await?
            .is_some()
    );
    assert_eq!(s.shred_collection("players").await?, 80);
    let err = s
        .retrieve::<serde_json::Value>("players", "p-001")
        .await
        .err();
    assert!(
        matches!(&err, Some(StorageError::Shredded { collection }) if collection == "players"),
        "{err:?}"
    );
    assert_eq!(
        err.map(|e| e.to_string()).unwrap_or_default(),
        "collection players was crypto-shredded: its data key was destroyed"
    );
    let write = s.store("players", "p-new", &json!(1)).await.err();
    assert!(
        matches!(write, Some(StorageError::Shredded { .. })),
        "{write:?}"
    );
    assert_eq!(
        s.retrieve::<serde_json::Value>("games", "g-007").await?,
        Some(json!({"point": 1}))
    );
    let again = s.shred_collection("players").await.err();
    assert!(
        matches!(again, Some(StorageError::Shredded { .. })),
        "{again:?}"
    );
    let report = s.maintenance().await?;
    assert!(report.steps.iter().all(|step| step.ok), "{report:?}");
    s.close().await?;
    drop(s);

    let paths = files(dir.path());
    let all: Vec<Vec<u8>> = paths
        .iter()
        .map(|p| std::fs::read(p).unwrap_or_default())
        .collect();
    for fragment in &gone {
        let holders: Vec<_> = paths
            .iter()
            .zip(&all)
            .filter(|(_, bytes)| contains(bytes, fragment))
            .map(|(p, _)| p.display().to_string())
            .collect();
        assert!(
            holders.is_empty(),
            "a shredded fragment survived in {holders:?}"
        );
    }
    assert!(
        kept.iter()
            .all(|f| all.iter().any(|bytes| contains(bytes, f))),
        "the scan finds the other collection's fragments"
    );

    let s = PersistentStorageManager::open(config(dir.path(), &key)).await?;
    let err = s
        .retrieve::<serde_json::Value>("players", "p-002")
        .await
        .err();
    assert!(
        matches!(err, Some(StorageError::Shredded { .. })),
        "after reopen: {err:?}"
    );
    assert_eq!(
        s.retrieve::<serde_json::Value>("games", "g-079").await?,
        Some(json!({"point": 1}))
    );
    assert!(s.check_consistency_deep().await?.is_ok());
    assert_eq!(s.collections().await?, ["games"]);
    s.close().await?;
    Ok(())
}

/// After a data-key rotation new blobs name the new key in their header, old ones the old
/// key, and both read back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_data_key_seals_new_writes_and_old_blobs_stay_readable() -> Result {
    let dir = tempfile::tempdir()?;
    let (_key_dir, key) = common::key_file();
    let s = PersistentStorageManager::open(config(dir.path(), &key)).await?;
    s.store("bank", "old", &json!({"chips": 1})).await?;
    assert_eq!(s.rotate_data_key("bank").await?, 2);
    s.store("bank", "new", &json!({"chips": 2})).await?;
    s.close().await?;
    drop(s);
    let conn = rusqlite::Connection::open(dir.path().join("bitcraps.db"))?;
    let header = |key: &str| -> rusqlite::Result<Vec<u8>> {
        conn.query_row(
            "SELECT substr(b.data, 2, 8) FROM blobs b JOIN records r ON r.blob_id = b.id \
             WHERE r.collection = 'bank' AND r.key = ?1",
            [key],
            |r| r.get(0),
        )
    };
    let versions: Vec<(Vec<u8>, i64)> = conn
        .prepare("SELECT id, version FROM data_keys WHERE collection = 'bank' ORDER BY version")?
        .query_map([], |r| {
            Ok((r.get::<_, i64>(0)?.to_be_bytes().to_vec(), r.get(1)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let ids: Vec<Vec<u8>> = versions.into_iter().map(|(id, _)| id).collect();
    assert_eq!(ids.len(), 2);
    assert_eq!(header("old")?, ids[0]);
    assert_eq!(header("new")?, ids[1]);
    drop(conn);
    let s = PersistentStorageManager::open(config(dir.path(), &key)).await?;
    assert_eq!(
        s.retrieve::<serde_json::Value>("bank", "old").await?,
        Some(json!({"chips": 1}))
    );
    assert_eq!(
        s.retrieve::<serde_json::Value>("bank", "new").await?,
        Some(json!({"chips": 2}))
    );
    s.close().await?;
    Ok(())
}

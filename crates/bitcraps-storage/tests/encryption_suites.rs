//! Both AEADs in one store: blobs sealed with XChaCha20-Poly1305 (what a CPU without AES
//! instructions writes: format byte 0xE4 for whole documents, layout v2, and 0xE1 for
//! chunks, layout v1) stay readable after the store is reopened where AES-256-GCM-SIV (0xE3
//! and 0xE2) is preferred, and new writes use the preferred suite. A format byte switched to the other suite does not authenticate: it is
//! `Corruption`, never data.
//!
//! One test in this file: the suite override is process-wide.

mod common;

use bitcraps_storage::{PersistentStorageManager, StorageConfig, StorageError};
use rusqlite::Connection;
use serde_json::{Value, json};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn config(dir: &std::path::Path, key: &std::path::Path) -> StorageConfig {
    common::keyed_config(dir, key)
}

/// What this machine seals new chunks with (layout v1): 0xE2 where the CPU has AES
/// instructions.
fn preferred_format() -> u8 {
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    let aes = std::arch::is_x86_feature_detected!("aes")
        && std::arch::is_x86_feature_detected!("pclmulqdq");
    #[cfg(target_arch = "aarch64")]
    let aes = std::arch::is_aarch64_feature_detected!("aes");
    #[cfg(not(any(target_arch = "x86", target_arch = "x86_64", target_arch = "aarch64")))]
    let aes = false;
    if aes { 0xE2 } else { 0xE1 }
}

/// What this machine seals new whole documents with (layout v2): 0xE3 where the CPU has AES
/// instructions.
fn preferred_document_format() -> u8 {
    if preferred_format() == 0xE2 {
        0xE3
    } else {
        0xE4
    }
}

fn format_of(db: &Connection, key: &str) -> rusqlite::Result<u8> {
    let data: Vec<u8> = db.query_row(
        "SELECT b.data FROM records r JOIN blobs b ON b.id = r.blob_id \
         WHERE r.collection = 'games' AND r.key = ?1",
        [key],
        |r| r.get(0),
    )?;
    Ok(data.first().copied().unwrap_or(0))
}

fn chunk_formats(db: &Connection) -> rusqlite::Result<Vec<u8>> {
    let mut s = db.prepare("SELECT substr(data, 1, 1) FROM chunks")?;
    let rows = s.query_map([], |r| r.get::<_, Vec<u8>>(0))?;
    rows.map(|r| r.map(|b| b.first().copied().unwrap_or(0)))
        .collect()
}

/// A document over the chunking threshold (64 KiB), distinct per `n`.
fn large(n: u64) -> Value {
    let rolls: Vec<Value> = (0..1_500)
        .map(|i| json!({"n": n, "i": i, "dice": [(i * 7 + n) % 6 + 1, (i * 5) % 6 + 1], "note": format!("roll {i} of game {n}")}))
        .collect();
    json!({"game": n, "rolls": rolls})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blobs_of_either_suite_read_and_new_ones_use_the_preferred() -> Result {
    let dir = tempfile::tempdir()?;
    let (_key_dir, key) = common::key_file();

    // Written as a CPU without AES instructions (or an earlier release) writes them.
    bitcraps_storage::testing::force_xchacha(true);
    let s = PersistentStorageManager::open(config(dir.path(), &key)).await?;
    for i in 0..20 {
        s.store(
            "games",
            &format!("old-{i}"),
            &json!({"i": i, "era": "xchacha"}),
        )
        .await?;
    }
    s.store("games", "old-large", &large(1)).await?;
    s.close().await?;
    drop(s);
    bitcraps_storage::testing::force_xchacha(false);
    {
        let db = Connection::open(dir.path().join("bitcraps.db"))?;
        assert_eq!(format_of(&db, "old-3")?, 0xE4);
        let chunks = chunk_formats(&db)?;
        assert!(!chunks.is_empty(), "the large document is chunked");
        assert!(chunks.iter().all(|&f| f == 0xE1), "{chunks:?}");
    }

    // Reopened with the machine's preference: old blobs read, new ones use it.
    let s = PersistentStorageManager::open(config(dir.path(), &key)).await?;
    for i in 0..20 {
        assert_eq!(
            s.retrieve::<Value>("games", &format!("old-{i}")).await?,
            Some(json!({"i": i, "era": "xchacha"}))
        );
    }
    assert_eq!(
        s.retrieve::<Value>("games", "old-large").await?,
        Some(large(1))
    );
    for i in 0..20 {
        s.store(
            "games",
            &format!("new-{i}"),
            &json!({"i": i, "era": "preferred"}),
        )
        .await?;
    }
    s.store("games", "new-large", &large(2)).await?;
    let report = s.check_consistency_deep().await?;
    assert!(report.is_ok(), "{report:?}");
    s.close().await?;
    drop(s);

    let db = Connection::open(dir.path().join("bitcraps.db"))?;
    assert_eq!(
        format_of(&db, "old-3")?,
        0xE4,
        "old blobs are not rewritten"
    );
    assert_eq!(format_of(&db, "new-3")?, preferred_document_format());
    assert!(chunk_formats(&db)?.contains(&preferred_format()));

    // Switching a blob's format byte to the other suite: corruption naming the data key.
    let other = if format_of(&db, "new-3")? == 0xE3 {
        0xE4u8
    } else {
        0xE3
    };
    let (id, mut data): (i64, Vec<u8>) = db.query_row(
        "SELECT b.id, b.data FROM records r JOIN blobs b ON b.id = r.blob_id \
         WHERE r.collection = 'games' AND r.key = 'new-3'",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    if let Some(first) = data.first_mut() {
        *first = other;
    }
    db.execute(
        "UPDATE blobs SET data = ?1 WHERE id = ?2",
        rusqlite::params![data, id],
    )?;
    drop(db);
    let s = PersistentStorageManager::open(config(dir.path(), &key)).await?;
    match s.retrieve::<Value>("games", "new-3").await {
        Err(StorageError::Corruption { location, detail }) => {
            assert_eq!(location, "games/new-3");
            assert!(detail.contains("data key"), "{detail}");
        }
        other => panic!("expected corruption, got {other:?}"),
    }
    assert_eq!(
        s.retrieve::<Value>("games", "new-4").await?,
        Some(json!({"i": 4, "era": "preferred"}))
    );
    s.close().await?;
    Ok(())
}

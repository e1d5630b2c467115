//! Encryption at rest, the acceptance test: a sentinel string stored in enough documents to
//! train a dictionary is absent from every byte of the data directory (database, WAL,
//! shared memory, while open and after close) and of every backup file (the archive
//! decompressed too). The same run on a plaintext store finds it, so the scan can fail.

use crate::common;

use bitcraps_storage::{PersistentStorageManager, StorageConfig};
use common::sentinel::{SENTINEL, files_holding};
use serde_json::json;

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Writes sentinel documents until the collection's dictionary is trained and used, takes a
/// backup, and returns the files holding the sentinel while open and after close.
async fn fill(config: StorageConfig) -> Result<(Vec<std::path::PathBuf>, Vec<std::path::PathBuf>)> {
    let dir = config.database.data_path.clone();
    let s = PersistentStorageManager::open(config).await?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut i = 0u32;
    loop {
        let key = format!("player-{i:05}");
        let doc = json!({"note": format!("{SENTINEL} #{i}"), "balance": i, "name": SENTINEL});
        s.store("players", &key, &doc).await?;
        s.store("audit", &key, &json!([SENTINEL, i])).await?;
        let trained = s
            .metadata("players", &key)
            .await?
            .and_then(|m| m.dictionary_id)
            .is_some();
        i += 1;
        if trained && i >= 200 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no dictionary after {i} writes"
        );
    }
    assert!(s.statistics().await?.database_stats.dictionary_count >= 1);
    let got: serde_json::Value = s
        .retrieve("players", "player-00003")
        .await?
        .ok_or("missing")?;
    assert_eq!(got["name"], SENTINEL);
    let backup = s.backups().create_backup().await?;
    s.backups().verify_backup(&backup.id).await?;
    let open = files_holding(&dir, SENTINEL);
    s.close().await?;
    Ok((open, files_holding(&dir, SENTINEL)))
}

fn config(dir: &std::path::Path) -> StorageConfig {
    let mut config = StorageConfig::with_data_path(dir);
    config.compression.dictionary_training_samples = 64;
    config.maintenance.background_tasks = false;
    // Keep the WAL: it must hold no plaintext either.
    config.write.durability = bitcraps_storage::Durability::Normal;
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sentinel_is_in_no_file_of_an_encrypted_store_or_its_backups() -> Result {
    let dir = tempfile::tempdir()?;
    let (_key_dir, key) = common::key_file();
    let mut encrypted = config(dir.path());
    encrypted.key = bitcraps_storage::KeyConfig::default().file(key);
    let (open, closed) = fill(encrypted).await?;
    assert!(open.is_empty(), "plaintext while open in {open:?}");
    assert!(closed.is_empty(), "plaintext after close in {closed:?}");
    Ok(())
}

/// The control: without a key the same scan finds the sentinel in the database files and
/// in the backup archive — so the test above could fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scan_finds_the_sentinel_in_a_plaintext_store() -> Result {
    let dir = tempfile::tempdir()?;
    let (open, closed) = fill(config(dir.path())).await?;
    assert!(
        open.iter()
            .any(|p| p.extension().is_some_and(|e| e == "zst")),
        "{open:?}"
    );
    assert!(
        closed.iter().any(|p| p.ends_with("bitcraps.db")),
        "{closed:?}"
    );
    Ok(())
}

/// A batch large enough to be sealed on more than one thread (`crypto/parallel.rs`), into a
/// collection whose key it creates: every document reads back as written, under its own
/// key, and no file holds the sentinel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_batch_is_sealed_whole_and_in_order() -> Result {
    let dir = tempfile::tempdir()?;
    let (_key_dir, key) = common::key_file();
    let keyed = || {
        let mut c = config(dir.path());
        c.key = bitcraps_storage::KeyConfig::default().file(key.clone());
        c
    };
    let s = PersistentStorageManager::open(keyed()).await?;
    let doc = |i: u32| json!({"note": format!("{SENTINEL} #{i}"), "seat": i});
    let items: Vec<(String, serde_json::Value)> = (0..1500)
        .map(|i| (format!("seat-{i:05}"), doc(i)))
        .collect();
    s.store_batch("bulk", &items).await?;
    // A second group of two units at once: a batch and a single put beside it.
    let more: Vec<(String, serde_json::Value)> = (1500..1800)
        .map(|i| (format!("seat-{i:05}"), doc(i)))
        .collect();
    let lone = doc(9999);
    let (batch, single) = tokio::join!(
        s.store_batch("bulk", &more),
        s.store("other", "seat-x", &lone)
    );
    batch?;
    single?;
    s.close().await?;
    let s = PersistentStorageManager::open(keyed()).await?;
    for i in 0..1800u32 {
        let got: Option<serde_json::Value> = s.retrieve("bulk", &format!("seat-{i:05}")).await?;
        assert_eq!(got, Some(doc(i)), "seat {i}");
    }
    let other: Option<serde_json::Value> = s.retrieve("other", "seat-x").await?;
    assert_eq!(other, Some(doc(9999)));
    s.close().await?;
    let holding = files_holding(dir.path(), SENTINEL);
    assert!(holding.is_empty(), "plaintext in {holding:?}");
    Ok(())
}

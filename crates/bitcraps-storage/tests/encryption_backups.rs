//! Backups of an encrypted store are encrypted by construction (snapshots of the sealed
//! rows): verified with the store's keyring, restored as a whole data directory that opens
//! only with the key, and refused by `restore_backup_into` (whose target has another store
//! id and no wrapped keys) rather than loaded as undecryptable rows.

mod common;

use bitcraps_storage::{KeyConfig, PersistentStorageManager, StorageConfig, StorageError};
use serde_json::json;

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypted_backup_restores_only_with_its_key() -> Result {
    let dir = tempfile::tempdir()?;
    let (_key_dir, key) = common::key_file();
    let mut config = StorageConfig::with_data_path(dir.path().join("live"));
    config.maintenance.background_tasks = false;
    config.key = KeyConfig::default().file(&key);
    let s = PersistentStorageManager::open(config.clone()).await?;
    for i in 0..50 {
        s.store("bank", &format!("p-{i}"), &json!({"chips": i}))
            .await?;
    }
    let backups = s.backups();
    let info = backups.create_backup().await?;
    let verified = backups.verify_backup(&info.id).await?;
    assert_eq!(verified.blobs_decoded, 50);

    let restored = dir.path().join("restored");
    backups.restore_backup(&info.id, &restored).await?;
    let mut other = StorageConfig::with_data_path(&restored);
    other.maintenance.background_tasks = false;
    let err = PersistentStorageManager::open(other.clone()).await.err();
    assert!(matches!(err, Some(StorageError::KeyMissing)), "{err:?}");
    other.key = KeyConfig::default().file(&key);
    let r = PersistentStorageManager::open(other).await?;
    assert_eq!(
        r.retrieve::<serde_json::Value>("bank", "p-7").await?,
        Some(json!({"chips": 7}))
    );
    assert!(r.check_consistency_deep().await?.is_ok());
    r.close().await?;

    let mut into = StorageConfig::with_data_path(dir.path().join("into"));
    into.key = KeyConfig::default().file(&key);
    let err = backups.restore_backup_into(&info.id, &into).await.err();
    assert!(
        matches!(&err, Some(StorageError::Config(m)) if m.contains("encrypted store")),
        "{err:?}"
    );
    s.close().await?;
    Ok(())
}

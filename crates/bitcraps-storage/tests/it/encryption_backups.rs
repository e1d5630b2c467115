//! Backups of an encrypted store are encrypted by construction (snapshots of the sealed
//! rows, with the wrapped data keys and the key check): verified with the store's keyring,
//! restored as a whole data directory or loaded into another database by
//! `restore_backup_into`, and either way opened only with the key. The target of a load keeps
//! its own store id (its Redis namespace is not the source's); the ciphertext keeps its
//! binding. This holds for backups of SQLite and of PostgreSQL stores.

use crate::common;

use bitcraps_storage::{KeyConfig, PersistentStorageManager, StorageConfig, StorageError};
use serde_json::json;

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

const RECORDS: usize = 50;

async fn fill(s: &PersistentStorageManager) -> Result {
    for i in 0..RECORDS {
        s.store("bank", &format!("p-{i}"), &json!({"chips": i}))
            .await?;
    }
    s.store("lobby", "seat-1", &json!({"player": "ann"}))
        .await?;
    Ok(())
}

/// Opens `config` without a key, with a wrong key and with `key`: refused, refused, and
/// every record reads back and the deep check passes.
async fn opens_only_with(mut config: StorageConfig, key: &std::path::Path) -> Result {
    config.maintenance.background_tasks = false;
    config.key = KeyConfig::default();
    let err = PersistentStorageManager::open(config.clone()).await.err();
    assert!(matches!(err, Some(StorageError::KeyMissing)), "{err:?}");
    let (_wrong_dir, wrong) = common::key_file();
    config.key = KeyConfig::default().file(&wrong);
    let err = PersistentStorageManager::open(config.clone()).await.err();
    assert!(
        matches!(err, Some(StorageError::KeyMismatch { .. })),
        "{err:?}"
    );
    config.key = KeyConfig::default().file(key);
    let r = PersistentStorageManager::open(config).await?;
    for i in 0..RECORDS {
        assert_eq!(
            r.retrieve::<serde_json::Value>("bank", &format!("p-{i}"))
                .await?,
            Some(json!({"chips": i}))
        );
    }
    assert_eq!(
        r.retrieve::<serde_json::Value>("lobby", "seat-1").await?,
        Some(json!({"player": "ann"}))
    );
    let report = r.check_consistency_deep().await?;
    assert!(report.is_ok(), "{report:?}");
    // The restored store keeps writing under the backup's keys.
    r.store("bank", "new", &json!({"chips": 1})).await?;
    assert_eq!(
        r.retrieve::<serde_json::Value>("bank", "new").await?,
        Some(json!({"chips": 1}))
    );
    r.close().await?;
    Ok(())
}

/// The `store_id` row of a SQLite store's file.
fn sqlite_store_id(path: &std::path::Path) -> Result<String> {
    let conn = rusqlite::Connection::open(path)?;
    Ok(
        conn.query_row("SELECT value FROM meta WHERE name = 'store_id'", [], |r| {
            r.get(0)
        })?,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypted_backup_restores_only_with_its_key() -> Result {
    let dir = tempfile::tempdir()?;
    let (_key_dir, key) = common::key_file();
    let mut config = StorageConfig::with_data_path(dir.path().join("live"));
    config.maintenance.background_tasks = false;
    config.key = KeyConfig::default().file(&key);
    let s = PersistentStorageManager::open(config.clone()).await?;
    fill(&s).await?;
    let backups = s.backups();
    let info = backups.create_backup().await?;
    let verified = backups.verify_backup(&info.id).await?;
    assert_eq!(verified.blobs_decoded, RECORDS as u64 + 1);

    let restored = dir.path().join("restored");
    backups.restore_backup(&info.id, &restored).await?;
    opens_only_with(StorageConfig::with_data_path(&restored), &key).await?;

    // Loaded into another SQLite file: its own store id, the backup's keys and binding.
    let into = StorageConfig::with_data_path(dir.path().join("into"));
    backups.restore_backup_into(&info.id, &into).await?;
    let live_id = sqlite_store_id(&config.database.data_path.join("bitcraps.db"))?;
    let into_id = sqlite_store_id(&into.database.data_path.join("bitcraps.db"))?;
    assert_ne!(live_id, into_id);
    opens_only_with(into, &key).await?;
    s.close().await?;
    Ok(())
}

/// A load that would mix keys is refused and leaves the target as it was: an encrypted
/// backup into a store with keys of its own, a plaintext backup into an encrypted store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_that_would_mix_keys_is_refused() -> Result {
    let dir = tempfile::tempdir()?;
    let (_key_dir, key) = common::key_file();
    let mut encrypted = StorageConfig::with_data_path(dir.path().join("enc"));
    encrypted.maintenance.background_tasks = false;
    encrypted.key = KeyConfig::default().file(&key);
    let s = PersistentStorageManager::open(encrypted.clone()).await?;
    fill(&s).await?;
    let encrypted_backup = s.backups().create_backup().await?;

    let mut plain = StorageConfig::with_data_path(dir.path().join("plain"));
    plain.maintenance.background_tasks = false;
    let p = PersistentStorageManager::open(plain.clone()).await?;
    fill(&p).await?;
    let plain_backup = p.backups().create_backup().await?;

    // A target that is encrypted under another key and holds no record yet.
    let (_other_dir, other_key) = common::key_file();
    let mut target = StorageConfig::with_data_path(dir.path().join("target"));
    target.maintenance.background_tasks = false;
    target.key = KeyConfig::default().file(&other_key);
    let t = PersistentStorageManager::open(target.clone()).await?;
    t.store("x", "y", &json!(1)).await?;
    t.delete("x", "y").await?;
    t.close().await?;
    let file = target.database.data_path.join("bitcraps.db");

    let err = s
        .backups()
        .restore_backup_into(&encrypted_backup.id, &target)
        .await
        .err();
    assert!(
        matches!(&err, Some(StorageError::Config(m)) if m.contains("keys of its own")),
        "{err:?}"
    );
    let err = p
        .backups()
        .restore_backup_into(&plain_backup.id, &target)
        .await
        .err();
    assert!(
        matches!(&err, Some(StorageError::Config(m)) if m.contains("the backup is not")),
        "{err:?}"
    );
    let t = PersistentStorageManager::open(target).await?;
    assert!(t.collections().await?.is_empty());
    t.close().await?;
    assert!(file.exists());
    s.close().await?;
    p.close().await?;
    Ok(())
}

/// The regression: a PostgreSQL snapshot carried neither the wrapped data keys nor the key
/// check, so a backup of an encrypted PostgreSQL store restored as a directory read as
/// corruption, and `restore_backup_into` refused it.
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypted_postgres_backup_restores_anywhere_with_its_key() -> Result {
    let Some(f) = common::pg_encrypted_fixture() else {
        return Ok(());
    };
    let mut config = f.config.clone();
    config.maintenance.background_tasks = false;
    let key = config
        .key
        .file
        .clone()
        .ok_or("the fixture has a key file")?;
    let s = PersistentStorageManager::open(config).await?;
    fill(&s).await?;
    let backups = s.backups();
    let info = backups.create_backup().await?;
    let verified = backups.verify_backup(&info.id).await?;
    assert_eq!(verified.blobs_decoded, RECORDS as u64 + 1);

    let dir = tempfile::tempdir()?;
    let restored = dir.path().join("restored");
    backups.restore_backup(&info.id, &restored).await?;
    opens_only_with(StorageConfig::with_data_path(&restored), &key).await?;

    let into = StorageConfig::with_data_path(dir.path().join("into"));
    backups.restore_backup_into(&info.id, &into).await?;
    opens_only_with(into, &key).await?;

    let Some(url) = common::postgres_url() else {
        return Ok(());
    };
    let schema = common::PgSchema::create(&url);
    let mut pg = StorageConfig::with_data_path(dir.path().join("pg"));
    pg.database.url = Some(schema.url());
    pg.database.max_connections = 2;
    backups.restore_backup_into(&info.id, &pg).await?;
    opens_only_with(pg, &key).await?;
    s.close().await?;
    Ok(())
}

//! Encryption at rest fails closed: an encrypted store opened without a key, with a wrong
//! key, or with a key source that fails is a typed error, and no file of the store changes
//! (hashed before and after). A plaintext store holding data is refused when a key is given
//! (`key enable` encrypts it), rather than written in plaintext next to ciphertext.

use crate::common;

use bitcraps_storage::{KeyConfig, PersistentStorageManager, StorageConfig, StorageError};
use common::sentinel::file_hashes;
use serde_json::json;

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn config(dir: &std::path::Path, key: KeyConfig) -> StorageConfig {
    let mut config = StorageConfig::with_data_path(dir);
    config.maintenance.background_tasks = false;
    config.key = key;
    config
}

async fn refused(config: StorageConfig) -> StorageError {
    match PersistentStorageManager::open(config).await {
        Ok(_) => panic!("the store opened"),
        Err(e) => e,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_key_wrong_key_and_failing_sources_are_refused_and_write_nothing() -> Result {
    let dir = tempfile::tempdir()?;
    let (key_dir, key) = common::key_file();
    let right = KeyConfig::default().file(&key);
    let s = PersistentStorageManager::open(config(dir.path(), right.clone())).await?;
    s.store("bank", "house", &json!({"chips": 1_000_000}))
        .await?;
    s.close().await?;
    drop(s);
    let before = file_hashes(dir.path());
    assert!(
        before.iter().any(|(p, _)| p.ends_with("bitcraps.db")),
        "{before:?}"
    );

    let err = refused(config(dir.path(), KeyConfig::default())).await;
    assert!(matches!(err, StorageError::KeyMissing), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("the store is encrypted and no key was given"),
        "{err}"
    );
    assert_eq!(file_hashes(dir.path()), before, "no key");

    let (_other_dir, wrong) = common::key_file();
    let err = refused(config(dir.path(), KeyConfig::default().file(&wrong))).await;
    assert!(matches!(&err, StorageError::KeyMismatch { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "the key from key file {} does not open this store (wrong key)",
            wrong.display()
        )
    );
    assert_eq!(file_hashes(dir.path()), before, "wrong key");

    let err = refused(config(dir.path(), KeyConfig::default().command("exit 7"))).await;
    assert!(matches!(&err, StorageError::KeySource { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "cannot get the key from key command \"exit 7\": it exit status: 7"
    );
    assert_eq!(file_hashes(dir.path()), before, "failing command");

    let not_hex = key_dir.path().join("not-hex.key");
    std::fs::write(&not_hex, "correct horse battery staple")?;
    let err = refused(config(dir.path(), KeyConfig::default().file(&not_hex))).await;
    assert!(matches!(&err, StorageError::KeySource { .. }), "{err:?}");
    assert!(
        !err.to_string().contains("horse"),
        "the file's text is never echoed: {err}"
    );
    let err = refused(config(
        dir.path(),
        KeyConfig::default().env("BITCRAPS_TEST_NO_SUCH_KEY"),
    ))
    .await;
    assert!(matches!(&err, StorageError::KeySource { .. }), "{err:?}");
    assert_eq!(file_hashes(dir.path()), before, "bad sources");

    // The right key still opens it, through a command as well as the file.
    let text = std::fs::read_to_string(&key)?;
    let by_command = KeyConfig::default().command(format!("printf {}", text.trim()));
    let s = PersistentStorageManager::open(config(dir.path(), by_command)).await?;
    let got: serde_json::Value = s.retrieve("bank", "house").await?.expect("record");
    assert_eq!(got, json!({"chips": 1_000_000}));
    s.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plaintext_store_with_data_is_refused_with_a_key() -> Result {
    let dir = tempfile::tempdir()?;
    let s = PersistentStorageManager::open(config(dir.path(), KeyConfig::default())).await?;
    s.store("bank", "house", &json!({"chips": 5})).await?;
    s.close().await?;
    drop(s);
    let before = file_hashes(dir.path());
    let (_key_dir, key) = common::key_file();
    let err = refused(config(dir.path(), KeyConfig::default().file(&key))).await;
    assert!(matches!(err, StorageError::NotEncrypted), "{err:?}");
    assert!(err.to_string().contains("key enable"), "{err}");
    assert_eq!(file_hashes(dir.path()), before);
    // Two sources at once are a configuration error, not a guess.
    let both = KeyConfig::default().file(&key).env("X");
    let err = refused(config(dir.path(), both)).await;
    assert!(matches!(err, StorageError::Config(_)), "{err:?}");
    Ok(())
}

/// A store opened read-only with its key reads; without it, it is refused the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_opens_need_the_key_too() -> Result {
    let dir = tempfile::tempdir()?;
    let (_key_dir, key) = common::key_file();
    let s =
        PersistentStorageManager::open(config(dir.path(), KeyConfig::default().file(&key))).await?;
    s.store("bank", "house", &json!(7)).await?;
    s.close().await?;
    drop(s);
    let mut read_only = config(dir.path(), KeyConfig::default());
    read_only.database.read_only = true;
    let err = refused(read_only.clone()).await;
    assert!(matches!(err, StorageError::KeyMissing), "{err:?}");
    read_only.key = KeyConfig::default().file(&key);
    let s = PersistentStorageManager::open(read_only).await?;
    assert_eq!(s.retrieve::<i64>("bank", "house").await?, Some(7));
    s.close().await?;
    Ok(())
}

//! `key enable` in the library: a plaintext store (with a trained dictionary and content
//! shared across collections) is encrypted in place. A run interrupted after its first page
//! leaves a store that opens with neither no key nor the key, only for the next run, which
//! finishes it: every record reads back, the deep check passes, and the sentinel is in no
//! file of the data directory.

use crate::common;

use bitcraps_storage::{KeyConfig, PersistentStorageManager, StorageConfig, StorageError};
use common::sentinel::{SENTINEL, files_holding};
use serde_json::json;

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

const RECORDS: u32 = 1200;

fn doc(i: u32) -> serde_json::Value {
    json!({"name": SENTINEL, "chips": i, "history": [i % 7, i % 11]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plaintext_store_is_encrypted_in_place_and_resumes_after_an_interruption() -> Result {
    let dir = tempfile::tempdir()?;
    let mut plain = StorageConfig::with_data_path(dir.path());
    plain.maintenance.background_tasks = false;
    plain.compression.dictionary_training_samples = 64;
    let s = PersistentStorageManager::open(plain.clone()).await?;
    for i in 0..RECORDS {
        s.store("players", &format!("p-{i:05}"), &doc(i)).await?;
    }
    s.store("audit", "copy", &doc(7)).await?; // the same content as players/p-00007
    s.close().await?;
    drop(s);
    assert!(
        !files_holding(dir.path(), SENTINEL).is_empty(),
        "plaintext before"
    );

    let (_key_dir, key) = common::key_file();
    let mut keyed = plain.clone();
    keyed.key = KeyConfig::default().file(&key);
    // Interrupted after its first page (the progress callback panics there).
    let interrupted = PersistentStorageManager::enable_encryption(keyed.clone(), |done, _| {
        assert!(done == 0, "interrupted after the first page");
    })
    .await;
    assert!(
        matches!(&interrupted, Err(StorageError::Task(_))),
        "{interrupted:?}"
    );
    let err = PersistentStorageManager::open(plain.clone()).await.err();
    assert!(matches!(err, Some(StorageError::KeyMissing)), "{err:?}");
    let err = PersistentStorageManager::open(keyed.clone()).await.err();
    assert!(
        matches!(&err, Some(StorageError::Config(m)) if m.contains("key enable")),
        "{err:?}"
    );

    let report = PersistentStorageManager::enable_encryption(keyed.clone(), |_, _| {})
        .await
        .map_err(|e| format!("the second run: {e}"))?;
    assert_eq!(report.records, u64::from(RECORDS) + 1);
    assert!(
        report.records_encrypted > 0 && report.records_encrypted < report.records,
        "the first page was done by the interrupted run: {report:?}"
    );
    assert!(report.dictionaries_encrypted >= 1, "{report:?}");
    assert!(
        files_holding(dir.path(), SENTINEL).is_empty(),
        "no plaintext after"
    );

    let s = PersistentStorageManager::open(keyed.clone()).await?;
    for i in 0..RECORDS {
        let got = s
            .retrieve::<serde_json::Value>("players", &format!("p-{i:05}"))
            .await?;
        assert_eq!(got, Some(doc(i)));
    }
    assert_eq!(
        s.retrieve::<serde_json::Value>("audit", "copy").await?,
        Some(doc(7))
    );
    let report = s.check_consistency_deep().await?;
    assert!(report.is_ok(), "{report:?}");
    s.close().await?;
    drop(s);
    // Done: again is a no-op, and a wrong key is refused.
    let again = PersistentStorageManager::enable_encryption(keyed, |_, _| {}).await?;
    assert_eq!(again.records_encrypted, 0);
    let (_other_dir, other) = common::key_file();
    let mut wrong = plain.clone();
    wrong.key = KeyConfig::default().file(&other);
    let err = PersistentStorageManager::enable_encryption(wrong, |_, _| {})
        .await
        .err();
    assert!(
        matches!(err, Some(StorageError::KeyMismatch { .. })),
        "{err:?}"
    );
    Ok(())
}

//! Data-key and master-key rotation and shredding on every backend (memory, SQLite, and PostgreSQL when configured):
//! the rotated store opens with the new key only; a shredded collection is `Shredded`, also
//! after reopening, and the others read and check fine.

use crate::common;

use std::sync::Arc;

use bitcraps_storage::{KeyConfig, KeySource, StorageError};
use common::Fixture;
use serde_json::json;

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

async fn rotate_and_shred(f: Fixture) -> Result {
    assert!(f.config.key.is_set(), "the fixture is encrypted");
    let s = f.open(f.config.clone()).await?;
    for i in 0..20 {
        s.store("players", &format!("p-{i}"), &json!({"chips": i}))
            .await?;
        s.store("games", &format!("g-{i}"), &json!({"point": i}))
            .await?;
    }
    // A new data key for `games`: later writes use it, earlier ones stay readable, and
    // equal documents still share one blob (the address key is kept).
    assert_eq!(s.rotate_data_key("games").await?, 2);
    s.store("games", "g-again", &json!({"point": 3})).await?;
    s.store("games", "g-new", &json!({"point": "new"})).await?;
    assert_eq!(
        s.metadata("games", "g-3").await?.map(|m| m.shared_by),
        Some(2)
    );
    let (_dir, next) = common::key_file();
    assert_eq!(
        s.rotate_master_key(Arc::new(KeySource::File(next.clone())))
            .await?,
        3,
        "players, games v1 and v2"
    );
    let head = s.change_head().await?;
    assert_eq!(s.shred_collection("players").await?, 20);
    // The shred is in the change feed: a delete per record, in key order, in its transaction.
    let logged = s.changes_since(head, 100).await?;
    let mut keys: Vec<String> = (0..20).map(|i| format!("p-{i}")).collect();
    keys.sort();
    assert_eq!(
        logged
            .iter()
            .map(|c| (c.seq - head, c.collection.as_str(), c.key.as_str(), c.kind))
            .collect::<Vec<_>>(),
        keys.iter()
            .enumerate()
            .map(|(i, k)| (
                i as u64 + 1,
                "players",
                k.as_str(),
                bitcraps_storage::ChangeKind::Delete
            ))
            .collect::<Vec<_>>()
    );
    let err = s
        .retrieve::<serde_json::Value>("players", "p-1")
        .await
        .err();
    assert!(
        matches!(err, Some(StorageError::Shredded { .. })),
        "{err:?}"
    );
    s.close().await?;
    drop(s);

    let err = f.open(f.config.clone()).await.err();
    assert!(
        matches!(err, Some(StorageError::KeyMismatch { .. })),
        "old key: {err:?}"
    );
    let mut config = f.config.clone();
    config.key = KeyConfig::default().file(&next);
    let s = f.open(config).await?;
    let err = s
        .retrieve::<serde_json::Value>("players", "p-2")
        .await
        .err();
    assert!(
        matches!(err, Some(StorageError::Shredded { .. })),
        "{err:?}"
    );
    for i in 0..20 {
        let got = s
            .retrieve::<serde_json::Value>("games", &format!("g-{i}"))
            .await?;
        assert_eq!(got, Some(json!({"point": i})));
    }
    assert_eq!(
        s.retrieve::<serde_json::Value>("games", "g-new").await?,
        Some(json!({"point": "new"}))
    );
    let report = s.check_consistency_deep().await?;
    assert!(report.is_ok(), "{report:?}");
    s.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_memory_backend() -> Result {
    rotate_and_shred(common::memory_encrypted_fixture()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sqlite() -> Result {
    rotate_and_shred(common::sqlite_encrypted_fixture()).await
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres() -> Result {
    match common::pg_encrypted_fixture() {
        Some(f) => rotate_and_shred(f).await,
        None => Ok(()),
    }
}

//! A backup of one backend restored into the store of another through the seam: a backup of
//! the in-memory backend (written through the snapshot format's writer) is loaded into a fresh
//! SQLite store by `restore_backup_into`, with every record and its metadata intact; a target
//! that holds data is refused and left as it was.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use bitcraps_storage::{ListOptions, PersistentStorageManager, StorageConfig, StorageError};
use common::{Game, game, lobby};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

async fn all_records(
    s: &PersistentStorageManager,
) -> Result<
    Vec<(
        String,
        String,
        serde_json::Value,
        bitcraps_storage::RecordMetadata,
    )>,
> {
    let mut out = Vec::new();
    for collection in s.collections().await? {
        for key in s
            .list(&collection, ListOptions::default().limit(10_000))
            .await?
            .keys
        {
            // Metadata before the read, so this pass's own read is not in its access count.
            let meta = s.metadata(&collection, &key).await?.expect("meta");
            let value: serde_json::Value = s.retrieve(&collection, &key).await?.expect("value");
            out.push((collection.clone(), key, value, meta));
        }
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_backup_restores_into_a_sqlite_store() -> Result {
    let fixture = common::memory_fixture();
    let mut config = fixture.config.clone();
    config.maintenance.background_tasks = false;
    config.write.access_flush_interval = std::time::Duration::from_secs(3600);
    let s = fixture.open(config.clone()).await?;
    let items: Vec<(String, Game)> = (0..40)
        .map(|i| (format!("g-{i:02}"), game("g", i)))
        .collect();
    s.store_batch("games", &items).await?;
    // Shared content and access statistics travel too.
    s.store("games", "copy", &game("g", 1)).await?;
    s.store("lobbies", "main", &lobby()).await?;
    s.delete("games", "g-00").await?;
    for _ in 0..3 {
        let _: Option<Game> = s.retrieve("games", "g-05").await?;
    }
    s.flush().await?;
    let before = all_records(&s).await?;
    assert_eq!(before.len(), 41);

    let info = s.backups().create_backup().await?;
    assert_eq!(info.backend, "memory");
    assert_eq!(info.snapshot.record_count, 41);
    assert_eq!(
        s.backups().verify_backup(&info.id).await?.snapshot,
        info.snapshot
    );

    let target_dir = tempfile::tempdir()?;
    let mut target = StorageConfig::with_data_path(target_dir.path());
    target.maintenance.background_tasks = false;
    let report = s.backups().restore_backup_into(&info.id, &target).await?;
    assert_eq!(report.snapshot, info.snapshot);

    let r = PersistentStorageManager::open(target.clone()).await?;
    assert_eq!(
        all_records(&r).await?,
        before,
        "every record and its metadata survive"
    );
    assert!(r.check_consistency().await?.is_ok());
    assert_eq!(
        r.metadata("games", "copy").await?.expect("meta").shared_by,
        2
    );
    // Ids continue after the restored ones: new content inserts.
    r.store("games", "new", &game("new", 7)).await?;
    assert!(r.check_consistency().await?.is_ok());
    r.close().await?;

    let err = s
        .backups()
        .restore_backup_into(&info.id, &target)
        .await
        .expect_err("the target is not empty");
    // Refused as TargetNotEmpty (was Config) before the backup is verified.
    assert!(
        matches!(err, StorageError::TargetNotEmpty { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("exists and is not empty"), "{err}");
    let r = PersistentStorageManager::open(target).await?;
    assert_eq!(r.statistics().await?.database_stats.record_count, 42);
    r.close().await?;
    s.close().await?;
    Ok(())
}

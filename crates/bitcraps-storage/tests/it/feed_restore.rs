//! A restored store starts a new history of changes: a consumer that resumes after a seq the
//! restored log has not reached gets `ChangesAhead`, from `changes_since` and from a watch,
//! instead of an empty answer that would make it skip the changes the restored store then
//! numbers with seqs it already holds. (Once the restored head passes the consumer's seq,
//! nothing tells the histories apart: the log has no history id yet.)

use bitcraps_storage::{PersistentStorageManager, StorageConfig, StorageError};
use serde_json::json;

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_beyond_a_restored_logs_head_is_an_error() -> Result {
    let dir = tempfile::tempdir()?;
    let mut config = StorageConfig::with_data_path(dir.path().join("live"));
    config.maintenance.background_tasks = false;
    let s = PersistentStorageManager::open(config).await?;
    for i in 0..10 {
        s.store("rolls", &format!("r-{i}"), &json!({"dice": [i % 6 + 1, 1]}))
            .await?;
    }
    let backup = s.backups().create_backup().await?;
    for i in 10..20 {
        s.store("rolls", &format!("r-{i}"), &json!({"dice": [i % 6 + 1, 2]}))
            .await?;
    }
    // A consumer that followed the live store to its head.
    let followed = s.change_head().await?;
    assert_eq!(followed, 20);
    assert!(s.changes_since(followed, 100).await?.is_empty());

    let restored = dir.path().join("restored");
    s.backups().restore_backup(&backup.id, &restored).await?;
    s.close().await?;
    let mut config = StorageConfig::with_data_path(&restored);
    config.maintenance.background_tasks = false;
    let r = PersistentStorageManager::open(config).await?;
    let head = r.change_head().await?;
    assert!(head < followed, "{head}");
    let err = r.changes_since(followed, 100).await.err();
    assert!(
        matches!(err, Some(StorageError::ChangesAhead { after: 20, head: h }) if h == head),
        "{err:?}"
    );
    let mut watch = r.watch_from("rolls", "", followed).await?;
    let first = watch.next().await;
    assert!(
        matches!(first, Some(Err(StorageError::ChangesAhead { .. }))),
        "{first:?}"
    );
    // From its own head a consumer follows the restored store normally.
    let from = r.change_head().await?;
    r.store("rolls", "next", &json!(1)).await?;
    let page = r.changes_since(from, 100).await?;
    assert_eq!(page.len(), 1);
    r.close().await?;
    Ok(())
}

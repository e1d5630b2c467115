//! `database.read_only`: a second handle inspects a store another one owns and writes (the
//! writer's lock is held all along), sees every committed write — nothing stale from a cache —
//! and every write through it fails with `StorageError::ReadOnly` and changes nothing.

use crate::common;

use bitcraps_storage::{ListOptions, PersistentStorageManager, StorageError};
use common::{Game, game, sqlite_fixture};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_handle_reads_a_store_another_writes_and_refuses_writes() -> Result {
    let f = sqlite_fixture();
    let writer = PersistentStorageManager::open(f.config.clone()).await?;
    writer.store("games", "g-1", &game("g-1", 1)).await?;

    // A second read-write open is refused: the writer holds the lock.
    let second = PersistentStorageManager::open(f.config.clone()).await;
    assert!(
        matches!(second, Err(StorageError::Locked { .. })),
        "{second:?}"
    );

    let mut config = f.config.clone();
    config.database.read_only = true;
    let reader = PersistentStorageManager::open(config).await?;
    let seen: Option<Game> = reader.retrieve("games", "g-1").await?;
    assert_eq!(seen, Some(game("g-1", 1)));

    // Later commits of the writer are visible at once, the updated value included.
    writer.store("games", "g-1", &game("g-1", 2)).await?;
    writer.store("games", "g-2", &game("g-2", 1)).await?;
    let seen: Option<Game> = reader.retrieve("games", "g-1").await?;
    assert_eq!(
        seen,
        Some(game("g-1", 2)),
        "a read-only handle serves no stale value"
    );
    let page = reader.list("games", ListOptions::default()).await?;
    assert_eq!(page.keys, ["g-1", "g-2"]);
    assert_eq!(reader.collections().await?, ["games"]);
    assert!(reader.metadata("games", "g-2").await?.is_some());
    assert_eq!(reader.statistics().await?.database_stats.record_count, 2);
    let backup = reader.backups().create_backup().await?;
    assert_eq!(backup.snapshot.record_count, 2);

    // Every write is refused with the typed error, and changes nothing.
    let refused = [
        reader.store("games", "g-3", &game("g-3", 1)).await.err(),
        reader
            .store_batch("games", &[("g-4", game("g-4", 1))])
            .await
            .err(),
        reader.delete("games", "g-1").await.map(|_| ()).err(),
        reader.maintenance().await.map(|_| ()).err(),
    ];
    for e in refused {
        assert!(
            matches!(e, Some(StorageError::ReadOnly { .. })),
            "refused as read-only: {e:?}"
        );
    }
    let e = reader
        .delete("games", "g-1")
        .await
        .err()
        .map(|e| e.to_string());
    assert_eq!(
        e.as_deref(),
        Some("the store is open read-only (database.read_only): a write is refused")
    );
    assert_eq!(
        writer.list("games", ListOptions::default()).await?.keys,
        ["g-1", "g-2"]
    );

    reader.close().await?;
    // The writer still owns the store after the reader closed.
    writer.store("games", "g-5", &game("g-5", 1)).await?;
    writer.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_open_needs_an_existing_store() -> Result {
    let f = sqlite_fixture();
    let mut config = f.config.clone();
    config.database.read_only = true;
    let opened = PersistentStorageManager::open(config).await;
    assert!(matches!(opened, Err(StorageError::Io { .. })), "{opened:?}");
    assert!(
        !f.config.database.data_path.join("bitcraps.db").exists(),
        "a read-only open creates nothing"
    );
    Ok(())
}

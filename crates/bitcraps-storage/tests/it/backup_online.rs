//! A backup taken while writers keep writing restores to a store that passes its checks and
//! holds every record committed before the backup began.

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use bitcraps_storage::{ListOptions, PersistentStorageManager, StorageConfig, StorageError};
use common::{Game, game, lobby, sqlite_fixture};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_during_writes_restores_everything_committed_before() -> Result {
    let f = sqlite_fixture();
    let s = PersistentStorageManager::open(f.config.clone()).await?;
    let before: Vec<(String, Game)> = (0..300)
        .map(|i| (format!("pre-{i:04}"), game("pre", i)))
        .collect();
    s.store_batch("games", &before).await?;
    s.store("lobbies", "main", &lobby()).await?;

    // Writers keep going during the backup.
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU32::new(0));
    let mut writers = Vec::new();
    for t in 0..4 {
        let (s, stop, written) = (s.clone(), Arc::clone(&stop), Arc::clone(&written));
        writers.push(tokio::spawn(async move {
            let mut i = 0u32;
            while !stop.load(Ordering::SeqCst) {
                let key = format!("during-{t}-{i:05}");
                s.store("games", &key, &game(&key, i)).await?;
                written.fetch_add(1, Ordering::SeqCst);
                i += 1;
            }
            Ok::<u32, StorageError>(i)
        }));
    }
    // The backup starts once the writers are writing (20 records between them).
    let deadline = Instant::now() + Duration::from_secs(30);
    while written.load(Ordering::SeqCst) < 20 {
        assert!(Instant::now() < deadline, "the writers never started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let info = s.backups().create_backup().await?;
    stop.store(true, Ordering::SeqCst);
    let mut written_during = 0;
    for w in writers {
        written_during += w.await??;
    }
    assert!(
        written_during > 0,
        "writers made no progress during the backup"
    );
    assert!(info.snapshot.record_count >= 301);

    let listed = s.backups().list_backups().await?;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0], info);
    let verified = s.backups().verify_backup(&info.id).await?;
    assert_eq!(verified.integrity, ["ok"]);
    assert_eq!(verified.snapshot, info.snapshot);

    let target = f
        .config
        .database
        .data_path
        .join("..")
        .join(format!("restored-{}", info.id));
    let report = s.backups().restore_backup(&info.id, &target).await?;
    assert_eq!(report.snapshot.record_count, info.snapshot.record_count);
    s.close().await?;

    let restored = PersistentStorageManager::open(StorageConfig::with_data_path(&target)).await?;
    for (key, value) in &before {
        assert_eq!(
            restored.retrieve::<Game>("games", key).await?.as_ref(),
            Some(value)
        );
    }
    assert_eq!(restored.retrieve("lobbies", "main").await?, Some(lobby()));
    let page = restored
        .list("games", ListOptions::default().limit(100_000))
        .await?;
    assert_eq!(page.keys.len() as u64, info.snapshot.record_count - 1);
    // One point in time: of each writer's sequential writes, the backup holds exactly a prefix.
    for t in 0..4 {
        let prefix = format!("during-{t}-");
        let mut seen = restored
            .list(
                "games",
                ListOptions::default().prefix(&prefix).limit(100_000),
            )
            .await?
            .keys
            .into_iter()
            .map(|k| k[prefix.len()..].parse::<u32>())
            .collect::<std::result::Result<Vec<u32>, _>>()?;
        seen.sort_unstable();
        let expected: Vec<u32> = (0..).take(seen.len()).collect();
        assert_eq!(seen, expected, "writer {t}: not a prefix of its writes");
    }
    let report = restored.check_consistency().await?;
    assert!(report.is_ok(), "{report:?}");
    restored.close().await?;
    std::fs::remove_dir_all(&target)?;
    Ok(())
}

#[tokio::test]
async fn restore_refuses_the_live_store_and_non_empty_targets() -> Result {
    let f = sqlite_fixture();
    let s = PersistentStorageManager::open(f.config.clone()).await?;
    s.store("games", "g", &game("g", 1)).await?;
    let info = s.backups().create_backup().await?;
    let err = s
        .backups()
        .restore_backup(&info.id, &f.config.database.data_path)
        .await
        .expect_err("live store");
    assert!(
        err.to_string().contains("live store") || err.to_string().contains("not empty"),
        "{err}"
    );
    let occupied = tempfile::tempdir()?;
    std::fs::write(occupied.path().join("x"), b"x")?;
    let err = s
        .backups()
        .restore_backup(&info.id, occupied.path())
        .await
        .expect_err("occupied");
    assert!(
        matches!(err, StorageError::TargetNotEmpty { .. })
            && err.to_string().contains("is not empty"),
        "{err}"
    );
    let err = s
        .backups()
        .verify_backup("../../etc")
        .await
        .expect_err("bad id");
    assert!(
        matches!(err, StorageError::InvalidBackupId { .. })
            && err.to_string().contains("is not a backup id"),
        "{err}"
    );
    let err = s
        .backups()
        .verify_backup("20990101T000000000Z-abcdef")
        .await
        .expect_err("missing");
    // A missing backup is "not found", not a configuration error.
    assert!(
        matches!(err, StorageError::BackupNotFound { .. }) && err.to_string().contains("not found"),
        "{err}"
    );
    s.close().await?;
    Ok(())
}

//! Maintenance removes orphaned blobs, repairs reference counts, bounds the WAL, and reports
//! what it did; a failing step is reported while the others still run.

use crate::common;

use bitcraps_storage::{PersistentStorageManager, StorageConfig};
use common::{game, lobby, sqlite_fixture};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

#[tokio::test]
async fn maintenance_repairs_references_and_truncates_the_wal() -> Result {
    let f = sqlite_fixture();
    let s = PersistentStorageManager::open(f.config.clone()).await?;
    for i in 0..50 {
        s.store("lobbies", &format!("l-{i}"), &lobby()).await?;
        s.store("games", &format!("g-{i}"), &game("g", i)).await?;
    }
    s.close().await?;
    drop(s);
    // Damage the references behind the store's back: an orphaned blob and a wrong count.
    {
        let conn = rusqlite::Connection::open(f.config.database.data_path.join("bitcraps.db"))?;
        conn.execute_batch(
            "INSERT INTO blobs (hash, codec, raw_len, stored_len, refcount, data)
                 VALUES (randomblob(32), 0, 5, 5, 1, CAST('hello' AS BLOB));
             UPDATE blobs SET refcount = refcount + 7 WHERE id = (SELECT blob_id FROM records WHERE key = 'l-0');",
        )?;
    }
    let s = PersistentStorageManager::open(f.config.clone()).await?;
    let before = s.check_consistency().await?;
    assert_eq!(before.orphaned_blobs, 1);
    assert_eq!(before.refcount_mismatches, 2, "{before:?}");
    // Grow the WAL.
    let items: Vec<(String, _)> = (0..500).map(|i| (format!("x-{i}"), game("x", i))).collect();
    s.store_batch("games", &items).await?;
    assert!(s.statistics().await?.database_stats.wal_bytes > 0);

    let report = s.maintenance().await?;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.references.orphans_removed, 1);
    assert_eq!(report.references.orphan_bytes_removed, 5);
    // Regression: the orphan was also counted as a fixed reference count.
    assert_eq!(report.references.refcounts_fixed, 1);
    assert!(report.wal_checkpointed && report.database_optimized);
    assert!(report.before.wal_bytes > 0);
    assert_eq!(report.after.wal_bytes, 0, "the WAL is truncated");
    let backup = report.backup.as_ref().ok_or("no backup taken")?;
    assert_eq!(backup.snapshot.record_count, 600);
    assert_eq!(report.retention.as_ref().map(|r| r.kept.len()), Some(1));
    let names: Vec<&str> = report.steps.iter().map(|s| s.name).collect();
    assert_eq!(
        names,
        [
            "integrity check",
            "flush access statistics",
            "sweep expired records",
            "prune change log",
            "repair references",
            "optimize",
            "vacuum",
            "checkpoint",
            "cache upkeep",
            "verify contents",
            "backup",
            "retention"
        ]
    );
    assert!(s.check_consistency().await?.is_ok());
    let stats = s.statistics().await?;
    assert_eq!(stats.maintenance_runs, 1);
    assert!(stats.last_maintenance_at_ms.is_some());
    s.close().await?;
    Ok(())
}

#[tokio::test]
async fn vacuum_runs_past_the_free_page_threshold() -> Result {
    let f = sqlite_fixture();
    let mut config = f.config.clone();
    config.backup.on_maintenance = Some(false);
    config.maintenance.vacuum_free_percent = 10;
    let s = PersistentStorageManager::open(config).await?;
    let items: Vec<(String, _)> = (0..400).map(|i| (format!("g-{i}"), game("g", i))).collect();
    s.store_batch("games", &items).await?;
    for (k, _) in &items[..380] {
        s.delete("games", k).await?;
    }
    let report = s.maintenance().await?;
    assert!(report.vacuumed, "{:?}", report.steps);
    assert!(report.before.free_pages > 0);
    assert!(report.after.free_pages < report.before.free_pages);
    assert!(report.backup.is_none() && report.retention.is_none());
    s.close().await?;
    Ok(())
}

#[tokio::test]
async fn a_failing_step_is_reported_and_the_others_run() -> Result {
    let f = sqlite_fixture();
    let mut config: StorageConfig = f.config.clone();
    // A file where the backup directory should be: the backup step must fail.
    let blocker = f.config.database.data_path.join("not-a-dir");
    std::fs::create_dir_all(&f.config.database.data_path)?;
    std::fs::write(&blocker, b"x")?;
    config.backup.dir = Some(blocker.join("backups"));
    let s = PersistentStorageManager::open(config).await?;
    s.store("games", "g", &game("g", 1)).await?;
    let report = s.maintenance().await?;
    let failed: Vec<&str> = report
        .steps
        .iter()
        .filter(|s| !s.ok)
        .map(|s| s.name)
        .collect();
    assert!(failed.contains(&"backup"), "{:?}", report.steps);
    assert!(
        report.errors.iter().any(|e| e.starts_with("backup: ")),
        "{:?}",
        report.errors
    );
    assert!(report.wal_checkpointed && report.database_optimized);
    assert!(
        report
            .steps
            .iter()
            .any(|s| s.name == "cache upkeep" && s.ok)
    );
    s.close().await?;
    Ok(())
}

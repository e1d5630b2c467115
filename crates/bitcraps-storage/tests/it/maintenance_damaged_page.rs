//! Page-level damage: garbage over one leaf page of the records table of a closed store.
//! Maintenance must delete nothing (no blob removed as "orphaned" because the records that
//! name it are unreadable), return `Corruption` saying what to do next, take no backup and
//! keep every existing backup; the reference repair on its own refuses too.
//!
//! The regression: with one damaged B-tree page, maintenance removed the blobs of the records
//! it could no longer see, exited 0, then took a backup and let retention rotate good ones out.

use crate::common;

use std::path::{Path, PathBuf};

use bitcraps_storage::testing::Backend;
use bitcraps_storage::{PersistentStorageManager, StorageConfig, StorageError};
use common::{game, sqlite_backend, sqlite_fixture};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn db_path(config: &StorageConfig) -> PathBuf {
    config.database.data_path.join("bitcraps.db")
}

fn blob_count(db: &Path) -> Result<i64> {
    let conn = rusqlite::Connection::open(db)?;
    Ok(conn.query_row("SELECT count(*) FROM blobs", [], |r| r.get(0))?)
}

/// Every file of the backup directory with its bytes.
fn backup_files(dir: &Path) -> Result<Vec<(PathBuf, Vec<u8>)>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_file() {
            let bytes = std::fs::read(&path)?;
            files.push((path, bytes));
        }
    }
    files.sort();
    Ok(files)
}

#[tokio::test]
async fn maintenance_on_a_damaged_page_deletes_nothing_and_keeps_the_backups() -> Result {
    let f = sqlite_fixture();
    let mut config = f.config.clone();
    config.maintenance.scrub_interval = std::time::Duration::ZERO;
    let s = PersistentStorageManager::open(config.clone()).await?;
    let items: Vec<(String, _)> = (0..600)
        .map(|i| (format!("g-{i:04}"), game(&format!("g-{i}"), i)))
        .collect();
    s.store_batch("games", &items).await?;
    // A healthy maintenance run: one good backup to keep.
    let first = s.maintenance().await?;
    assert!(first.errors.is_empty(), "{:?}", first.errors);
    let kept = first.backup.ok_or("the healthy run took no backup")?;
    s.close().await?;
    drop(s);

    let db = db_path(&config);
    let backups_dir = config.database.data_path.join("backups");
    let backups_before = backup_files(&backups_dir)?;
    let blobs_before = blob_count(&db)?;
    assert!(blobs_before >= 600);
    let page = common::damage::damage_a_leaf(&db, "records")?;
    {
        let conn = rusqlite::Connection::open(&db)?;
        let check: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
        assert_ne!(
            check, "ok",
            "page {page} was damaged, the check must see it"
        );
    }

    let s = PersistentStorageManager::open(config.clone()).await?;
    let err = s
        .maintenance()
        .await
        .expect_err("a damaged store is refused");
    assert!(err.is_corruption(), "{err}");
    let text = err.to_string();
    assert!(text.contains("integrity check"), "{text}");
    assert!(text.contains("every existing backup was kept"), "{text}");
    assert!(text.contains("take a copy of its database files"), "{text}");
    // Reads of the damaged table say so with the same variant (SQLITE_CORRUPT).
    let stats = s.statistics().await;
    assert!(
        stats.as_ref().is_err_and(StorageError::is_corruption),
        "{stats:?}"
    );
    s.close().await?;
    drop(s);

    assert_eq!(blob_count(&db)?, blobs_before, "maintenance deleted blobs");
    assert_eq!(
        backup_files(&backups_dir)?,
        backups_before,
        "no new backup, none deleted"
    );
    assert!(backups_before.iter().any(|(p, _)| {
        p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(&kept.id))
    }));

    // The reference repair refuses on its own, whatever called it.
    let backend = sqlite_backend(&config)?;
    let refused = backend.maintenance().repair_references();
    match refused {
        Err(StorageError::Corruption { location, detail }) => {
            assert_eq!(location, "the records table");
            assert!(detail.contains("nothing was deleted"), "{detail}");
        }
        other => panic!("expected the repair to refuse, got {other:?}"),
    }
    backend.close()?;
    assert_eq!(blob_count(&db)?, blobs_before, "the repair deleted blobs");
    Ok(())
}

/// SQLite's corruption codes are `Corruption`, not `Database`: a file that is not a database.
#[tokio::test]
async fn a_file_that_is_not_a_database_is_corruption() -> Result {
    let f = sqlite_fixture();
    std::fs::create_dir_all(&f.config.database.data_path)?;
    std::fs::write(db_path(&f.config), vec![0x5a; 8192])?;
    let err = PersistentStorageManager::open(f.config.clone())
        .await
        .expect_err("garbage is not a store");
    assert!(err.is_corruption(), "{err:?}");
    assert!(err.to_string().contains("file is not a database"), "{err}");
    Ok(())
}

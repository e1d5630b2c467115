//! Hostile backup ids and hostile manifests, at every entry point (verify, restore, restore
//! into a store, list, retention, sweep): the data directory and everything outside the
//! backup directory stay byte-for-byte unchanged, and foreign manifests are left alone.
//!
//! Regressions: `verify_backup("/../..")` built `.verify-/../..` from the unchecked id and
//! removed it recursively (the data directory, with the live database) before saying "not a
//! backup id"; retention trusted the `id` inside a manifest and deleted files it named
//! outside the backup directory. Decoy directories named like the old work-directory
//! prefixes (`.verify-`, `.restore-into-`, `.tmp-`) are planted so those paths resolve.

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bitcraps_storage::{PersistentStorageManager, StorageConfig, StorageError};
use common::game;

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

const DAY: u64 = 86_400;
/// 2026-11-23T12:00:00Z.
const NOW: u64 = 20_780 * DAY + DAY / 2;

fn at(days_ago: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW - days_ago * DAY)
}

/// Ids that must never reach the file system.
fn hostile_ids(root: &Path) -> Vec<String> {
    let mut ids: Vec<String> = [
        "",
        ".",
        "..",
        "/",
        "/..",
        "../..",
        "/../..",
        "../../..",
        "./",
        "data",
        "../data",
        "backups",
        "x/../..",
        "a\0b",
        "\0",
        "..\\..",
        ".tmp-",
        "-",
        "*",
        "20261123T120000000Z-abcdef/../..",
        "20261123T120000000Z-abcdef\n",
        "20261123T120000000Z-ABCDEF",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    ids.push(root.display().to_string());
    ids.push(root.join("data").display().to_string());
    ids.push(root.join("outside").display().to_string());
    ids.push("a".repeat(5000));
    ids
}

/// Every path under `dir` except `skip`, with the blake3 of each file's bytes ("dir" for a
/// directory, the target for a link). SQLite's `-shm` file (the WAL index, shared memory
/// every open rewrites; no data) is listed but its bytes are not compared, and so is the
/// store's lock file (every open writes who holds it: pid, host, start time — so two opens a
/// second apart differ; this was a flaky failure).
fn tree(dir: &Path, skip: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(next) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&next) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path == skip {
                continue;
            }
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            let what = if meta.is_symlink() {
                format!("link {:?}", std::fs::read_link(&path).ok())
            } else if meta.is_dir() {
                todo.push(path.clone());
                "dir".to_owned()
            } else if path.to_string_lossy().ends_with("-shm") {
                "wal index".to_owned()
            } else if path.to_string_lossy().ends_with(".db.lock") {
                "store lock".to_owned()
            } else {
                let bytes = std::fs::read(&path).unwrap_or_default();
                blake3::hash(&bytes).to_hex().to_string()
            };
            out.insert(path, what);
        }
    }
    out
}

/// A store in `<root>/data` (backups in `<root>/data/backups`) with two real backups, a
/// canary directory `<root>/outside`, decoys and hostile manifests in the backup directory.
struct Scene {
    root: tempfile::TempDir,
    config: StorageConfig,
    /// Real backups, newest first.
    real: Vec<String>,
    /// Hostile files planted in the backup directory, with their bytes.
    planted: Vec<(PathBuf, Vec<u8>)>,
}

impl Scene {
    fn data(&self) -> PathBuf {
        self.root.path().join("data")
    }
    fn backups(&self) -> PathBuf {
        self.data().join("backups")
    }
    fn outside(&self) -> PathBuf {
        self.root.path().join("outside")
    }
    /// The whole tree outside the backup directory.
    fn snapshot(&self) -> BTreeMap<PathBuf, String> {
        tree(self.root.path(), &self.backups())
    }
    fn assert_planted_intact(&self) {
        for (path, bytes) in &self.planted {
            assert_eq!(
                std::fs::read(path).ok().as_ref(),
                Some(bytes),
                "{} was changed or removed",
                path.display()
            );
        }
    }
}

async fn scene() -> Result<Scene> {
    let root = tempfile::tempdir()?;
    let mut config = StorageConfig::with_data_path(root.path().join("data"));
    config.cache.size_mb = 4;
    config.database.max_connections = 2;
    config.backup.retention.within_days = 0;
    config.backup.retention.keep_last = 1;
    config.backup.retention.keep_daily = 0;
    config.backup.retention.keep_weekly = 0;
    config.backup.retention.keep_monthly = 0;
    let s = PersistentStorageManager::open(config.clone()).await?;
    let items: Vec<(String, _)> = (0..50).map(|i| (format!("g-{i}"), game("g", i))).collect();
    s.store_batch("games", &items).await?;
    let older = s.backups().with_clock(|| at(2)).create_backup().await?;
    let newer = s.backups().with_clock(|| at(1)).create_backup().await?;
    let dir = s.backups().directory().to_path_buf();
    s.close().await?;

    let outside = root.path().join("outside");
    std::fs::create_dir_all(outside.join("nested"))?;
    std::fs::write(outside.join("canary.json"), b"{\"keep\":true}")?;
    std::fs::write(outside.join("canary.db.zst"), b"not yours")?;
    std::fs::write(outside.join("nested/file"), b"deep")?;
    // Decoys: directories named like the old work-directory prefixes, so that an unchecked
    // `.verify-{id}` with id `/../..` resolves to the data directory.
    for decoy in [".verify-", ".restore-into-", ".tmp-", ".restore-"] {
        std::fs::create_dir_all(dir.join(decoy))?;
    }

    let mut planted = Vec::new();
    let mut plant = |name: &str, bytes: Vec<u8>| -> Result {
        let path = dir.join(name);
        std::fs::write(&path, &bytes)?;
        planted.push((path, bytes));
        Ok(())
    };
    let manifest = std::fs::read(dir.join(format!("{}.json", newer.id)))?;
    let template: serde_json::Value = serde_json::from_slice(&manifest)?;
    let with = |edit: &dyn Fn(&mut serde_json::Value)| -> Result<Vec<u8>> {
        let mut m = template.clone();
        edit(&mut m);
        Ok(serde_json::to_vec_pretty(&m)?)
    };
    // Valid names, ids inside pointing elsewhere (outside, the data directory, the other
    // real backup), and the newest times of all, so a trusting retention keeps them and
    // deletes what they name.
    let newest_ms = i64::try_from((NOW + 3600) * 1000)?;
    let targets = [
        (
            "20261123T130000000Z-000001",
            "../../outside/canary".to_owned(),
        ),
        ("20261123T130000000Z-000002", "../bitcraps".to_owned()),
        ("20261123T130000000Z-000003", "/..".to_owned()),
        ("20261123T130000000Z-000004", older.id.clone()),
    ];
    for (name, id) in &targets {
        plant(
            &format!("{name}.json"),
            with(&|m| {
                m["id"] = id.as_str().into();
                m["created_at_ms"] = newest_ms.into();
            })?,
        )?;
        // An archive beside it, as a real backup would have.
        plant(&format!("{name}.db.zst"), b"x".to_vec())?;
    }
    // Names that are not ids (a hidden one is not even listed).
    plant("notes.json", with(&|m| m["id"] = "notes".into())?)?;
    plant("..json", b"{}".to_vec())?;
    // Ours by name but unusable: no archive, unknown format, size mismatch, bad JSON.
    let own = |m: &mut serde_json::Value, id: &str, day: u64| {
        m["id"] = id.into();
        let ms = i64::try_from((NOW - day * DAY) * 1000 + 5).unwrap_or(0);
        m["created_at_ms"] = ms.into();
    };
    // Stamps consistent with their ids, newer than the real backups.
    plant(
        "20261123T120000005Z-00000a.json",
        with(&|m| own(m, "20261123T120000005Z-00000a", 0))?,
    )?;
    plant(
        "20261123T120000005Z-00000b.json",
        with(&|m| {
            own(m, "20261123T120000005Z-00000b", 0);
            m["format"] = 99.into();
        })?,
    )?;
    plant("20261123T120000005Z-00000b.db.zst", b"y".to_vec())?;
    plant(
        "20261123T120000005Z-00000c.json",
        with(&|m| own(m, "20261123T120000005Z-00000c", 0))?,
    )?;
    plant("20261123T120000005Z-00000c.db.zst", b"too short".to_vec())?;
    plant("20261123T120000005Z-00000d.json", b"{ not json".to_vec())?;
    Ok(Scene {
        root,
        config,
        real: vec![newer.id, older.id],
        planted,
    })
}

#[tokio::test]
async fn verify_refuses_hostile_ids_and_touches_nothing() -> Result {
    let scene = scene().await?;
    let before = scene.snapshot();
    let s = PersistentStorageManager::open(scene.config.clone()).await?;
    for id in hostile_ids(scene.root.path()) {
        let err = s.backups().verify_backup(&id).await.err();
        assert!(
            matches!(err, Some(StorageError::InvalidBackupId { .. })),
            "{id:?}: {err:?}"
        );
    }
    // Foreign and incomplete manifests are not verified, and not changed.
    for id in [
        "20261123T130000000Z-000001",
        "20261123T130000000Z-000004",
        "20261123T120000005Z-00000a",
        "20261123T120000005Z-00000b",
        "20261123T120000005Z-00000c",
        "20261123T120000005Z-00000d",
    ] {
        let err = s.backups().verify_backup(id).await.err();
        assert!(
            err.as_ref().is_some_and(StorageError::is_corruption),
            "{id}: {err:?}"
        );
    }
    let missing = s
        .backups()
        .verify_backup("20261123T120000000Z-fedcba")
        .await
        .err();
    assert!(
        matches!(missing, Some(StorageError::BackupNotFound { .. })),
        "{missing:?}"
    );
    // The real backups still verify.
    for id in &scene.real {
        s.backups().verify_backup(id).await?;
    }
    s.close().await?;
    assert_eq!(scene.snapshot(), before);
    scene.assert_planted_intact();
    Ok(())
}

#[tokio::test]
async fn restore_refuses_hostile_ids_and_targets_before_any_work() -> Result {
    let scene = scene().await?;
    std::fs::write(scene.outside().join("occupied"), b"x")?;
    let before = scene.snapshot();
    let s = PersistentStorageManager::open(scene.config.clone()).await?;
    let fresh = scene.root.path().join("fresh");
    for id in hostile_ids(scene.root.path()) {
        let err = s.backups().restore_backup(&id, &fresh).await.err();
        assert!(
            matches!(err, Some(StorageError::InvalidBackupId { .. })),
            "{id:?}: {err:?}"
        );
        let target = StorageConfig::with_data_path(scene.root.path().join("into"));
        let err = s.backups().restore_backup_into(&id, &target).await.err();
        assert!(
            matches!(err, Some(StorageError::InvalidBackupId { .. })),
            "{id:?}: {err:?}"
        );
    }
    let real = &scene.real[0];
    // The live store, a non-empty directory, a file: TargetNotEmpty.
    for target in [
        scene.data(),
        scene.outside(),
        scene.outside().join("canary.json"),
    ] {
        let err = s.backups().restore_backup(real, &target).await.err();
        assert!(
            matches!(err, Some(StorageError::TargetNotEmpty { .. })),
            "{}: {err:?}",
            target.display()
        );
    }
    // Inside the live store or the backup directory, also spelled with `..`.
    for target in [
        scene.data().join("restored"),
        scene.backups().join("restored"),
        scene.outside().join("../data/restored"),
    ] {
        let err = s.backups().restore_backup(real, &target).await.err();
        assert!(
            matches!(err, Some(StorageError::Config(ref m)) if m.contains("inside")),
            "{}: {err:?}",
            target.display()
        );
    }
    // A missing backup is "not found", not a configuration error.
    let err = s
        .backups()
        .restore_backup("20261123T120000000Z-fedcba", &fresh)
        .await
        .err();
    assert!(
        matches!(err, Some(StorageError::BackupNotFound { .. })),
        "{err:?}"
    );
    // A foreign manifest is not restored from.
    let err = s
        .backups()
        .restore_backup("20261123T130000000Z-000004", &fresh)
        .await
        .err();
    assert!(
        err.as_ref().is_some_and(StorageError::is_corruption),
        "{err:?}"
    );
    assert!(!fresh.exists());
    s.close().await?;
    assert_eq!(scene.snapshot(), before);
    scene.assert_planted_intact();
    // No work directory of a refused restore is left in the backup directory.
    let left: Vec<String> = std::fs::read_dir(scene.backups())?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".restore") && n.len() > ".restore-into-".len())
        .collect();
    assert!(left.is_empty(), "{left:?}");
    Ok(())
}

#[tokio::test]
async fn restore_into_a_store_that_holds_data_is_target_not_empty() -> Result {
    let scene = scene().await?;
    let other = tempfile::tempdir()?;
    let target = StorageConfig::with_data_path(other.path());
    let t = PersistentStorageManager::open(target.clone()).await?;
    t.store("games", "mine", &game("g", 1)).await?;
    t.close().await?;
    let s = PersistentStorageManager::open(scene.config.clone()).await?;
    let err = s
        .backups()
        .restore_backup_into(&scene.real[0], &target)
        .await
        .err();
    assert!(
        matches!(err, Some(StorageError::TargetNotEmpty { .. })),
        "{err:?}"
    );
    s.close().await?;
    Ok(())
}

#[tokio::test]
async fn list_reports_incomplete_and_foreign_and_changes_nothing() -> Result {
    let scene = scene().await?;
    let before = scene.snapshot();
    let s = PersistentStorageManager::open(scene.config.clone()).await?;
    let listing = s.backups().scan_backups().await?;
    let complete: Vec<&str> = listing.complete.iter().map(|b| b.id.as_str()).collect();
    assert_eq!(
        complete,
        scene.real.iter().map(String::as_str).collect::<Vec<_>>()
    );
    let incomplete: Vec<&str> = listing.incomplete.iter().map(|b| b.id.as_str()).collect();
    assert_eq!(
        incomplete,
        [
            "20261123T120000005Z-00000d",
            "20261123T120000005Z-00000c",
            "20261123T120000005Z-00000b",
            "20261123T120000005Z-00000a",
        ]
    );
    let foreign: Vec<&str> = listing.foreign.iter().map(|f| f.file.as_str()).collect();
    assert_eq!(
        foreign,
        [
            "20261123T130000000Z-000001.json",
            "20261123T130000000Z-000002.json",
            "20261123T130000000Z-000003.json",
            "20261123T130000000Z-000004.json",
            "notes.json",
        ]
    );
    assert_eq!(
        s.backups()
            .list_backups()
            .await?
            .into_iter()
            .map(|b| b.id)
            .collect::<Vec<_>>(),
        scene.real
    );
    s.close().await?;
    assert_eq!(scene.snapshot(), before);
    scene.assert_planted_intact();
    Ok(())
}

#[tokio::test]
async fn retention_counts_only_complete_backups_and_leaves_the_rest() -> Result {
    let scene = scene().await?;
    let before = scene.snapshot();
    let s = PersistentStorageManager::open(scene.config.clone()).await?;
    // keep_last = 1: the newest *complete* backup is kept, the older one deleted. Hostile
    // and incomplete manifests, all newer, neither take the slot nor are deleted.
    let outcome = s.backups().with_clock(|| at(0)).apply_retention().await?;
    assert_eq!(outcome.kept, vec![scene.real[0].clone()]);
    assert_eq!(outcome.deleted, vec![scene.real[1].clone()]);
    // Run again: nothing fails, nothing more is deleted.
    let again = s.backups().with_clock(|| at(0)).apply_retention().await?;
    assert_eq!(again.kept, vec![scene.real[0].clone()]);
    assert!(again.deleted.is_empty());
    s.close().await?;
    assert_eq!(scene.snapshot(), before);
    scene.assert_planted_intact();
    Ok(())
}

#[cfg(unix)]
#[tokio::test]
async fn sweep_removes_only_our_stale_temporaries() -> Result {
    let scene = scene().await?;
    let dir = scene.backups();
    let id = "20261123T120000000Z-abcdef";
    // Stale: an old-version work directory and temporary archive, and a work directory
    // of this version whose run died (lock file free).
    std::fs::create_dir(dir.join(format!(".tmp-{id}")))?;
    std::fs::write(dir.join(format!(".tmp-{id}/bitcraps.db")), vec![7u8; 4096])?;
    std::fs::write(dir.join(format!(".{id}.db.zst.tmp-4242")), vec![1u8; 100])?;
    let dead = dir.join(format!(".verify-{id}-0123abcd"));
    std::fs::create_dir(&dead)?;
    std::fs::write(dead.join(".lock"), b"")?;
    std::fs::write(dead.join("bitcraps.db"), vec![0u8; 1000])?;
    // Alive: a work directory whose lock is held (as a running verify would).
    let alive = dir.join(format!(".restore-{id}-89abcdef"));
    std::fs::create_dir(&alive)?;
    let lock = std::fs::File::create(alive.join(".lock"))?;
    lock.try_lock()?;
    // Not ours: a link named like a work directory, pointing outside; decoys.
    std::os::unix::fs::symlink(scene.outside(), dir.join(format!(".tmp-{id}-fedcba98")))?;
    std::fs::create_dir(dir.join(".tmp-x"))?;
    std::fs::write(dir.join(".tmp-x/keep"), b"k")?;
    let before = scene.snapshot();

    let s = PersistentStorageManager::open(scene.config.clone()).await?;
    let report = s.backups().sweep_temporaries().await?;
    let mut removed = report.removed.clone();
    removed.sort();
    assert_eq!(
        removed,
        [
            format!(".{id}.db.zst.tmp-4242"),
            format!(".tmp-{id}"),
            format!(".verify-{id}-0123abcd"),
        ]
    );
    assert_eq!(report.bytes_freed, 4096 + 100 + 1000);
    assert!(
        alive.join(".lock").exists(),
        "a live run's directory was swept"
    );
    assert!(dir.join(".tmp-x/keep").exists());
    assert!(
        std::fs::symlink_metadata(dir.join(format!(".tmp-{id}-fedcba98")))?.is_symlink(),
        "the link must stay"
    );
    drop(lock);
    s.close().await?;
    assert_eq!(scene.snapshot(), before);
    scene.assert_planted_intact();
    Ok(())
}

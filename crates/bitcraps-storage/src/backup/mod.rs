//! Backups: consistent online copies, compressed and checksummed, verified before restore,
//! pruned by retention rules.
//!
//! This layer is backend-independent: it takes snapshots and restores them through the
//! backend seam ([`Maintenance`](crate::backend::Maintenance)), reads snapshot files only
//! through [`backend::snapshot`](crate::backend::snapshot), and opens restore targets through
//! the same opener as `PersistentStorageManager::open`. It names no engine and no driver.
//!
//! Layout of the backup directory (default `<data_path>/backups/`): for each backup an
//! archive `<id>.db.zst` (a zstd-compressed snapshot) and a manifest `<id>.json`
//! ([`BackupInfo`]), both written through the crate's one durable-write helper
//! (`fs::write_durably`) inside the run's work directory and renamed out, the manifest last.
//!
//! Trust: an id (from a caller, a command line or a file name) becomes a path only through
//! `Layout::paths` (`layout.rs`), which refuses anything outside the id grammar; a manifest counts
//! only when the id inside equals its file name and its fields describe the archive beside it
//! (`scan.rs`). Work directories (`.tmp-`, `.verify-`, `.restore-`, `.restore-into-<id>-<nonce>`)
//! are new direct children of the backup directory, locked while their run lives; a run
//! removes only its own, and the sweep (`sweep.rs`) removes those of runs that died.

mod archive;
mod layout;
mod manifest;
mod marks;
mod restore;
pub mod retention;
mod scan;
mod sweep;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use serde::Serialize;

pub(crate) use manifest::millis;
pub use manifest::{BackupInfo, MANIFEST_FORMAT};
pub(crate) use marks::Marks;

/// RFC 3339 UTC with milliseconds of a time in milliseconds since the epoch.
pub(crate) fn utc_stamp(ms: i64) -> String {
    manifest::stamps(ms).1
}
pub use retention::RetentionPolicy;
pub use scan::{BackupListing, ForeignManifest, IncompleteBackup};
pub use sweep::SweepReport;

use crate::backend::{Backend, SnapshotInfo, snapshot};
use crate::config::DEFAULT_DATABASE_FILE;
use crate::crypto::Keyring;
use crate::error::{Result, StorageError};
use crate::observe::Operation;
use crate::rt::blocking;
use layout::{BackupPaths, Layout, WorkKind};
use scan::Unusable;

/// A source of "now", injectable for tests.
pub type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// The result of a successful verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct BackupVerification {
    /// The backup.
    pub id: String,
    /// Checked size of the archive.
    pub archive_bytes: u64,
    /// Size of the decompressed database.
    pub database_bytes: u64,
    /// What the decompressed database holds (equal to the manifest's counts).
    pub snapshot: SnapshotInfo,
    /// The integrity check's messages (`["ok"]`).
    pub integrity: Vec<String>,
    /// Blobs decompressed (with their dictionaries) and hash-checked: all of them.
    pub blobs_decoded: u64,
    /// Bytes of documents those blobs decoded to.
    pub bytes_decoded: u64,
}

/// What a restore produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct RestoreReport {
    /// The backup restored.
    pub id: String,
    /// The new data directory; open it with `StorageConfig::with_data_path`.
    pub target: PathBuf,
    /// What the restored database holds.
    pub snapshot: SnapshotInfo,
}

/// What a restore into a store's database ([`BackupManager::restore_backup_into`]) produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct StoreRestoreReport {
    /// The backup restored.
    pub id: String,
    /// What the restored database holds.
    pub snapshot: SnapshotInfo,
}

/// What retention kept and deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct RetentionOutcome {
    /// Ids kept, newest first.
    pub kept: Vec<String>,
    /// Ids deleted, newest first.
    pub deleted: Vec<String>,
}

struct Inner {
    backend: Arc<dyn Backend>,
    layout: Layout,
    live_dir: PathBuf,
    policy: RetentionPolicy,
    /// `backup.max_total_bytes`: the most the complete backups may hold together.
    max_total_bytes: Option<u64>,
    /// The store's keyring when it is encrypted: backups are checked with it.
    keyring: Option<Arc<Keyring>>,
    /// The newest backup taken and verified (for statistics and metrics).
    marks: Marks,
}

/// Creates, lists, verifies, restores and prunes backups. Cheap to clone.
#[derive(Clone)]
pub struct BackupManager {
    inner: Arc<Inner>,
    clock: Clock,
}

impl std::fmt::Debug for BackupManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackupManager")
            .field("dir", &self.inner.layout.dir())
            .field("policy", &self.inner.policy)
            .finish_non_exhaustive()
    }
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> StorageError + '_ {
    move |e| StorageError::io(path, e)
}

fn location(id: &str) -> String {
    format!("backup {id}")
}

static SEQUENCE: AtomicU64 = AtomicU64::new(0);

impl BackupManager {
    pub(crate) fn new(
        backend: Arc<dyn Backend>,
        dir: PathBuf,
        live_dir: PathBuf,
        policy: RetentionPolicy,
        max_total_bytes: Option<u64>,
        keyring: Option<Arc<Keyring>>,
    ) -> Self {
        BackupManager {
            inner: Arc::new(Inner {
                backend,
                keyring,
                layout: Layout::new(dir),
                live_dir,
                policy,
                max_total_bytes,
                marks: Marks::default(),
            }),
            clock: Arc::new(SystemTime::now),
        }
    }

    /// The same manager reading time from `clock` (for tests of retention and ids).
    #[must_use]
    pub fn with_clock(&self, clock: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        BackupManager {
            inner: Arc::clone(&self.inner),
            clock: Arc::new(clock),
        }
    }

    /// The backup directory.
    pub fn directory(&self) -> &Path {
        self.inner.layout.dir()
    }

    /// The retention rules in force.
    pub fn policy(&self) -> RetentionPolicy {
        self.inner.policy
    }

    /// Takes a consistent online backup while writers keep writing. Stale temporaries of
    /// interrupted runs are swept first ([`BackupManager::sweep_temporaries`]).
    pub async fn create_backup(&self) -> Result<BackupInfo> {
        let this = self.clone();
        let work = blocking(move || this.create_blocking());
        let backend = self.inner.backend.name();
        let info = crate::observe::store_wide(backend, Operation::Backup, work).await?;
        self.inner.marks.created(info.created_at_ms);
        Ok(info)
    }

    /// Fills the backup times of `statistics` (the directory is listed once per manager
    /// when no backup was taken yet in this process).
    pub(crate) async fn fill_statistics(&self, statistics: &mut crate::StorageStatistics) {
        if !self.inner.marks.scanned()
            && let Ok(backups) = self.list_backups().await
            && let Some(newest) = backups.iter().map(|b| b.created_at_ms).max()
        {
            self.inner.marks.created(newest);
        }
        statistics.last_backup_at_ms = self.inner.marks.last_created();
        statistics.last_verified_backup_at_ms = self.inner.marks.last_verified();
    }

    fn create_blocking(&self) -> Result<BackupInfo> {
        let layout = &self.inner.layout;
        if let Err(e) = sweep::sweep(layout.dir()) {
            tracing::warn!(error = %e, "sweeping stale backup temporaries failed");
        }
        let created_at_ms = manifest::millis((self.clock)());
        let (stamp, created_at) = manifest::stamps(created_at_ms);
        let salt = format!(
            "{created_at_ms}:{}:{}",
            std::process::id(),
            SEQUENCE.fetch_add(1, Ordering::Relaxed)
        );
        let suffix: String = blake3::hash(salt.as_bytes())
            .to_hex()
            .chars()
            .take(6)
            .collect();
        let paths = layout.paths(&format!("{stamp}-{suffix}"))?;
        let id = paths.id.clone();
        let work = layout.work_dir(WorkKind::Create, &paths)?;
        let copy = work.path().join(DEFAULT_DATABASE_FILE);
        let snapshot = self.inner.backend.maintenance().snapshot(&copy)?;
        let database_bytes = std::fs::metadata(&copy).map_err(io(&copy))?.len();
        // Everything is written inside the work directory and renamed out when complete.
        let staged_archive = work.path().join(format!("{id}.db.zst"));
        let (archive_bytes, archive_blake3) = archive::pack(&copy, &staged_archive)?;
        std::fs::remove_file(&copy).map_err(io(&copy))?;
        let info = BackupInfo {
            format: MANIFEST_FORMAT,
            id: id.clone(),
            created_at_ms,
            created_at,
            backend: self.inner.backend.name().into(),
            snapshot,
            database_bytes,
            archive_bytes,
            archive_blake3,
        };
        let json = serde_json::to_vec_pretty(&info).map_err(|e| {
            StorageError::Task(format!("cannot serialize the manifest of {id}: {e}"))
        })?;
        let staged_manifest = work.path().join(format!("{id}.json"));
        crate::fs::write_bytes_durably(&staged_manifest, &json)?;
        std::fs::rename(&staged_archive, &paths.archive).map_err(io(&paths.archive))?;
        crate::fs::sync_dir(layout.dir())?;
        if let Err(e) = std::fs::rename(&staged_manifest, &paths.manifest) {
            let _ = std::fs::remove_file(&paths.archive);
            return Err(StorageError::io(&paths.manifest, e));
        }
        crate::fs::sync_dir(layout.dir())?;
        drop(work);
        if let Some(cap) = self.inner.max_total_bytes {
            if archive_bytes > cap {
                self.delete(&id)?;
                crate::fs::sync_dir(layout.dir())?;
                return Err(StorageError::BackupTooLarge {
                    archive_bytes,
                    max_total_bytes: cap,
                });
            }
            // Older backups make room for the new one (never the other way round).
            self.retention_blocking(true, false)?;
        }
        tracing::info!(%id, archive_bytes, records = info.snapshot.record_count, "backup created");
        Ok(info)
    }

    /// Deletes a complete backup: the manifest first, so a crash in between leaves an
    /// unlisted archive (swept later), never a listed backup without its archive.
    fn delete(&self, id: &str) -> Result<()> {
        let paths = self.inner.layout.paths(id)?;
        std::fs::remove_file(&paths.manifest).map_err(io(&paths.manifest))?;
        match std::fs::remove_file(&paths.archive) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(StorageError::io(&paths.archive, e))
            }
            _ => Ok(()),
        }
    }

    /// Removes what interrupted (killed) backups, verifications and restores left in the
    /// backup directory: only entries whose whole name is one this crate creates, that are
    /// older than this call, and whose run is gone (its lock is free). Reports what was
    /// removed and the bytes freed.
    pub async fn sweep_temporaries(&self) -> Result<SweepReport> {
        let this = self.clone();
        blocking(move || sweep::sweep(this.inner.layout.dir())).await
    }

    /// Every complete backup, newest first (see [`BackupManager::scan_backups`] for the
    /// incomplete ones and foreign manifests).
    pub async fn list_backups(&self) -> Result<Vec<BackupInfo>> {
        Ok(self.scan_backups().await?.complete)
    }

    /// Everything in the backup directory that looks like a backup: complete backups,
    /// incomplete ones (archive or manifest missing, manifest fields invalid), and foreign
    /// manifests (a name that is not an id, or an id inside that differs from the name).
    /// Changes nothing.
    pub async fn scan_backups(&self) -> Result<BackupListing> {
        let this = self.clone();
        blocking(move || scan::scan(&this.inner.layout)).await
    }

    /// Checks a backup end to end: archive size and checksum, decompression, the engine's
    /// integrity check, exact references, and counts equal to the manifest's. A damaged,
    /// truncated or incomplete backup is a [`StorageError::Corruption`] naming it; an id
    /// outside the id grammar is [`StorageError::InvalidBackupId`] and a backup that does
    /// not exist [`StorageError::BackupNotFound`], both before anything is written.
    pub async fn verify_backup(&self, id: &str) -> Result<BackupVerification> {
        let this = self.clone();
        let id = id.to_owned();
        let backend = self.inner.backend.name();
        let work = blocking(move || {
            let paths = this.inner.layout.paths(&id)?;
            let info = this.usable(&paths)?;
            let work = this.inner.layout.work_dir(WorkKind::Verify, &paths)?;
            let verified = this.unpack_verified(&paths, &info, work.path())?;
            this.inner.marks.verified(info.created_at_ms);
            Ok(verified)
        });
        crate::observe::store_wide(backend, Operation::VerifyBackup, work).await
    }

    /// The manifest of a backup, if it is usable; else why not, as a typed error.
    fn usable(&self, paths: &BackupPaths) -> Result<BackupInfo> {
        let location = location(&paths.id);
        if !scan::exists(&paths.manifest) {
            return Err(if scan::exists(&paths.archive) {
                StorageError::corruption(location, "incomplete: the manifest is missing")
            } else {
                StorageError::BackupNotFound {
                    id: paths.id.clone(),
                }
            });
        }
        scan::load(paths).map_err(|why| match why {
            Unusable::Incomplete(reason) => StorageError::corruption(location, reason),
            Unusable::Foreign(reason) => StorageError::corruption(
                location,
                format!("the manifest is not this backup's ({reason}); it was left alone"),
            ),
        })
    }

    /// Unpacks the backup into `dir` as `bitcraps.db` and verifies it there.
    fn unpack_verified(
        &self,
        paths: &BackupPaths,
        info: &BackupInfo,
        dir: &Path,
    ) -> Result<BackupVerification> {
        let id = &paths.id;
        let location = location(id);
        let archive = &paths.archive;
        let (size, hash) = match archive::hash_file(archive) {
            Ok(found) => found,
            Err(StorageError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                return Err(StorageError::corruption(location, "the archive is missing"));
            }
            Err(e) => return Err(e),
        };
        if size != info.archive_bytes {
            return Err(StorageError::corruption(
                location,
                format!(
                    "the archive is {size} bytes but the manifest says {} (truncated or replaced)",
                    info.archive_bytes
                ),
            ));
        }
        if hash != info.archive_blake3 {
            return Err(StorageError::corruption(
                location,
                format!(
                    "archive checksum mismatch: blake3 {hash}, manifest {}",
                    info.archive_blake3
                ),
            ));
        }
        let db = dir.join(DEFAULT_DATABASE_FILE);
        let database_bytes = archive::unpack(archive, &db, &location)?;
        let keyring = self.inner.keyring.as_ref();
        let does_not_open = |e: StorageError| {
            StorageError::corruption(&location, format!("the database copy does not open: {e}"))
        };
        // A backup taken at an older schema version is checked at the current one (the
        // checks read its columns), in the unpacked copy; the manifest names the version it
        // was taken at.
        let taken_at = snapshot::schema_version(&db).map_err(does_not_open)?;
        // (Version 0 is no store's: a file that is not a store stays as it is, and fails.)
        if (1..snapshot::current_version()).contains(&taken_at) {
            snapshot::upgrade(&db).map_err(does_not_open)?;
        }
        let (mut snapshot, report) =
            snapshot::inspect_with(&db, true, keyring).map_err(does_not_open)?;
        snapshot.schema_version = taken_at;
        let report = report.unwrap_or_default();
        if !report.is_ok() {
            return Err(StorageError::corruption(
                location,
                format!("the database copy fails its checks: {}", report.problems()),
            ));
        }
        if snapshot != info.snapshot {
            return Err(StorageError::corruption(
                location,
                format!(
                    "the copy holds {snapshot:?} but the manifest says {:?}",
                    info.snapshot
                ),
            ));
        }
        // `inspect(_, true)` ran the deep check: every document decoded with its dictionary and
        // its content hash checked (`verify.rs`, the same check as the live store's).
        Ok(BackupVerification {
            id: id.clone(),
            archive_bytes: size,
            database_bytes,
            snapshot,
            integrity: report.integrity,
            blobs_decoded: report.blobs_verified,
            bytes_decoded: report.bytes_verified,
        })
    }

    /// Deletes the backups no retention rule keeps, and then, with `backup.max_total_bytes`,
    /// the oldest of those kept until the rest fit under it (the newest is always kept).
    pub async fn apply_retention(&self) -> Result<RetentionOutcome> {
        let this = self.clone();
        blocking(move || this.retention_blocking(true, true)).await
    }

    /// What [`apply_retention`](Self::apply_retention) would keep and delete now, deleting
    /// nothing (`backup prune --dry-run`).
    pub async fn plan_retention(&self) -> Result<RetentionOutcome> {
        let this = self.clone();
        blocking(move || this.retention_blocking(false, true)).await
    }

    /// Retention: the rules (when `rules`), then the size cap; deletes only when `delete`.
    fn retention_blocking(&self, delete: bool, rules: bool) -> Result<RetentionOutcome> {
        // Only complete backups are candidates: incomplete ones are never counted as kept
        // (and never deleted), foreign manifests never touched.
        let backups = scan::scan(&self.inner.layout)?.complete;
        let times: Vec<SystemTime> = backups.iter().map(BackupInfo::created).collect();
        let mut keep = if rules {
            retention::keep(&times, (self.clock)(), &self.inner.policy)
        } else {
            (0..backups.len()).collect()
        };
        if let Some(cap) = self.inner.max_total_bytes {
            let kept: Vec<usize> = keep.iter().copied().collect();
            let sizes: Vec<(SystemTime, u64)> = kept
                .iter()
                .filter_map(|&i| backups.get(i).map(|b| (b.created(), b.archive_bytes)))
                .collect();
            for dropped in retention::over_cap(&sizes, cap) {
                if let Some(i) = kept.get(dropped) {
                    keep.remove(i);
                }
            }
        }
        let mut outcome = RetentionOutcome::default();
        for (i, backup) in backups.into_iter().enumerate() {
            if keep.contains(&i) {
                outcome.kept.push(backup.id);
                continue;
            }
            if delete {
                self.delete(&backup.id)?;
            }
            outcome.deleted.push(backup.id);
        }
        if delete && !outcome.deleted.is_empty() {
            crate::fs::sync_dir(self.inner.layout.dir())?;
        }
        Ok(outcome)
    }
}

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
//! ([`BackupInfo`]), both written through the crate's one durable-write helper (`fs::write_durably`), the manifest last.
//! A backup without a manifest is incomplete and not listed.

mod archive;
mod manifest;
pub mod retention;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use serde::Serialize;

pub use manifest::{BackupInfo, MANIFEST_FORMAT};
pub use retention::RetentionPolicy;

use crate::backend::{Backend, SnapshotInfo, snapshot};
use crate::config::{DEFAULT_DATABASE_FILE, StorageConfig};
use crate::error::{Result, StorageError};
use crate::rt::blocking;

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
    dir: PathBuf,
    live_dir: PathBuf,
    policy: RetentionPolicy,
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
            .field("dir", &self.inner.dir)
            .field("policy", &self.inner.policy)
            .finish_non_exhaustive()
    }
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> StorageError + '_ {
    move |e| StorageError::io(path, e)
}

/// A directory that is removed when dropped (work areas of create, verify and restore).
struct WorkDir(PathBuf);

impl WorkDir {
    fn create(path: PathBuf) -> Result<Self> {
        if path.exists() {
            std::fs::remove_dir_all(&path).map_err(io(&path))?;
        }
        crate::fs::create_private_dir_all(&path)?;
        Ok(WorkDir(path))
    }

    /// Gives the directory up without removing it.
    fn keep(mut self) -> PathBuf {
        std::mem::take(&mut self.0)
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if !self.0.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

static SEQUENCE: AtomicU64 = AtomicU64::new(0);

impl BackupManager {
    pub(crate) fn new(
        backend: Arc<dyn Backend>,
        dir: PathBuf,
        live_dir: PathBuf,
        policy: RetentionPolicy,
    ) -> Self {
        BackupManager {
            inner: Arc::new(Inner {
                backend,
                dir,
                live_dir,
                policy,
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
        &self.inner.dir
    }

    /// The retention rules in force.
    pub fn policy(&self) -> RetentionPolicy {
        self.inner.policy
    }

    fn archive_path(&self, id: &str) -> PathBuf {
        self.inner.dir.join(format!("{id}.db.zst"))
    }

    fn manifest_path(&self, id: &str) -> PathBuf {
        self.inner.dir.join(format!("{id}.json"))
    }

    /// Takes a consistent online backup while writers keep writing.
    pub async fn create_backup(&self) -> Result<BackupInfo> {
        let this = self.clone();
        blocking(move || this.create_blocking()).await
    }

    fn create_blocking(&self) -> Result<BackupInfo> {
        let dir = &self.inner.dir;
        crate::fs::create_private_dir_all(dir)?;
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
        let id = format!("{stamp}-{suffix}");
        let work = WorkDir::create(dir.join(format!(".tmp-{id}")))?;
        let copy = work.0.join(DEFAULT_DATABASE_FILE);
        let snapshot = self.inner.backend.maintenance().snapshot(&copy)?;
        let database_bytes = std::fs::metadata(&copy).map_err(io(&copy))?.len();
        let archive = self.archive_path(&id);
        let (archive_bytes, archive_blake3) = archive::pack(&copy, &archive)?;
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
        if let Err(e) = crate::fs::write_bytes_durably(&self.manifest_path(&id), &json) {
            let _ = std::fs::remove_file(&archive);
            return Err(e);
        }
        tracing::info!(%id, archive_bytes, records = info.snapshot.record_count, "backup created");
        Ok(info)
    }

    /// Every complete backup, newest first.
    pub async fn list_backups(&self) -> Result<Vec<BackupInfo>> {
        let this = self.clone();
        blocking(move || this.list_blocking()).await
    }

    fn list_blocking(&self) -> Result<Vec<BackupInfo>> {
        let dir = &self.inner.dir;
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(StorageError::io(dir, e)),
        };
        let mut backups = Vec::new();
        for entry in entries {
            let path = entry.map_err(io(dir))?.path();
            let is_manifest = path.extension().is_some_and(|e| e == "json")
                && !path
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'));
            if is_manifest {
                match manifest::read(&path) {
                    Ok(info) => backups.push(info),
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "skipping a manifest")
                    }
                }
            }
        }
        backups.sort_by(|a, b| b.id.cmp(&a.id));
        Ok(backups)
    }

    /// Checks a backup end to end: archive size and checksum, decompression, the engine's
    /// integrity check, exact references, and counts equal to the manifest's. A damaged or
    /// truncated backup is a [`StorageError::Corruption`] naming it.
    pub async fn verify_backup(&self, id: &str) -> Result<BackupVerification> {
        let this = self.clone();
        let id = id.to_owned();
        blocking(move || {
            let work = WorkDir::create(this.inner.dir.join(format!(".verify-{id}")))?;
            this.unpack_verified(&id, &work.0)
        })
        .await
    }

    /// Unpacks backup `id` into `dir` as `bitcraps.db` and verifies it there.
    fn unpack_verified(&self, id: &str, dir: &Path) -> Result<BackupVerification> {
        manifest::check_id(id)?;
        let location = format!("backup {id}");
        let manifest_path = self.manifest_path(id);
        if !manifest_path.exists() {
            return Err(StorageError::Config(format!(
                "no backup {id} in {}",
                self.inner.dir.display()
            )));
        }
        let info = manifest::read(&manifest_path)?;
        let archive = self.archive_path(id);
        let (size, hash) = match archive::hash_file(&archive) {
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
        let database_bytes = archive::unpack(&archive, &db, &location)?;
        let (snapshot, report) = snapshot::inspect(&db, true).map_err(|e| {
            StorageError::corruption(&location, format!("the database copy does not open: {e}"))
        })?;
        let report = report.unwrap_or_default();
        if !report.is_ok() {
            return Err(StorageError::corruption(
                location,
                format!("the database copy fails its checks: {report:?}"),
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
        Ok(BackupVerification {
            id: id.to_owned(),
            archive_bytes: size,
            database_bytes,
            snapshot,
            integrity: report.integrity,
        })
    }

    /// Restores backup `id` into the new directory `target_dir` (which must not exist or be
    /// empty, and must not be the live store). The backup is verified in a staging directory
    /// beside the target and renamed into place only then, so a half-restored store is never
    /// visible.
    pub async fn restore_backup(&self, id: &str, target_dir: &Path) -> Result<RestoreReport> {
        let this = self.clone();
        let (id, target) = (id.to_owned(), target_dir.to_path_buf());
        blocking(move || this.restore_blocking(&id, &target)).await
    }

    fn restore_blocking(&self, id: &str, target: &Path) -> Result<RestoreReport> {
        manifest::check_id(id)?;
        let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        };
        if same(target, &self.inner.live_dir) {
            return Err(StorageError::Config(format!(
                "refusing to restore over the live store at {}",
                target.display()
            )));
        }
        if target.exists() {
            let mut entries = std::fs::read_dir(target).map_err(io(target))?;
            if entries.next().is_some() {
                return Err(StorageError::Config(format!(
                    "restore target {} is not empty",
                    target.display()
                )));
            }
        }
        let parent = target
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        if !parent.exists() {
            crate::fs::create_private_dir_all(&parent)?;
        }
        let name = target
            .file_name()
            .ok_or_else(|| StorageError::Config(format!("{} has no name", target.display())))?;
        let staging =
            WorkDir::create(parent.join(format!(".restore-{}-{id}", name.to_string_lossy())))?;
        let verified = self.unpack_verified(id, &staging.0)?;
        crate::fs::sync_dir(&staging.0)?;
        if target.exists() {
            std::fs::remove_dir(target).map_err(io(target))?;
        }
        let staged = staging.keep();
        std::fs::rename(&staged, target).map_err(|e| {
            let _ = std::fs::remove_dir_all(&staged);
            StorageError::io(target, e)
        })?;
        crate::fs::sync_dir(&parent)?;
        tracing::info!(%id, target = %target.display(), "backup restored");
        Ok(RestoreReport {
            id: id.to_owned(),
            target: target.to_path_buf(),
            snapshot: verified.snapshot,
        })
    }

    /// [`BackupManager::restore_backup_into`] the store a database URL names, with default
    /// settings otherwise (`postgres://…` for an empty PostgreSQL schema).
    pub async fn restore_backup_to_url(&self, id: &str, url: &str) -> Result<StoreRestoreReport> {
        let target = StorageConfig::from_url(url)?;
        self.restore_backup_into(id, &target).await
    }

    /// Restores backup `id` into the database of the store `target` describes (its
    /// `database_url`, e.g. a PostgreSQL database/schema, or its SQLite file), opened the way
    /// `PersistentStorageManager::open` opens it, with the target's `connection_timeout` and
    /// `max_connections`. The store must not be open elsewhere.
    ///
    /// The backup is verified first, brought to the current schema (in a scratch copy), then
    /// loaded in one transaction into a database that must be empty (its tables are created if
    /// missing; a database holding any record, blob or dictionary is refused with
    /// [`StorageError::Config`]); ids continue after the restored ids. Works for backups of
    /// either backend. For whole-cluster operations `pg_dump`/`pg_restore` remain the DBA's
    /// tools; this restores one store. To restore into a new SQLite data directory without
    /// opening it, [`BackupManager::restore_backup`] renames a verified copy into place.
    pub async fn restore_backup_into(
        &self,
        id: &str,
        target: &StorageConfig,
    ) -> Result<StoreRestoreReport> {
        target.validate()?;
        let this = self.clone();
        let (id, target) = (id.to_owned(), target.clone());
        blocking(move || this.restore_into_blocking(&id, target)).await
    }

    fn restore_into_blocking(&self, id: &str, target: StorageConfig) -> Result<StoreRestoreReport> {
        manifest::check_id(id)?;
        let work = WorkDir::create(self.inner.dir.join(format!(".restore-into-{id}")))?;
        self.unpack_verified(id, &work.0)?;
        let copy = work.0.join(DEFAULT_DATABASE_FILE);
        // Older backups are brought to the current snapshot schema (in the work copy) first.
        snapshot::upgrade(&copy)?;
        let target = crate::backend::open::open(target)?.backend;
        let loaded = target.maintenance().restore(&copy);
        target.close()?;
        let snapshot = loaded?;
        tracing::info!(%id, backend = target.name(), records = snapshot.record_count, "backup restored into a store");
        Ok(StoreRestoreReport {
            id: id.to_owned(),
            snapshot,
        })
    }

    /// Deletes the backups no retention rule keeps.
    pub async fn apply_retention(&self) -> Result<RetentionOutcome> {
        let this = self.clone();
        blocking(move || this.retention_blocking()).await
    }

    fn retention_blocking(&self) -> Result<RetentionOutcome> {
        let backups = self.list_blocking()?;
        let times: Vec<SystemTime> = backups.iter().map(BackupInfo::created).collect();
        let keep = retention::keep(&times, (self.clock)(), &self.inner.policy);
        let mut outcome = RetentionOutcome::default();
        for (i, backup) in backups.into_iter().enumerate() {
            if keep.contains(&i) {
                outcome.kept.push(backup.id);
                continue;
            }
            // The manifest goes first: a crash in between leaves an unlisted archive, never
            // a listed backup without its archive.
            let manifest = self.manifest_path(&backup.id);
            std::fs::remove_file(&manifest).map_err(io(&manifest))?;
            let archive = self.archive_path(&backup.id);
            if let Err(e) = std::fs::remove_file(&archive)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                return Err(StorageError::io(&archive, e));
            }
            outcome.deleted.push(backup.id);
        }
        if !outcome.deleted.is_empty() {
            crate::fs::sync_dir(&self.inner.dir)?;
        }
        Ok(outcome)
    }
}

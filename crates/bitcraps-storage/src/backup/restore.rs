//! Restores: into a new data directory (a verified copy renamed into place) or into the
//! database of another store. The target is checked before any verification work: not the
//! live store, not inside it or the backup directory, and new or empty.

use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

use super::layout::WorkKind;
use super::{BackupManager, RestoreReport, StoreRestoreReport, blocking, io};
use crate::backend::{Backend, snapshot};
use crate::config::{BackendTarget, DEFAULT_DATABASE_FILE, StorageConfig};
use crate::error::{Result, StorageError};

/// `path` made absolute with every existing prefix's links resolved; the part that does not
/// exist yet is appended as given (it cannot be a link). A `..` after a missing component
/// cannot be resolved and is refused.
fn resolve(path: &Path) -> Result<PathBuf> {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| StorageError::io(".", e))?
            .join(path)
    };
    let mut resolved = PathBuf::new();
    let mut missing = false;
    for component in absolute.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir if missing => {
                return Err(StorageError::Config(format!(
                    "restore target {} goes up out of a directory that does not exist",
                    path.display()
                )));
            }
            other => {
                resolved.push(other);
                if !missing {
                    match resolved.canonicalize() {
                        Ok(real) => resolved = real,
                        Err(_) => missing = true,
                    }
                }
            }
        }
    }
    Ok(resolved)
}

/// A short, secret-free name of a store's database for messages.
fn describe(target: &BackendTarget) -> PathBuf {
    match target {
        BackendTarget::Sqlite { path } => path.clone(),
        // Scheme and host only: user info and query may hold a password.
        BackendTarget::Postgres { url, .. } => {
            let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
            let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
            let host = rest.split(['/', '?']).next().unwrap_or_default();
            PathBuf::from(format!("{scheme}://{host}/…"))
        }
    }
}

impl BackupManager {
    /// Refuses a restore target that is the live store, lies inside it or inside the backup
    /// directory, or exists and is not an empty directory.
    fn check_target(&self, target: &Path) -> Result<()> {
        let resolved = resolve(target)?;
        let roots = [
            (&self.inner.live_dir, "the live store"),
            (
                &self.inner.layout.dir().to_path_buf(),
                "the backup directory",
            ),
        ];
        for (root, what) in roots {
            let Ok(root) = root.canonicalize() else {
                continue;
            };
            if resolved == root {
                return Err(StorageError::TargetNotEmpty {
                    path: target.to_path_buf(),
                });
            }
            if resolved.starts_with(&root) {
                return Err(StorageError::Config(format!(
                    "restore target {} is inside {what} at {}; choose a directory outside it",
                    target.display(),
                    root.display()
                )));
            }
        }
        match std::fs::symlink_metadata(target) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StorageError::io(target, e)),
            Ok(meta) if meta.is_dir() => {
                let mut entries = std::fs::read_dir(target).map_err(io(target))?;
                if entries.next().is_some() {
                    Err(StorageError::TargetNotEmpty {
                        path: target.to_path_buf(),
                    })
                } else {
                    Ok(())
                }
            }
            Ok(_) => Err(StorageError::TargetNotEmpty {
                path: target.to_path_buf(),
            }),
        }
    }

    /// Restores backup `id` into the new directory `target_dir`, which must not exist or be
    /// empty ([`StorageError::TargetNotEmpty`] otherwise), and must not be the live store or
    /// lie inside it or the backup directory. These are checked, and the backup's manifest
    /// ([`StorageError::BackupNotFound`] without one), before any verification work. The
    /// backup is verified in a work directory of the backup directory and renamed into place
    /// only then (copied, when the target is on another file system), so a half-restored
    /// store is never visible.
    pub async fn restore_backup(&self, id: &str, target_dir: &Path) -> Result<RestoreReport> {
        let this = self.clone();
        let (id, target) = (id.to_owned(), target_dir.to_path_buf());
        blocking(move || this.restore_blocking(&id, &target)).await
    }

    fn restore_blocking(&self, id: &str, target: &Path) -> Result<RestoreReport> {
        let layout = &self.inner.layout;
        let paths = layout.paths(id)?;
        self.check_target(target)?;
        let info = self.usable(&paths)?;
        let work = layout.work_dir(WorkKind::Restore, &paths)?;
        let store = work.path().join("store");
        crate::fs::create_private_dir(&store).map_err(io(&store))?;
        let verified = self.unpack_verified(&paths, &info, &store)?;
        crate::fs::sync_dir(&store)?;
        place(&store, target)?;
        drop(work);
        tracing::info!(%id, target = %target.display(), "backup restored");
        Ok(RestoreReport {
            id: paths.id,
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
    /// A database holding any record, blob or dictionary is refused with
    /// [`StorageError::TargetNotEmpty`] before the backup is verified (its tables are created
    /// if missing). The backup is then verified, brought to the current schema (in a scratch
    /// copy), and loaded in one transaction; ids continue after the restored ids. Works for
    /// backups of either backend. A backup of an encrypted store stays encrypted: its key
    /// check, wrapped data keys and binding come along (the target keeps its own store id),
    /// so the target opens only with the same master key; a target with keys of its own, or
    /// a plaintext backup into an encrypted target, is refused. For whole-cluster operations `pg_dump`/`pg_restore` remain
    /// the DBA's tools; this restores one store. To restore into a new SQLite data directory
    /// without opening it, [`BackupManager::restore_backup`] renames a verified copy into place.
    pub async fn restore_backup_into(
        &self,
        id: &str,
        target: &StorageConfig,
    ) -> Result<StoreRestoreReport> {
        target.validate()?;
        if target.database.read_only {
            return Err(StorageError::ReadOnly {
                operation: "a restore",
            });
        }
        let this = self.clone();
        let (id, target) = (id.to_owned(), target.clone());
        blocking(move || this.restore_into_blocking(&id, target)).await
    }

    fn restore_into_blocking(&self, id: &str, target: StorageConfig) -> Result<StoreRestoreReport> {
        let layout = &self.inner.layout;
        let paths = layout.paths(id)?;
        let info = self.usable(&paths)?;
        let kind = target.target()?;
        // A SQLite file that does not exist yet is empty; it is created only once the backup
        // verified. Anything else is opened now and must hold nothing.
        let early = match &kind {
            BackendTarget::Sqlite { path } if !super::scan::exists(path) => None,
            _ => {
                let backend = crate::backend::open::open(target.clone())?.backend;
                match holds_data(backend.as_ref()) {
                    Ok(false) => Some(backend),
                    held => {
                        backend.close()?;
                        held?;
                        return Err(StorageError::TargetNotEmpty {
                            path: describe(&kind),
                        });
                    }
                }
            }
        };
        let loaded = (|| {
            let work = layout.work_dir(WorkKind::RestoreInto, &paths)?;
            self.unpack_verified(&paths, &info, work.path())?;
            let copy = work.path().join(DEFAULT_DATABASE_FILE);
            // Older backups are brought to the current snapshot schema (in the work copy).
            snapshot::upgrade(&copy)?;
            let backend = match &early {
                Some(b) => std::sync::Arc::clone(b),
                None => crate::backend::open::open(target)?.backend,
            };
            let loaded = backend.maintenance().restore(&copy);
            Ok::<_, StorageError>((backend, loaded))
        })();
        let (backend, loaded) = match loaded {
            Ok(done) => done,
            Err(e) => {
                if let Some(b) = early {
                    b.close()?;
                }
                return Err(e);
            }
        };
        backend.close()?;
        let snapshot = loaded?;
        tracing::info!(%id, backend = backend.name(), records = snapshot.record_count, "backup restored into a store");
        Ok(StoreRestoreReport {
            id: paths.id,
            snapshot,
        })
    }
}

/// Whether a store's database holds any record, blob or dictionary.
fn holds_data(backend: &dyn Backend) -> Result<bool> {
    let s = backend.statistics()?;
    Ok(s.record_count > 0 || s.blob_count > 0 || !backend.dictionaries()?.is_empty())
}

/// Moves the verified store directory `store` to `target` (new, or an empty directory).
fn place(store: &Path, target: &Path) -> Result<()> {
    let parent = target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    if !parent.exists() {
        crate::fs::create_private_dir_all(&parent)?;
    }
    let existed = super::scan::exists(target);
    if existed {
        std::fs::remove_dir(target).map_err(io(target))?;
    }
    match std::fs::rename(store, target) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::CrossesDevices => copy_into(store, target)?,
        Err(e) => {
            if existed {
                let _ = crate::fs::create_private_dir(target);
            }
            return Err(StorageError::io(target, e));
        }
    }
    crate::fs::sync_dir(&parent)
}

/// The fallback across file systems: the database file copied durably into a new `target`
/// (removed again on failure, so a failed restore leaves no target behind).
fn copy_into(store: &Path, target: &Path) -> Result<()> {
    crate::fs::create_private_dir(target).map_err(io(target))?;
    let name = OsString::from(DEFAULT_DATABASE_FILE);
    let (from, to) = (store.join(&name), target.join(&name));
    let copied = std::fs::File::open(&from)
        .map_err(io(&from))
        .and_then(|mut input| {
            crate::fs::write_durably(&to, |out| std::io::copy(&mut input, out).map(drop))
        });
    if let Err(e) = copied {
        let _ = std::fs::remove_file(&to);
        let _ = std::fs::remove_dir(target);
        return Err(e);
    }
    Ok(())
}

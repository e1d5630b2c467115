//! Removing what an interrupted (killed) backup, verify or restore left in the backup
//! directory. An entry is removed only when all of these hold:
//! - its whole name is one this crate creates ([`layout::temporary`]), and it is a plain
//!   file or directory (never a symbolic link);
//! - it was last modified before the sweep started (so it belongs to an earlier run);
//! - for a work directory of this version, its `.lock` can be taken: the run that held it
//!   is gone (OS locks end with the process, also on `kill -9`), and a live run in this or
//!   another process keeps it.

use std::fs::File;
use std::path::Path;
use std::time::SystemTime;

use serde::Serialize;

use super::layout::{self, LOCK_FILE, Temporary};
use crate::error::{Result, StorageError};

/// What a sweep of stale temporaries removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct SweepReport {
    /// Names removed from the backup directory.
    pub removed: Vec<String>,
    /// Bytes of the files in them.
    pub bytes_freed: u64,
}

/// Sweeps `dir` (a missing directory holds nothing).
pub fn sweep(dir: &Path) -> Result<SweepReport> {
    let started = SystemTime::now();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(SweepReport::default()),
        Err(e) => return Err(StorageError::io(dir, e)),
    };
    let mut report = SweepReport::default();
    for entry in entries {
        let entry = entry.map_err(|e| StorageError::io(dir, e))?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let Some(kind) = layout::temporary(&name) else {
            continue;
        };
        let path = entry.path();
        // Not followed: a link is not something we made.
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        let is_dir = match kind {
            Temporary::Locked | Temporary::Legacy { dir: true } => meta.is_dir(),
            Temporary::Legacy { dir: false } => {
                if !meta.is_file() {
                    continue;
                }
                false
            }
        };
        if !is_dir && !meta.is_file() {
            continue;
        }
        let older = meta.modified().is_ok_and(|m| m < started);
        if !older {
            continue;
        }
        // Held until the directory is gone, so no new run can adopt it meanwhile.
        let _lock = match kind {
            Temporary::Locked => match abandoned(&path) {
                Some(lock) => Some(lock),
                None => continue,
            },
            Temporary::Legacy { .. } => None,
        };
        let bytes = size(&path);
        let removed = if is_dir {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        match removed {
            Ok(()) => {
                report.bytes_freed = report.bytes_freed.saturating_add(bytes);
                report.removed.push(name);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StorageError::io(&path, e)),
        }
    }
    if !report.removed.is_empty() {
        crate::fs::sync_dir(dir)?;
        tracing::info!(
            removed = report.removed.len(),
            bytes = report.bytes_freed,
            "stale backup temporaries removed"
        );
    }
    Ok(report)
}

/// The lock of a work directory whose run is gone, taken; `None` while a run holds it.
/// A directory without a lock file was abandoned between its creation and its lock.
fn abandoned(dir: &Path) -> Option<Option<File>> {
    let lock_path = dir.join(LOCK_FILE);
    match std::fs::symlink_metadata(&lock_path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Some(None),
        Ok(m) if m.is_file() => {}
        _ => return None,
    }
    let file = File::options().write(true).open(&lock_path).ok()?;
    file.try_lock().ok()?;
    Some(Some(file))
}

/// Bytes of the regular files under `path` (links not followed).
fn size(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if meta.is_file() {
        return meta.len();
    }
    if !meta.is_dir() {
        return 0;
    }
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| size(&e.path()))
                .fold(0u64, u64::saturating_add)
        })
        .unwrap_or(0)
}

//! What the backup directory holds: complete backups, incomplete ones, and foreign
//! manifests. Every manifest is hostile until checked: its file name must be an id, the id
//! inside must equal it, and its fields must describe the archive beside it.

use std::path::Path;

use serde::Serialize;

use super::layout::{BackupPaths, Layout, check_id};
use super::manifest::{self, BackupInfo, MANIFEST_FORMAT};
use crate::error::{Result, StorageError};

/// A manifest larger than this is not ours (ours are under 1 KiB).
const MAX_MANIFEST_BYTES: u64 = 64 * 1024;

/// A backup that cannot be used: its archive is missing, it has no manifest, or the manifest's
/// fields are invalid. Listed, never counted by retention, never deleted by it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct IncompleteBackup {
    /// The id (the file name).
    pub id: String,
    /// What is wrong.
    pub reason: String,
}

/// A `.json` file in the backup directory that is not one of our manifests (its name is not
/// a backup id, or the id inside differs from its name). Reported and left alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ForeignManifest {
    /// The file name.
    pub file: String,
    /// Why it is not ours.
    pub reason: String,
}

/// Everything in the backup directory that looks like a backup.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct BackupListing {
    /// Complete backups, newest first.
    pub complete: Vec<BackupInfo>,
    /// Incomplete backups, newest first.
    pub incomplete: Vec<IncompleteBackup>,
    /// Foreign manifests, by name.
    pub foreign: Vec<ForeignManifest>,
}

/// Why a manifest does not make a usable backup.
pub enum Unusable {
    /// Not ours: leave it alone.
    Foreign(String),
    /// Ours, but not usable.
    Incomplete(String),
}

/// Reads and checks the manifest of `paths` against its archive.
pub fn load(paths: &BackupPaths) -> std::result::Result<BackupInfo, Unusable> {
    let meta = std::fs::symlink_metadata(&paths.manifest)
        .map_err(|e| Unusable::Incomplete(format!("the manifest cannot be read: {e}")))?;
    if !meta.is_file() {
        return Err(Unusable::Incomplete(
            "the manifest is not a regular file".into(),
        ));
    }
    if meta.len() > MAX_MANIFEST_BYTES {
        return Err(Unusable::Foreign(format!(
            "{} bytes, larger than any manifest",
            meta.len()
        )));
    }
    let info = manifest::read(&paths.manifest).map_err(|e| Unusable::Incomplete(e.to_string()))?;
    if info.id != paths.id {
        return Err(Unusable::Foreign(format!(
            "it names backup {:?}, not {}",
            info.id, paths.id
        )));
    }
    if info.format != MANIFEST_FORMAT {
        return Err(Unusable::Incomplete(format!(
            "unknown manifest format {} (this build reads {MANIFEST_FORMAT})",
            info.format
        )));
    }
    let (stamp, created_at) = manifest::stamps(info.created_at_ms);
    if !info.id.starts_with(&stamp) || info.created_at != created_at {
        return Err(Unusable::Incomplete(format!(
            "the creation time {} does not match the id",
            info.created_at
        )));
    }
    let hex = info.archive_blake3.len() == 64
        && info
            .archive_blake3
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c));
    if !hex {
        return Err(Unusable::Incomplete(
            "the archive checksum is not a blake3 hex digest".into(),
        ));
    }
    match std::fs::symlink_metadata(&paths.archive) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(Unusable::Incomplete("the archive is missing".into()))
        }
        Err(e) => Err(Unusable::Incomplete(format!(
            "the archive cannot be read: {e}"
        ))),
        Ok(m) if !m.is_file() => Err(Unusable::Incomplete(
            "the archive is not a regular file".into(),
        )),
        Ok(m) if m.len() != info.archive_bytes => Err(Unusable::Incomplete(format!(
            "the archive is {} bytes but the manifest says {} (truncated or replaced)",
            m.len(),
            info.archive_bytes
        ))),
        Ok(_) => Ok(info),
    }
}

/// Scans the backup directory. Nothing is changed.
pub fn scan(layout: &Layout) -> Result<BackupListing> {
    let dir = layout.dir();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(BackupListing::default());
        }
        Err(e) => return Err(StorageError::io(dir, e)),
    };
    let mut manifests = Vec::new();
    let mut archives = Vec::new();
    let mut listing = BackupListing::default();
    for entry in entries {
        let entry = entry.map_err(|e| StorageError::io(dir, e))?;
        // A name that is not UTF-8 is not ours.
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if name.starts_with('.') {
            continue; // temporaries, see `sweep`
        }
        if let Some(stem) = name.strip_suffix(".json") {
            if check_id(stem).is_ok() {
                manifests.push(stem.to_owned());
            } else {
                listing.foreign.push(ForeignManifest {
                    file: name,
                    reason: "its name is not a backup id".into(),
                });
            }
        } else if let Some(stem) = name.strip_suffix(".db.zst")
            && check_id(stem).is_ok()
        {
            archives.push(stem.to_owned());
        }
    }
    for id in &manifests {
        let paths = layout.paths(id)?;
        match load(&paths) {
            Ok(info) => listing.complete.push(info),
            Err(Unusable::Incomplete(reason)) => listing.incomplete.push(IncompleteBackup {
                id: id.clone(),
                reason,
            }),
            Err(Unusable::Foreign(reason)) => listing.foreign.push(ForeignManifest {
                file: format!("{id}.json"),
                reason,
            }),
        }
    }
    for id in archives {
        if !manifests.contains(&id) {
            listing.incomplete.push(IncompleteBackup {
                id,
                reason: "the manifest is missing".into(),
            });
        }
    }
    for f in &listing.foreign {
        tracing::warn!(file = %f.file, reason = %f.reason, "foreign manifest left alone");
    }
    for b in &listing.incomplete {
        tracing::warn!(id = %b.id, reason = %b.reason, "incomplete backup");
    }
    listing.complete.sort_by(|a, b| b.id.cmp(&a.id));
    listing.incomplete.sort_by(|a, b| b.id.cmp(&a.id));
    listing.foreign.sort_by(|a, b| a.file.cmp(&b.file));
    Ok(listing)
}

/// Whether `path` exists at all (a dangling link counts).
pub fn exists(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}

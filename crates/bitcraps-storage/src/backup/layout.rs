//! The backup directory's names: the id grammar, the one function that turns an id into
//! paths ([`Layout::paths`]), the work directories of create, verify and restore, and the
//! names of temporaries a sweep may prove to be ours.
//!
//! An id is hostile until [`check_id`] accepted it (it arrives on a command line or as a file
//! name), so nothing here builds a path from an unchecked id. Work directories are created
//! fresh (never reused, never removed first) as direct children of the backup directory,
//! each with a `.lock` file held for the run; dropping one removes exactly that directory.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Result, StorageError};

/// Length of an id: `YYYYMMDDTHHMMSSmmmZ` (19), `-`, six lower-case hex digits.
const ID_LEN: usize = 26;
/// The lock file inside every work directory, held while the run is alive.
pub const LOCK_FILE: &str = ".lock";

/// Checks that `id` is what [`create`](super::BackupManager::create_backup) generates:
/// `YYYYMMDDTHHMMSSmmmZ-xxxxxx` (UTC stamp to the millisecond, six lower-case hex digits).
/// Anything else (empty, `..`, separators, NUL, absolute or relative paths) is
/// [`StorageError::InvalidBackupId`], before any file is touched.
pub fn check_id(id: &str) -> Result<()> {
    if is_id(id) {
        Ok(())
    } else {
        Err(StorageError::InvalidBackupId { id: id.to_owned() })
    }
}

fn is_id(id: &str) -> bool {
    let b = id.as_bytes();
    b.len() == ID_LEN
        && b.iter().enumerate().all(|(i, &c)| match i {
            0..=7 | 9..=17 => c.is_ascii_digit(),
            8 => c == b'T',
            18 => c == b'Z',
            19 => c == b'-',
            _ => c.is_ascii_digit() || (b'a'..=b'f').contains(&c),
        })
}

/// The files of one backup, for an id that passed [`check_id`].
#[derive(Debug, Clone)]
pub struct BackupPaths {
    /// The checked id.
    pub id: String,
    /// `<dir>/<id>.db.zst`.
    pub archive: PathBuf,
    /// `<dir>/<id>.json`.
    pub manifest: PathBuf,
}

/// What a work directory is for; its name starts with `.<prefix>-`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkKind {
    /// `create`: the database copy, the archive and the manifest before they are renamed out.
    Create,
    /// `verify`: the decompressed copy.
    Verify,
    /// `restore` into a directory: the verified store before it is renamed to the target.
    Restore,
    /// `restore_into` a store: the verified, upgraded copy it loads.
    RestoreInto,
}

impl WorkKind {
    const ALL: [WorkKind; 4] = [
        WorkKind::Create,
        WorkKind::Verify,
        WorkKind::Restore,
        WorkKind::RestoreInto,
    ];

    fn prefix(self) -> &'static str {
        match self {
            WorkKind::Create => "tmp",
            WorkKind::Verify => "verify",
            WorkKind::Restore => "restore",
            WorkKind::RestoreInto => "restore-into",
        }
    }
}

/// The backup directory.
#[derive(Debug, Clone)]
pub struct Layout {
    dir: PathBuf,
}

static SEQUENCE: AtomicU64 = AtomicU64::new(0);

impl Layout {
    pub fn new(dir: PathBuf) -> Self {
        Layout { dir }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// THE way from an id to paths: refuses an id outside the grammar.
    pub fn paths(&self, id: &str) -> Result<BackupPaths> {
        check_id(id)?;
        Ok(BackupPaths {
            id: id.to_owned(),
            archive: self.dir.join(format!("{id}.db.zst")),
            manifest: self.dir.join(format!("{id}.json")),
        })
    }

    /// Creates a new work directory `.<kind>-<id>-<nonce>` directly in the backup directory
    /// (creating that directory if needed) and locks it for this run.
    pub fn work_dir(&self, kind: WorkKind, paths: &BackupPaths) -> Result<WorkDir> {
        crate::fs::create_private_dir_all(&self.dir)?;
        let salt = format!(
            "{}:{}:{:?}",
            std::process::id(),
            SEQUENCE.fetch_add(1, Ordering::Relaxed),
            std::time::SystemTime::now()
        );
        let nonce: String = blake3::hash(salt.as_bytes())
            .to_hex()
            .chars()
            .take(8)
            .collect();
        let path = self
            .dir
            .join(format!(".{}-{}-{nonce}", kind.prefix(), paths.id));
        // `create_dir`, not `create_dir_all`: the name must be new, so nothing that existed
        // before is ever adopted (and later removed) as this run's.
        crate::fs::create_private_dir(&path).map_err(|e| StorageError::io(&path, e))?;
        // From here on, dropping `dir` removes the directory again.
        let mut dir = WorkDir { path, lock: None };
        let lock_path = dir.path.join(LOCK_FILE);
        let lock = crate::fs::private_file()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&lock_path)
            .map_err(|e| StorageError::io(&lock_path, e))?;
        lock.try_lock().map_err(|e| {
            StorageError::io(
                &lock_path,
                std::io::Error::other(format!("cannot lock: {e}")),
            )
        })?;
        dir.lock = Some(lock);
        Ok(dir)
    }
}

/// A work directory this run created; removed (with everything in it) when dropped.
#[derive(Debug)]
pub struct WorkDir {
    path: PathBuf,
    /// Held (locked) for the life of the run; released after the directory is removed.
    lock: Option<File>,
}

impl WorkDir {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
        drop(self.lock.take());
    }
}

/// A name in the backup directory that only this crate creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Temporary {
    /// A work directory of this version, with its lock file.
    Locked,
    /// A work directory of an older version (`.tmp-<id>`, `.verify-<id>`,
    /// `.restore-into-<id>`) or its temporary archive or manifest (`.<id>.db.zst.tmp-<pid>`,
    /// `.<id>.json.tmp-<pid>`): no lock, only its age says it is stale.
    Legacy {
        /// A directory (else a file).
        dir: bool,
    },
}

/// Which of our temporaries `name` is, if any: proven by the whole name, never a prefix.
pub fn temporary(name: &str) -> Option<Temporary> {
    let rest = name.strip_prefix('.')?;
    for kind in WorkKind::ALL {
        let Some(tail) = rest
            .strip_prefix(kind.prefix())
            .and_then(|t| t.strip_prefix('-'))
        else {
            continue;
        };
        if is_id(tail) && kind != WorkKind::Restore {
            return Some(Temporary::Legacy { dir: true });
        }
        if let Some((id, nonce)) = tail.split_at_checked(ID_LEN)
            && is_id(id)
            && let Some(nonce) = nonce.strip_prefix('-')
            && nonce.len() == 8
            && nonce
                .bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
        {
            return Some(Temporary::Locked);
        }
    }
    for ext in [".db.zst.tmp-", ".json.tmp-"] {
        if let Some((id, pid)) = rest.split_at_checked(ID_LEN)
            && is_id(id)
            && let Some(pid) = pid.strip_prefix(ext)
            && !pid.is_empty()
            && pid.bytes().all(|c| c.is_ascii_digit())
        {
            return Some(Temporary::Legacy { dir: false });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "20261123T010203004Z-ab12cd";

    #[test]
    fn only_generated_ids_pass() {
        assert!(check_id(ID).is_ok());
        for hostile in [
            "",
            "..",
            "/..",
            "../..",
            "/",
            "/etc",
            "./x",
            "a/b",
            "a\\b",
            "20261123T010203004Z-ab12c\0",
            "20261123T010203004Z-ab12cd/..",
            "20261123T010203004Z-AB12CD",
            "20261123T010203004Z-ab12cd ",
            "20261123T010203004Z-ab12",
            "../20261123T010203004Z-ab",
        ] {
            let err = check_id(hostile).err();
            assert!(
                matches!(err, Some(StorageError::InvalidBackupId { .. })),
                "{hostile:?}: {err:?}"
            );
        }
    }

    #[test]
    fn temporaries_are_recognised_by_their_whole_name() {
        assert_eq!(
            temporary(&format!(".tmp-{ID}-0123abcd")),
            Some(Temporary::Locked)
        );
        assert_eq!(
            temporary(&format!(".restore-into-{ID}-0123abcd")),
            Some(Temporary::Locked)
        );
        assert_eq!(
            temporary(&format!(".tmp-{ID}")),
            Some(Temporary::Legacy { dir: true })
        );
        assert_eq!(
            temporary(&format!(".{ID}.db.zst.tmp-4242")),
            Some(Temporary::Legacy { dir: false })
        );
        for not_ours in [
            ID.to_owned(),
            format!("{ID}.json"),
            format!("{ID}.db.zst"),
            format!(".tmp-{ID}-0123abc"),
            format!(".tmp-{ID}-0123abcd/x"),
            format!(".tmp-{ID}x"),
            format!(".{ID}.json.tmp-"),
            format!(".{ID}.json.tmp-12a"),
            ".lock".to_owned(),
            ".tmp-".to_owned(),
        ] {
            assert_eq!(temporary(&not_ours), None, "{not_ours}");
        }
    }
}

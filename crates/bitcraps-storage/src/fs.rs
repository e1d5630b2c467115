//! The one way files are written durably: a temporary file in the same directory, written
//! and fsync'd, renamed over the destination, then the directory fsync'd so the rename
//! itself survives a crash. Readers see the old file or the new one, never a torn one.
//!
//! And the one way the store's files are kept private (as PostgreSQL and restic do): files
//! are created `0600` and directories `0700` whatever the umask, and existing ones are
//! tightened when the store opens them.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::{Result, StorageError};

/// Fsyncs a directory so that entries created or renamed in it are durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StorageError::io(dir, e))
}

/// Mode of every file the store creates.
pub const PRIVATE_FILE: u32 = 0o600;
/// Mode of every directory the store creates.
pub const PRIVATE_DIR: u32 = 0o700;

/// Creates `dir` and any missing parents with mode `0700` (whatever the umask).
pub fn create_private_dir_all(dir: &Path) -> Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, PRIVATE_DIR);
    builder.create(dir).map_err(|e| StorageError::io(dir, e))?;
    // `mode` is filtered by the umask; set it exactly on the leaf we own.
    tighten(dir, PRIVATE_DIR)
}

/// Creates the new directory `dir` (it must not exist) with mode `0700`.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, PRIVATE_DIR);
    builder.create(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(PRIVATE_DIR))?;
    }
    Ok(())
}

/// Options that create a file with mode `0600` (whatever the umask).
pub fn private_file() -> OpenOptions {
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, PRIVATE_FILE);
    options
}

/// Removes every permission of `path` beyond `mode` (group and other bits); a path that does
/// not exist is left alone. Logs what it changed.
pub fn tighten(path: &Path, mode: u32) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(StorageError::io(path, e)),
        };
        let current = meta.permissions().mode() & 0o777;
        if current & !mode != 0 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(current & mode))
                .map_err(|e| StorageError::io(path, e))?;
            tracing::info!(
                path = %path.display(),
                from = format!("{current:o}"),
                to = format!("{:o}", current & mode),
                "tightened permissions"
            );
        }
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
    Ok(())
}

fn temp_path(dest: &Path) -> Result<PathBuf> {
    let name = dest
        .file_name()
        .ok_or_else(|| StorageError::Config(format!("{} has no file name", dest.display())))?;
    let mut tmp = std::ffi::OsString::from(".");
    tmp.push(name);
    tmp.push(format!(".tmp-{}", std::process::id()));
    Ok(dest.with_file_name(tmp))
}

/// Writes `dest` durably with whatever `write` puts into the (buffered) file.
pub fn write_durably<F>(dest: &Path, write: F) -> Result<()>
where
    F: FnOnce(&mut dyn Write) -> std::io::Result<()>,
{
    let dir = dest
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = temp_path(dest)?;
    let result = (|| -> std::io::Result<()> {
        let file = private_file()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        let mut out = BufWriter::new(file);
        write(&mut out)?;
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(StorageError::io(dest, e));
    }
    std::fs::rename(&tmp, dest).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        StorageError::io(dest, e)
    })?;
    sync_dir(dir)
}

/// Writes `bytes` to `dest` durably.
pub fn write_bytes_durably(dest: &Path, bytes: &[u8]) -> Result<()> {
    write_durably(dest, |w| w.write_all(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn private_files_and_directories_ignore_a_permissive_umask() -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| -> Result<u32> {
            Ok(std::fs::metadata(p)
                .map_err(|e| StorageError::io(p, e))?
                .permissions()
                .mode()
                & 0o777)
        };
        let dir = tempfile::tempdir().map_err(|e| StorageError::io("tmp", e))?;
        let nested = dir.path().join("a/b");
        create_private_dir_all(&nested)?;
        assert_eq!(mode(&nested)?, 0o700);
        assert_eq!(mode(&dir.path().join("a"))?, 0o700);
        let file = nested.join("f");
        write_bytes_durably(&file, b"x")?;
        assert_eq!(mode(&file)?, 0o600);
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644))
            .map_err(|e| StorageError::io(&file, e))?;
        tighten(&file, PRIVATE_FILE)?;
        assert_eq!(mode(&file)?, 0o600);
        Ok(())
    }

    #[test]
    fn replaces_atomically_and_cleans_up_on_error() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| StorageError::io("tmp", e))?;
        let dest = dir.path().join("manifest.json");
        write_bytes_durably(&dest, b"one")?;
        write_bytes_durably(&dest, b"two")?;
        assert_eq!(
            std::fs::read(&dest).map_err(|e| StorageError::io(&dest, e))?,
            b"two"
        );
        let failed = write_durably(&dest, |_| Err(std::io::Error::other("boom")));
        assert!(matches!(failed, Err(StorageError::Io { .. })));
        // The old content survives a failed write and no temporary file is left behind.
        assert_eq!(
            std::fs::read(&dest).map_err(|e| StorageError::io(&dest, e))?,
            b"two"
        );
        let entries = std::fs::read_dir(dir.path())
            .map_err(|e| StorageError::io(dir.path(), e))?
            .count();
        assert_eq!(entries, 1);
        Ok(())
    }
}

//! The one way files are written durably: a temporary file in the same directory, written
//! and fsync'd, renamed over the destination, then the directory fsync'd so the rename
//! itself survives a crash. Readers see the old file or the new one, never a torn one.

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
        let file = OpenOptions::new()
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

//! Backup archives: a database copy compressed with zstd, hashed with blake3 as it is
//! written, and checked against that hash before it is ever decompressed.

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::Path;

use crate::error::{Result, StorageError};
use crate::fs::write_durably;

/// Compression level of archives: a good ratio without slowing backups much.
const ARCHIVE_LEVEL: i32 = 9;

/// A writer that hashes and counts what passes through it.
struct Hashing<'a> {
    inner: &'a mut dyn Write,
    hasher: blake3::Hasher,
    bytes: u64,
}

impl Write for Hashing<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(buf.get(..n).unwrap_or_default());
        self.bytes += u64::try_from(n).unwrap_or(0);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Compresses `source` into `dest` durably; returns the archive's size and blake3 hex.
pub fn pack(source: &Path, dest: &Path) -> Result<(u64, String)> {
    let mut input = File::open(source).map_err(|e| StorageError::io(source, e))?;
    let mut outcome = (0, String::new());
    write_durably(dest, |out| {
        let mut hashing = Hashing {
            inner: out,
            hasher: blake3::Hasher::new(),
            bytes: 0,
        };
        let mut encoder = zstd::stream::Encoder::new(&mut hashing, ARCHIVE_LEVEL)?;
        // A frame checksum as well: decompression itself then rejects damaged content.
        encoder.include_checksum(true)?;
        std::io::copy(&mut input, &mut encoder)?;
        encoder.finish()?;
        outcome = (
            hashing.bytes,
            hashing.hasher.finalize().to_hex().to_string(),
        );
        Ok(())
    })?;
    Ok(outcome)
}

/// blake3 (hex) and size of a file.
pub fn hash_file(path: &Path) -> Result<(u64, String)> {
    let file = File::open(path).map_err(|e| StorageError::io(path, e))?;
    let mut hasher = blake3::Hasher::new();
    let mut reader = BufReader::new(file);
    let mut buf = vec![0; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = reader
            .read(&mut buf)
            .map_err(|e| StorageError::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(buf.get(..n).unwrap_or_default());
        total += u64::try_from(n).unwrap_or(0);
    }
    Ok((total, hasher.finalize().to_hex().to_string()))
}

/// Decompresses an archive into `dest` durably; returns the decompressed size.
pub fn unpack(archive: &Path, dest: &Path, location: &str) -> Result<u64> {
    let input = File::open(archive).map_err(|e| StorageError::io(archive, e))?;
    let mut size = 0;
    write_durably(dest, |out| {
        let mut decoder = zstd::stream::Decoder::new(BufReader::new(input))?;
        size = std::io::copy(&mut decoder, out)?;
        Ok(())
    })
    .map_err(|e| match e {
        StorageError::Io { source, .. } => StorageError::corruption(
            location,
            format!("the archive does not decompress: {source}"),
        ),
        other => other,
    })?;
    Ok(size)
}

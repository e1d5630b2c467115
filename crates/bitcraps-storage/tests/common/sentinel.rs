//! The sentinel scan: a string stored in many documents must appear in no byte that leaves
//! the process. Files are read raw; zstd archives (backups) are also scanned decompressed.

use std::path::{Path, PathBuf};

/// The string the sentinel tests store (and look for).
pub const SENTINEL: &str = "SENTINEL-chips-7f3a9c-PLAYER-BALANCE";

/// Whether `needle` occurs in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Every file under `dir`, recursively.
pub fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The files under `dir` whose bytes (or, for `.zst` archives, decompressed bytes) hold
/// `needle`.
pub fn files_holding(dir: &Path, needle: &str) -> Vec<PathBuf> {
    files(dir)
        .into_iter()
        .filter(|path| {
            let bytes = std::fs::read(path).unwrap_or_default();
            let mut hit = contains(&bytes, needle.as_bytes());
            if path.extension().is_some_and(|e| e == "zst") {
                let plain = zstd::stream::decode_all(&bytes[..]).expect("a zstd archive");
                hit |= contains(&plain, needle.as_bytes());
            }
            hit
        })
        .collect()
}

/// blake3 of every file under `dir` but the lock file (which records who opened the store
/// last) and SQLite's `-shm` (the WAL's index in shared memory, which every connection that
/// opens the database rewrites, even to read; it holds no records).
pub fn file_hashes(dir: &Path) -> Vec<(PathBuf, String)> {
    files(dir)
        .into_iter()
        .filter(|p| {
            let name = p.to_string_lossy();
            !name.ends_with(".lock") && !name.ends_with("-shm")
        })
        .map(|p| {
            let hash = blake3::hash(&std::fs::read(&p).unwrap_or_default())
                .to_hex()
                .to_string();
            (p, hash)
        })
        .collect()
}

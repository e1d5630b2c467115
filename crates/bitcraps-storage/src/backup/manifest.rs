//! The manifest written next to each backup archive, and backup ids.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::backend::SnapshotInfo;
use crate::error::{Result, StorageError};

/// Version of the manifest format.
pub const MANIFEST_FORMAT: u32 = 1;

/// Everything known about one backup. Serialized as `<id>.json` beside `<id>.db.zst`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct BackupInfo {
    /// Manifest format version.
    pub format: u32,
    /// The id: the UTC creation time, sortable, plus a random suffix.
    pub id: String,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_at_ms: i64,
    /// Creation time, RFC 3339 UTC.
    pub created_at: String,
    /// Which backend wrote it, as [`Backend::name`](crate::backend::Backend::name) reports it.
    /// The archive is in the snapshot format either way.
    pub backend: String,
    /// Counts and sizes of the backed-up database.
    pub snapshot: SnapshotInfo,
    /// Size of the uncompressed database copy.
    pub database_bytes: u64,
    /// Size of the compressed archive.
    pub archive_bytes: u64,
    /// blake3 of the archive, lower-case hex.
    pub archive_blake3: String,
}

impl BackupInfo {
    /// Creation time.
    pub fn created(&self) -> SystemTime {
        crate::backend::time_from_ms(self.created_at_ms)
    }
}

/// Milliseconds since the epoch of `t`.
pub fn millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian.
pub fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        u32::try_from(month).unwrap_or(1),
        u32::try_from(day).unwrap_or(1),
    )
}

/// `(compact id stamp, RFC 3339)` of a time, to the millisecond, UTC.
pub fn stamps(ms: i64) -> (String, String) {
    let secs = ms.div_euclid(1000);
    let milli = ms.rem_euclid(1000);
    let (y, mo, d) = civil(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    let (h, mi, s) = (sod / 3600, sod % 3600 / 60, sod % 60);
    (
        format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}{milli:03}Z"),
        format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}Z"),
    )
}

/// Reads and parses a manifest.
pub fn read(path: &Path) -> Result<BackupInfo> {
    let bytes = std::fs::read(path).map_err(|e| StorageError::io(path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| {
        StorageError::corruption(path.display().to_string(), format!("bad manifest: {e}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_are_utc_and_sortable() {
        // 2026-11-23T01:02:03.004Z
        let ms = 1_795_395_723_004;
        let (id, rfc) = stamps(ms);
        assert_eq!(id, "20261123T010203004Z");
        assert_eq!(rfc, "2026-11-23T01:02:03.004Z");
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(11_016), (2000, 2, 29));
        assert!(stamps(ms).0 < stamps(ms + 1).0);
    }
}

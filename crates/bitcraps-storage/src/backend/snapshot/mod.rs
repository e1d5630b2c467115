//! The snapshot format: what a backup archives and a restore loads.
//!
//! A snapshot is a SQLite database file at the SQLite backend's schema (`sqlite/schema.rs`),
//! whatever backend it was taken from: SQLite copies itself with `VACUUM INTO`; PostgreSQL and
//! the in-memory backend write their rows through [`SnapshotWriter`]. Ids, hashes, codecs,
//! dictionary ids, reference counts, times and access statistics are preserved, so a snapshot
//! is exactly what a SQLite store would hold.
//!
//! This module is the only place above the backends that opens such a file. The backup layer
//! reaches it through these functions and never names a driver:
//! - [`inspect`] describes a copy and, when asked, runs the integrity, reference and deep
//!   checks;
//! - [`upgrade`] brings a copy (of an older backup) to the current schema version;
//! - [`SnapshotWriter`] and [`read_rows`] are the row stream for backends that are not SQLite.

// The row stream serves the backends that are not SQLite (PostgreSQL, the in-memory one).
#[cfg(any(feature = "postgres", feature = "testing"))]
mod rows;
#[cfg(any(feature = "postgres", feature = "testing"))]
mod spill;

use std::path::Path;
use std::sync::Arc;

use rusqlite::{Connection, OpenFlags};

// Each of those backends takes part of it.
#[cfg(any(feature = "postgres", feature = "testing"))]
pub use rows::SnapshotWriter;
#[cfg(any(feature = "postgres", feature = "testing"))]
#[allow(unused_imports)]
pub use rows::{
    BLOB_CHUNK, BlobRow, Chunk, ChunkListRow, DataKeyRow, DictionaryRow, MetaRow, ROW_CHUNK,
    RecordRow, SELECT_BLOBS, SELECT_CHUNK_LISTS, SELECT_CHUNKS, SELECT_CLOCK, SELECT_DATA_KEYS,
    SELECT_DICTIONARIES, SELECT_META, SELECT_RECORDS, SELECT_SETTINGS, SettingRow, read_rows,
};

use super::sqlite::{db_err, inline, read, schema};
use crate::backend::{ConsistencyReport, SnapshotInfo};
use crate::crypto::Keyring;
use crate::error::{Result, StorageError};

/// The schema version snapshots written by this build carry.
pub fn current_version() -> i64 {
    schema::latest_version()
}

/// Opens a snapshot read-only and describes it; with `check`, also runs the integrity and
/// reference checks and the deep check (every blob decoded with its dictionary and checked
/// against its content hash; damage named by collection and key in the report).
pub fn inspect(path: &Path, check: bool) -> Result<(SnapshotInfo, Option<ConsistencyReport>)> {
    inspect_with(path, check, None)
}

/// [`inspect`] of a snapshot that may be encrypted: its blobs and dictionaries are opened
/// with `keyring` (to which the snapshot's own data keys are added, where they unwrap). An
/// encrypted snapshot checked without a keyring is [`StorageError::KeyMissing`].
pub(crate) fn inspect_with(
    path: &Path,
    check: bool,
    keyring: Option<&Arc<Keyring>>,
) -> Result<(SnapshotInfo, Option<ConsistencyReport>)> {
    let conn = open_read_only(path)?;
    let schema_version = user_version(&conn)?;
    let report = if check {
        let mut report = read::check(&conn)?;
        let mut dictionaries = read::dictionaries(&conn)?;
        if let Some(ring) = keyring {
            for key in schema::read_data_keys(&conn)? {
                // A key that does not unwrap leaves its blobs unreadable: named as damage.
                let _ = ring.load(std::slice::from_ref(&key));
            }
            dictionaries = crate::crypto::open_dictionaries(ring, dictionaries, |id| {
                Ok(id.and_then(|id| ring.by_id(id)))
            })?;
        } else if schema::read_identity(&conn)?.key_check.is_some() {
            return Err(StorageError::KeyMissing);
        }
        crate::verify::deepen(
            &mut report,
            &dictionaries,
            keyring.cloned(),
            crate::verify::Readers {
                blobs: |after, limit| read::blobs_after(&conn, after, limit),
                naming: |ids: &[i64]| read::records_naming(&conn, ids),
                // A copy from before schema 13 has no delta in a record row (nor the columns).
                inline: |after: Option<&crate::backend::RecordCursor>, limit| {
                    if schema_version < schema::INLINE_DELTAS {
                        return Ok(Vec::new());
                    }
                    inline::after(&conn, after, limit)
                },
            },
        )?;
        Some(report)
    } else {
        None
    };
    let stats = read::statistics(&conn)?;
    Ok((
        SnapshotInfo {
            schema_version,
            record_count: stats.record_count,
            blob_count: stats.blob_count,
            logical_bytes: stats.logical_bytes,
            stored_bytes: stats.stored_bytes,
        },
        report,
    ))
}

/// Brings the snapshot at `path` (a scratch copy: it is changed in place) to the current
/// schema version; returns the version it is at. A copy newer than this build is refused.
pub fn upgrade(path: &Path) -> Result<i64> {
    let mut conn = Connection::open(path).map_err(db_err("opening a snapshot copy"))?;
    let version = schema::migrate(&mut conn)?;
    conn.close()
        .map_err(|(_, e)| StorageError::database("closing a snapshot copy", e))?;
    Ok(version)
}

/// Fails unless the snapshot at `path` is at the current schema version (what a restore
/// loads); returns its description.
pub fn require_current(path: &Path) -> Result<SnapshotInfo> {
    // The version first: the statistics read the current schema's columns.
    let version = schema_version(path)?;
    if version != current_version() {
        return Err(StorageError::Config(format!(
            "the snapshot is at schema version {version}, expected {}; migrate it first",
            current_version()
        )));
    }
    let (info, _) = inspect(path, false)?;
    Ok(info)
}

/// The schema version of the snapshot at `path`. [`inspect`] reads the current version's
/// columns: a copy of an older version is [`upgrade`]d (a scratch copy) before.
pub fn schema_version(path: &Path) -> Result<i64> {
    user_version(&open_read_only(path)?)
}

/// The schema version a copy's connection records.
fn user_version(conn: &Connection) -> Result<i64> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(db_err("reading a copy's schema version"))
}

fn open_read_only(path: &Path) -> Result<Connection> {
    Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(db_err("opening a database copy"))
}

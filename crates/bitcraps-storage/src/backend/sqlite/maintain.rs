//! Snapshots, checkpoints and reference repair.

use std::path::Path;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use super::{db_err, read};
use crate::backend::{ConsistencyReport, RepairOutcome, SnapshotInfo};
use crate::error::{Result, StorageError};

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// `VACUUM INTO` from a read connection: a consistent, compact copy taken inside one read
/// transaction, so writers are never blocked and never restart it.
pub fn snapshot(conn: &Connection, dest: &Path) -> Result<SnapshotInfo> {
    if dest.exists() {
        return Err(StorageError::Config(format!(
            "snapshot destination {} already exists",
            dest.display()
        )));
    }
    let target = dest
        .to_str()
        .ok_or_else(|| StorageError::Config(format!("{} is not UTF-8", dest.display())))?;
    conn.execute("VACUUM INTO ?1", [target])
        .map_err(db_err("taking a consistent snapshot"))?;
    let (info, _) = inspect(dest, false)?;
    Ok(info)
}

/// Opens a database copy read-only and describes it; with `check`, also runs the
/// integrity and reference checks.
pub fn inspect(path: &Path, check: bool) -> Result<(SnapshotInfo, Option<ConsistencyReport>)> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(db_err("opening a database copy"))?;
    let schema_version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(db_err("reading a copy's schema version"))?;
    let report = if check {
        Some(read::check(&conn)?)
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

/// `wal_checkpoint(TRUNCATE)`; reports when readers kept it from completing.
pub fn checkpoint(conn: &Connection) -> Result<()> {
    let (busy, _, _): (i64, i64, i64) = conn
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .map_err(db_err("checkpointing the write-ahead log"))?;
    if busy != 0 {
        return Err(StorageError::database(
            "checkpointing the write-ahead log",
            "readers kept the checkpoint from completing; it will be retried",
        ));
    }
    Ok(())
}

/// A blob no record refers to. `records.blob_id` has no index (schema version 3): the
/// subquery is not correlated, so SQLite reads the blob ids of all records once into a
/// temporary index instead of scanning the records once per blob.
pub(super) const ORPHAN: &str = "id NOT IN (SELECT blob_id FROM records)";

/// Sets each referenced blob's count to its number of records, grouping the records in one pass.
pub(super) const RECOUNT: &str = "UPDATE blobs SET refcount = refs.n
     FROM (SELECT blob_id, count(*) AS n FROM records GROUP BY blob_id) AS refs
     WHERE blobs.id = refs.blob_id AND blobs.refcount != refs.n";

/// Recomputes reference counts and deletes unreferenced blobs, in one transaction.
pub fn repair(conn: &mut Connection) -> Result<RepairOutcome> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db_err("starting a reference repair"))?;
    // Orphans first, so a blob nothing refers to counts as removed, not also as "fixed".
    let (orphans, bytes): (i64, i64) = tx
        .query_row(
            &format!("SELECT count(*), coalesce(sum(stored_len), 0) FROM blobs WHERE {ORPHAN}"),
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(db_err("counting unreferenced blobs"))?;
    tx.execute(&format!("DELETE FROM blobs WHERE {ORPHAN}"), [])
        .map_err(db_err("removing unreferenced blobs"))?;
    // Every remaining blob has a record, so the grouped counts cover all of them.
    let fixed = tx
        .execute(RECOUNT, [])
        .map_err(db_err("recounting references"))?;
    tx.commit()
        .map_err(db_err("committing a reference repair"))?;
    Ok(RepairOutcome {
        refcounts_fixed: u64::try_from(fixed).unwrap_or(0),
        orphans_removed: to_u64(orphans),
        orphan_bytes_removed: to_u64(bytes),
    })
}

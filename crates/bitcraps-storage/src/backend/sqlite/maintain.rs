//! Snapshots, restores, checkpoints and reference repair.

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};

use super::db_err;
use crate::backend::{RepairOutcome, SnapshotInfo, restore_target_not_empty, snapshot};
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
    let (info, _) = snapshot::inspect(dest, false)?;
    Ok(info)
}

/// Copies the snapshot at `path` into the (empty) database of `conn`: attached, then its
/// tables inserted in one immediate transaction, so writers are kept out and a failure leaves
/// the database empty. The target keeps its identity; an encrypted snapshot brings its key
/// check, binding and data keys (`identity::restored_rows`).
pub fn restore(conn: &mut Connection, path: &Path) -> Result<()> {
    let source = path
        .to_str()
        .ok_or_else(|| StorageError::Config(format!("{} is not UTF-8", path.display())))?;
    conn.execute("ATTACH DATABASE ?1 AS snapshot", [source])
        .map_err(db_err("attaching the snapshot"))?;
    let copied = copy_attached(conn);
    let detached = conn
        .execute_batch("DETACH DATABASE snapshot")
        .map_err(db_err("detaching the snapshot"));
    copied.and(detached)
}

fn copy_attached(conn: &mut Connection) -> Result<()> {
    let err = db_err("restoring a snapshot");
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(&err)?;
    let occupied: bool = tx
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM main.records) OR EXISTS (SELECT 1 FROM main.blobs)
                 OR EXISTS (SELECT 1 FROM main.dictionaries)
                 OR EXISTS (SELECT 1 FROM main.chunks)",
            [],
            |r| r.get(0),
        )
        .map_err(&err)?;
    if occupied {
        return Err(restore_target_not_empty());
    }
    let snapshot_meta = tx
        .prepare("SELECT name, value FROM snapshot.meta")
        .and_then(|mut s| {
            s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<Vec<(String, String)>>>()
        })
        .map_err(&err)?;
    let target_keys: i64 = tx
        .query_row("SELECT count(*) FROM main.data_keys", [], |r| r.get(0))
        .map_err(&err)?;
    let target = super::schema::read_identity(&tx)?;
    let meta = crate::backend::identity::restored_rows(
        snapshot_meta,
        &target,
        usize::try_from(target_keys).unwrap_or(usize::MAX),
    )?;
    for (name, value) in &meta {
        tx.execute(
            "INSERT OR REPLACE INTO main.meta (name, value) VALUES (?1, ?2)",
            [name, value],
        )
        .map_err(&err)?;
    }
    tx.execute_batch(
        "INSERT INTO main.data_keys (id, collection, version, wrapped, created_at)
             SELECT id, collection, version, wrapped, created_at FROM snapshot.data_keys;
         INSERT INTO main.dictionaries (id, collection, created_at, data)
             SELECT id, collection, created_at, data FROM snapshot.dictionaries;
         INSERT INTO main.blobs (id, hash, codec, raw_len, stored_len, refcount, data, dict_id)
             SELECT id, hash, codec, raw_len, nullif(stored_len, length(data)), refcount, data,
                    dict_id
             FROM snapshot.blobs;
         INSERT INTO main.chunks (id, hash, codec, raw_len, stored_len, data, dict_id)
             SELECT id, hash, codec, raw_len, stored_len, data, dict_id
             FROM snapshot.chunks;
         INSERT INTO main.chunk_refs (chunk_id, refcount)
             SELECT chunk_id, refcount FROM snapshot.chunk_refs;
         INSERT INTO main.blob_chunks (blob_id, seq, chunk_id)
             SELECT blob_id, seq, chunk_id FROM snapshot.blob_chunks;
         INSERT INTO main.records (collection, key, blob_id, created_at, updated_at,
                                   access_count, last_accessed, version, expires_at, delta)
             SELECT collection, key, blob_id, created_at, nullif(updated_at, created_at),
                    access_count, last_accessed, version, expires_at, delta
             FROM snapshot.records;
         INSERT INTO main.collection_settings (collection, name, value)
             SELECT collection, name, value FROM snapshot.collection_settings WHERE true
             ON CONFLICT (collection, name) DO UPDATE SET value = excluded.value;
         UPDATE main.version_clock SET last = max(
             last,
             (SELECT coalesce(max(last), 1) FROM snapshot.version_clock),
             (SELECT coalesce(max(version), 1) FROM main.records));",
    )
    .map_err(&err)?;
    tx.commit().map_err(&err)
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

/// Recomputes reference counts and deletes unreferenced blobs, in one transaction. Refuses,
/// deleting nothing, unless the record table passes `quick_check` inside that transaction:
/// a damaged page can hide records from the `NOT IN` scan, and their blobs would look
/// unreferenced.
pub fn repair(conn: &mut Connection) -> Result<RepairOutcome> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db_err("starting a reference repair"))?;
    let mut integrity = super::read::engine_check(&tx, "quick_check(records)")?;
    if integrity == ["ok"] {
        // A hidden chunk list would make its chunks look unreferenced the same way.
        integrity = super::read::engine_check(&tx, "quick_check(blob_chunks)")?;
    }
    if integrity != ["ok"] {
        return Err(StorageError::corruption(
            "the records table",
            format!(
                "the reference repair refused to run, nothing was deleted: the table cannot \
                 be read in full ({})",
                integrity.join("; ")
            ),
        ));
    }
    // Orphans first, so a blob nothing refers to counts as removed, not also as "fixed".
    let (orphans, bytes): (i64, i64) = tx
        .query_row(
            &format!("SELECT count(*), CAST(total(coalesce(stored_len, length(data))) AS INTEGER) FROM blobs WHERE {ORPHAN}"),
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
    let (chunks_fixed, chunks_removed, chunk_bytes) = super::chunks::repair(&tx)?;
    tx.commit()
        .map_err(db_err("committing a reference repair"))?;
    Ok(RepairOutcome {
        refcounts_fixed: u64::try_from(fixed).unwrap_or(0),
        orphans_removed: to_u64(orphans),
        orphan_bytes_removed: to_u64(bytes),
        chunk_refcounts_fixed: chunks_fixed,
        orphan_chunks_removed: chunks_removed,
        orphan_chunk_bytes_removed: chunk_bytes,
    })
}

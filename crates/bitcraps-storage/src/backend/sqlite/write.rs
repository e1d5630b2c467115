//! The write path: group-committed units, each in its own savepoint, with exact blob
//! reference counts maintained in the same transaction as the records.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::db_err;
use crate::backend::{OpOutcome, WriteOp, WriteUnit};
use crate::error::{Result, StorageError};
use crate::value::EncodedValue;

/// Applies `units` in one transaction; see [`Backend::apply`](crate::backend::Backend::apply).
pub fn apply(
    conn: &mut Connection,
    units: &[WriteUnit],
    deduplicate: bool,
) -> Result<Vec<Result<Vec<OpOutcome>>>> {
    let mut tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db_err("starting a write transaction"))?;
    let mut results = Vec::with_capacity(units.len());
    for unit in units {
        let sp = tx.savepoint().map_err(db_err("opening a savepoint"))?;
        let outcome = unit
            .iter()
            .map(|op| apply_op(&sp, op, deduplicate))
            .collect::<Result<Vec<_>>>();
        match outcome {
            Ok(outcomes) => {
                sp.commit().map_err(db_err("releasing a savepoint"))?;
                results.push(Ok(outcomes));
            }
            // Dropping the savepoint rolls this unit back; the others are unaffected.
            Err(e) => {
                drop(sp);
                results.push(Err(e));
            }
        }
    }
    tx.commit()
        .map_err(db_err("committing a write transaction"))?;
    Ok(results)
}

fn apply_op(conn: &Connection, op: &WriteOp, deduplicate: bool) -> Result<OpOutcome> {
    match op {
        WriteOp::Put {
            collection,
            key,
            value,
            now_ms,
        } => put(conn, collection, key, value, *now_ms, deduplicate),
        WriteOp::Delete { collection, key } => {
            let existed = delete(conn, collection, key)?;
            Ok(OpOutcome::Delete { existed })
        }
        WriteOp::PutDictionary {
            collection,
            data,
            now_ms,
        } => {
            conn.prepare_cached(
                "INSERT INTO dictionaries (collection, created_at, data) VALUES (?1, ?2, ?3)",
            )
            .and_then(|mut s| s.execute(params![collection, now_ms, &data[..]]))
            .map_err(db_err("storing a dictionary"))?;
            Ok(OpOutcome::Dictionary {
                id: conn.last_insert_rowid(),
            })
        }
        WriteOp::Touch {
            collection,
            key,
            count,
            last_ms,
        } => {
            let count = i64::try_from(*count).unwrap_or(i64::MAX);
            conn.prepare_cached(
                "UPDATE records SET access_count = access_count + ?3,
                        last_accessed = max(coalesce(last_accessed, 0), ?4)
                 WHERE collection = ?1 AND key = ?2",
            )
            .and_then(|mut s| s.execute(params![collection, key, count, last_ms]))
            .map_err(db_err("recording access statistics"))?;
            Ok(OpOutcome::Touch)
        }
    }
}

fn current_blob(conn: &Connection, collection: &str, key: &str) -> Result<Option<i64>> {
    conn.prepare_cached("SELECT blob_id FROM records WHERE collection = ?1 AND key = ?2")
        .and_then(|mut s| {
            s.query_row(params![collection, key], |r| r.get(0))
                .optional()
        })
        .map_err(db_err("looking up a record"))
}

/// The blob holding content with hash `?1`. The index holds the hash's first 8 bytes
/// (schema version 3); the full hash is compared in the row, so blobs that merely share a
/// prefix never match.
pub(super) const FIND_BLOB_BY_HASH: &str = "SELECT id, raw_len FROM blobs
     WHERE substr(hash, 1, 8) = substr(?1, 1, 8) AND hash = ?1 LIMIT 1";

/// Takes a reference to a blob with `value`'s content, inserting it if needed.
/// Returns the blob id and whether the content was already stored.
fn acquire_blob(conn: &Connection, value: &EncodedValue, deduplicate: bool) -> Result<(i64, bool)> {
    let raw_len = i64::try_from(value.raw_len()).unwrap_or(i64::MAX);
    if deduplicate {
        let existing: Option<(i64, i64)> = conn
            .prepare_cached(FIND_BLOB_BY_HASH)
            .and_then(|mut s| {
                s.query_row(params![&value.hash[..]], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()
            })
            .map_err(db_err("looking up content by hash"))?;
        if let Some((id, stored_len)) = existing {
            if stored_len != raw_len {
                return Err(StorageError::corruption(
                    format!("blob {id}"),
                    format!("same content hash but length {stored_len}, expected {raw_len}"),
                ));
            }
            conn.prepare_cached("UPDATE blobs SET refcount = refcount + 1 WHERE id = ?1")
                .and_then(|mut s| s.execute(params![id]))
                .map_err(db_err("adding a content reference"))?;
            return Ok((id, true));
        }
    }
    let stored_len = i64::try_from(value.stored.len()).unwrap_or(i64::MAX);
    conn.prepare_cached(
        "INSERT INTO blobs (hash, codec, raw_len, stored_len, refcount, data, dict_id)
         VALUES (?1, ?2, ?3, ?4, 1, ?5, ?6)",
    )
    .and_then(|mut s| {
        s.execute(params![
            &value.hash[..],
            value.codec.id(),
            raw_len,
            stored_len,
            &value.stored[..],
            value.dict_id
        ])
    })
    .map_err(db_err("storing content"))?;
    Ok((conn.last_insert_rowid(), false))
}

/// Drops one reference to a blob, deleting the blob when none remain.
fn release_blob(conn: &Connection, id: i64) -> Result<()> {
    conn.prepare_cached("UPDATE blobs SET refcount = refcount - 1 WHERE id = ?1")
        .and_then(|mut s| s.execute(params![id]))
        .map_err(db_err("dropping a content reference"))?;
    conn.prepare_cached("DELETE FROM blobs WHERE id = ?1 AND refcount <= 0")
        .and_then(|mut s| s.execute(params![id]))
        .map_err(db_err("deleting unreferenced content"))?;
    Ok(())
}

/// Writes a record. The common bulk case, a new key, costs one statement besides the blob:
/// the insert itself. Only when the key exists is its old blob read and then released.
fn put(
    conn: &Connection,
    collection: &str,
    key: &str,
    value: &EncodedValue,
    now_ms: i64,
    deduplicate: bool,
) -> Result<OpOutcome> {
    let (blob_id, deduplicated) = acquire_blob(conn, value, deduplicate)?;
    let inserted = conn
        .prepare_cached(
            "INSERT INTO records (collection, key, blob_id, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?4)
             ON CONFLICT (collection, key) DO NOTHING",
        )
        .and_then(|mut s| s.execute(params![collection, key, blob_id, now_ms]))
        .map_err(db_err("writing a record"))?;
    if inserted == 1 {
        return Ok(OpOutcome::Put {
            deduplicated,
            replaced: false,
        });
    }
    let old = current_blob(conn, collection, key)?.ok_or_else(|| {
        StorageError::database(
            "writing a record",
            format!("{collection}/{key} neither inserted nor present"),
        )
    })?;
    conn.prepare_cached(
        "UPDATE records SET blob_id = ?3, updated_at = ?4 WHERE collection = ?1 AND key = ?2",
    )
    .and_then(|mut s| s.execute(params![collection, key, blob_id, now_ms]))
    .map_err(db_err("writing a record"))?;
    release_blob(conn, old)?;
    Ok(OpOutcome::Put {
        deduplicated,
        replaced: true,
    })
}

fn delete(conn: &Connection, collection: &str, key: &str) -> Result<bool> {
    let old: Option<i64> = conn
        .prepare_cached("DELETE FROM records WHERE collection = ?1 AND key = ?2 RETURNING blob_id")
        .and_then(|mut s| {
            s.query_row(params![collection, key], |r| r.get(0))
                .optional()
        })
        .map_err(db_err("deleting a record"))?;
    match old {
        Some(id) => {
            release_blob(conn, id)?;
            Ok(true)
        }
        None => Ok(false),
    }
}

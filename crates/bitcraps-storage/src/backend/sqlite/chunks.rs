//! Chunk lists on SQLite (`chunk/`, schema version 9): a chunked blob's chunks are rows of
//! `chunks`, content-addressed and reference-counted, listed in order by `blob_chunks`. A
//! chunk's reference count is the number of `blob_chunks` rows naming it; they change in the
//! transaction that creates or deletes the blob.
//!
//! The counts live in `chunk_refs` (schema version 10), never beside a chunk's bytes: taking
//! or dropping a reference writes that narrow table's page, not the pages holding chunk
//! data, so a rewrite sharing all its chunks with the version it replaces writes only its
//! own list and a few count rows (`tests/it/chunk_refs_pages.rs`).

use rusqlite::{Connection, OptionalExtension, params};

use super::db_err;
use crate::backend::StoredBlob;
use crate::error::{Result, StorageError};
use crate::value::EncodedValue;

/// The chunk holding content with hash `?1` (the prefix index, then the full hash).
pub(super) const FIND_CHUNK_BY_HASH: &str = "SELECT id, raw_len FROM chunks
     WHERE substr(hash, 1, 8) = substr(?1, 1, 8) AND hash = ?1 LIMIT 1";

/// Lists `value`'s chunks under the new blob `blob_id`, taking a reference to each (stored
/// once per content when `deduplicate`). Returns how many chunks were already stored.
pub(super) fn acquire(
    conn: &Connection,
    blob_id: i64,
    value: &EncodedValue,
    deduplicate: bool,
) -> Result<u64> {
    let mut shared = 0;
    for (seq, chunk) in value.chunks.iter().enumerate() {
        let seq = i64::try_from(seq).unwrap_or(i64::MAX);
        let (chunk_id, found) = acquire_one(conn, chunk, deduplicate)?;
        shared += u64::from(found);
        conn.prepare_cached("INSERT INTO blob_chunks (blob_id, seq, chunk_id) VALUES (?1, ?2, ?3)")
            .and_then(|mut s| s.execute(params![blob_id, seq, chunk_id]))
            .map_err(db_err("listing a chunk"))?;
    }
    Ok(shared)
}

fn acquire_one(conn: &Connection, chunk: &EncodedValue, deduplicate: bool) -> Result<(i64, bool)> {
    let raw_len = i64::try_from(chunk.raw_len()).unwrap_or(i64::MAX);
    if deduplicate {
        let existing: Option<(i64, i64)> = conn
            .prepare_cached(FIND_CHUNK_BY_HASH)
            .and_then(|mut s| {
                s.query_row(params![&chunk.hash[..]], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()
            })
            .map_err(db_err("looking up a chunk by hash"))?;
        if let Some((id, len)) = existing {
            if len != raw_len {
                return Err(StorageError::corruption(
                    format!("chunk {id}"),
                    format!("same content hash but length {len}, expected {raw_len}"),
                ));
            }
            // A chunk without a count row (damage the check reports) gets one again.
            conn.prepare_cached(
                "INSERT INTO chunk_refs (chunk_id, refcount) VALUES (?1, 1)
                 ON CONFLICT (chunk_id) DO UPDATE SET refcount = refcount + 1",
            )
            .and_then(|mut s| s.execute(params![id]))
            .map_err(db_err("adding a chunk reference"))?;
            return Ok((id, true));
        }
    }
    let stored_len = i64::try_from(chunk.stored.len()).unwrap_or(i64::MAX);
    conn.prepare_cached(
        "INSERT INTO chunks (hash, codec, raw_len, stored_len, data, dict_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .and_then(|mut s| {
        s.execute(params![
            &chunk.hash[..],
            chunk.codec_id(),
            raw_len,
            stored_len,
            &chunk.stored[..],
            chunk.dict_id
        ])
    })
    .map_err(db_err("storing a chunk"))?;
    let id = conn.last_insert_rowid();
    conn.prepare_cached("INSERT INTO chunk_refs (chunk_id, refcount) VALUES (?1, 1)")
        .and_then(|mut s| s.execute(params![id]))
        .map_err(db_err("counting a chunk's first reference"))?;
    Ok((id, false))
}

/// Drops the chunk list of the deleted blob `blob_id`: one reference per listed chunk,
/// deleting chunks none remain to.
pub(super) fn release(conn: &Connection, blob_id: i64) -> Result<()> {
    let chunk_ids: Vec<i64> = conn
        .prepare_cached("DELETE FROM blob_chunks WHERE blob_id = ?1 RETURNING chunk_id")
        .and_then(|mut s| {
            s.query_map(params![blob_id], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(db_err("dropping a chunk list"))?;
    for id in chunk_ids {
        // No count row (damage): the chunk stays, for the check to report and repair.
        let left: Option<i64> = conn
            .prepare_cached(
                "UPDATE chunk_refs SET refcount = max(refcount - 1, 0) WHERE chunk_id = ?1
                 RETURNING refcount",
            )
            .and_then(|mut s| s.query_row(params![id], |r| r.get(0)).optional())
            .map_err(db_err("dropping a chunk reference"))?;
        if left == Some(0) {
            conn.prepare_cached("DELETE FROM chunk_refs WHERE chunk_id = ?1")
                .and_then(|mut s| s.execute(params![id]))
                .map_err(db_err("deleting an unreferenced chunk"))?;
            conn.prepare_cached("DELETE FROM chunks WHERE id = ?1")
                .and_then(|mut s| s.execute(params![id]))
                .map_err(db_err("deleting an unreferenced chunk"))?;
        }
    }
    Ok(())
}

/// The chunks of blob `blob_id` in order. A listed chunk that does not exist, or a gap in
/// the list, is corruption at `location`.
pub(super) fn load(conn: &Connection, blob_id: i64, location: &str) -> Result<Vec<StoredBlob>> {
    let rows = conn
        .prepare_cached(
            "SELECT bc.seq, bc.chunk_id, c.codec, c.raw_len, c.hash, c.data, c.dict_id
             FROM blob_chunks bc LEFT JOIN chunks c ON c.id = bc.chunk_id
             WHERE bc.blob_id = ?1 ORDER BY bc.seq",
        )
        .and_then(|mut s| {
            s.query_map(params![blob_id], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, Option<i64>>(2)?,
                    r.get::<_, Option<i64>>(3)?,
                    r.get::<_, Option<Vec<u8>>>(4)?,
                    r.get::<_, Option<Vec<u8>>>(5)?,
                    r.get::<_, Option<i64>>(6)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(db_err("reading a chunk list"))?;
    let mut chunks = Vec::with_capacity(rows.len());
    for (expected, (seq, chunk_id, codec, raw_len, hash, data, dict_id)) in
        rows.into_iter().enumerate()
    {
        if i64::try_from(expected).ok() != Some(seq) {
            return Err(StorageError::corruption(
                location,
                format!("its chunk list skips from position {expected} to {seq}"),
            ));
        }
        let (Some(codec_id), Some(raw_len), Some(hash), Some(data)) = (codec, raw_len, hash, data)
        else {
            return Err(StorageError::corruption(
                location,
                format!("chunk {seq} names chunk id {chunk_id}, which does not exist"),
            ));
        };
        chunks.push(StoredBlob {
            codec_id,
            raw_len,
            hash,
            data,
            dict_id,
            chunks: Vec::new(),
            keyed: None,
        });
    }
    Ok(chunks)
}

/// `blob` with its chunks loaded when it is a chunk list (blob `blob_id`).
pub(super) fn with_chunks(
    conn: &Connection,
    blob_id: i64,
    mut blob: StoredBlob,
    location: impl FnOnce() -> String,
) -> Result<StoredBlob> {
    if crate::chunk::is_chunked(blob.codec_id) {
        blob.chunks = load(conn, blob_id, &location())?;
    }
    Ok(blob)
}

/// `blob_chunks` rows naming a chunk that does not exist.
pub(super) const COUNT_DANGLING_CHUNKS: &str = "SELECT count(*) FROM blob_chunks bc
     WHERE NOT EXISTS (SELECT 1 FROM chunks c WHERE c.id = bc.chunk_id)";

/// Chunks no list names, and chunks whose reference count is wrong or missing (one grouping
/// pass), plus count rows of chunks that do not exist.
pub(super) const COUNT_CHUNK_REFERENCE_ERRORS: &str = "SELECT coalesce(sum(refs.n IS NULL), 0),
            coalesce(sum(coalesce(cr.refcount, -1) != coalesce(refs.n, 0)), 0)
              + (SELECT count(*) FROM chunk_refs s
                 WHERE NOT EXISTS (SELECT 1 FROM chunks x WHERE x.id = s.chunk_id))
     FROM chunks c
     LEFT JOIN chunk_refs cr ON cr.chunk_id = c.id
     LEFT JOIN (SELECT chunk_id, count(*) AS n FROM blob_chunks GROUP BY chunk_id) AS refs
       ON refs.chunk_id = c.id";

/// Chunk lists whose blob does not exist.
pub(super) const COUNT_STRAY_LISTS: &str = "SELECT count(DISTINCT blob_id) FROM blob_chunks bc
     WHERE NOT EXISTS (SELECT 1 FROM blobs b WHERE b.id = bc.blob_id)";

/// The reference repair of chunks, after orphaned blobs were removed: the lists of removed
/// blobs dropped, chunks no list names removed, every other chunk's count recomputed.
/// Returns the chunks whose count was corrected, and the chunks and stored bytes removed.
pub(super) fn repair(conn: &Connection) -> Result<(u64, u64, u64)> {
    let err = db_err("repairing chunk references");
    conn.execute(
        "DELETE FROM blob_chunks WHERE blob_id NOT IN (SELECT id FROM blobs)",
        [],
    )
    .map_err(&err)?;
    let orphan = "id NOT IN (SELECT chunk_id FROM blob_chunks)";
    let (removed, bytes): (i64, i64) = conn
        .query_row(
            &format!(
                "SELECT count(*), CAST(total(stored_len) AS INTEGER) FROM chunks WHERE {orphan}"
            ),
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(&err)?;
    conn.execute(
        &format!("DELETE FROM chunk_refs WHERE chunk_id IN (SELECT id FROM chunks WHERE {orphan})"),
        [],
    )
    .map_err(&err)?;
    conn.execute(&format!("DELETE FROM chunks WHERE {orphan}"), [])
        .map_err(&err)?;
    // Count rows of chunks that do not exist, then every other count set to its lists.
    let stray = conn
        .execute(
            "DELETE FROM chunk_refs WHERE chunk_id NOT IN (SELECT id FROM chunks)",
            [],
        )
        .map_err(&err)?;
    let fixed = conn
        .execute(
            "INSERT INTO chunk_refs (chunk_id, refcount)
             SELECT chunk_id, count(*) FROM blob_chunks WHERE true GROUP BY chunk_id
             ON CONFLICT (chunk_id) DO UPDATE SET refcount = excluded.refcount
             WHERE refcount != excluded.refcount",
            [],
        )
        .map_err(&err)?;
    Ok((
        u64::try_from(fixed.saturating_add(stray)).unwrap_or(u64::MAX),
        u64::try_from(removed).unwrap_or(0),
        u64::try_from(bytes).unwrap_or(0),
    ))
}

/// Chunk-list blobs without a single list entry (their document cannot be read).
pub(super) const COUNT_EMPTY_LISTS: &str = "SELECT count(*) FROM blobs b
     WHERE b.codec IN (16, 17) AND NOT EXISTS (SELECT 1 FROM blob_chunks bc WHERE bc.blob_id = b.id)";

/// How the chunked record at `collection/key` is stored: the codec of its chunks (the
/// first's), their stored bytes and how many there are.
pub(super) fn summary(conn: &Connection, collection: &str, key: &str) -> Result<(i64, i64, u64)> {
    let (codec, stored, count): (Option<i64>, i64, i64) = conn
        .prepare_cached(
            "SELECT (SELECT c.codec FROM blob_chunks bc JOIN chunks c ON c.id = bc.chunk_id
                     WHERE bc.blob_id = r.blob_id ORDER BY bc.seq LIMIT 1),
                    CAST(total(c.stored_len) AS INTEGER), count(c.id)
             FROM records r JOIN blob_chunks bc ON bc.blob_id = r.blob_id
             JOIN chunks c ON c.id = bc.chunk_id
             WHERE r.collection = ?1 AND r.key = ?2",
        )
        .and_then(|mut s| {
            s.query_row(params![collection, key], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
        })
        .map_err(db_err("reading a chunk list's size"))?;
    Ok((
        codec.unwrap_or(0),
        stored,
        u64::try_from(count).unwrap_or(0),
    ))
}

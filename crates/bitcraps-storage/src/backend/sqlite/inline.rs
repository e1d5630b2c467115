//! A small delta kept in its record's row (schema version 13, issue #16).
//!
//! A delta over a delta written as a `blobs` row (`delta.rs`) still wrote three pages per
//! durable commit: the record (its version), the delta's row and the change log's. Three
//! WAL frames are 12,360 bytes, which dirty four file-system pages: 16 KiB on the
//! block-device counter before any keyframe or checkpoint. A delta whose bytes fit the
//! record's row is kept there instead: the record goes on naming its keyframe's chunk-list
//! blob (codec 16) — the reference it held as the keyframe's version, so no count and no
//! list moves — and carries the delta's hash, length and bytes in `delta_hash`,
//! `delta_raw_len`, `delta_data`. The commit writes the record's page and the change log's.
//!
//! Readers see the same delta blob as before (codec 17 over the keyframe's chunks,
//! [`blob`]); a write that gives the record another blob clears the columns
//! (`write.rs::update_record`). Only the snapshot row stream, which other backends load,
//! turns inline deltas back into `blobs` rows (`backend/snapshot/spill.rs`).

use rusqlite::{Connection, OptionalExtension, params};

use super::db_err;
use crate::backend::StoredBlob;
use crate::error::Result;
use crate::value::EncodedValue;

/// The bytes of a record row SQLite keeps on the b-tree page: a row of the `WITHOUT ROWID`
/// `records` table is an index cell, and on 4 KiB pages a cell over ~1,002 bytes spills
/// into an overflow page (one more page per commit, and freelist churn). The budget keeps
/// the whole row under it.
const ROW_BUDGET: usize = 960;

/// What the row holds besides the key and the delta's bytes: the header, the blob id, the
/// times, counts, version, expiry, the 32-byte hash and the length (generously).
const ROW_OVERHEAD: usize = 96;

/// Whether a delta of `stored` bytes fits the row of `collection/key`.
pub(super) fn fits(collection: &str, key: &str, stored: usize) -> bool {
    collection
        .len()
        .saturating_add(key.len())
        .saturating_add(stored)
        .saturating_add(ROW_OVERHEAD)
        <= ROW_BUDGET
}

/// Where and when the delta's version is written.
pub(super) struct Stamp {
    pub now_ms: i64,
    pub version: i64,
    pub expires_ms: Option<i64>,
}

/// Keeps the delta `value` in the row of `collection/key` when it fits and the record's blob
/// is the delta's keyframe (a chunk list with exactly the delta's chunks); returns whether it
/// did. A value whose content is stored already (under deduplication) takes the general
/// path, which shares it.
pub(super) fn write(
    conn: &Connection,
    collection: &str,
    key: &str,
    value: &EncodedValue,
    deduplicate: bool,
    stamp: &Stamp,
) -> Result<bool> {
    if !value.delta || value.dict_id.is_some() || !fits(collection, key, value.stored.len()) {
        return Ok(false);
    }
    let current: Option<(i64, i64)> = conn
        .prepare_cached(
            "SELECT b.id, b.codec FROM records r JOIN blobs b ON b.id = r.blob_id
             WHERE r.collection = ?1 AND r.key = ?2",
        )
        .and_then(|mut s| {
            s.query_row(params![collection, key], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
        })
        .map_err(db_err("reading the record a delta replaces"))?;
    let Some((keyframe, crate::chunk::CHUNKED)) = current else {
        return Ok(false);
    };
    if !super::delta::lists_exactly(conn, keyframe, value)? {
        return Ok(false);
    }
    if deduplicate && super::delta::stored_elsewhere(conn, value)? {
        return Ok(false);
    }
    let raw_len = i64::try_from(value.raw_len()).unwrap_or(i64::MAX);
    conn.prepare_cached(
        "UPDATE records SET delta_hash = ?3, delta_raw_len = ?4, delta_data = ?5,
                updated_at = ?6, version = ?7, expires_at = ?8
         WHERE collection = ?1 AND key = ?2",
    )
    .and_then(|mut s| {
        s.execute(params![
            collection,
            key,
            &value.hash[..],
            raw_len,
            &value.stored[..],
            stamp.now_ms,
            stamp.version,
            stamp.expires_ms
        ])
    })
    .map_err(db_err("keeping a delta in its record"))?;
    Ok(true)
}

/// The blob a record reads as: `blob` (its row in `blobs`), or, when the record carries an
/// inline delta, that delta over `blob`'s chunks (codec 17, as a `blobs` row would hold it).
pub(super) fn blob(
    blob: StoredBlob,
    inline: (Option<Vec<u8>>, Option<i64>, Option<Vec<u8>>),
) -> StoredBlob {
    match inline {
        (Some(hash), Some(raw_len), Some(data)) => StoredBlob {
            codec_id: crate::chunk::DELTA,
            raw_len,
            hash,
            data,
            dict_id: None,
            chunks: blob.chunks,
        },
        _ => blob,
    }
}

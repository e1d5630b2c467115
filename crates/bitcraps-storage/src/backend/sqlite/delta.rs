//! A delta that replaces a delta of the same keyframe, written over it (issue #16).
//!
//! Consecutive deltas of a key list the same chunks (their keyframe's). Written the general
//! way, each would insert its own list and take a reference to every chunk, and the version
//! it replaces would drop its list and every reference: two pages (`blob_chunks`,
//! `chunk_refs`) and ~250 statements per version for no change at all. When the record's
//! blob is a delta nothing else refers to (reference count 1) and lists exactly the new
//! delta's chunks, the new delta's bytes and hash go into that blob's row instead: the list
//! and the counts stay as they are, and stay exact — the row's one reference moves with it.
//! Anything else (another record shares the blob, another keyframe, content already stored
//! under the new hash) takes the general path.

use rusqlite::{Connection, OptionalExtension, params};

use super::db_err;
use super::held::{Held, Which};
use crate::value::EncodedValue;

/// Writes the delta `value` over the blob of `collection/key` when that blob is a delta
/// only this record refers to, with the same chunk list; returns that blob's id when it did
/// (the record is then still to be updated; it keeps the blob id).
pub(super) fn write_over(
    held: &mut Held<'_>,
    collection: &str,
    key: &str,
    value: &EncodedValue,
    deduplicate: bool,
) -> crate::error::Result<Option<i64>> {
    if !value.delta {
        return Ok(None);
    }
    let conn = held.conn();
    if deduplicate && stored_elsewhere(held, value)? {
        return Ok(None);
    }
    let current: Option<(i64, i64, i64)> = conn
        .prepare_cached(
            "SELECT b.id, b.codec, b.refcount FROM records r JOIN blobs b ON b.id = r.blob_id
             WHERE r.collection = ?1 AND r.key = ?2",
        )
        .and_then(|mut s| {
            s.query_row(params![collection, key], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()
        })
        .map_err(db_err("reading the blob a delta replaces"))?;
    let Some((blob_id, crate::chunk::DELTA, 1)) = current else {
        return Ok(None);
    };
    if !lists_exactly(conn, blob_id, value)? {
        return Ok(None);
    }
    let raw_len = i64::try_from(value.raw_len()).unwrap_or(i64::MAX);
    let stored_len = i64::try_from(value.stored.len()).unwrap_or(i64::MAX);
    conn.prepare_cached(
        "UPDATE blobs SET hash = ?2, raw_len = ?3, stored_len = nullif(?4, length(?5)), data = ?5,
                dict_id = ?6
         WHERE id = ?1",
    )
    .and_then(|mut s| {
        s.execute(params![
            blob_id,
            &value.hash[..],
            raw_len,
            stored_len,
            &value.stored[..],
            value.dict_id
        ])
    })
    .map_err(db_err("writing a delta over the one it replaces"))?;
    Ok(Some(blob_id))
}

/// Whether content with `value`'s hash is stored already (deduplication would share it).
pub(super) fn stored_elsewhere(
    held: &mut Held<'_>,
    value: &EncodedValue,
) -> crate::error::Result<bool> {
    let stored: Option<i64> = held
        .get(Which::FindBlob)
        .and_then(|s| {
            s.query_row(params![&value.hash[..]], |r| r.get(0))
                .optional()
        })
        .map_err(db_err("looking up content by hash"))?;
    Ok(stored.is_some())
}

/// Whether the chunk list of blob `blob_id` is exactly `value`'s chunks, in order.
pub(super) fn lists_exactly(
    conn: &Connection,
    blob_id: i64,
    value: &EncodedValue,
) -> crate::error::Result<bool> {
    let listed: Vec<Vec<u8>> = conn
        .prepare_cached(
            "SELECT c.hash FROM blob_chunks bc JOIN chunks c ON c.id = bc.chunk_id
             WHERE bc.blob_id = ?1 ORDER BY bc.seq",
        )
        .and_then(|mut s| {
            s.query_map(params![blob_id], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(db_err("reading the chunk list a delta replaces"))?;
    Ok(listed.len() == value.chunks.len()
        && listed
            .iter()
            .zip(value.chunks.iter())
            .all(|(a, b)| a.as_slice() == b.hash.as_slice()))
}

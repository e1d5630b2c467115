//! A small delta kept in its record's row (schema version 13, issue #16).
//!
//! A delta over a delta written as a `blobs` row (`delta.rs`) still wrote three pages per
//! durable commit: the record (its version), the delta's row and the change log's. Three
//! WAL frames are 12,360 bytes, which dirty four file-system pages: 16 KiB on the
//! block-device counter before any keyframe or checkpoint. A delta whose bytes fit the
//! record's row is kept there instead: the record goes on naming its keyframe's chunk-list
//! blob (codec 16) — the reference it held as the keyframe's version, so no count and no
//! list moves — and carries the delta's hash, length and bytes in `delta` (schema version
//! 16; three columns before): the 32-byte hash, the raw length as [`LENGTH_DIGITS`] ASCII
//! decimal digits (so SQL reads it with a cast: [`inline_delta_len!`]) and the stored bytes
//! from byte 53 ([`encode`], [`decode`]). The commit writes the record's page and the change log's.
//!
//! Readers see the same delta blob as before (codec 17 over the keyframe's chunks,
//! [`blob`]); a write that gives the record another blob clears the columns
//! (`write.rs::update_record`). Only the snapshot row stream, which other backends load,
//! turns inline deltas back into `blobs` rows (`backend/snapshot/spill.rs`).
//!
//! The deep check, the scrub and backup verification read blobs page by page, which holds
//! an inline delta's keyframe but not the delta; [`after`] pages through the records that
//! hold one (a scan of `records` in key order: an index on them would cost a page per
//! commit), so those checks decode each over its keyframe and check the document's hash.

use rusqlite::{Connection, OptionalExtension, params};

use super::db_err;
use super::held::Held;
use crate::backend::{InlineDeltaEntry, RecordCursor, StoredBlob};
use crate::error::{Result, StorageError};
use crate::value::EncodedValue;

/// The bytes of a record row SQLite keeps on the b-tree page: a row of the `WITHOUT ROWID`
/// `records` table is an index cell, and on 4 KiB pages a cell over ~1,002 bytes spills
/// into an overflow page (one more page per commit, and freelist churn). The budget keeps
/// the whole row under it.
const ROW_BUDGET: usize = 960;

/// What the row holds besides the key and the delta's bytes: the header, the blob id, the
/// times, counts, version, expiry, the 32-byte hash and the 20-digit length (generously).
const ROW_OVERHEAD: usize = 112;

/// The hash's bytes at the start of `records.delta`.
const HASH_LEN: usize = 32;
/// The raw length's decimal digits after the hash (zero-padded; a leading `-` for −1, the
/// mark of a delta the schema-16 migration found partly missing).
pub(crate) const LENGTH_DIGITS: usize = 20;
/// The bytes of `records.delta` before the delta's stored bytes.
pub(crate) const PREFIX_LEN: usize = HASH_LEN + LENGTH_DIGITS;

/// SQL for the raw length held by the `records.delta` value `$delta` (an SQL expression,
/// e.g. `"r.delta"`): NULL when it is NULL, else its 20 digits as an integer, or −1 when they
/// are not 20 decimal digits of at most `i64::MAX` or the value is shorter than its prefix —
/// damage, or the schema-16 migration's mark of a partly missing delta. [`decode`] refuses
/// exactly those, so what SQL sums and reports never reads a damaged length as a number
/// (`CAST` alone reads `12x…` as 12, and twenty 9s as `i64::MAX`). The one spelling of the
/// layout in SQL.
macro_rules! inline_delta_len {
    ($delta:literal) => {
        concat!(
            "(CASE WHEN ",
            $delta,
            " IS NULL THEN NULL",
            " WHEN length(",
            $delta,
            ") >= 52",
            " AND length(CAST(substr(",
            $delta,
            ", 33, 20) AS TEXT)) = 20",
            " AND CAST(substr(",
            $delta,
            ", 33, 20) AS TEXT) NOT GLOB '*[^0-9]*'",
            // Twenty digits compare as text like the numbers: at most i64::MAX, which
            // `decode` parses (`CAST` would read a larger one as i64::MAX).
            " AND CAST(substr(",
            $delta,
            ", 33, 20) AS TEXT) <= '09223372036854775807'",
            " THEN CAST(CAST(substr(",
            $delta,
            ", 33, 20) AS TEXT) AS INTEGER)",
            " ELSE -1 END)"
        )
    };
}
pub(crate) use inline_delta_len;

/// The `records.delta` value of a delta with `hash`, `raw_len` and `stored` bytes.
pub(crate) fn encode(hash: &[u8], raw_len: i64, stored: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(PREFIX_LEN.saturating_add(stored.len()));
    out.extend_from_slice(hash);
    out.extend_from_slice(format!("{raw_len:020}").as_bytes());
    out.extend_from_slice(stored);
    out
}

/// A delta's `(hash, raw_len, stored bytes)` from its `records.delta` value; the reason
/// when the value is malformed (short, a length that is not a non-negative number).
pub(crate) fn decode(mut delta: Vec<u8>) -> std::result::Result<(Vec<u8>, i64, Vec<u8>), String> {
    if delta.len() < PREFIX_LEN {
        return Err(format!(
            "the record's inline delta is {} bytes, shorter than its {PREFIX_LEN}-byte hash \
             and length",
            delta.len()
        ));
    }
    let data = delta.split_off(PREFIX_LEN);
    let digits = delta.split_off(HASH_LEN);
    let raw_len = std::str::from_utf8(&digits)
        .ok()
        .filter(|d| d.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|d| d.parse::<i64>().ok())
        .ok_or_else(|| {
            "the record's inline delta is partly missing or its length is not a number".to_owned()
        })?;
    Ok((delta, raw_len, data))
}

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
    held: &mut Held<'_>,
    collection: &str,
    key: &str,
    value: &EncodedValue,
    deduplicate: bool,
    stamp: &Stamp,
) -> Result<bool> {
    if !value.delta || value.dict_id.is_some() || !fits(collection, key, value.stored.len()) {
        return Ok(false);
    }
    let conn = held.conn();
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
    if deduplicate && super::delta::stored_elsewhere(held, value)? {
        return Ok(false);
    }
    let raw_len = i64::try_from(value.raw_len()).unwrap_or(i64::MAX);
    conn.prepare_cached(
        "UPDATE records SET delta = ?3,
                updated_at = nullif(?4, created_at), version = ?5, expires_at = ?6
         WHERE collection = ?1 AND key = ?2",
    )
    .and_then(|mut s| {
        s.execute(params![
            collection,
            key,
            encode(&value.hash, raw_len, &value.stored),
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
/// A malformed `delta` value (too short, no length) is `Corruption` (`location` names the
/// record), never the keyframe served as the document.
pub(super) fn blob(
    blob: StoredBlob,
    inline: Option<Vec<u8>>,
    location: impl FnOnce() -> String,
) -> Result<StoredBlob> {
    let Some(delta) = inline else {
        return Ok(blob);
    };
    let (hash, raw_len, data) =
        decode(delta).map_err(|detail| StorageError::corruption(location(), detail))?;
    Ok(StoredBlob {
        codec_id: crate::chunk::DELTA,
        raw_len,
        hash,
        data,
        dict_id: None,
        chunks: blob.chunks,
        keyed: None,
    })
}

/// Up to `limit` records after `after` that hold an inline delta, in collection and key
/// order, each with the blob it reads as: one read transaction, so a delta and its
/// keyframe's chunks come from one snapshot. A keyframe whose chunk list cannot be read
/// leaves the delta without chunks, which fails its decode and names the record.
pub(crate) fn after(
    conn: &Connection,
    after: Option<&RecordCursor>,
    limit: usize,
) -> Result<Vec<InlineDeltaEntry>> {
    let tx = conn
        .unchecked_transaction()
        .map_err(db_err("starting a read"))?;
    let entries = after_in(&tx, after, limit)?;
    tx.finish().map_err(db_err("ending a read"))?;
    Ok(entries)
}

type InlineRow = (String, String, i64, Option<i64>, Vec<u8>);

/// The columns of a page of records holding an inline delta, with their keyframe's codec.
macro_rules! inline_page {
    ($bound:literal, $limit:literal) => {
        concat!(
            "SELECT r.collection, r.key, r.blob_id, b.codec,
                    r.delta
             FROM records r LEFT JOIN blobs b ON b.id = r.blob_id
             WHERE ",
            $bound,
            "r.delta IS NOT NULL
             ORDER BY r.collection, r.key LIMIT ",
            $limit
        )
    };
}
const FIRST_PAGE: &str = inline_page!("", "?1");
const PAGE_AFTER: &str = inline_page!("(r.collection, r.key) > (?1, ?2) AND ", "?3");

fn after_in(
    conn: &Connection,
    after: Option<&RecordCursor>,
    limit: usize,
) -> Result<Vec<InlineDeltaEntry>> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    // Two statements rather than `?1 IS NULL OR …`, which SQLite cannot seek with: the
    // row-value bound starts each page at its place in the primary key.
    let (sql, collection, key) = match after {
        Some((c, k)) => (PAGE_AFTER, c.as_str(), k.as_str()),
        None => (FIRST_PAGE, "", ""),
    };
    let rows: Vec<InlineRow> = conn
        .prepare_cached(sql)
        .and_then(|mut s| {
            let read =
                |r: &rusqlite::Row<'_>| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?));
            match after {
                Some(_) => s
                    .query_map(params![collection, key, limit], read)?
                    .collect(),
                None => s.query_map(params![limit], read)?.collect(),
            }
        })
        .map_err(db_err("reading the deltas kept in records"))?;
    rows.into_iter()
        .map(|(collection, key, keyframe_id, codec, delta)| {
            let mut keyframe = StoredBlob {
                codec_id: codec.unwrap_or(crate::chunk::CHUNKED),
                raw_len: 0,
                hash: Vec::new(),
                data: Vec::new(),
                dict_id: None,
                chunks: Vec::new(),
                keyed: None,
            };
            if codec.is_some() {
                let location = || format!("{collection}/{key}");
                match super::chunks::with_chunks(conn, keyframe_id, keyframe.clone(), location) {
                    Ok(loaded) => keyframe = loaded,
                    Err(StorageError::Corruption { detail, .. }) => {
                        tracing::error!(%collection, %key, %detail, "a keyframe's chunk list failed to load");
                    }
                    Err(other) => return Err(other),
                }
            }
            // A malformed value reads as a delta with no hash and length −1, which the
            // checks report under the record's name instead of failing the whole pass.
            let (hash, raw_len, data) =
                decode(delta).unwrap_or_else(|_| (Vec::new(), -1, Vec::new()));
            Ok(InlineDeltaEntry {
                blob: StoredBlob {
                    codec_id: crate::chunk::DELTA,
                    raw_len,
                    hash,
                    data,
                    dict_id: None,
                    chunks: keyframe.chunks,
                    keyed: None,
                },
                collection,
                key,
                keyframe_id,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `delta` value reads back as written; one too short, with a length that is not a
    /// non-negative decimal number (the migration's −1 mark, a sign, spaces, bytes that are
    /// not ASCII) is refused, never read as a length.
    #[test]
    fn a_delta_value_round_trips_and_malformed_ones_are_refused() {
        let hash = [7u8; 32];
        let value = encode(&hash, 1234, b"\x80\x00\x01");
        assert_eq!(value.len(), PREFIX_LEN + 3);
        assert_eq!(
            decode(value.clone()),
            Ok((hash.to_vec(), 1234, b"\x80\x00\x01".to_vec()))
        );
        assert_eq!(
            decode(encode(&hash, 0, b"")),
            Ok((hash.to_vec(), 0, Vec::new()))
        );
        assert!(decode(value.get(..PREFIX_LEN - 1).unwrap_or_default().to_vec()).is_err());
        for digits in [
            format!("{:020}", -1),
            format!("{:+020}", 5),
            format!("{:>20}", 5),
            "0000000000000000000\u{e9}".into(),
        ] {
            let mut bad = hash.to_vec();
            bad.extend_from_slice(digits.as_bytes().get(..20).unwrap_or_default());
            bad.extend_from_slice(b"x");
            assert!(decode(bad).is_err(), "{digits:?}");
        }
    }
}

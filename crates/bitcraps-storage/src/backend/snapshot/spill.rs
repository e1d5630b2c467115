//! Inline deltas as `blobs` rows, for the row stream other backends load (issue #16).
//!
//! A SQLite store of schema version 13 may keep a small delta in its record's row
//! (`backend/sqlite/inline.rs`; one `delta` column since version 16, which every snapshot
//! read here has: loads require the current version): the record names its keyframe's chunk-list blob and carries
//! the delta. PostgreSQL and the in-memory backend store a delta as a blob of its own, as
//! schema version 12 did, and load a snapshot's rows as they are. So the stream reads such a
//! snapshot through temporary tables (a read-only connection may write its own `temp`
//! schema; the snapshot file is not touched): each inline delta becomes a blob with a fresh
//! id above every stored one, codec 17, one reference and a copy of its keyframe's chunk
//! list; the record names it; the keyframe loses the record's reference and is left out
//! when none remains (with its list); each chunk's count is the number of list entries
//! naming it. The counts stay exact, so the loaded store passes its consistency check.

use rusqlite::Connection;

use crate::backend::sqlite::db_err;
use crate::backend::sqlite::inline::inline_delta_len;
use crate::error::Result;

/// Whether the snapshot's records hold any inline delta (a snapshot without the column holds
/// none).
pub(super) fn has_inline(conn: &Connection) -> Result<bool> {
    let err = db_err("reading the snapshot");
    let column: i64 = conn
        .query_row(
            "SELECT count(*) FROM pragma_table_info('records') WHERE name = 'delta'",
            [],
            |r| r.get(0),
        )
        .map_err(&err)?;
    if column == 0 {
        return Ok(false);
    }
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM main.records WHERE delta IS NOT NULL)",
        [],
        |r| r.get(0),
    )
    .map_err(err)
}

/// Builds the temporary tables the `SPILLED_*` statements read.
pub(super) fn prepare(conn: &Connection) -> Result<()> {
    conn.execute_batch(
        "CREATE TEMP TABLE spill_map AS
             SELECT collection, key, blob_id AS keyframe,
                    (SELECT coalesce(max(id), 0) FROM main.blobs)
                        + row_number() OVER (ORDER BY collection, key) AS id
             FROM main.records WHERE delta IS NOT NULL;
         CREATE TEMP TABLE spill_refs AS
             SELECT keyframe, count(*) AS n FROM temp.spill_map GROUP BY keyframe;
         CREATE TEMP TABLE spill_freed AS
             SELECT b.id FROM main.blobs b JOIN temp.spill_refs s ON s.keyframe = b.id
             WHERE b.refcount <= s.n;
         CREATE TEMP TABLE spill_lists AS
             SELECT blob_id, seq, chunk_id FROM main.blob_chunks
             WHERE blob_id NOT IN (SELECT id FROM temp.spill_freed)
             UNION ALL
             SELECT m.id, bc.seq, bc.chunk_id
             FROM temp.spill_map m JOIN main.blob_chunks bc ON bc.blob_id = m.keyframe;
         CREATE TEMP TABLE spill_counts AS
             SELECT chunk_id, count(*) AS n FROM temp.spill_lists GROUP BY chunk_id;",
    )
    .map_err(db_err("reading the snapshot's inline deltas"))
}

/// `SELECT_CHUNKS` with each chunk's count taken from the spilled lists.
pub(super) const SPILLED_CHUNKS: &str =
    "SELECT c.id, c.hash, c.codec, c.raw_len, c.stored_len, coalesce(n.n, 0), c.data, c.dict_id
     FROM main.chunks c LEFT JOIN temp.spill_counts n ON n.chunk_id = c.id ORDER BY c.id";

/// `SELECT_BLOBS` with the keyframes' counts lowered, freed keyframes left out and one blob
/// per inline delta.
pub(super) const SPILLED_BLOBS: &str = concat!(
    "SELECT b.id, b.hash, b.codec, b.raw_len, coalesce(b.stored_len, length(b.data)),
            b.refcount - coalesce(s.n, 0), b.data, b.dict_id
     FROM main.blobs b LEFT JOIN temp.spill_refs s ON s.keyframe = b.id
     WHERE b.id NOT IN (SELECT id FROM temp.spill_freed)
     UNION ALL
     SELECT m.id, substr(r.delta, 1, 32), 17, ",
    inline_delta_len!("r.delta"),
    ", length(r.delta) - 52, 1,
            substr(r.delta, 53), NULL
     FROM temp.spill_map m
     JOIN main.records r ON r.collection = m.collection AND r.key = m.key
     ORDER BY 1"
);

/// `SELECT_CHUNK_LISTS` over the spilled lists.
pub(super) const SPILLED_LISTS: &str =
    "SELECT blob_id, seq, chunk_id FROM temp.spill_lists ORDER BY blob_id, seq";

/// `SELECT_RECORDS` with each record that held an inline delta naming its new blob.
pub(super) const SPILLED_RECORDS: &str =
    "SELECT r.collection, r.key, coalesce(m.id, r.blob_id), r.created_at,
            coalesce(r.updated_at, r.created_at),
            r.access_count, r.last_accessed, r.version, r.expires_at
     FROM main.records r
     LEFT JOIN temp.spill_map m ON m.collection = r.collection AND m.key = r.key
     ORDER BY r.collection, r.key";

//! The read path: lookups, listing, statistics and the consistency check.

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};

use super::db_err;
use super::inline::inline_delta_len;
use crate::backend::{
    BlobEntry, BlobReference, ConsistencyReport, DatabaseStatistics, RecordMetadata, RecordPage,
    StoredBlob, StoredDictionary, StoredRecord, time_from_ms,
};
use crate::codec::Codec;
use crate::error::{Result, StorageError};
use crate::list::{ListOptions, ListPage};
use crate::value::hex;
use crate::version::Version;

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// The columns [`record_from_row`] reads, and the tables they come from (a macro, so
/// whole statements are built from it at compile time).
macro_rules! record_columns {
    () => {
        "r.blob_id, b.codec, b.raw_len, b.hash, b.data, b.dict_id, r.version, r.expires_at,
            r.delta
     FROM records r LEFT JOIN blobs b ON b.id = r.blob_id"
    };
}
/// [`record_columns!`] as a value.
const RECORD_COLUMNS: &str = record_columns!();

/// The columns of one record as [`RECORD_COLUMNS`] reads them.
struct RecordRow {
    blob_id: i64,
    codec_id: Option<i64>,
    raw_len: Option<i64>,
    hash: Option<Vec<u8>>,
    data: Option<Vec<u8>>,
    dict_id: Option<i64>,
    version: i64,
    expires_ms: Option<i64>,
    inline: Option<Vec<u8>>,
}

impl RecordRow {
    /// The columns of [`RECORD_COLUMNS`] starting at column `first`.
    fn read(r: &rusqlite::Row<'_>, first: usize) -> Result<Self> {
        let read = || -> rusqlite::Result<_> {
            Ok(RecordRow {
                blob_id: r.get(first)?,
                codec_id: r.get(first + 1)?,
                raw_len: r.get(first + 2)?,
                hash: r.get(first + 3)?,
                data: r.get(first + 4)?,
                dict_id: r.get(first + 5)?,
                version: r.get(first + 6)?,
                expires_ms: r.get(first + 7)?,
                inline: r.get(first + 8)?,
            })
        };
        read().map_err(db_err("reading a record"))
    }

    /// Whether the document is more than this row: a chunk list (its chunks are other rows)
    /// or a delta kept in the record (read over its keyframe's chunks).
    fn reads_more_rows(&self) -> bool {
        self.inline.is_some() || self.codec_id.is_some_and(crate::chunk::is_chunked)
    }

    /// The record, with a chunk list's chunks loaded through `conn`. A record whose blob is
    /// missing is corruption, not "not found".
    fn into_record(self, conn: &Connection, collection: &str, key: &str) -> Result<StoredRecord> {
        let version = Version::stored(collection, key, self.version)?;
        let blob_id = self.blob_id;
        let location = || format!("{collection}/{key}");
        match (self.codec_id, self.raw_len, self.hash, self.data) {
            (Some(codec_id), Some(raw_len), Some(hash), Some(data)) => {
                let blob = StoredBlob {
                    codec_id,
                    raw_len,
                    hash,
                    data,
                    dict_id: self.dict_id,
                    chunks: Vec::new(),
                    keyed: None,
                };
                let blob = super::chunks::with_chunks(conn, blob_id, blob, location)?;
                Ok(StoredRecord {
                    blob: super::inline::blob(blob, self.inline, location)?,
                    version,
                    expires_ms: self.expires_ms,
                })
            }
            _ => Err(StorageError::corruption(
                location(),
                format!("the record refers to blob {blob_id}, which does not exist"),
            )),
        }
    }
}

/// A record from [`RECORD_COLUMNS`] starting at column `first`. A record whose blob is
/// missing is corruption, not "not found".
fn record_from_row(
    conn: &Connection,
    r: &rusqlite::Row<'_>,
    first: usize,
    collection: &str,
    key: &str,
) -> Result<StoredRecord> {
    RecordRow::read(r, first)?.into_record(conn, collection, key)
}

/// The statement of [`get`] and [`get_one_row`].
const GET_RECORD: &str = concat!(
    "SELECT ",
    record_columns!(),
    " WHERE r.collection = ?1 AND r.key = ?2"
);

/// Runs [`GET_RECORD`] for `collection`/`key` and hands its row, if any, to `read`.
fn with_record_row<R>(
    conn: &Connection,
    collection: &str,
    key: &str,
    read: impl FnOnce(&rusqlite::Row<'_>) -> Result<R>,
) -> Result<Option<R>> {
    let mut stmt = conn
        .prepare_cached(GET_RECORD)
        .map_err(db_err("reading a record"))?;
    let mut rows = stmt
        .query(params![collection, key])
        .map_err(db_err("reading a record"))?;
    match rows.next().map_err(db_err("reading a record"))? {
        Some(row) => read(row).map(Some),
        None => Ok(None),
    }
}

/// A record's blob and version.
pub fn get(conn: &Connection, collection: &str, key: &str) -> Result<Option<StoredRecord>> {
    with_record_row(conn, collection, key, |row| {
        record_from_row(conn, row, 0, collection, key)
    })
}

/// [`get`] when the record's document is its own row and its blob's (one indexed lookup,
/// one blob by id, no other rows): `None` when it is more — a chunk list, a delta kept in
/// the record — which the caller reads with [`get`] where a longer read may run.
pub fn get_one_row(
    conn: &Connection,
    collection: &str,
    key: &str,
) -> Option<Result<Option<StoredRecord>>> {
    let found = with_record_row(conn, collection, key, |row| {
        let parts = RecordRow::read(row, 0)?;
        if parts.reads_more_rows() {
            return Ok(None);
        }
        parts.into_record(conn, collection, key).map(Some)
    });
    match found {
        Ok(Some(None)) => None,
        Ok(Some(Some(record))) => Some(Ok(Some(record))),
        Ok(None) => Some(Ok(None)),
        Err(e) => Some(Err(e)),
    }
}

/// Several records of one collection, in the order of `keys`, read in one transaction so
/// they come from one snapshot.
pub fn get_many(
    conn: &Connection,
    collection: &str,
    keys: &[String],
) -> Result<Vec<Option<StoredRecord>>> {
    let tx = conn
        .unchecked_transaction()
        .map_err(db_err("starting a read"))?;
    let found = keys
        .iter()
        .map(|key| get(&tx, collection, key))
        .collect::<Result<Vec<_>>>()?;
    tx.finish().map_err(db_err("ending a read"))?;
    Ok(found)
}

/// A page of records with their blobs, paged exactly like [`list`].
pub fn scan(conn: &Connection, collection: &str, options: &ListOptions) -> Result<RecordPage> {
    let (sql, args) = range_query(&format!("r.key, {RECORD_COLUMNS}"), collection, options);
    let mut stmt = conn
        .prepare_cached(&sql)
        .map_err(db_err("scanning records"))?;
    let mut rows = stmt
        .query(params_from_iter(args))
        .map_err(db_err("scanning records"))?;
    let mut items = Vec::new();
    while let Some(row) = rows.next().map_err(db_err("scanning records"))? {
        let key: String = row.get(0).map_err(db_err("scanning records"))?;
        let record = record_from_row(conn, row, 1, collection, &key)?;
        items.push((key, record));
    }
    Ok(RecordPage::from_fetched(items, options.limit_value()))
}

/// A record's metadata as stored.
pub fn metadata(conn: &Connection, collection: &str, key: &str) -> Result<Option<RecordMetadata>> {
    let location = || format!("{collection}/{key}");
    let row = conn
        .prepare_cached(concat!(
            "SELECT r.created_at, coalesce(r.updated_at, r.created_at), r.access_count, r.last_accessed,
                    iif(r.delta IS NULL, b.codec, 17),
                    coalesce(",
            inline_delta_len!("r.delta"),
            ", b.raw_len),
                    coalesce(length(r.delta) - 52, b.stored_len, length(b.data)),
                    coalesce(substr(r.delta, 1, 32), b.hash),
                    iif(r.delta IS NULL, b.refcount, 1), b.dict_id, r.version, r.expires_at
             FROM records r JOIN blobs b ON b.id = r.blob_id
             WHERE r.collection = ?1 AND r.key = ?2",
        ))
        .and_then(|mut s| {
            s.query_row(params![collection, key], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, Option<i64>>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, i64>(5)?,
                    r.get::<_, i64>(6)?,
                    r.get::<_, Vec<u8>>(7)?,
                    r.get::<_, i64>(8)?,
                    r.get::<_, Option<i64>>(9)?,
                    r.get::<_, i64>(10)?,
                    r.get::<_, Option<i64>>(11)?,
                ))
            })
            .optional()
        })
        .map_err(db_err("reading record metadata"))?;
    let Some((
        created,
        updated,
        count,
        last,
        codec_id,
        raw_len,
        stored_len,
        hash,
        refs,
        dict,
        version,
        expires,
    )) = row
    else {
        return Ok(None);
    };
    let version = Version::stored(collection, key, version)?;
    let is_delta = codec_id == crate::chunk::DELTA;
    if raw_len < 0 {
        // `inline_delta_len!`'s mark of a length that is not a number; no blob row has one.
        return Err(StorageError::corruption(
            location(),
            "the record's inline delta is partly missing or its length is not a number",
        ));
    }
    let (codec_id, stored_len, chunk_count) = if crate::chunk::is_chunked(codec_id) {
        let (codec, chunk_bytes, count) = super::chunks::summary(conn, collection, key)?;
        // A delta's own stored bytes are its patch; its chunks are its keyframe's.
        (
            codec,
            if is_delta { stored_len } else { chunk_bytes },
            count,
        )
    } else {
        (codec_id, stored_len, 0)
    };
    let codec = u8::try_from(codec_id)
        .ok()
        .and_then(Codec::from_id)
        .ok_or_else(|| {
            StorageError::corruption(location(), format!("unknown codec id {codec_id}"))
        })?;
    Ok(Some(RecordMetadata {
        collection: collection.to_owned(),
        key: key.to_owned(),
        size_bytes: to_u64(raw_len),
        stored_bytes: to_u64(stored_len),
        chunk_count,
        is_delta,
        codec,
        is_compressed: codec != Codec::None,
        dictionary_id: dict,
        content_hash: hex(&hash),
        shared_by: to_u64(refs),
        created_at: time_from_ms(created),
        updated_at: time_from_ms(updated),
        access_count: to_u64(count),
        last_accessed: last.map(time_from_ms),
        version,
        expires_at: expires.map(time_from_ms),
    }))
}

/// Every stored dictionary, oldest first.
pub fn dictionaries(conn: &Connection) -> Result<Vec<StoredDictionary>> {
    conn.prepare_cached("SELECT id, collection, data FROM dictionaries ORDER BY id")
        .and_then(|mut s| {
            s.query_map([], |r| {
                Ok(StoredDictionary {
                    id: r.get(0)?,
                    collection: r.get(1)?,
                    data: r.get(2)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(db_err("reading dictionaries"))
}

/// Keys of `collection` in order, honouring prefix, `after` and limit.
pub fn list(conn: &Connection, collection: &str, options: &ListOptions) -> Result<ListPage> {
    let (sql, args) = range_query("key FROM records", collection, options);
    let keys = conn
        .prepare_cached(&sql)
        .and_then(|mut s| {
            s.query_map(params_from_iter(args), |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(db_err("listing keys"))?;
    Ok(ListPage::from_fetched(keys, options.limit_value()))
}

/// The query of a key range (listing, scanning) and its arguments:
/// `SELECT {select}` (which names the tables) restricted to `collection` and `options`.
fn range_query(select: &str, collection: &str, options: &ListOptions) -> (String, Vec<Value>) {
    let mut sql = format!("SELECT {select} WHERE collection = ?");
    let mut args: Vec<Value> = vec![Value::Text(collection.to_owned())];
    // Exactly one lower bound: with two (`key >= prefix AND key > after`) SQLite seeks to
    // the first and filters by the second, so every page rescans from the prefix start and
    // paging through n keys costs O(n²).
    match (options.prefix_str(), options.after_key()) {
        (Some(prefix), Some(after)) if after >= prefix => {
            sql.push_str(" AND key > ?");
            args.push(Value::Text(after.to_owned()));
        }
        (Some(prefix), _) => {
            sql.push_str(" AND key >= ?");
            args.push(Value::Text(prefix.to_owned()));
        }
        (None, Some(after)) => {
            sql.push_str(" AND key > ?");
            args.push(Value::Text(after.to_owned()));
        }
        (None, None) => {}
    }
    if let Some(upper) = options.prefix_upper_bound() {
        sql.push_str(" AND key < ?");
        args.push(Value::Text(upper));
    }
    if let Some(now) = options.live_at_ms() {
        sql.push_str(" AND (expires_at IS NULL OR expires_at > ?)");
        args.push(Value::Integer(now));
    }
    // The limit is written into the SQL, not bound: SQLite reads a bound LIMIT's value while
    // planning, so binding it again (every page) expired the cached statement and every page
    // re-prepared it (a third of a page's time in SQLite). A handful of limits are in use,
    // so the statement cache holds one statement each.
    // SQLite reads a literal above i64::MAX as a REAL and refuses it ("datatype mismatch").
    let fetch = i64::try_from(options.limit_value().saturating_add(1)).unwrap_or(i64::MAX);
    sql.push_str(&format!(" ORDER BY key LIMIT {fetch}"));
    (sql, args)
}

/// Names of the collections that hold at least one record, in order.
pub fn collections(conn: &Connection) -> Result<Vec<String>> {
    conn.prepare_cached("SELECT DISTINCT collection FROM records ORDER BY collection")
        .and_then(|mut s| {
            s.query_map([], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(db_err("listing collections"))
}

/// Counts and sizes (file sizes are filled in by the caller).
pub fn statistics(conn: &Connection) -> Result<DatabaseStatistics> {
    // Byte sums are `CAST(total(..) AS INTEGER)`: `sum()` fails the whole call with "integer
    // overflow" past `i64::MAX`, the cast saturates there.
    let err = db_err("collecting database statistics");
    let (record_count, logical_bytes): (i64, i64) = conn
        .query_row(
            concat!(
                "SELECT count(*), CAST(total(max(coalesce(",
                inline_delta_len!("r.delta"),
                ", b.raw_len), 0)) AS INTEGER) FROM records r JOIN blobs b ON b.id = r.blob_id"
            ),
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(&err)?;
    // Inline deltas (schema version 13) count as the delta blobs they stand for.
    let (inline_count, inline_stored, inline_saved): (i64, i64, i64) = conn
        .query_row(
            concat!(
                "SELECT count(*), CAST(total(length(delta) - 52) AS INTEGER),
                        CAST(total(max(",
                inline_delta_len!("delta"),
                ", 0) - (length(delta) - 52)) AS INTEGER)
                 FROM records WHERE delta IS NOT NULL"
            ),
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .map_err(&err)?;
    let (blob_count, unique_bytes, stored_bytes, chunked_blobs, delta_blobs, delta_saved): (
        i64,
        i64,
        i64,
        i64,
        i64,
        i64,
    ) = conn
        .query_row(
            "SELECT count(*), CAST(total(raw_len) FILTER (WHERE codec NOT IN (16, 17)) AS INTEGER),
                    CAST(total(coalesce(stored_len, length(data))) AS INTEGER),
                    count(*) FILTER (WHERE codec = 16),
                    count(*) FILTER (WHERE codec = 17),
                    CAST(total(raw_len - coalesce(stored_len, length(data)))
                             FILTER (WHERE codec = 17) AS INTEGER)
             FROM blobs",
            [],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            },
        )
        .map_err(&err)?;
    let (chunk_count, chunk_raw, chunk_stored, chunk_saved): (i64, i64, i64, i64) = conn
        .query_row(
            "SELECT count(*), CAST(total(raw_len) AS INTEGER), CAST(total(stored_len) AS INTEGER),
                    CAST(total(raw_len * (coalesce(r.refcount, 1) - 1)) AS INTEGER)
             FROM chunks c LEFT JOIN chunk_refs r ON r.chunk_id = c.id",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .map_err(&err)?;
    let (dictionary_count, dictionary_bytes): (i64, i64) = conn
        .query_row(
            "SELECT count(*), CAST(total(length(data)) AS INTEGER) FROM dictionaries",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(&err)?;
    let pragma = |name: &str| -> Result<u64> {
        conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get::<_, i64>(0))
            .map(to_u64)
            .map_err(&err)
    };
    Ok(DatabaseStatistics {
        backend: "sqlite",
        record_count: to_u64(record_count),
        blob_count: to_u64(blob_count),
        logical_bytes: to_u64(logical_bytes),
        unique_bytes: to_u64(unique_bytes.saturating_add(chunk_raw)),
        stored_bytes: to_u64(
            stored_bytes
                .saturating_add(chunk_stored)
                .saturating_add(inline_stored),
        ),
        chunked_blobs: to_u64(chunked_blobs),
        chunk_count: to_u64(chunk_count),
        chunk_dedup_saved_bytes: to_u64(chunk_saved),
        delta_blobs: to_u64(delta_blobs.saturating_add(inline_count)),
        delta_saved_bytes: to_u64(delta_saved.saturating_add(inline_saved)),
        dictionary_count: to_u64(dictionary_count),
        dictionary_bytes: to_u64(dictionary_bytes),
        page_count: pragma("page_count")?,
        free_pages: pragma("freelist_count")?,
        page_size: pragma("page_size")?,
        ..DatabaseStatistics::default()
    })
}

/// Records whose blob does not exist (one primary-key lookup per record).
pub(super) const COUNT_DANGLING_RECORDS: &str = "SELECT count(*) FROM records r
     WHERE NOT EXISTS (SELECT 1 FROM blobs b WHERE b.id = r.blob_id)";

/// Blobs no record refers to, and blobs whose reference count is wrong. There is no index on
/// `records.blob_id` (schema version 3), so records are grouped by blob in one pass; a
/// subquery per blob would scan every record once per blob.
pub(super) const COUNT_REFERENCE_ERRORS: &str = "SELECT coalesce(sum(refs.n IS NULL), 0),
            coalesce(sum(b.refcount != coalesce(refs.n, 0)), 0)
     FROM blobs b
     LEFT JOIN (SELECT blob_id, count(*) AS n FROM records GROUP BY blob_id) AS refs
       ON refs.blob_id = b.id";

/// `PRAGMA integrity_check` plus exact reference accounting.
pub fn check(conn: &Connection) -> Result<ConsistencyReport> {
    check_with(conn, "integrity_check")
}

/// `PRAGMA quick_check` (every page and cell of every table, without the index cross-checks)
/// plus exact reference accounting: the health check before destructive maintenance.
pub fn quick_check(conn: &Connection) -> Result<ConsistencyReport> {
    check_with(conn, "quick_check")
}

/// The messages of `PRAGMA <pragma>` (`integrity_check` or `quick_check`, optionally with a
/// table name in parentheses); `["ok"]` when it passes. A check that cannot even run on a
/// damaged file is reported as its message, not as a failed call.
pub(super) fn engine_check(conn: &Connection, pragma: &str) -> Result<Vec<String>> {
    let result = conn.prepare(&format!("PRAGMA {pragma}")).and_then(|mut s| {
        s.query_map([], |r| r.get::<_, String>(0))?
            .collect::<rusqlite::Result<Vec<_>>>()
    });
    match result {
        Ok(messages) => Ok(messages),
        Err(e) => match super::sqlite_error("checking integrity", e) {
            StorageError::Corruption { detail, .. } => Ok(vec![detail]),
            other => Err(other),
        },
    }
}

fn check_with(conn: &Connection, pragma: &str) -> Result<ConsistencyReport> {
    let integrity = engine_check(conn, pragma)?;
    match references(conn) {
        Ok(report) => Ok(ConsistencyReport {
            integrity,
            ..report
        }),
        // The reference queries read the damaged tables too and may fail on them: the
        // engine's messages are the report then.
        Err(_) if integrity != ["ok"] => Ok(ConsistencyReport {
            integrity,
            ..ConsistencyReport::default()
        }),
        Err(e) => Err(e),
    }
}

/// The reference accounting of a consistency check (`integrity` left empty).
fn references(conn: &Connection) -> Result<ConsistencyReport> {
    let err = db_err("checking consistency");
    let count = |sql: &str| -> Result<u64> {
        conn.query_row(sql, [], |r| r.get::<_, i64>(0))
            .map(to_u64)
            .map_err(&err)
    };
    let (orphaned_blobs, refcount_mismatches): (i64, i64) = conn
        .query_row(COUNT_REFERENCE_ERRORS, [], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(&err)?;
    let (orphaned_chunks, chunk_refcount_mismatches): (i64, i64) = conn
        .query_row(super::chunks::COUNT_CHUNK_REFERENCE_ERRORS, [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .map_err(&err)?;
    Ok(ConsistencyReport {
        dangling_chunks: count(super::chunks::COUNT_DANGLING_CHUNKS)?
            .saturating_add(count(super::chunks::COUNT_EMPTY_LISTS)?),
        orphaned_chunks: to_u64(orphaned_chunks)
            .saturating_add(count(super::chunks::COUNT_STRAY_LISTS)?),
        chunk_refcount_mismatches: to_u64(chunk_refcount_mismatches),
        dangling_records: count(COUNT_DANGLING_RECORDS)?,
        orphaned_blobs: to_u64(orphaned_blobs),
        refcount_mismatches: to_u64(refcount_mismatches),
        missing_dictionaries: count(
            "SELECT count(*) FROM blobs b WHERE b.dict_id IS NOT NULL
             AND NOT EXISTS (SELECT 1 FROM dictionaries d WHERE d.id = b.dict_id)",
        )?
        .saturating_add(count(
            "SELECT count(*) FROM chunks c WHERE c.dict_id IS NOT NULL
             AND NOT EXISTS (SELECT 1 FROM dictionaries d WHERE d.id = c.dict_id)",
        )?),
        ..ConsistencyReport::default()
    })
}

/// Up to `limit` blobs with an id above `after`, in id order, with their chunks: one read
/// transaction, so a chunk list and its chunks come from one snapshot.
pub fn blobs_after(conn: &Connection, after: i64, limit: usize) -> Result<Vec<BlobEntry>> {
    let tx = conn
        .unchecked_transaction()
        .map_err(db_err("starting a read"))?;
    let entries = blobs_after_in(&tx, after, limit)?;
    tx.finish().map_err(db_err("ending a read"))?;
    Ok(entries)
}

fn blobs_after_in(conn: &Connection, after: i64, limit: usize) -> Result<Vec<BlobEntry>> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    conn.prepare_cached(
        "SELECT id, codec, raw_len, hash, data, dict_id FROM blobs
         WHERE id > ?1 ORDER BY id LIMIT ?2",
    )
    .and_then(|mut s| {
        s.query_map(params![after, limit], |r| {
            Ok(BlobEntry {
                id: r.get(0)?,
                blob: StoredBlob {
                    codec_id: r.get(1)?,
                    raw_len: r.get(2)?,
                    hash: r.get(3)?,
                    data: r.get(4)?,
                    dict_id: r.get(5)?,
                    chunks: Vec::new(),
                    keyed: None,
                },
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()
    })
    .map_err(db_err("reading blobs to verify"))?
    .into_iter()
    .map(|entry| {
        let location = format!("blob {}", entry.id);
        match super::chunks::with_chunks(conn, entry.id, entry.blob.clone(), || location.clone()) {
            Ok(blob) => Ok(BlobEntry { blob, ..entry }),
            // A chunk list that cannot be read is the blob's damage: the deep check reports
            // it by record (as a list without chunks), and the consistency check counts the
            // missing chunks.
            Err(StorageError::Corruption { detail, .. }) => {
                tracing::error!(blob = entry.id, %detail, "a chunk list failed to load");
                Ok(entry)
            }
            Err(other) => Err(other),
        }
    })
    .collect()
}

/// The records that name any of `blob_ids`, in collection and key order.
pub fn records_naming(conn: &Connection, blob_ids: &[i64]) -> Result<Vec<BlobReference>> {
    if blob_ids.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Value> = blob_ids.iter().map(|id| Value::Integer(*id)).collect();
    let marks = vec!["?"; ids.len()].join(", ");
    conn.prepare(&format!(
        "SELECT blob_id, collection, key FROM records WHERE blob_id IN ({marks})
         ORDER BY collection, key"
    ))
    .and_then(|mut s| {
        s.query_map(params_from_iter(ids), |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()
    })
    .map_err(db_err("finding the records of damaged blobs"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: with both `prefix` and `after`, the query had two lower bounds and SQLite
    /// seeked to the prefix start, rescanning every earlier page (paging was O(n²); the
    /// benchmark listed 90k keys/s, 590k after the fix).
    #[test]
    fn listing_has_one_lower_bound() {
        let count = |sql: &str| sql.matches("key >").count();
        let opts = ListOptions::default().prefix("g-").after("g-0005");
        let (sql, _) = range_query("key FROM records", "c", &opts);
        assert_eq!(count(&sql), 1, "{sql}");
        assert!(sql.contains("key > ?") && sql.contains("key < ?"), "{sql}");
        // An `after` before the prefix does not widen the range.
        let (sql, args) = range_query(
            "key FROM records",
            "c",
            &ListOptions::default().prefix("g-").after("a"),
        );
        assert_eq!(count(&sql), 1, "{sql}");
        assert!(sql.contains("key >= ?"), "{sql}");
        assert_eq!(args.get(1), Some(&Value::Text("g-".into())));
        let (sql, _) = range_query("key FROM records", "c", &ListOptions::default());
        assert_eq!(count(&sql), 0, "{sql}");
    }

    /// Regression: the page size was a bound parameter, which SQLite's planner reads, so
    /// every page's binding expired the cached statement and `sqlite3_step` re-prepared it
    /// (37 % of a scan page's time in SQLite at the benchmark's full size).
    #[test]
    fn paging_reuses_the_prepared_statement() -> Result<()> {
        let mut conn = Connection::open_in_memory().map_err(db_err("open"))?;
        crate::backend::sqlite::schema::migrate(&mut conn)?;
        let mut after: Option<String> = None;
        for page in 0..3 {
            let mut options = ListOptions::default().prefix("g-").limit(10);
            if let Some(after) = &after {
                options = options.after(after.as_str());
            }
            let (sql, args) = range_query("key FROM records", "c", &options);
            let mut stmt = conn.prepare_cached(&sql).map_err(db_err("prepare"))?;
            let keys = stmt
                .query_map(params_from_iter(args), |r| r.get::<_, String>(0))
                .and_then(Iterator::collect::<rusqlite::Result<Vec<_>>>)
                .map_err(db_err("page"))?;
            assert!(keys.is_empty());
            assert_eq!(
                stmt.get_status(rusqlite::StatementStatus::RePrepare),
                0,
                "page {page} re-prepared the statement"
            );
            after = Some(format!("g-{page:04}"));
        }
        Ok(())
    }

    #[test]
    fn collections_are_distinct_and_ordered() -> Result<()> {
        let mut conn = Connection::open_in_memory().map_err(db_err("open"))?;
        crate::backend::sqlite::schema::migrate(&mut conn)?;
        assert!(collections(&conn)?.is_empty());
        conn.execute_batch(
            "INSERT INTO records (collection, key, blob_id, created_at, updated_at)
             VALUES ('players', 'p1', 1, 0, 0), ('games', 'g2', 1, 0, 0),
                    ('games', 'g1', 1, 0, 0), ('bets', 'b1', 1, 0, 0);",
        )
        .map_err(db_err("insert"))?;
        assert_eq!(collections(&conn)?, ["bets", "games", "players"]);
        Ok(())
    }
}

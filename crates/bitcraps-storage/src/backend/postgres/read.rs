//! The read path: lookups, listing, statistics and the consistency check.

use deadpool_postgres::Client;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::db_err;
use crate::backend::{
    BlobEntry, BlobReference, CollectionSetting, ConsistencyReport, DatabaseStatistics,
    RecordMetadata, RecordPage, StoredBlob, StoredDictionary, StoredRecord, time_from_ms,
};
use crate::codec::Codec;
use crate::error::{Result, StorageError};
use crate::list::{ListOptions, ListPage};
use crate::value::hex;
use crate::version::Version;

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// The row `sql` selects for the record `collection`/`key` (its `$1` and `$2`), if any.
async fn record_row(
    client: &Client,
    sql: &str,
    collection: &str,
    key: &str,
    err: &impl Fn(tokio_postgres::Error) -> StorageError,
) -> Result<Option<Row>> {
    let stmt = client.prepare_cached(sql).await.map_err(err)?;
    client
        .query_opt(&stmt, &[&collection, &key])
        .await
        .map_err(err)
}

/// The columns [`record_from_row`] reads, and the tables they come from.
const RECORD_COLUMNS: &str =
    "r.blob_id, b.codec, b.raw_len, b.hash, b.data, b.dict_id, r.version, r.expires_at
     FROM records r LEFT JOIN blobs b ON b.id = r.blob_id";

/// A record from [`RECORD_COLUMNS`] starting at column `first`. A record whose blob is
/// missing is corruption, not "not found".
fn record_from_row(
    row: &Row,
    first: usize,
    collection: &str,
    key: &str,
    err: &impl Fn(tokio_postgres::Error) -> StorageError,
) -> Result<(i64, StoredRecord)> {
    let blob_id: i64 = row.try_get(first).map_err(err)?;
    let codec: Option<i64> = row.try_get(first + 1).map_err(err)?;
    let raw_len: Option<i64> = row.try_get(first + 2).map_err(err)?;
    let hash: Option<Vec<u8>> = row.try_get(first + 3).map_err(err)?;
    let data: Option<Vec<u8>> = row.try_get(first + 4).map_err(err)?;
    let dict_id: Option<i64> = row.try_get(first + 5).map_err(err)?;
    let version = Version::stored(collection, key, row.try_get(first + 6).map_err(err)?)?;
    let expires_ms: Option<i64> = row.try_get(first + 7).map_err(err)?;
    match (codec, raw_len, hash, data) {
        (Some(codec_id), Some(raw_len), Some(hash), Some(data)) => Ok((
            blob_id,
            StoredRecord {
                blob: StoredBlob {
                    codec_id,
                    raw_len,
                    hash,
                    data,
                    dict_id,
                    chunks: Vec::new(),
                    keyed: None,
                },
                version,
                expires_ms,
            },
        )),
        _ => Err(StorageError::corruption(
            format!("{collection}/{key}"),
            format!("the record refers to blob {blob_id}, which does not exist"),
        )),
    }
}

/// A record's blob and version.
pub async fn get(client: &Client, collection: &str, key: &str) -> Result<Option<StoredRecord>> {
    let err = db_err("reading a record");
    let sql = format!("SELECT {RECORD_COLUMNS} WHERE r.collection = $1 AND r.key = $2");
    // A chunk list is read in a second statement; a writer that replaced the record in
    // between sends the read round again (bounded: each round saw a newer write).
    for _ in 0..CHUNK_READ_ROUNDS {
        let Some(row) = record_row(client, &sql, collection, key, &err).await? else {
            return Ok(None);
        };
        let (blob_id, record) = record_from_row(&row, 0, collection, key, &err)?;
        if let Some(record) = with_chunks(client, collection, key, blob_id, record).await? {
            return Ok(Some(record));
        }
    }
    Err(StorageError::database(
        "reading a record",
        format!("{collection}/{key} was rewritten during each of {CHUNK_READ_ROUNDS} reads"),
    ))
}

/// Reads of a chunked record before giving up on a key rewritten under each of them.
const CHUNK_READ_ROUNDS: usize = 16;

/// `record` (of blob `blob_id`) with its chunks when it is a chunk list; `None` when the
/// record no longer names that blob.
async fn with_chunks(
    client: &Client,
    collection: &str,
    key: &str,
    blob_id: i64,
    mut record: StoredRecord,
) -> Result<Option<StoredRecord>> {
    if !crate::chunk::is_chunked(record.blob.codec_id) {
        return Ok(Some(record));
    }
    match super::chunks::load_for_record(client, collection, key, blob_id).await? {
        Some(chunks) => {
            record.blob.chunks = chunks;
            Ok(Some(record))
        }
        None => Ok(None),
    }
}

/// Several records of one collection in one statement, in the order of `keys`.
pub async fn get_many(
    client: &Client,
    collection: &str,
    keys: &[String],
) -> Result<Vec<Option<StoredRecord>>> {
    let err = db_err("reading records");
    let sql = format!("SELECT r.key, {RECORD_COLUMNS} WHERE r.collection = $1 AND r.key = ANY($2)");
    let stmt = client.prepare_cached(&sql).await.map_err(&err)?;
    let rows = client
        .query(&stmt, &[&collection, &keys])
        .await
        .map_err(&err)?;
    let mut found = std::collections::HashMap::with_capacity(rows.len());
    for row in &rows {
        let key: String = row.try_get(0).map_err(&err)?;
        let (blob_id, record) = record_from_row(row, 1, collection, &key, &err)?;
        let record = match with_chunks(client, collection, &key, blob_id, record).await? {
            Some(record) => Some(record),
            None => get(client, collection, &key).await?,
        };
        if let Some(record) = record {
            found.insert(key, record);
        }
    }
    // A key asked for twice is answered twice.
    Ok(keys.iter().map(|k| found.get(k).cloned()).collect())
}

/// A page of records with their blobs, paged exactly like [`list`].
pub async fn scan(client: &Client, collection: &str, options: &ListOptions) -> Result<RecordPage> {
    let err = db_err("scanning records");
    let rows = range(
        client,
        &format!("r.key, {RECORD_COLUMNS}"),
        collection,
        options,
        &err,
    )
    .await?;
    let mut items = Vec::with_capacity(rows.len());
    for row in &rows {
        let key: String = row.try_get(0).map_err(&err)?;
        let (blob_id, record) = record_from_row(row, 1, collection, &key, &err)?;
        let record = match with_chunks(client, collection, &key, blob_id, record).await? {
            Some(record) => Some(record),
            None => get(client, collection, &key).await?,
        };
        // A record deleted since the page was read is left out, as a later page would.
        if let Some(record) = record {
            items.push((key, record));
        }
    }
    Ok(RecordPage::from_fetched(items, options.limit_value()))
}

/// A record's metadata as stored.
pub async fn metadata(
    client: &Client,
    collection: &str,
    key: &str,
) -> Result<Option<RecordMetadata>> {
    let err = db_err("reading record metadata");
    let sql = "SELECT r.created_at, r.updated_at, r.access_count, r.last_accessed,
                      b.codec, b.raw_len, b.stored_len, b.hash, b.refcount, b.dict_id,
                      r.version, r.expires_at
               FROM records r JOIN blobs b ON b.id = r.blob_id
               WHERE r.collection = $1 AND r.key = $2";
    let Some(row) = record_row(client, sql, collection, key, &err).await? else {
        return Ok(None);
    };
    let mut codec_id: i64 = row.try_get(4).map_err(&err)?;
    let is_delta = codec_id == crate::chunk::DELTA;
    let mut stored_bytes = to_u64(row.try_get(6).map_err(&err)?);
    let mut chunk_count = 0;
    if crate::chunk::is_chunked(codec_id) {
        let summary = client
            .query_one(
                "SELECT (SELECT c.codec FROM blob_chunks bc JOIN chunks c ON c.id = bc.chunk_id
                         WHERE bc.blob_id = r.blob_id ORDER BY bc.seq LIMIT 1),
                        coalesce(sum(c.stored_len), 0)::bigint, count(c.id)
                 FROM records r JOIN blob_chunks bc ON bc.blob_id = r.blob_id
                 JOIN chunks c ON c.id = bc.chunk_id
                 WHERE r.collection = $1 AND r.key = $2
                 GROUP BY r.blob_id",
                &[&collection, &key],
            )
            .await
            .map_err(&err)?;
        codec_id = summary
            .try_get::<_, Option<i64>>(0)
            .map_err(&err)?
            .unwrap_or(0);
        if !is_delta {
            stored_bytes = to_u64(summary.try_get(1).map_err(&err)?);
        }
        chunk_count = to_u64(summary.try_get(2).map_err(&err)?);
    }
    let codec = u8::try_from(codec_id)
        .ok()
        .and_then(Codec::from_id)
        .ok_or_else(|| {
            StorageError::corruption(
                format!("{collection}/{key}"),
                format!("unknown codec id {codec_id}"),
            )
        })?;
    let hash: Vec<u8> = row.try_get(7).map_err(&err)?;
    Ok(Some(RecordMetadata {
        collection: collection.to_owned(),
        key: key.to_owned(),
        size_bytes: to_u64(row.try_get(5).map_err(&err)?),
        stored_bytes,
        chunk_count,
        is_delta,
        codec,
        is_compressed: codec != Codec::None,
        dictionary_id: row.try_get(9).map_err(&err)?,
        content_hash: hex(&hash),
        shared_by: to_u64(row.try_get(8).map_err(&err)?),
        created_at: time_from_ms(row.try_get(0).map_err(&err)?),
        updated_at: time_from_ms(row.try_get(1).map_err(&err)?),
        access_count: to_u64(row.try_get(2).map_err(&err)?),
        last_accessed: row
            .try_get::<_, Option<i64>>(3)
            .map_err(&err)?
            .map(time_from_ms),
        version: Version::stored(collection, key, row.try_get(10).map_err(&err)?)?,
        expires_at: row
            .try_get::<_, Option<i64>>(11)
            .map_err(&err)?
            .map(time_from_ms),
    }))
}

/// Every stored dictionary, oldest first.
pub async fn dictionaries(client: &Client) -> Result<Vec<StoredDictionary>> {
    let err = db_err("reading dictionaries");
    let rows = client
        .query(
            "SELECT id, collection, data FROM dictionaries ORDER BY id",
            &[],
        )
        .await
        .map_err(&err)?;
    rows.iter()
        .map(|r| {
            Ok(StoredDictionary {
                id: r.try_get(0).map_err(&err)?,
                collection: r.try_get(1).map_err(&err)?,
                data: r.try_get(2).map_err(&err)?,
            })
        })
        .collect()
}

/// Keys of `collection` in order, honouring prefix, `after` and limit. Like SQLite's, the
/// query has exactly one lower bound so each page seeks straight to its start.
pub async fn list(client: &Client, collection: &str, options: &ListOptions) -> Result<ListPage> {
    let err = db_err("listing keys");
    let rows = range(client, "key FROM records", collection, options, &err).await?;
    let keys = rows
        .iter()
        .map(|r| r.try_get::<_, String>(0))
        .collect::<Result<Vec<_>, _>>()
        .map_err(&err)?;
    Ok(ListPage::from_fetched(keys, options.limit_value()))
}

/// The rows of `SELECT {select}` (which names the tables) in the key range `options` selects,
/// at most one more than the page size, with exactly one lower bound.
async fn range(
    client: &Client,
    select: &str,
    collection: &str,
    options: &ListOptions,
    err: &impl Fn(tokio_postgres::Error) -> StorageError,
) -> Result<Vec<Row>> {
    let mut sql = format!("SELECT {select} WHERE collection = $1");
    let mut texts: Vec<String> = vec![collection.to_owned()];
    let lower = match (options.prefix_str(), options.after_key()) {
        (Some(prefix), Some(after)) if after >= prefix => Some((">", after)),
        (Some(prefix), _) => Some((">=", prefix)),
        (None, Some(after)) => Some((">", after)),
        (None, None) => None,
    };
    if let Some((op, bound)) = lower {
        texts.push(bound.to_owned());
        sql.push_str(&format!(" AND key {op} ${}", texts.len()));
    }
    if let Some(upper) = options.prefix_upper_bound() {
        texts.push(upper);
        sql.push_str(&format!(" AND key < ${}", texts.len()));
    }
    let fetch = i64::try_from(options.limit_value().saturating_add(1)).unwrap_or(i64::MAX);
    let live_at = options.live_at_ms();
    let mut params: Vec<&(dyn ToSql + Sync)> = texts.iter().map(|t| t as _).collect();
    if let Some(now) = &live_at {
        params.push(now);
        sql.push_str(&format!(
            " AND (expires_at IS NULL OR expires_at > ${})",
            params.len()
        ));
    }
    params.push(&fetch);
    sql.push_str(&format!(" ORDER BY key LIMIT ${}", params.len()));
    let stmt = client.prepare_cached(&sql).await.map_err(err)?;
    client.query(&stmt, &params).await.map_err(err)
}

/// What `collection` holds as quotas count it, at `now_ms`.
pub async fn usage(
    client: &Client,
    collection: &str,
    now_ms: i64,
) -> Result<crate::CollectionUsage> {
    let err = db_err("measuring a collection's usage");
    let stmt = client
        .prepare_cached(super::quota::USAGE)
        .await
        .map_err(&err)?;
    let row = client
        .query_one(&stmt, &[&collection, &now_ms])
        .await
        .map_err(&err)?;
    Ok(crate::CollectionUsage::from_db(
        row.try_get(0).map_err(&err)?,
        row.try_get(1).map_err(&err)?,
    ))
}

/// Every collection setting, in collection and name order.
pub async fn settings(client: &Client) -> Result<Vec<CollectionSetting>> {
    let err = db_err("reading collection settings");
    let rows = client
        .query(
            "SELECT collection, name, value FROM collection_settings ORDER BY collection, name",
            &[],
        )
        .await
        .map_err(&err)?;
    rows.iter()
        .map(|r| {
            Ok(CollectionSetting {
                collection: r.try_get(0).map_err(&err)?,
                name: r.try_get(1).map_err(&err)?,
                value: r.try_get(2).map_err(&err)?,
            })
        })
        .collect()
}

/// Names of the collections that hold at least one record, in order.
pub async fn collections(client: &Client) -> Result<Vec<String>> {
    let err = db_err("listing collections");
    let rows = client
        .query(
            "SELECT DISTINCT collection FROM records ORDER BY collection",
            &[],
        )
        .await
        .map_err(&err)?;
    rows.iter()
        .map(|r| r.try_get::<_, String>(0).map_err(&err))
        .collect()
}

/// Counts and sizes. `file_bytes` is `pg_total_relation_size` of the three tables (with their
/// indexes and TOAST); `page_size` is the server's block size and `page_count` the blocks those
/// bytes make; the WAL is the server's, shared by every database on it, so `wal_bytes` and
/// `free_pages` are 0 (autovacuum, not this crate, reclaims dead tuples).
pub async fn statistics(client: &Client) -> Result<DatabaseStatistics> {
    let err = db_err("collecting database statistics");
    let row = client
        .query_one(
            "SELECT
                (SELECT count(*) FROM records r JOIN blobs b ON b.id = r.blob_id),
                (SELECT coalesce(sum(b.raw_len), 0)::bigint
                   FROM records r JOIN blobs b ON b.id = r.blob_id),
                (SELECT count(*) FROM blobs),
                (SELECT coalesce(sum(raw_len) FILTER (WHERE codec NOT IN (16, 17)), 0)::bigint
                   FROM blobs)
                  + (SELECT coalesce(sum(raw_len), 0)::bigint FROM chunks),
                (SELECT coalesce(sum(stored_len), 0)::bigint FROM blobs)
                  + (SELECT coalesce(sum(stored_len), 0)::bigint FROM chunks),
                (SELECT count(*) FROM dictionaries),
                (SELECT coalesce(sum(length(data)), 0)::bigint FROM dictionaries),
                (pg_total_relation_size('blobs') + pg_total_relation_size('records')
                   + pg_total_relation_size('dictionaries') + pg_total_relation_size('chunks')
                   + pg_total_relation_size('blob_chunks'))::bigint,
                current_setting('block_size')::bigint,
                (SELECT count(*) FROM blobs WHERE codec = 16),
                (SELECT count(*) FROM chunks),
                (SELECT coalesce(sum(c.raw_len * (coalesce(r.refcount, 1) - 1)), 0)::bigint
                   FROM chunks c LEFT JOIN chunk_refs r ON r.chunk_id = c.id),
                (SELECT count(*) FROM blobs WHERE codec = 17),
                (SELECT coalesce(sum(raw_len - stored_len), 0)::bigint FROM blobs WHERE codec = 17)",
            &[],
        )
        .await
        .map_err(&err)?;
    let get = |i: usize| -> Result<u64> { row.try_get::<_, i64>(i).map(to_u64).map_err(&err) };
    let file_bytes = get(7)?;
    let page_size = get(8)?;
    Ok(DatabaseStatistics {
        backend: "postgres",
        record_count: get(0)?,
        logical_bytes: get(1)?,
        blob_count: get(2)?,
        unique_bytes: get(3)?,
        stored_bytes: get(4)?,
        chunked_blobs: get(9)?,
        chunk_count: get(10)?,
        chunk_dedup_saved_bytes: get(11)?,
        delta_blobs: get(12)?,
        delta_saved_bytes: get(13)?,
        dictionary_count: get(5)?,
        dictionary_bytes: get(6)?,
        file_bytes,
        page_size,
        page_count: file_bytes.checked_div(page_size).unwrap_or(0),
        ..DatabaseStatistics::default()
    })
}

/// The reference checks. `integrity` is `["ok"]`: PostgreSQL checks its own pages (checksums,
/// WAL); there is no cheap equivalent of SQLite's `integrity_check` to run from here.
pub async fn check(client: &Client) -> Result<ConsistencyReport> {
    let err = db_err("checking consistency");
    let row = client
        .query_one(
            "SELECT
                (SELECT count(*) FROM records r
                   WHERE NOT EXISTS (SELECT 1 FROM blobs b WHERE b.id = r.blob_id)),
                (SELECT count(*) FROM blobs b
                   WHERE NOT EXISTS (SELECT 1 FROM records r WHERE r.blob_id = b.id)),
                (SELECT count(*) FROM blobs b
                   WHERE b.refcount <> (SELECT count(*) FROM records r WHERE r.blob_id = b.id)),
                (SELECT count(*) FROM blobs b WHERE b.dict_id IS NOT NULL
                   AND NOT EXISTS (SELECT 1 FROM dictionaries d WHERE d.id = b.dict_id))
                  + (SELECT count(*) FROM chunks c WHERE c.dict_id IS NOT NULL
                   AND NOT EXISTS (SELECT 1 FROM dictionaries d WHERE d.id = c.dict_id)),
                (SELECT count(*) FROM blob_chunks bc
                   WHERE NOT EXISTS (SELECT 1 FROM chunks c WHERE c.id = bc.chunk_id))
                  + (SELECT count(*) FROM blobs b WHERE b.codec IN (16, 17)
                   AND NOT EXISTS (SELECT 1 FROM blob_chunks bc WHERE bc.blob_id = b.id)),
                (SELECT count(*) FROM chunks c
                   WHERE NOT EXISTS (SELECT 1 FROM blob_chunks bc WHERE bc.chunk_id = c.id))
                  + (SELECT count(DISTINCT bc.blob_id) FROM blob_chunks bc
                   WHERE NOT EXISTS (SELECT 1 FROM blobs b WHERE b.id = bc.blob_id)),
                (SELECT count(*) FROM chunks c LEFT JOIN chunk_refs r ON r.chunk_id = c.id
                   WHERE coalesce(r.refcount, -1) <> (SELECT count(*) FROM blob_chunks bc
                                         WHERE bc.chunk_id = c.id))",
            &[],
        )
        .await
        .map_err(&err)?;
    let get = |i: usize| -> Result<u64> { row.try_get::<_, i64>(i).map(to_u64).map_err(&err) };
    Ok(ConsistencyReport {
        integrity: vec!["ok".to_owned()],
        dangling_records: get(0)?,
        orphaned_blobs: get(1)?,
        refcount_mismatches: get(2)?,
        missing_dictionaries: get(3)?,
        dangling_chunks: get(4)?,
        orphaned_chunks: get(5)?,
        chunk_refcount_mismatches: get(6)?,
        ..ConsistencyReport::default()
    })
}

/// Up to `limit` blobs with an id above `after`, in id order.
pub async fn blobs_after(client: &Client, after: i64, limit: usize) -> Result<Vec<BlobEntry>> {
    let err = db_err("reading blobs to verify");
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let stmt = client
        .prepare_cached(
            "SELECT id, codec, raw_len, hash, data, dict_id FROM blobs
             WHERE id > $1 ORDER BY id LIMIT $2",
        )
        .await
        .map_err(&err)?;
    let rows = client.query(&stmt, &[&after, &limit]).await.map_err(&err)?;
    let entries = rows
        .iter()
        .map(|r| {
            Ok(BlobEntry {
                id: r.try_get(0).map_err(&err)?,
                blob: StoredBlob {
                    codec_id: r.try_get(1).map_err(&err)?,
                    raw_len: r.try_get(2).map_err(&err)?,
                    hash: r.try_get(3).map_err(&err)?,
                    data: r.try_get(4).map_err(&err)?,
                    dict_id: r.try_get(5).map_err(&err)?,
                    chunks: Vec::new(),
                    keyed: None,
                },
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let mut out = Vec::with_capacity(entries.len());
    for mut entry in entries {
        if crate::chunk::is_chunked(entry.blob.codec_id) {
            match super::chunks::load_for_blob(client, entry.id).await {
                Ok(Some(chunks)) => entry.blob.chunks = chunks,
                // Deleted since the page was read: nothing left to verify.
                Ok(None) => continue,
                // Reported by the deep check as a list without chunks.
                Err(StorageError::Corruption { detail, .. }) => {
                    tracing::error!(blob = entry.id, %detail, "a chunk list failed to load");
                }
                Err(other) => return Err(other),
            }
        }
        out.push(entry);
    }
    Ok(out)
}

/// The records that name any of `blob_ids`, in collection and key order.
pub async fn records_naming(client: &Client, blob_ids: &[i64]) -> Result<Vec<BlobReference>> {
    let err = db_err("finding the records of damaged blobs");
    let ids = blob_ids.to_vec();
    let rows = client
        .query(
            "SELECT blob_id, collection, key FROM records WHERE blob_id = ANY($1)
             ORDER BY collection, key",
            &[&ids],
        )
        .await
        .map_err(&err)?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get(0).map_err(&err)?,
                r.try_get(1).map_err(&err)?,
                r.try_get(2).map_err(&err)?,
            ))
        })
        .collect()
}

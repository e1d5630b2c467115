//! Reads, statistics, the consistency check and the reference repair over [`Tables`], with
//! the answers SQLite's `read.rs` and `maintain.rs` give.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use super::state::Tables;
use crate::backend::{
    BlobEntry, BlobReference, ConsistencyReport, DatabaseStatistics, RecordMetadata, RecordPage,
    RepairOutcome, StoredDictionary, StoredRecord, time_from_ms,
};
use crate::codec::Codec;
use crate::error::{Result, StorageError};
use crate::list::{ListOptions, ListPage};
use crate::value::hex;
use crate::version::Version;

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn len_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// A record's blob and version; a record whose blob is missing is corruption.
pub(super) fn get(tables: &Tables, collection: &str, key: &str) -> Result<Option<StoredRecord>> {
    let Some(record) = tables.records.get(&(collection.to_owned(), key.to_owned())) else {
        return Ok(None);
    };
    let blob = tables.blobs.get(&record.blob_id).ok_or_else(|| {
        StorageError::corruption(
            format!("{collection}/{key}"),
            format!(
                "the record refers to blob {}, which does not exist",
                record.blob_id
            ),
        )
    })?;
    Ok(Some(StoredRecord {
        blob: blob.stored(),
        version: Version::stored(collection, key, record.version)?,
        expires_ms: record.expires_at,
    }))
}

/// A record's metadata as stored (`None` also when its blob is missing, like SQLite's join).
pub(super) fn metadata(
    tables: &Tables,
    collection: &str,
    key: &str,
) -> Result<Option<RecordMetadata>> {
    let Some(record) = tables.records.get(&(collection.to_owned(), key.to_owned())) else {
        return Ok(None);
    };
    let Some(blob) = tables.blobs.get(&record.blob_id) else {
        return Ok(None);
    };
    let (codec_id, chunk_count) = match blob.chunks.first() {
        Some(first) => (first.codec_id, len_u64(blob.chunks.len())),
        None => (blob.codec, 0),
    };
    let codec = u8::try_from(codec_id)
        .ok()
        .and_then(Codec::from_id)
        .ok_or_else(|| {
            StorageError::corruption(
                format!("{collection}/{key}"),
                format!("unknown codec id {}", blob.codec),
            )
        })?;
    Ok(Some(RecordMetadata {
        collection: collection.to_owned(),
        key: key.to_owned(),
        size_bytes: to_u64(blob.raw_len),
        stored_bytes: to_u64(if blob.codec == crate::chunk::DELTA {
            blob.stored_len()
        } else {
            blob.stored_len().saturating_add(blob.chunk_len())
        }),
        chunk_count,
        is_delta: blob.codec == crate::chunk::DELTA,
        codec,
        is_compressed: codec != Codec::None,
        dictionary_id: blob.dict_id,
        content_hash: hex(&blob.hash),
        shared_by: to_u64(blob.refcount),
        created_at: time_from_ms(record.created_at),
        updated_at: time_from_ms(record.updated_at),
        access_count: to_u64(record.access_count),
        last_accessed: record.last_accessed.map(time_from_ms),
        version: Version::stored(collection, key, record.version)?,
        expires_at: record.expires_at.map(time_from_ms),
    }))
}

/// Every stored dictionary, oldest first.
pub(super) fn dictionaries(tables: &Tables) -> Vec<StoredDictionary> {
    tables
        .dictionaries
        .iter()
        .map(|(id, d)| StoredDictionary {
            id: *id,
            collection: d.collection.clone(),
            data: d.data.clone(),
        })
        .collect()
}

/// Keys of `collection` in the range `options` selects, in order, at most one more than the
/// page size.
fn range<'a>(
    tables: &'a Tables,
    collection: &'a str,
    options: &'a ListOptions,
) -> impl Iterator<Item = &'a String> + 'a {
    let prefix = options.prefix_str().unwrap_or("");
    let lower = match options.after_key() {
        Some(after) if after >= prefix => {
            Bound::Excluded((collection.to_owned(), after.to_owned()))
        }
        _ => Bound::Included((collection.to_owned(), prefix.to_owned())),
    };
    let fetch = options.limit_value().saturating_add(1);
    let live_at = options.live_at_ms();
    tables
        .records
        .range((lower, Bound::Unbounded))
        .take_while(move |((c, k), _)| c.as_str() == collection && k.starts_with(prefix))
        .filter(move |(_, r)| live_at.is_none_or(|now| r.live_at(now)))
        .take(fetch)
        .map(|((_, k), _)| k)
}

/// Keys of `collection` in order, honouring prefix, `after` and limit.
pub(super) fn list(tables: &Tables, collection: &str, options: &ListOptions) -> ListPage {
    let keys = range(tables, collection, options).cloned().collect();
    ListPage::from_fetched(keys, options.limit_value())
}

/// A page of records with their blobs, paged like [`list`].
pub(super) fn scan(tables: &Tables, collection: &str, options: &ListOptions) -> Result<RecordPage> {
    let items = range(tables, collection, options)
        .map(|key| {
            let record = get(tables, collection, key)?.ok_or_else(|| {
                StorageError::database("scanning records", "a listed record vanished")
            })?;
            Ok((key.clone(), record))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordPage::from_fetched(items, options.limit_value()))
}

/// Names of the collections that hold at least one record, in order.
pub(super) fn collections(tables: &Tables) -> Vec<String> {
    let names: BTreeSet<&String> = tables.records.keys().map(|(c, _)| c).collect();
    names.into_iter().cloned().collect()
}

/// Counts and sizes; `file_bytes` is what the rows hold in memory.
pub(super) fn statistics(tables: &Tables) -> DatabaseStatistics {
    let logical: i64 = tables
        .records
        .values()
        .filter_map(|r| tables.blobs.get(&r.blob_id))
        .map(|b| b.raw_len)
        .sum();
    let record_count = tables
        .records
        .values()
        .filter(|r| tables.blobs.contains_key(&r.blob_id))
        .count();
    let unique: i64 = tables.blobs.values().map(|b| b.raw_len).sum();
    let stored: i64 = tables
        .blobs
        .values()
        .map(|b| b.stored_len().saturating_add(b.chunk_len()))
        .sum();
    let chunk_count: usize = tables.blobs.values().map(|b| b.chunks.len()).sum();
    let chunked = tables
        .blobs
        .values()
        .filter(|b| b.codec == crate::chunk::CHUNKED)
        .count();
    let deltas: Vec<_> = tables
        .blobs
        .values()
        .filter(|b| b.codec == crate::chunk::DELTA)
        .collect();
    let delta_saved: i64 = deltas
        .iter()
        .map(|b| b.raw_len.saturating_sub(b.stored_len()))
        .sum();
    let dictionary_bytes: usize = tables.dictionaries.values().map(|d| d.data.len()).sum();
    let key_bytes: usize = tables.records.keys().map(|(c, k)| c.len() + k.len()).sum();
    DatabaseStatistics {
        backend: "memory",
        schema_version: crate::backend::snapshot::current_version(),
        record_count: len_u64(record_count),
        blob_count: len_u64(tables.blobs.len()),
        logical_bytes: to_u64(logical),
        unique_bytes: to_u64(unique),
        stored_bytes: to_u64(stored),
        chunked_blobs: len_u64(chunked),
        chunk_count: len_u64(chunk_count),
        delta_blobs: len_u64(deltas.len()),
        delta_saved_bytes: to_u64(delta_saved),
        dictionary_count: len_u64(tables.dictionaries.len()),
        dictionary_bytes: len_u64(dictionary_bytes),
        file_bytes: to_u64(stored)
            .saturating_add(len_u64(dictionary_bytes))
            .saturating_add(len_u64(key_bytes)),
        ..DatabaseStatistics::default()
    }
}

/// References per blob id, counted from the records.
fn references(tables: &Tables) -> BTreeMap<i64, i64> {
    let mut refs = BTreeMap::new();
    for record in tables.records.values() {
        *refs.entry(record.blob_id).or_insert(0) += 1;
    }
    refs
}

/// Exact reference accounting (there is no engine check to run: `integrity` is `["ok"]`).
pub(super) fn check(tables: &Tables) -> ConsistencyReport {
    let refs = references(tables);
    let count = |n: usize| len_u64(n);
    ConsistencyReport {
        integrity: vec!["ok".into()],
        dangling_records: count(
            tables
                .records
                .values()
                .filter(|r| !tables.blobs.contains_key(&r.blob_id))
                .count(),
        ),
        orphaned_blobs: count(
            tables
                .blobs
                .keys()
                .filter(|id| !refs.contains_key(id))
                .count(),
        ),
        refcount_mismatches: count(
            tables
                .blobs
                .iter()
                .filter(|(id, b)| b.refcount != refs.get(id).copied().unwrap_or(0))
                .count(),
        ),
        missing_dictionaries: count(
            tables
                .blobs
                .values()
                .filter(|b| {
                    b.dict_id
                        .is_some_and(|d| !tables.dictionaries.contains_key(&d))
                })
                .count(),
        ),
        ..ConsistencyReport::default()
    }
}

/// Removes unreferenced blobs (first, so they count as removed, not also as fixed), then
/// sets every remaining blob's count to its number of records.
pub(super) fn repair(tables: &mut Tables) -> RepairOutcome {
    let refs = references(tables);
    let mut outcome = RepairOutcome::default();
    let orphans: Vec<i64> = tables
        .blobs
        .keys()
        .filter(|id| !refs.contains_key(id))
        .copied()
        .collect();
    for id in orphans {
        if let Some(blob) = tables.remove_blob(id) {
            outcome.orphans_removed += 1;
            outcome.orphan_bytes_removed += to_u64(blob.stored_len());
        }
    }
    for (id, n) in refs {
        if let Some(blob) = tables.blobs.get_mut(&id)
            && blob.refcount != n
        {
            blob.refcount = n;
            outcome.refcounts_fixed += 1;
        }
    }
    outcome
}

/// Up to `limit` blobs with an id above `after`, in id order.
pub(super) fn blobs_after(tables: &Tables, after: i64, limit: usize) -> Vec<BlobEntry> {
    tables
        .blobs
        .range((Bound::Excluded(after), Bound::Unbounded))
        .take(limit)
        .map(|(id, b)| BlobEntry {
            id: *id,
            blob: b.stored(),
        })
        .collect()
}

/// The records that name any of `blob_ids`, in collection and key order.
pub(super) fn records_naming(tables: &Tables, blob_ids: &[i64]) -> Vec<BlobReference> {
    let wanted: BTreeSet<i64> = blob_ids.iter().copied().collect();
    tables
        .records
        .iter()
        .filter(|(_, r)| wanted.contains(&r.blob_id))
        .map(|((c, k), r)| (r.blob_id, c.clone(), k.clone()))
        .collect()
}

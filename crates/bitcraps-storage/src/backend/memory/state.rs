//! The tables of the in-memory backend and the write path over them, with the same reference
//! accounting as SQLite's `write.rs`: a put takes a reference to its content (deduplicated by
//! full hash when enabled) before it releases the record's old content, a blob is deleted when
//! its last reference goes, and ids are the highest id plus one, as SQLite assigns rowids.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use crate::backend::{OpOutcome, StoredBlob, WriteOp};
use crate::error::{Result, StorageError};
use crate::feed::{ChangeKind, NewChange};
use crate::quota::{self, CollectionQuota, CollectionUsage};
use crate::settings::DEFAULT_TTL_MS;
use crate::value::EncodedValue;
use crate::version::Version;

/// A row of `records`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Record {
    pub(super) blob_id: i64,
    pub(super) created_at: i64,
    pub(super) updated_at: i64,
    pub(super) access_count: i64,
    pub(super) last_accessed: Option<i64>,
    pub(super) version: i64,
    pub(super) expires_at: Option<i64>,
}

impl Record {
    /// Whether the record is live (not expired) at `now_ms`.
    pub(super) fn live_at(&self, now_ms: i64) -> bool {
        !crate::backend::is_expired(self.expires_at, now_ms)
    }
}

/// A row of `blobs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Blob {
    pub(super) hash: Vec<u8>,
    pub(super) codec: i64,
    pub(super) raw_len: i64,
    pub(super) refcount: i64,
    pub(super) data: Arc<[u8]>,
    pub(super) dict_id: Option<i64>,
    /// A chunk list's chunks, kept with their blob: this backend is a test double for the
    /// request path and does not share chunks between blobs (SQLite and PostgreSQL do).
    pub(super) chunks: Arc<[StoredBlob]>,
}

impl Blob {
    pub(super) fn stored_len(&self) -> i64 {
        i64::try_from(self.data.len()).unwrap_or(i64::MAX)
    }

    /// Stored bytes of its chunks.
    pub(super) fn chunk_len(&self) -> i64 {
        let chunks = self.chunks.iter().map(|c| c.data.len()).sum::<usize>();
        i64::try_from(chunks).unwrap_or(i64::MAX)
    }

    /// The blob as a read returns it.
    pub(super) fn stored(&self) -> StoredBlob {
        StoredBlob {
            codec_id: self.codec,
            raw_len: self.raw_len,
            hash: self.hash.clone(),
            data: self.data.to_vec(),
            dict_id: self.dict_id,
            chunks: self.chunks.to_vec(),
            keyed: None,
        }
    }
}

/// A row of `dictionaries`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Dictionary {
    pub(super) collection: String,
    pub(super) created_at: i64,
    pub(super) data: Vec<u8>,
}

/// The whole database.
#[derive(Debug, Default, Clone)]
pub(super) struct Tables {
    pub(super) records: BTreeMap<(String, String), Record>,
    pub(super) blobs: BTreeMap<i64, Blob>,
    pub(super) dictionaries: BTreeMap<i64, Dictionary>,
    /// Blob ids by full content hash (several when deduplication is off).
    by_hash: HashMap<Vec<u8>, BTreeSet<i64>>,
    /// The last version handed out (as SQLite's `version_clock`; 1 when none was).
    pub(super) clock: i64,
    /// `collection_settings`: `(collection, name) → value`.
    pub(super) settings: BTreeMap<(String, String), i64>,
    /// The change log.
    pub(super) log: super::feed::ChangeLog,
    /// The changes of the unit being applied.
    pending: Vec<NewChange>,
}

/// How to take one change back when its unit fails.
enum Undo {
    Record((String, String), Option<Record>),
    Setting((String, String), Option<i64>),
    Blob(i64, Option<Blob>),
    Dictionary(i64),
}

impl Tables {
    pub(super) fn is_empty(&self) -> bool {
        self.records.is_empty() && self.blobs.is_empty() && self.dictionaries.is_empty()
    }

    fn set_blob(&mut self, id: i64, blob: Option<Blob>, undo: &mut Vec<Undo>) {
        let old = match blob {
            Some(blob) => {
                self.by_hash
                    .entry(blob.hash.clone())
                    .or_default()
                    .insert(id);
                self.blobs.insert(id, blob)
            }
            None => self.blobs.remove(&id),
        };
        if let Some(old) = &old
            && self.blobs.get(&id).is_none_or(|b| b.hash != old.hash)
            && let Some(ids) = self.by_hash.get_mut(&old.hash)
        {
            ids.remove(&id);
            if ids.is_empty() {
                self.by_hash.remove(&old.hash);
            }
        }
        undo.push(Undo::Blob(id, old));
    }

    fn set_record(&mut self, key: (String, String), record: Option<Record>, undo: &mut Vec<Undo>) {
        let old = match record {
            Some(record) => self.records.insert(key.clone(), record),
            None => self.records.remove(&key),
        };
        undo.push(Undo::Record(key, old));
    }

    /// Removes a blob row (a repair).
    pub(super) fn remove_blob(&mut self, id: i64) -> Option<Blob> {
        let mut undo = Vec::new();
        self.set_blob(id, None, &mut undo);
        match undo.pop() {
            Some(Undo::Blob(_, old)) => old,
            _ => None,
        }
    }

    /// Inserts a blob row as a restore or a test loads it.
    pub(super) fn insert_blob(&mut self, id: i64, blob: Blob) {
        self.set_blob(id, Some(blob), &mut Vec::new());
    }

    /// Applies one unit; on error every change it made is taken back.
    pub(super) fn apply_unit(
        &mut self,
        unit: &[WriteOp],
        deduplicate: bool,
    ) -> Result<Vec<OpOutcome>> {
        let mut undo = Vec::new();
        self.pending.clear();
        let outcome = self.apply_guarded(unit, deduplicate, &mut undo);
        if outcome.is_ok() {
            let changes = std::mem::take(&mut self.pending);
            self.log.append(changes)?;
        } else {
            self.pending.clear();
            while let Some(step) = undo.pop() {
                let mut ignored = Vec::new();
                match step {
                    Undo::Record(key, old) => self.set_record(key, old, &mut ignored),
                    Undo::Setting(key, old) => {
                        match old {
                            Some(v) => self.settings.insert(key, v),
                            None => self.settings.remove(&key),
                        };
                    }
                    Undo::Blob(id, old) => self.set_blob(id, old, &mut ignored),
                    Undo::Dictionary(id) => {
                        self.dictionaries.remove(&id);
                    }
                }
            }
        }
        outcome
    }

    /// The unit's operations, then its quotas, as SQLite's `apply_unit`.
    fn apply_guarded(
        &mut self,
        unit: &[WriteOp],
        deduplicate: bool,
        undo: &mut Vec<Undo>,
    ) -> Result<Vec<OpOutcome>> {
        let now = quota::unit_now(unit);
        let mut guarded = Vec::new();
        for collection in quota::put_collections(unit) {
            let settings = self
                .settings
                .iter()
                .map(|((c, n), v)| (c.as_str(), n.as_str(), *v));
            if let Some(q) = CollectionQuota::of(collection, settings) {
                guarded.push((collection, q, self.usage(collection, now)));
            }
        }
        let mut outcomes = unit
            .iter()
            .map(|op| self.apply_op(op, deduplicate, undo))
            .collect::<Result<Vec<_>>>()?;
        for (collection, q, before) in guarded {
            let after = self.usage(collection, now);
            if let Some(warning) = q.check(collection, before, after)? {
                quota::mark_warning(unit, &mut outcomes, collection, warning);
            }
        }
        Ok(outcomes)
    }

    /// Records of `collection` live at `now_ms` and their logical JSON bytes.
    pub(super) fn usage(&self, collection: &str, now_ms: i64) -> CollectionUsage {
        let (mut records, mut bytes) = (0i64, 0i64);
        let live = self
            .records
            .range((collection.to_owned(), String::new())..)
            .take_while(|((c, _), _)| c == collection)
            .filter(|(_, r)| r.live_at(now_ms));
        for (_, r) in live {
            records += 1;
            bytes += self.blobs.get(&r.blob_id).map_or(0, |b| b.raw_len);
        }
        CollectionUsage::from_db(records, bytes)
    }

    fn apply_op(
        &mut self,
        op: &WriteOp,
        deduplicate: bool,
        undo: &mut Vec<Undo>,
    ) -> Result<OpOutcome> {
        match op {
            WriteOp::Put {
                collection,
                key,
                value,
                now_ms,
                keep_version,
                expires_ms,
            } => {
                // A record that expired is gone: the put is the write of an absent key.
                self.purge_expired(collection, key, *now_ms, undo);
                let expires_ms = expires_ms.or_else(|| {
                    self.settings
                        .get(&(collection.clone(), DEFAULT_TTL_MS.to_owned()))
                        .map(|ttl| now_ms.saturating_add(*ttl))
                });
                self.put(
                    collection,
                    key,
                    value,
                    (*now_ms, *keep_version, expires_ms),
                    deduplicate,
                    undo,
                )
            }
            WriteOp::Delete {
                collection,
                key,
                now_ms,
            } => {
                self.purge_expired(collection, key, *now_ms, undo);
                let id = (collection.clone(), key.clone());
                let Some(old) = self.records.get(&id).cloned() else {
                    return Ok(OpOutcome::Delete { existed: false });
                };
                self.set_record(id, None, undo);
                self.release(old.blob_id, undo);
                self.pending.push(NewChange::new(
                    collection,
                    key,
                    ChangeKind::Delete,
                    old.version,
                    *now_ms,
                ));
                Ok(OpOutcome::Delete { existed: true })
            }
            WriteOp::Check {
                collection,
                key,
                expect,
                now_ms,
            } => {
                let actual = self
                    .records
                    .get(&(collection.clone(), key.clone()))
                    .filter(|r| r.live_at(*now_ms))
                    .map(|r| Version::stored(collection, key, r.version))
                    .transpose()?;
                expect.check(collection, key, actual)?;
                Ok(OpOutcome::Check)
            }
            WriteOp::DeletePrefix {
                collection,
                prefix,
                now_ms,
            } => {
                let doomed: Vec<(String, i64, bool, i64)> = self
                    .records
                    .range((collection.clone(), prefix.clone())..)
                    .take_while(|((c, k), _)| c == collection && k.starts_with(prefix.as_str()))
                    .map(|((_, k), r)| (k.clone(), r.blob_id, r.live_at(*now_ms), r.version))
                    .collect();
                let mut deleted = Vec::with_capacity(doomed.len());
                for (key, blob_id, live, version) in doomed {
                    self.set_record((collection.clone(), key.clone()), None, undo);
                    self.release(blob_id, undo);
                    let kind = if live {
                        ChangeKind::Delete
                    } else {
                        ChangeKind::Expire
                    };
                    self.pending
                        .push(NewChange::new(collection, &key, kind, version, *now_ms));
                    if live {
                        deleted.push(key);
                    }
                }
                Ok(OpOutcome::DeletePrefix { deleted })
            }
            WriteOp::SweepExpired { now_ms, limit } => {
                let mut doomed: Vec<(i64, (String, String), i64, i64)> = self
                    .records
                    .iter()
                    .filter_map(|(id, r)| match r.expires_at {
                        Some(at) if at <= *now_ms => Some((at, id.clone(), r.blob_id, r.version)),
                        _ => None,
                    })
                    .collect();
                doomed.sort();
                doomed.truncate(*limit);
                doomed.sort_by(|a, b| a.1.cmp(&b.1));
                let mut removed = Vec::with_capacity(doomed.len());
                for (_, id, blob_id, version) in doomed {
                    self.set_record(id.clone(), None, undo);
                    self.release(blob_id, undo);
                    self.pending.push(NewChange::new(
                        &id.0,
                        &id.1,
                        ChangeKind::Expire,
                        version,
                        *now_ms,
                    ));
                    removed.push(id);
                }
                Ok(OpOutcome::Swept { removed })
            }
            WriteOp::PruneChanges { before_ms, limit } => {
                let (removed, pruned_through) = self.log.prune(*before_ms, *limit);
                Ok(OpOutcome::Pruned {
                    removed,
                    pruned_through,
                })
            }
            WriteOp::Setting {
                collection,
                name,
                value,
            } => {
                let id = (collection.clone(), (*name).to_owned());
                let old = match value {
                    Some(v) => self.settings.insert(id.clone(), *v),
                    None => self.settings.remove(&id),
                };
                undo.push(Undo::Setting(id, old));
                Ok(OpOutcome::Setting)
            }
            WriteOp::PutDictionary {
                collection,
                data,
                now_ms,
            } => {
                let id = next_id(self.dictionaries.keys());
                self.dictionaries.insert(
                    id,
                    Dictionary {
                        collection: collection.clone(),
                        created_at: *now_ms,
                        data: data.to_vec(),
                    },
                );
                undo.push(Undo::Dictionary(id));
                Ok(OpOutcome::Dictionary { id })
            }
            WriteOp::Touch {
                collection,
                key,
                count,
                last_ms,
            } => {
                let id = (collection.clone(), key.clone());
                if let Some(record) = self.records.get(&id).cloned() {
                    let count = i64::try_from(*count).unwrap_or(i64::MAX);
                    let touched = Record {
                        access_count: record.access_count.saturating_add(count),
                        last_accessed: Some(record.last_accessed.unwrap_or(0).max(*last_ms)),
                        ..record
                    };
                    self.set_record(id, Some(touched), undo);
                }
                Ok(OpOutcome::Touch)
            }
        }
    }

    /// Takes a reference to a blob with `value`'s content, inserting it if needed.
    fn acquire(
        &mut self,
        value: &EncodedValue,
        deduplicate: bool,
        undo: &mut Vec<Undo>,
    ) -> Result<(i64, bool)> {
        let raw_len = i64::try_from(value.raw_len()).unwrap_or(i64::MAX);
        let existing = if deduplicate {
            self.by_hash
                .get(&value.hash[..])
                .and_then(|ids| ids.iter().next().copied())
        } else {
            None
        };
        if let Some(id) = existing
            && let Some(blob) = self.blobs.get(&id).cloned()
        {
            if blob.raw_len != raw_len {
                return Err(StorageError::corruption(
                    format!("blob {id}"),
                    format!(
                        "same content hash but length {}, expected {raw_len}",
                        blob.raw_len
                    ),
                ));
            }
            let shared = Blob {
                refcount: blob.refcount + 1,
                ..blob
            };
            self.set_blob(id, Some(shared), undo);
            return Ok((id, true));
        }
        let id = next_id(self.blobs.keys());
        let blob = Blob {
            hash: value.hash.to_vec(),
            codec: value.codec_id(),
            raw_len,
            refcount: 1,
            data: Arc::clone(&value.stored),
            dict_id: value.dict_id,
            chunks: value
                .chunks
                .iter()
                .map(|c| StoredBlob {
                    codec_id: c.codec_id(),
                    raw_len: i64::try_from(c.raw_len()).unwrap_or(i64::MAX),
                    hash: c.hash.to_vec(),
                    data: c.stored.to_vec(),
                    dict_id: c.dict_id,
                    chunks: Vec::new(),
                    keyed: None,
                })
                .collect(),
        };
        self.set_blob(id, Some(blob), undo);
        Ok((id, false))
    }

    /// Deletes `collection`'s records (logging a delete for each), the blobs only they
    /// referred to, and its dictionaries no blob names (a crypto-shred; the caller destroys
    /// the keys).
    pub(super) fn shred(&mut self, collection: &str) -> Result<()> {
        let now_ms = crate::backend::now_ms();
        let logged: Vec<NewChange> = self
            .records
            .iter()
            .filter(|((c, _), _)| c == collection)
            .map(|((c, k), r)| {
                let kind = if r.live_at(now_ms) {
                    ChangeKind::Delete
                } else {
                    ChangeKind::Expire
                };
                NewChange::new(c, k, kind, r.version, now_ms)
            })
            .collect();
        self.log.append(logged)?;
        let keys: Vec<(String, String)> = self
            .records
            .keys()
            .filter(|(c, _)| c == collection)
            .cloned()
            .collect();
        let mut undo = Vec::new();
        for k in keys {
            if let Some(record) = self.records.remove(&k) {
                self.release(record.blob_id, &mut undo);
            }
        }
        let named: BTreeSet<i64> = self
            .blobs
            .values()
            .flat_map(|b| std::iter::once(b.dict_id).chain(b.chunks.iter().map(|c| c.dict_id)))
            .flatten()
            .collect();
        self.dictionaries
            .retain(|id, d| d.collection != collection || named.contains(id));
        Ok(())
    }

    /// Drops one reference to a blob, deleting it when none remain.
    fn release(&mut self, id: i64, undo: &mut Vec<Undo>) {
        let Some(blob) = self.blobs.get(&id).cloned() else {
            return;
        };
        if blob.refcount <= 1 {
            self.set_blob(id, None, undo);
        } else {
            let released = Blob {
                refcount: blob.refcount - 1,
                ..blob
            };
            self.set_blob(id, Some(released), undo);
        }
    }

    fn purge_expired(&mut self, collection: &str, key: &str, now_ms: i64, undo: &mut Vec<Undo>) {
        let id = (collection.to_owned(), key.to_owned());
        if let Some(old) = self.records.get(&id).cloned()
            && !old.live_at(now_ms)
        {
            self.pending.push(NewChange::new(
                collection,
                key,
                ChangeKind::Expire,
                old.version,
                now_ms,
            ));
            self.set_record(id, None, undo);
            self.release(old.blob_id, undo);
        }
    }

    fn put(
        &mut self,
        collection: &str,
        key: &str,
        value: &EncodedValue,
        (now_ms, keep, expires_at): (i64, Option<Version>, Option<i64>),
        deduplicate: bool,
        undo: &mut Vec<Undo>,
    ) -> Result<OpOutcome> {
        let (blob_id, deduplicated) = self.acquire(value, deduplicate, undo)?;
        let id = (collection.to_owned(), key.to_owned());
        let current = self.records.get(&id).map(|r| r.version);
        // A kept version when it is newer than the key's (the clock moves past it), else the
        // next one; used even if the unit fails (gaps, never a repeat), as in SQLite.
        let stored_version = match keep.and_then(|v| i64::try_from(v.get()).ok()) {
            Some(n) if current.is_none_or(|c| n > c) => {
                self.clock = self.clock.max(n);
                n
            }
            _ => {
                self.clock = self.clock.max(1).saturating_add(1);
                self.clock
            }
        };
        let version = Version::stored(collection, key, stored_version)?;
        self.pending.push(NewChange::new(
            collection,
            key,
            ChangeKind::Put,
            stored_version,
            now_ms,
        ));
        match self.records.get(&id).cloned() {
            None => {
                let record = Record {
                    blob_id,
                    created_at: now_ms,
                    updated_at: now_ms,
                    access_count: 0,
                    last_accessed: None,
                    version: stored_version,
                    expires_at,
                };
                self.set_record(id, Some(record), undo);
                Ok(OpOutcome::Put {
                    deduplicated,
                    replaced: false,
                    version,
                    expires_ms: expires_at,
                    quota_warning: None,
                })
            }
            Some(old) => {
                let record = Record {
                    blob_id,
                    updated_at: now_ms,
                    version: stored_version,
                    expires_at,
                    ..old.clone()
                };
                self.set_record(id, Some(record), undo);
                self.release(old.blob_id, undo);
                Ok(OpOutcome::Put {
                    deduplicated,
                    replaced: true,
                    version,
                    expires_ms: expires_at,
                    quota_warning: None,
                })
            }
        }
    }
}

/// The highest id plus one (SQLite's rowid rule), 1 for an empty table.
fn next_id<'a>(ids: impl DoubleEndedIterator<Item = &'a i64>) -> i64 {
    ids.last().map_or(1, |max| max.saturating_add(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Codec;

    fn value(text: &str) -> EncodedValue {
        let raw: Arc<[u8]> = text.as_bytes().into();
        EncodedValue {
            hash: *blake3::hash(&raw).as_bytes(),
            codec: Codec::None,
            stored: Arc::clone(&raw),
            raw,
            dict_id: None,
            chunks: Arc::from([]),
            delta: false,
            sealed: None,
        }
    }

    fn put(key: &str, text: &str) -> WriteOp {
        WriteOp::Put {
            collection: "c".into(),
            key: key.into(),
            value: value(text),
            now_ms: 1,
            keep_version: None,
            expires_ms: None,
        }
    }

    #[test]
    fn a_failing_unit_leaves_no_trace() -> Result<()> {
        let mut tables = Tables::default();
        tables.apply_unit(&[put("a", "x")], true)?;
        let before = (tables.records.clone(), tables.blobs.clone());
        // Same hash, other length: corruption, after the unit already changed two rows.
        let mut bad = value("x");
        bad.raw = Arc::from(&b"xx"[..]);
        let unit = [
            put("b", "x"),
            put("a", "y"),
            WriteOp::Put {
                collection: "c".into(),
                key: "c".into(),
                value: bad,
                now_ms: 2,
                keep_version: None,
                expires_ms: None,
            },
        ];
        assert!(tables.apply_unit(&unit, true).is_err());
        assert_eq!((tables.records.clone(), tables.blobs.clone()), before);
        assert_eq!(tables.by_hash.len(), 1);
        Ok(())
    }

    #[test]
    fn overwrite_with_the_same_content_keeps_one_reference() -> Result<()> {
        let mut tables = Tables::default();
        tables.apply_unit(&[put("a", "x")], true)?;
        let out = tables.apply_unit(&[put("a", "x")], true)?;
        assert!(
            matches!(
                out.as_slice(),
                [OpOutcome::Put {
                    deduplicated: true,
                    replaced: true,
                    ..
                }]
            ),
            "{out:?}"
        );
        assert_eq!(
            tables
                .blobs
                .values()
                .map(|b| b.refcount)
                .collect::<Vec<_>>(),
            [1]
        );
        Ok(())
    }
}

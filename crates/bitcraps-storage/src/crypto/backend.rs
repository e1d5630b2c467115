//! [`EncryptedBackend`]: the backend of an encrypted store, a wrapper at the seam over the
//! engine's backend. Writes leave it sealed (documents and dictionaries under their
//! collection's data key, addressed by keyed hash); reads come back through it opened and
//! checked. Everything above the seam — the pipeline, group commit, the cache — sees the
//! same plaintext (compressed) form as in a plaintext store; everything below holds only
//! ciphertext. The engines store what they are given and know nothing of keys beyond the
//! `data_keys` table and the `key_check` row.
//!
//! `Maintenance` is the engine's own: checks, snapshots and repairs work on ciphertext, and
//! `blobs_after` returns blobs as stored, which the deep check opens with the keyring
//! (`verify.rs`), so a snapshot file is checked exactly like the live store.

use std::sync::Arc;

use super::blob::{self, blob_key};
use super::keyring::{DataKey, Keyring};
use super::parallel;
use crate::backend::{
    Backend, CollectionSetting, DatabaseStatistics, KeyChange, Maintenance, OpOutcome,
    RecordMetadata, RecordPage, StoreIdentity, StoredBlob, StoredDictionary, StoredRecord,
    WrappedKey, WriteOp, WriteUnit,
};
use crate::error::{Result, StorageError};
use crate::list::{ListOptions, ListPage};

/// The backend of an encrypted store (see the module documentation).
pub(crate) struct EncryptedBackend {
    inner: Arc<dyn Backend>,
    ring: Arc<Keyring>,
    /// While `key enable` encrypts a store in place, blobs and dictionaries without the
    /// encryption header are still plaintext and read as such; otherwise they are corruption.
    mixed: bool,
}

impl EncryptedBackend {
    pub(crate) fn new(inner: Arc<dyn Backend>, ring: Arc<Keyring>) -> Self {
        EncryptedBackend {
            inner,
            ring,
            mixed: false,
        }
    }

    /// The wrapper `key enable` works through (see [`EncryptedBackend::mixed`]).
    pub(crate) fn mixed(inner: Arc<dyn Backend>, ring: Arc<Keyring>) -> Self {
        EncryptedBackend {
            inner,
            ring,
            mixed: true,
        }
    }

    /// Whether `data` (a dictionary's) is sealed under a key of this store.
    pub(crate) fn is_sealed(&self, data: &[u8]) -> Result<bool> {
        Ok(self.key_by_id(blob::key_id(data))?.is_some())
    }

    /// Whether `blob` (a record's, as stored) is sealed under a key of this store: its header
    /// names one and, for a whole blob, it authenticates. Plaintext bytes (an LZ4 block, say)
    /// can start like a header by chance; they do not authenticate, and are plaintext to
    /// encrypt (decoding verifies them against their plain hash).
    pub(crate) fn is_sealed_blob(&self, blob: &StoredBlob) -> Result<bool> {
        let Some(key) = self.key_by_id(blob::key_id(&blob.data))? else {
            return Ok(false);
        };
        Ok(!blob.chunks.is_empty() || blob::try_open_blob(&self.ring, &key, blob).is_some())
    }

    /// [`StorageError::Shredded`] for a collection whose keys were destroyed.
    fn check_not_shredded(&self, collection: &str) -> Result<()> {
        if self.ring.is_shredded(collection) {
            return Err(StorageError::Shredded {
                collection: collection.to_owned(),
            });
        }
        Ok(())
    }

    /// The key new writes of `collection` use, created (and stored durably, before any
    /// ciphertext under it) on its first write.
    pub(crate) fn key_for_write(&self, collection: &str) -> Result<Arc<DataKey>> {
        self.check_not_shredded(collection)?;
        if let Some(key) = self.ring.current(collection) {
            return Ok(key);
        }
        // One at a time: a second writer of a new collection finds the first one's key.
        let _turn = self.ring.turn();
        // Another node (PostgreSQL) may have created it meanwhile, or shredded it.
        self.ring.load(&self.inner.data_keys()?)?;
        self.check_not_shredded(collection)?;
        if let Some(key) = self.ring.current(collection) {
            return Ok(key);
        }
        // A node that missed a rotation elsewhere must not wrap a key under the old master
        // key, which the store no longer accepts.
        let check = self.inner.identity()?.key_check.unwrap_or_default();
        if !self.ring.verifies(&check) {
            return Err(StorageError::KeyMismatch {
                source_name: self.ring.source_name(),
            });
        }
        let wrapped = self.ring.new_key(collection, 1, None)?;
        self.inner.write_keys(&KeyChange::add(vec![wrapped]))?;
        // Re-read: when two nodes raced, the key that was stored first is everyone's.
        self.ring.load(&self.inner.data_keys()?)?;
        self.ring.current(collection).ok_or_else(|| {
            StorageError::corruption(
                "the data_keys table",
                format!("the new data key of collection {collection} was not stored"),
            )
        })
    }

    /// The key with id `id`, reading the table again when this node does not know it (a
    /// key another node created).
    fn key_by_id(&self, id: Option<i64>) -> Result<Option<Arc<DataKey>>> {
        let Some(id) = id else { return Ok(None) };
        if let Some(key) = self.ring.by_id(id) {
            return Ok(Some(key));
        }
        self.ring.load(&self.inner.data_keys()?)?;
        Ok(self.ring.by_id(id))
    }

    fn open_blob(&self, collection: &str, key: &str, blob: &StoredBlob) -> Result<StoredBlob> {
        self.open_blob_with(collection, key, blob, &[])
    }

    /// [`Self::open_blob`], taking the key from `known` (a page's keys, resolved once) when
    /// it is there: no lock and no reference count per record.
    fn open_blob_with(
        &self,
        collection: &str,
        key: &str,
        blob: &StoredBlob,
        known: &[Arc<DataKey>],
    ) -> Result<StoredBlob> {
        let id = blob::key_id(&blob.data);
        if !self.mixed
            && blob.chunks.is_empty()
            && let Some(k) = known
                .iter()
                .find(|k| Some(k.id) == id && k.collection == collection)
            && let Some(opened) = blob::try_open_blob(&self.ring, k, blob)
        {
            return Ok(opened);
        }
        let found = self.key_by_id(id)?;
        if self.mixed && found.is_none() {
            return Ok(blob.clone());
        }
        if self.mixed
            && let Some(k) = found.as_ref().filter(|_| blob.chunks.is_empty())
        {
            // Plaintext that starts like a header is still plaintext (see `is_sealed_blob`):
            // decoding verifies it against its plain hash, which sealed bytes never pass.
            return Ok(blob::try_open_blob(&self.ring, k, blob).unwrap_or_else(|| blob.clone()));
        }
        // A whole blob that opens needs no location; a chunk list's chunks each need theirs.
        if let Some(opened) = found
            .as_ref()
            .filter(|k| k.collection == collection && blob.chunks.is_empty())
            .and_then(|k| blob::try_open_blob(&self.ring, k, blob))
        {
            return Ok(opened);
        }
        // A chunk list, or it does not open (the error says where).
        let location = format!("{collection}/{key}");
        let data_key = blob_key(found, id, Some(collection), &location)?;
        blob::open_tree(&self.ring, &data_key, blob, &location, |chunk, at| {
            let id = blob::key_id(&chunk.data);
            blob_key(self.key_by_id(id)?, id, Some(collection), at)
        })
    }

    /// `records` (of `collection`, by key) opened, a large page on more than one thread
    /// (`parallel.rs`); the first record that does not open (in order) is the error.
    fn open_records<K: AsRef<str> + Sync>(
        &self,
        collection: &str,
        records: Vec<(K, Option<StoredRecord>)>,
    ) -> Result<Vec<(K, Option<StoredRecord>)>> {
        let present = records.iter().filter(|(_, r)| r.is_some()).count();
        let threads = parallel::open_threads_for(present);
        // The page's keys (usually one), looked up once here rather than once a record.
        let mut known: Vec<Arc<DataKey>> = Vec::new();
        for (_, record) in &records {
            let id = record.as_ref().and_then(|r| blob::key_id(&r.blob.data));
            if let Some(id) = id.filter(|id| !known.iter().any(|k| k.id == *id))
                && let Some(k) = self.ring.by_id(id)
            {
                known.push(k);
            }
        }
        let blobs = parallel::map(&records, threads, |(key, record)| {
            record
                .as_ref()
                .map(|r| self.open_blob_with(collection, key.as_ref(), &r.blob, &known))
                .transpose()
        })?;
        Ok(records
            .into_iter()
            .zip(blobs)
            .map(|((key, record), blob)| {
                let record = record
                    .zip(blob)
                    .map(|(record, blob)| StoredRecord { blob, ..record });
                (key, record)
            })
            .collect())
    }

    /// `units` sealed, a large group on more than one thread (`parallel.rs`). Each unit on
    /// its own: one that cannot be sealed (its collection shredded, its key not created)
    /// gets its error, and the others are still written. The outer error is a sealing thread
    /// that failed.
    fn seal_units(&self, units: &[WriteUnit]) -> Result<Vec<Result<WriteUnit>>> {
        let ops: Vec<&WriteOp> = units.iter().flatten().collect();
        let threads = parallel::threads_for(ops.len());
        if threads > 1 {
            // Every collection's key first, here: a collection's first write creates its key
            // in the database, one writer at a time. A failure here is its ops' own, below.
            let mut seen: Vec<&str> = Vec::new();
            for op in &ops {
                if let WriteOp::Put { collection, .. } | WriteOp::PutDictionary { collection, .. } =
                    op
                    && !seen.contains(&collection.as_str())
                {
                    let _ = self.key_for_write(collection);
                    seen.push(collection);
                }
            }
        }
        let mut sealed = parallel::map(&ops, threads, |op| Ok(self.seal_op(op)))?.into_iter();
        Ok(units
            .iter()
            .map(|unit| sealed.by_ref().take(unit.len()).collect())
            .collect())
    }

    fn seal_op(&self, op: &WriteOp) -> Result<WriteOp> {
        Ok(match op {
            WriteOp::Put {
                collection,
                key,
                value,
                now_ms,
                keep_version,
                expires_ms,
            } => {
                let data_key = self.key_for_write(collection)?;
                // Sealed ahead by the caller (`preseal.rs`) under the key still current.
                let sealed = match &value.sealed {
                    Some(p) if p.key_id == data_key.id => p.value.clone(),
                    _ => blob::seal_value(&self.ring, &data_key, value)?,
                };
                WriteOp::Put {
                    collection: collection.clone(),
                    key: key.clone(),
                    value: sealed,
                    now_ms: *now_ms,
                    keep_version: *keep_version,
                    expires_ms: *expires_ms,
                }
            }
            WriteOp::PutDictionary {
                collection,
                data,
                now_ms,
            } => {
                let data_key = self.key_for_write(collection)?;
                WriteOp::PutDictionary {
                    collection: collection.clone(),
                    data: blob::seal_dictionary(&self.ring, &data_key, data)?.into(),
                    now_ms: *now_ms,
                }
            }
            other => other.clone(),
        })
    }
}

/// Opens a blob read without its record (the deep check, the scrub, a backup's copy): the
/// key its header names, from `ring`.
pub(crate) fn open_stored_blob(
    ring: &Keyring,
    blob: &StoredBlob,
    location: &str,
) -> Result<StoredBlob> {
    let id = blob::key_id(&blob.data);
    let key = blob_key(id.and_then(|id| ring.by_id(id)), id, None, location)?;
    blob::open_tree(ring, &key, blob, location, |chunk, at| {
        let id = blob::key_id(&chunk.data);
        blob_key(
            id.and_then(|id| ring.by_id(id)),
            id,
            Some(&key.collection),
            at,
        )
    })
}

/// Opens stored dictionaries with `ring`.
pub(crate) fn open_dictionaries(
    ring: &Keyring,
    stored: Vec<StoredDictionary>,
    mut key_by_id: impl FnMut(Option<i64>) -> Result<Option<Arc<DataKey>>>,
) -> Result<Vec<StoredDictionary>> {
    stored
        .into_iter()
        .map(|d| {
            let location = format!("dictionary {}", d.id);
            let id = blob::key_id(&d.data);
            let key = blob_key(key_by_id(id)?, id, Some(&d.collection), &location)?;
            let data = blob::open_dictionary(ring, &key, &d.data, &location)?;
            Ok(StoredDictionary { data, ..d })
        })
        .collect()
}

impl Backend for EncryptedBackend {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn apply(&self, units: &[WriteUnit]) -> Result<Vec<Result<Vec<OpOutcome>>>> {
        // From the key checks through the commit: a shred waits (see `Keyring::writing`).
        let _writing = self.ring.writing();
        // Units that could not be sealed answer with their error; the rest are written.
        let mut refused: Vec<Option<StorageError>> = Vec::with_capacity(units.len());
        let mut sealed = Vec::with_capacity(units.len());
        for unit in self.seal_units(units)? {
            match unit {
                Ok(unit) => {
                    sealed.push(unit);
                    refused.push(None);
                }
                Err(e) => refused.push(Some(e)),
            }
        }
        let mut written = if sealed.is_empty() {
            Vec::new().into_iter()
        } else {
            self.inner.apply(&sealed)?.into_iter()
        };
        let mut results = Vec::with_capacity(units.len());
        for refusal in refused {
            results.push(match refusal {
                Some(e) => Err(e),
                None => written.next().ok_or_else(|| {
                    StorageError::Task("the backend answered fewer units than it was given".into())
                })?,
            });
        }
        // Another node shredded a collection this keyring still held (PostgreSQL refuses the
        // write in its transaction): forget its keys here too.
        for result in &results {
            if let Err(StorageError::Shredded { collection }) = result {
                self.ring.forget(collection);
            }
        }
        Ok(results)
    }

    fn get(&self, collection: &str, key: &str) -> Result<Option<StoredRecord>> {
        self.check_not_shredded(collection)?;
        self.inner
            .get(collection, key)?
            .map(|r| {
                let blob = self.open_blob(collection, key, &r.blob)?;
                Ok(StoredRecord { blob, ..r })
            })
            .transpose()
    }

    fn get_many(&self, collection: &str, keys: &[String]) -> Result<Vec<Option<StoredRecord>>> {
        self.check_not_shredded(collection)?;
        let found = self.inner.get_many(collection, keys)?;
        let records = keys.iter().map(String::as_str).zip(found).collect();
        Ok(self
            .open_records(collection, records)?
            .into_iter()
            .map(|(_, r)| r)
            .collect())
    }

    fn scan(&self, collection: &str, options: &ListOptions) -> Result<RecordPage> {
        self.check_not_shredded(collection)?;
        let page = self.inner.scan(collection, options)?;
        let records = page.items.into_iter().map(|(k, r)| (k, Some(r))).collect();
        let items = self
            .open_records(collection, records)?
            .into_iter()
            .filter_map(|(key, r)| r.map(|r| (key, r)))
            .collect();
        Ok(RecordPage {
            items,
            next_after: page.next_after,
        })
    }

    fn metadata(&self, collection: &str, key: &str) -> Result<Option<RecordMetadata>> {
        self.check_not_shredded(collection)?;
        // `content_hash` is the row's keyed address here: the store decodes the record and
        // hashes it (`store/query.rs`), as a v2 blob holds no plain hash to take.
        self.inner.metadata(collection, key)
    }

    fn dictionaries(&self) -> Result<Vec<StoredDictionary>> {
        let stored = self.inner.dictionaries()?;
        if self.mixed {
            let (sealed, plain): (Vec<_>, Vec<_>) = stored.into_iter().partition(|d| {
                self.ring
                    .by_id(blob::key_id(&d.data).unwrap_or(-1))
                    .is_some()
            });
            let mut all = open_dictionaries(&self.ring, sealed, |id| self.key_by_id(id))?;
            all.extend(plain);
            return Ok(all);
        }
        open_dictionaries(&self.ring, stored, |id| self.key_by_id(id))
    }

    fn list(&self, collection: &str, options: &ListOptions) -> Result<ListPage> {
        self.inner.list(collection, options)
    }

    fn collections(&self) -> Result<Vec<String>> {
        self.inner.collections()
    }

    fn settings(&self) -> Result<Vec<CollectionSetting>> {
        self.inner.settings()
    }

    fn usage(&self, collection: &str, now_ms: i64) -> Result<crate::CollectionUsage> {
        self.inner.usage(collection, now_ms)
    }

    fn statistics(&self) -> Result<DatabaseStatistics> {
        self.inner.statistics()
    }

    fn close(&self) -> Result<()> {
        self.inner.close()
    }

    fn maintenance(&self) -> &dyn Maintenance {
        self.inner.maintenance()
    }

    fn identity(&self) -> Result<StoreIdentity> {
        self.inner.identity()
    }

    fn record_redis_tier(&self) -> Result<()> {
        self.inner.record_redis_tier()
    }

    fn data_keys(&self) -> Result<Vec<WrappedKey>> {
        self.inner.data_keys()
    }

    fn write_keys(&self, change: &KeyChange) -> Result<()> {
        self.inner.write_keys(change)
    }

    /// The change log holds collection names and keys in plaintext, as the records table
    /// does (they are metadata, never sealed), and no document content: it passes through.
    fn changes_since(&self, after: u64, limit: usize) -> Result<Vec<crate::Change>> {
        self.inner.changes_since(after, limit)
    }

    fn change_head(&self) -> Result<u64> {
        self.inner.change_head()
    }

    fn notify_changes(&self, wake: Arc<dyn Fn() + Send + Sync>) -> Result<()> {
        self.inner.notify_changes(wake)
    }
}

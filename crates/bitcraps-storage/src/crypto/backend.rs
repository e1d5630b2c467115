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

use super::blob::{self, Opening, blob_key};
use super::header;
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

    /// `blob` (of `collection`/`key`) opened under the key its header names, found (or read
    /// again from the table) for each blob; in a mixed store (`key enable`), plaintext stays
    /// plaintext. The error names the record.
    fn open_blob(&self, collection: &str, key: &str, blob: &StoredBlob) -> Result<StoredBlob> {
        let id = blob::key_id(&blob.data);
        let found = self.key_by_id(id)?;
        self.open_blob_under(collection, key, blob, id, found)
    }

    /// [`Self::open_blob`] with the key the header names (`id`) already looked up: `found`,
    /// or `None` when this node does not hold it.
    fn open_blob_under(
        &self,
        collection: &str,
        key: &str,
        blob: &StoredBlob,
        id: Option<i64>,
        found: Option<Arc<DataKey>>,
    ) -> Result<StoredBlob> {
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

    /// `record` (of `collection`/`key`) opened: by [`fast_open`] when `known` holds its
    /// key, else (or when it does not open) by [`Self::open_blob`], which names the error.
    fn open_record(
        &self,
        collection: &str,
        key: &str,
        record: StoredRecord,
        known: &[Arc<DataKey>],
    ) -> Result<StoredRecord> {
        let opening = fast_open(&self.ring, known, collection, self.mixed, record);
        self.finish_open(collection, key, opening)
    }

    /// `opening`'s record, opened the long way by [`Self::open_blob`] when
    /// [`fast_open`] gave it back unopened.
    fn finish_open(
        &self,
        collection: &str,
        key: &str,
        opening: Opening<StoredRecord>,
    ) -> Result<StoredRecord> {
        match opening {
            Opening::Opened(opened) => Ok(opened),
            Opening::Unopened(record) => {
                let blob = self.open_blob(collection, key, &record.blob)?;
                Ok(StoredRecord { blob, ..record })
            }
        }
    }

    /// The keys `ids` name that this keyring holds, each once (a page's: usually one).
    fn known_keys(&self, ids: impl Iterator<Item = Option<i64>>) -> Vec<Arc<DataKey>> {
        let mut known: Vec<Arc<DataKey>> = Vec::new();
        for id in ids {
            if let Some(id) = id.filter(|id| !known.iter().any(|k| k.id == *id))
                && let Some(k) = self.ring.by_id(id)
            {
                known.push(k);
            }
        }
        known
    }

    /// `records` (of `collection`, by key) opened, a large page on more than one thread
    /// (`parallel.rs`: the helpers take what opens with the page's keys; anything else is
    /// opened here, in order); the first record that does not open (in order) is the error.
    fn open_records<K: AsRef<str>>(
        &self,
        collection: &str,
        records: Vec<(K, Option<StoredRecord>)>,
    ) -> Result<Vec<(K, Option<StoredRecord>)>> {
        let present = records.iter().filter(|(_, r)| r.is_some()).count();
        let threads = parallel::open_threads_for(present);
        // The page's keys (usually one), looked up once here rather than once a record.
        let known = self.known_keys(
            records
                .iter()
                .map(|(_, r)| r.as_ref().and_then(|r| blob::key_id(&r.blob.data))),
        );
        let (keys, records): (Vec<K>, Vec<Option<StoredRecord>>) = records.into_iter().unzip();
        let ring = Arc::clone(&self.ring);
        let c = collection.to_owned();
        let mixed = self.mixed;
        let opened = parallel::map_static(records, threads, move |record| {
            record.map(|r| fast_open(&ring, &known, &c, mixed, r))
        })?;
        keys.into_iter()
            .zip(opened)
            .map(|(key, opening)| {
                let record = opening
                    .map(|o| self.finish_open(collection, key.as_ref(), o))
                    .transpose()?;
                Ok((key, record))
            })
            .collect()
    }

    /// `units` sealed, a large group on more than one thread (`parallel.rs`). Each unit on
    /// its own: one that cannot be sealed (its collection shredded, its key not created)
    /// gets its error, and the others are still written. The outer error is a sealing thread
    /// that failed.
    fn seal_units(&self, units: &[WriteUnit]) -> Result<Vec<Result<WriteUnit>>> {
        let ops: Vec<&WriteOp> = units.iter().flatten().collect();
        // Values sealed ahead by their callers (`preseal.rs`) cost the writer a clone; only
        // the rest are worth other threads (starting one costs tens of microseconds). One
        // sealed under a key rotated since is sealed again, on this thread.
        let to_seal = ops
            .iter()
            .filter(|op| !matches!(op, WriteOp::Put { value, .. } if value.sealed.is_some()))
            .count();
        let threads = parallel::threads_for(to_seal);
        // Every collection's key once for the group, here (usually one; a collection's first
        // write creates its key in the database, one writer at a time) rather than a lock
        // and a lookup per op. The group holds `Keyring::writing` through its commit, so no
        // shred comes in between. A collection whose key cannot be had is left out: each of
        // its ops asks again in `seal_op` and gets its own error.
        let mut keys: Vec<(&str, Arc<DataKey>)> = Vec::new();
        let mut refused: Vec<&str> = Vec::new();
        for op in &ops {
            if let WriteOp::Put { collection, .. } | WriteOp::PutDictionary { collection, .. } = op
                && !keys.iter().any(|(c, _)| c == collection)
                && !refused.contains(&collection.as_str())
            {
                match self.key_for_write(collection) {
                    Ok(key) => keys.push((collection, key)),
                    Err(_) => refused.push(collection),
                }
            }
        }
        let mut sealed =
            parallel::map(&ops, threads, |op| Ok(self.seal_op(op, &keys)))?.into_iter();
        Ok(units
            .iter()
            .map(|unit| sealed.by_ref().take(unit.len()).collect())
            .collect())
    }

    /// The key new writes of `collection` use: from `keys` (the group's), else asked for.
    fn group_key(&self, collection: &str, keys: &[(&str, Arc<DataKey>)]) -> Result<Arc<DataKey>> {
        match keys.iter().find(|(c, _)| *c == collection) {
            Some((_, key)) => Ok(Arc::clone(key)),
            None => self.key_for_write(collection),
        }
    }

    fn seal_op(&self, op: &WriteOp, keys: &[(&str, Arc<DataKey>)]) -> Result<WriteOp> {
        Ok(match op {
            WriteOp::Put {
                collection,
                key,
                value,
                now_ms,
                keep_version,
                expires_ms,
            } => {
                let data_key = self.group_key(collection, keys)?;
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
                let data_key = self.group_key(collection, keys)?;
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

/// `record` of `collection` opened under its key from `known` (a page's keys), decrypted in
/// the buffer it was read into (`blob::try_open_blob_owned`); back as it was when its key
/// is not there, it is a chunk list, the store is mixed (`key enable`), or it does not open:
/// the caller opens it the long way, which names the error.
fn fast_open(
    ring: &Keyring,
    known: &[Arc<DataKey>],
    collection: &str,
    mixed: bool,
    record: StoredRecord,
) -> Opening<StoredRecord> {
    if mixed || !record.blob.chunks.is_empty() {
        return Opening::Unopened(record);
    }
    let id = blob::key_id(&record.blob.data);
    let Some(k) = known
        .iter()
        .find(|k| Some(k.id) == id && k.collection == collection)
    else {
        return Opening::Unopened(record);
    };
    blob::try_open_blob_owned(ring, k, record.blob).map(|blob| StoredRecord { blob, ..record })
}

/// The most the envelope adds to a document's stored bytes: the header, the longest nonce
/// (XChaCha20-Poly1305's 24 bytes), the tag and a v1 payload's plain hash.
const ENVELOPE_AT_MOST: usize = header::LEN + 24 + 16 + 32;

/// Whether `blob` (a record's, sealed) is small enough to open on the async runtime's
/// thread: the plaintext read in place's bound (`StoredBlob::decodes_at_once`), its stored
/// bytes allowed the envelope, checked before any decryption.
fn opens_at_once(blob: &StoredBlob) -> bool {
    blob.decodes_at_once(ENVELOPE_AT_MOST)
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
                let known = self.known_keys(std::iter::once(blob::key_id(&r.blob.data)));
                self.open_record(collection, key, r, &known)
            })
            .transpose()
    }

    /// [`Backend::get`] when the engine reads the row at once and opening it waits for
    /// nothing: the collection not shredded and the key its header names already in memory
    /// (a key this node does not hold is read from the database by `get`). The document is
    /// decrypted on the caller's thread, as the engine bounds it (one row, no chunk list)
    /// and only up to the default chunking threshold. `None` in a store being encrypted
    /// (`key enable`) and for anything larger: the caller reads with `get` then.
    fn get_at_once(&self, collection: &str, key: &str) -> Option<Result<Option<StoredRecord>>> {
        if self.mixed {
            return None;
        }
        if let Err(e) = self.check_not_shredded(collection) {
            return Some(Err(e));
        }
        let record = match self.inner.get_at_once(collection, key)? {
            Ok(Some(record)) => record,
            other => return Some(other),
        };
        if !opens_at_once(&record.blob) {
            return None;
        }
        // Looked up after the row was read: a shred forgets the keys before it deletes the
        // rows, so a record read in its window finds no key here and goes the long way.
        let id = blob::key_id(&record.blob.data);
        let found = match id {
            Some(id) => Some(self.ring.by_id(id)?),
            None => None,
        };
        let known = found.as_slice();
        Some(
            match fast_open(&self.ring, known, collection, false, record) {
                Opening::Opened(opened) => Ok(Some(opened)),
                // Not this collection's key, no header, or it does not authenticate: the long
                // way `get` takes, with the key in hand (nothing read again), names the error.
                Opening::Unopened(record) => self
                    .open_blob_under(collection, key, &record.blob, id, found)
                    .map(|blob| Some(StoredRecord { blob, ..record })),
            },
        )
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

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(raw_len: i64, stored: usize, chunks: usize) -> StoredBlob {
        let whole = StoredBlob {
            codec_id: 1,
            raw_len,
            hash: vec![0; 32],
            data: vec![0; stored],
            dict_id: None,
            chunks: Vec::new(),
            keyed: None,
        };
        StoredBlob {
            chunks: vec![whole.clone(); chunks],
            ..whole
        }
    }

    /// Regression guard: what is decrypted on the runtime's thread is bounded before any
    /// decryption (`store/read.rs` refuses a larger opened blob only after it was opened).
    #[test]
    fn only_a_whole_document_within_the_chunking_threshold_opens_at_once() {
        let t = crate::chunk::DEFAULT_THRESHOLD;
        let n = i64::try_from(t).unwrap_or(i64::MAX);
        assert!(opens_at_once(&blob(n, t + ENVELOPE_AT_MOST, 0)));
        assert!(!opens_at_once(&blob(n + 1, 100, 0)), "a long document");
        assert!(
            !opens_at_once(&blob(-1, 100, 0)),
            "a length that is no length"
        );
        assert!(
            !opens_at_once(&blob(n, t + ENVELOPE_AT_MOST + 1, 0)),
            "long stored bytes"
        );
        assert!(!opens_at_once(&blob(100, 100, 2)), "a chunk list");
    }
}

//! The write path: serialize, encode (compress, hash, dictionary), hand to the writer thread,
//! wait for the group commit.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::PersistentStorageManager;
use crate::backend::{OpOutcome, WriteOp};
use crate::error::{Result, StorageError};
use crate::observe::Operation;
use crate::rt::blocking;
use crate::validate;
use crate::value::EncodedValue;
use crate::version::Version;

/// Values larger than this are compressed on a blocking thread instead of inline.
pub(super) const INLINE_ENCODE_LIMIT: usize = 256 * 1024;

impl PersistentStorageManager {
    pub(super) fn serialize<T: Serialize + ?Sized>(
        collection: &str,
        key: &str,
        value: &T,
    ) -> Result<Vec<u8>> {
        Self::serialize_into(collection, key, value, Vec::with_capacity(128))
    }

    /// Serializes `value` at the end of `out` (a batch sizes it like the document before).
    fn serialize_into<T: Serialize + ?Sized>(
        collection: &str,
        key: &str,
        value: &T,
        mut out: Vec<u8>,
    ) -> Result<Vec<u8>> {
        serde_json::to_writer(&mut out, value).map_err(|source| StorageError::Serialize {
            collection: collection.to_owned(),
            key: key.to_owned(),
            source,
        })?;
        Ok(out)
    }

    pub(super) async fn encode<T: Serialize + ?Sized>(
        &self,
        collection: &str,
        key: &str,
        value: &T,
    ) -> Result<EncodedValue> {
        let pipeline = self.inner.pipeline;
        let raw = Self::serialize(collection, key, value)?;
        let dict = self.inner.shared.dictionaries.encoder(collection);
        // An overwrite of a large document may be a delta against its keyframe.
        if pipeline.keyframe_interval > 0 && raw.len() > pipeline.chunk_threshold {
            pipeline.check_size(collection, key, raw.len())?;
            let shared = Arc::clone(&self.inner.shared);
            let (c, k) = (collection.to_owned(), key.to_owned());
            // Shared from here on by the delta or the keyframe, the writer and the cache.
            let raw: Arc<[u8]> = raw.into();
            let encoded = blocking(move || {
                let delta = super::delta::try_delta(&shared, &pipeline, &c, &k, &raw)?;
                let (ck, dict) = ((c.as_str(), k.as_str()), dict.as_deref());
                super::delta::or_keyframe(&shared, &pipeline, ck, delta, raw, dict, None)
            })
            .await?;
            self.observe(collection, &encoded);
            return Ok(encoded);
        }
        let ring = self.inner.shared.keyring.clone();
        let encoded = if raw.len() <= INLINE_ENCODE_LIMIT {
            encode_sealed(
                &pipeline,
                ring.as_deref(),
                collection,
                key,
                raw,
                dict.as_deref(),
            )?
        } else {
            let (c, k) = (collection.to_owned(), key.to_owned());
            blocking(move || {
                encode_sealed(&pipeline, ring.as_deref(), &c, &k, raw, dict.as_deref())
            })
            .await?
        };
        self.observe(collection, &encoded);
        Ok(encoded)
    }

    /// Stores `value` under `collection`/`key`, replacing any previous value. Returns once the
    /// write is durable (per [`WriteConfig::durability`](crate::WriteConfig::durability)).
    pub async fn store<T: Serialize + ?Sized>(
        &self,
        collection: &str,
        key: &str,
        value: &T,
    ) -> Result<()> {
        let work = self.store_inner(collection, key, value, None);
        self.public_call(Operation::Store, collection, Some(key), work)
            .await
    }

    /// Stores `value` under `collection`/`key` like [`store`](Self::store), expiring `ttl`
    /// after the write (by the store's clock; at least one millisecond). From its expiry on
    /// the record is never returned — by any read, from any cache tier, on any node — and a
    /// write to the key is the write of an absent key; the sweep
    /// ([`sweep_expired`](Self::sweep_expired), run in the background) then removes it.
    pub async fn store_with_ttl<T: Serialize + ?Sized>(
        &self,
        collection: &str,
        key: &str,
        value: &T,
        ttl: Duration,
    ) -> Result<()> {
        let work = async {
            let ttl = crate::settings::ttl_ms(collection, ttl)?;
            self.store_inner(collection, key, value, Some(ttl)).await
        };
        self.public_call(Operation::Store, collection, Some(key), work)
            .await
    }

    async fn store_inner<T: Serialize + ?Sized>(
        &self,
        collection: &str,
        key: &str,
        value: &T,
        ttl_ms: Option<i64>,
    ) -> Result<()> {
        let started = Instant::now();
        self.check_writable()?;
        validate::key(collection, key)?;
        let value = self.encode(collection, key, value).await?;
        self.put_encoded(collection, key, value, ttl_ms, started)
            .await
    }

    /// Writes the encoded `value` of `collection`/`key` (expiring `ttl_ms` after now) through
    /// the writer: the second half of `store` and `store_json`.
    pub(super) async fn put_encoded(
        &self,
        collection: &str,
        key: &str,
        value: EncodedValue,
        ttl_ms: Option<i64>,
        started: Instant,
    ) -> Result<()> {
        let now = self.inner.shared.clock.now_ms();
        let op = WriteOp::Put {
            collection: collection.to_owned(),
            key: key.to_owned(),
            value,
            now_ms: now,
            keep_version: None,
            expires_ms: ttl_ms.map(|ttl| now.saturating_add(ttl)),
        };
        self.inner.writer.write(vec![op]).await?;
        self.inner
            .shared
            .counters
            .write_call_done(started.elapsed());
        Ok(())
    }

    /// Stores every `(key, value)` pair in one atomic transaction: all or nothing. Later
    /// pairs win over earlier ones with the same key.
    pub async fn store_batch<K: AsRef<str>, T: Serialize>(
        &self,
        collection: &str,
        items: &[(K, T)],
    ) -> Result<()> {
        let items: Vec<BatchItem<'_, Typed<'_, T>>> = items
            .iter()
            .map(|(k, v)| (k.as_ref(), Typed(v), None, None))
            .collect();
        let work = self.store_batch_inner(collection, &items);
        self.public_call(Operation::StoreBatch, collection, None, work)
            .await
    }

    /// Like [`store_batch`](Self::store_batch), but each record keeps the given version when
    /// it is newer than the key's current one in this store (else it gets the next version,
    /// so a key's versions still only increase), and the store's clock moves past every kept
    /// version. For copying records between stores with their versions (`migrate` does):
    /// a client holding a version read from the source can use it against the copy.
    ///
    /// A kept version is only as unique as the source made it: copying into a store that
    /// once had the same key at a newer version and deleted it can hand that old number out
    /// again. Copy into a new or empty store to rule that out.
    pub async fn store_batch_keeping_versions<K: AsRef<str>, T: Serialize>(
        &self,
        collection: &str,
        items: &[(K, T, Version)],
    ) -> Result<()> {
        let items: Vec<BatchItem<'_, Typed<'_, T>>> = items
            .iter()
            .map(|(k, v, version)| (k.as_ref(), Typed(v), Some(*version), None))
            .collect();
        let work = self.store_batch_inner(collection, &items);
        self.public_call(Operation::StoreBatch, collection, None, work)
            .await
    }

    /// Like [`store_batch_keeping_versions`](Self::store_batch_keeping_versions), and each
    /// record also keeps its expiry time: `Some(t)` expires at `t` (a time already past
    /// writes a record that is never returned), `None` gets the collection's default TTL in
    /// this store, if it has one. For copying records between stores with their versions and
    /// expiry times (`migrate` does, before it copies the collections' settings).
    pub async fn store_batch_keeping_expiry<K: AsRef<str>, T: Serialize>(
        &self,
        collection: &str,
        items: &[(K, T, Version, Option<std::time::SystemTime>)],
    ) -> Result<()> {
        let items: Vec<BatchItem<'_, Typed<'_, T>>> = items
            .iter()
            .map(|(k, v, version, expires)| {
                let at = expires.map(crate::backup::millis);
                (k.as_ref(), Typed(v), Some(*version), at)
            })
            .collect();
        let work = self.store_batch_inner(collection, &items);
        self.public_call(Operation::StoreBatch, collection, None, work)
            .await
    }

    pub(super) async fn store_batch_inner<D: Document>(
        &self,
        collection: &str,
        items: &[BatchItem<'_, D>],
    ) -> Result<()> {
        let started = Instant::now();
        self.check_writable()?;
        validate::collection(collection)?;
        if items.is_empty() {
            return Ok(());
        }
        let now = self.inner.shared.clock.now_ms();
        let pipeline = self.inner.pipeline;
        let dict = self.inner.shared.dictionaries.encoder(collection);
        let c = collection.to_owned();
        let ring = self.inner.shared.keyring.clone();
        let encode = move |(key, raw, keep): (String, Vec<u8>, _)| {
            let value = encode_sealed(&pipeline, ring.as_deref(), &c, &key, raw, dict.as_deref())?;
            Ok((key, value, keep))
        };
        // Serializing borrows the caller's values, so it happens here; hashing and compressing
        // a large batch (milliseconds of CPU) moves to blocking threads so the runtime's
        // worker is not held. A batch of more than one part hands each part over as soon as
        // it is serialized (`encode::Streamed`): the next part is serialized meanwhile.
        // A batch's documents tend to be alike: each serialized one's buffer starts at the
        // largest size seen so far (up to 16 KiB), so it is not grown and copied three or
        // four times.
        let mut largest = 0usize;
        let mut serialize = |(key, value, keep, expires): &BatchItem<'_, D>| {
            validate::key(collection, key)?;
            let raw = value.raw(collection, key, largest.clamp(128, 16 * 1024))?;
            largest = largest.max(raw.len());
            Ok::<_, StorageError>((key.to_string(), raw, (*keep, *expires)))
        };
        let encoded = if items.len() > super::encode::STREAM_PART {
            let mut streamed = super::encode::Streamed::new(encode, items.len());
            for part in items.chunks(super::encode::STREAM_PART) {
                let raws = match part.iter().map(&mut serialize).collect::<Result<Vec<_>>>() {
                    Ok(raws) => raws,
                    Err(e) => return Err(streamed.fail(e).await),
                };
                streamed.push(raws).await?;
            }
            streamed.finish().await?
        } else {
            let raws = items
                .iter()
                .map(&mut serialize)
                .collect::<Result<Vec<_>>>()?;
            let total = raws
                .iter()
                .map(|(_, raw, _)| raw.len())
                .fold(0, usize::saturating_add);
            if total <= INLINE_ENCODE_LIMIT {
                raws.into_iter().map(encode).collect::<Result<Vec<_>>>()?
            } else {
                super::encode::on_pool(raws, encode).await?
            }
        };
        let mut unit = Vec::with_capacity(encoded.len());
        for (key, value, (keep_version, expires_ms)) in encoded {
            self.observe(collection, &value);
            unit.push(WriteOp::Put {
                collection: collection.to_owned(),
                key,
                value,
                now_ms: now,
                keep_version,
                expires_ms,
            });
        }
        self.inner.writer.write(unit).await?;
        self.inner
            .shared
            .counters
            .write_call_done(started.elapsed());
        Ok(())
    }

    /// Deletes the record; returns whether it existed. Its content is freed once no other
    /// record refers to it.
    pub async fn delete(&self, collection: &str, key: &str) -> Result<bool> {
        let work = self.delete_inner(collection, key);
        self.public_call(Operation::Delete, collection, Some(key), work)
            .await
    }

    async fn delete_inner(&self, collection: &str, key: &str) -> Result<bool> {
        self.check_writable()?;
        validate::key(collection, key)?;
        let op = WriteOp::Delete {
            collection: collection.to_owned(),
            key: key.to_owned(),
            now_ms: self.inner.shared.clock.now_ms(),
        };
        let outcomes = self.inner.writer.write(vec![op]).await?;
        Ok(matches!(
            outcomes.first(),
            Some(OpOutcome::Delete { existed: true })
        ))
    }
}

/// One record of a batch: its key, its document, the version it keeps and its expiry time.
pub(super) type BatchItem<'a, D> = (&'a str, D, Option<Version>, Option<i64>);

/// What a batch stores under a key: its JSON bytes, from a serde value or from JSON text.
pub(super) trait Document {
    /// The JSON bytes to store for `collection`/`key`; a serialized value's buffer starts
    /// at `capacity` bytes.
    fn raw(&self, collection: &str, key: &str, capacity: usize) -> Result<Vec<u8>>;
}

/// A serde value, serialized by serde_json.
pub(super) struct Typed<'a, T: ?Sized>(pub(super) &'a T);

impl<T: Serialize + ?Sized> Document for Typed<'_, T> {
    fn raw(&self, collection: &str, key: &str, capacity: usize) -> Result<Vec<u8>> {
        PersistentStorageManager::serialize_into(
            collection,
            key,
            self.0,
            Vec::with_capacity(capacity),
        )
    }
}

/// `raw` encoded (compressed, hashed) and, in an encrypted store, sealed ahead of the writer
/// (`crypto/preseal.rs`): the encode step of `store`, `update` and each item of a batch.
pub(super) fn encode_sealed(
    pipeline: &crate::value::Pipeline,
    ring: Option<&crate::crypto::Keyring>,
    collection: &str,
    key: &str,
    raw: Vec<u8>,
    dict: Option<&crate::dictionary::EncoderDict>,
) -> Result<EncodedValue> {
    let encoded = pipeline.encode_raw_with(collection, key, raw, dict)?;
    crate::crypto::preseal(ring, collection, encoded)
}

//! The read path: L1 (in-process, compressed) → L2 (the Redis tier) → database, verified
//! against the content hash, with concurrent misses of one key sharing one load.

use std::sync::Arc;

use serde::de::DeserializeOwned;

use super::{PersistentStorageManager, Shared};
use crate::backend::{StoredBlob, is_expired, now_ms};
use crate::cache::{CachedValue, DocKey, FillTicket, cache_key};
use crate::codec::Codec;
use crate::error::Result;
use crate::observe::Operation;
use crate::remote::Lookup;
use crate::rt::blocking;
use crate::stats::Counters;
use crate::validate;
use crate::value;
use crate::version::Version;

/// A document found by a read: from the cache, still in its stored form, or just loaded
/// (decoded and verified).
enum Fetched {
    Cached(CachedValue),
    Loaded(Arc<[u8]>),
}

/// The decoder of dictionary `id`. Another node sharing the database may have trained a
/// dictionary this node never loaded: on an unknown id, reload the stored dictionaries once
/// before calling the blob corrupt. Runs on a blocking thread.
pub(super) fn dictionary_decoder(
    shared: &Shared,
    id: i64,
    location: &str,
) -> Result<Arc<zstd::dict::DecoderDictionary<'static>>> {
    if let Ok(decoder) = shared.dictionaries.decoder(id, location) {
        return Ok(decoder);
    }
    for stored in shared.backend.dictionaries()? {
        shared.dictionaries.install(&stored);
    }
    shared.dictionaries.decoder(id, location)
}

/// Decodes and verifies a stored blob of `collection`/`key` (blocking: it may load a
/// dictionary): the JSON, and the stored form for the cache.
pub(super) fn decode_blob(
    shared: &Shared,
    collection: &str,
    key: &str,
    blob: &StoredBlob,
    expires_ms: Option<i64>,
) -> Result<(Arc<[u8]>, CachedValue)> {
    decode_blob_with(shared, collection, key, blob, expires_ms, None)
}

/// [`decode_blob`], given the decoder of the blob's dictionary if the caller looked it up
/// already (`loaded`): it is not looked up again.
fn decode_blob_with(
    shared: &Shared,
    collection: &str,
    key: &str,
    blob: &StoredBlob,
    expires_ms: Option<i64>,
    loaded: Option<Arc<zstd::dict::DecoderDictionary<'static>>>,
) -> Result<(Arc<[u8]>, CachedValue)> {
    let location = format!("{collection}/{key}");
    if crate::chunk::is_chunked(blob.codec_id) {
        // A chunk list is cached decoded: its chunks have no one stored form.
        let keyframes = Some((&shared.keyframes, collection));
        let raw = value::decode_stored_with(&location, blob, keyframes, |id, at| {
            dictionary_decoder(shared, id, at)
        })?;
        let cached = CachedValue::plain(&cache_key(collection, key), &raw);
        return Ok((Arc::<[u8]>::from(raw), cached.expiring(expires_ms)));
    }
    let dict = match (loaded, blob.dict_id) {
        (Some(dict), Some(_)) => Some(dict),
        (_, id) => id
            .map(|id| dictionary_decoder(shared, id, &location))
            .transpose()?,
    };
    let raw = value::decode(
        &location,
        blob.codec_id,
        blob.raw_len,
        &blob.hash,
        blob.keyed.as_ref(),
        &blob.data,
        dict.as_deref(),
    )?;
    // decode() accepted the codec id, so this conversion holds; a stored form it could not
    // describe is cached decoded instead.
    let codec = u8::try_from(blob.codec_id).ok().and_then(Codec::from_id);
    let ck = cache_key(collection, key);
    let cached = match codec {
        Some(codec) if codec != Codec::None => {
            CachedValue::new(&ck, codec, raw.len(), &blob.data, dict)
        }
        _ => CachedValue::plain(&ck, &raw),
    };
    Ok((Arc::<[u8]>::from(raw), cached.expiring(expires_ms)))
}

/// When an in-process copy of an L2 hit stops being served, on the store's clock: when its
/// record expires or when the L2 entry would no longer be served (`served_until`, wall clock),
/// whichever is first.
fn l1_expiry(shared: &Shared, expires: Option<i64>, served_until: i64) -> Option<i64> {
    let offset = shared.clock.now_ms().saturating_sub(now_ms());
    let served_until = served_until.saturating_add(offset);
    Some(expires.map_or(served_until, |e| e.min(served_until)))
}

/// A document read from the database: its JSON, its stored form for the cache, the
/// record's version and expiry.
type DatabaseRead = (Arc<[u8]>, CachedValue, Version, Option<i64>);

/// [`PersistentStorageManager::read_database`] on the caller's thread, when the backend can
/// read the record at once ([`Backend::get_at_once`](crate::backend::Backend::get_at_once):
/// an idle connection, a document of one row) and its decoding needs nothing from the
/// database (its dictionary, if any, is loaded). `None` when it cannot: the caller reads on
/// a blocking thread. What runs here is bounded: one indexed lookup of the record and its
/// blob, from SQLite's page cache or the OS's, and the decoding a cache hit of the document
/// would do (decompression and the hash check of a document of at most the default chunking
/// threshold, whatever the store's threshold was when it was written).
fn read_database_at_once(
    shared: &Shared,
    collection: &str,
    key: &str,
) -> Option<Result<Option<DatabaseRead>>> {
    let record = match shared.backend.get_at_once(collection, key)? {
        Ok(Some(record)) => record,
        Ok(None) => return Some(Ok(None)),
        Err(e) => return Some(Err(e)),
    };
    // A large document stored whole (`chunk_threshold = 0`, or written under a higher one)
    // is decoded on a blocking thread: here only what a chunk of the default threshold costs.
    if !record.blob.decodes_at_once(0) {
        return None;
    }
    // A dictionary this node has not loaded is read with the document on a blocking thread;
    // a loaded one is looked up once, here, for the decoding too.
    let loaded = match record.blob.dict_id {
        Some(id) => Some(shared.dictionaries.decoder(id, "").ok()?),
        None => None,
    };
    Some(finish_database_read(
        shared, collection, key, record, loaded,
    ))
}

/// A record read from the database, as a miss returns it: absent when it expired (not yet
/// swept), else decoded and verified (with `loaded`, its dictionary's decoder, if the
/// caller has it).
fn finish_database_read(
    shared: &Shared,
    collection: &str,
    key: &str,
    record: crate::backend::StoredRecord,
    loaded: Option<Arc<zstd::dict::DecoderDictionary<'static>>>,
) -> Result<Option<DatabaseRead>> {
    if is_expired(record.expires_ms, shared.clock.now_ms()) {
        Counters::add(&shared.counters.expired_reads, 1);
        return Ok(None);
    }
    let (raw, cached) = decode_blob_with(
        shared,
        collection,
        key,
        &record.blob,
        record.expires_ms,
        loaded,
    )?;
    Ok(Some((raw, cached, record.version, record.expires_ms)))
}

impl PersistentStorageManager {
    /// Reads the value under `collection`/`key` as `T`. `Ok(None)` when there is none; an
    /// error when the stored document does not deserialize as `T` or fails verification.
    pub async fn retrieve<T: DeserializeOwned>(
        &self,
        collection: &str,
        key: &str,
    ) -> Result<Option<T>> {
        let work = self.retrieve_inner(collection, key);
        self.read_call(Operation::Retrieve, collection, key, work)
            .await
    }

    /// Runs a typed read like a public call (observed; counted in `errors` when it fails),
    /// and counts it in the read statistics when it succeeds, with the duration the
    /// observer measured (one clock for both).
    async fn read_call<T>(
        &self,
        operation: Operation,
        collection: &str,
        key: &str,
        work: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let (result, elapsed) = self
            .observer()
            .observed_timed(operation, collection, Some(key), work)
            .await;
        if result.is_ok() {
            self.inner.shared.counters.read_done(elapsed);
        }
        self.count_error(result)
    }

    async fn retrieve_inner<T: DeserializeOwned>(
        &self,
        collection: &str,
        key: &str,
    ) -> Result<Option<T>> {
        let doc = DocKey::new(collection, key);
        let value = match self.fetch_doc(&doc).await? {
            None => None,
            Some(Fetched::Cached(cached)) => {
                let raw = self.decode_hit(&doc, &cached)?;
                Some(value::deserialize(collection, key, &raw)?)
            }
            Some(Fetched::Loaded(raw)) => Some(value::deserialize(collection, key, &raw)?),
        };
        Ok(value)
    }

    /// Decodes a cache hit of `doc`. From its second read on, a compressed entry is
    /// promoted: re-stored decompressed, within the cache's promotion budget
    /// (`ValueCache::promote`), so the hottest documents' reads decompress nothing.
    fn decode_hit<'a>(
        &self,
        doc: &DocKey<'_>,
        cached: &'a CachedValue,
    ) -> Result<std::borrow::Cow<'a, [u8]>> {
        let raw = self.decode_cached(cached, doc.collection(), doc.key())?;
        if let std::borrow::Cow::Owned(json) = &raw
            && cached.read_again()
        {
            self.inner.shared.cache.promote(doc, cached, json);
        }
        Ok(raw)
    }

    /// Reads the value under `collection`/`key` as a shared `T`. Like
    /// [`retrieve`](Self::retrieve), but the document is decoded once while it stays cached:
    /// later reads get the same `Arc<T>`, with no decompression and no JSON parsing, until the
    /// record is written, deleted or evicted. The decoded value lives in the cache entry of
    /// the stored bytes, so it is exactly as current as a `retrieve` (replaced by every
    /// commit, dropped by every invalidation). Decoded documents take more memory than
    /// compressed ones, so only the most read keep theirs, and only when the store reserves
    /// room for them (off by default; with `cache.typed_percent = 0` every read decodes, like
    /// `retrieve`): `cache.typed_percent` of
    /// `cache.size_mb` (each charged
    /// [`TYPED_BYTES_PER_JSON_BYTE`](crate::TYPED_BYTES_PER_JSON_BYTE) bytes per byte of JSON
    /// and [`TYPED_FIXED_CHARGE`](crate::TYPED_FIXED_CHARGE)); the others are decoded on
    /// every read, like `retrieve`. A cached document is kept decoded from its second read
    /// on (a document read once is not worth a place), and keeps the first type it is held
    /// as.
    ///
    /// ```no_run
    /// # async fn demo(storage: &bitcraps_storage::PersistentStorageManager) -> bitcraps_storage::Result<()> {
    /// #[derive(serde::Deserialize)]
    /// struct Table { point: Option<u8> }
    /// let table: Option<std::sync::Arc<Table>> = storage.retrieve_shared("tables", "t-1").await?;
    /// # Ok(()) }
    /// ```
    pub async fn retrieve_shared<T>(&self, collection: &str, key: &str) -> Result<Option<Arc<T>>>
    where
        T: DeserializeOwned + Send + Sync + 'static,
    {
        let work = self.retrieve_shared_inner(collection, key);
        self.read_call(Operation::RetrieveShared, collection, key, work)
            .await
    }

    async fn retrieve_shared_inner<T>(&self, collection: &str, key: &str) -> Result<Option<Arc<T>>>
    where
        T: DeserializeOwned + Send + Sync + 'static,
    {
        let doc = DocKey::new(collection, key);
        let value = match self.fetch_doc(&doc).await? {
            None => None,
            Some(Fetched::Cached(cached)) => {
                let cache = &self.inner.shared.cache;
                let keeps_typed = cache.keeps_typed();
                let hot = cached.typed::<T>();
                cache.count_typed(hot.is_some());
                if let Some(hot) = hot {
                    // Only a held value is touched: the tier has nothing to mark for the
                    // others, and the lookup was a second probe on every read.
                    cache.touch_typed_doc(&doc);
                    Some(hot)
                } else {
                    let raw = if keeps_typed {
                        // Held decoded next: promoting it too would only be replaced.
                        self.decode_cached(&cached, collection, key)?
                    } else {
                        self.decode_hit(&doc, &cached)?
                    };
                    let value = Arc::new(value::deserialize::<T>(collection, key, &raw)?);
                    // Held from the entry's second read: most documents a skewed workload
                    // reads are read once, and holding each would only make the tier let
                    // another value go (BENCHMARKS.md, "Typed reads: a value held from its
                    // second read").
                    if keeps_typed && cached.read_again() && cached.set_typed(Arc::clone(&value)) {
                        cache.hold_typed_doc(&doc, &cached);
                    }
                    Some(value)
                }
            }
            Some(Fetched::Loaded(raw)) => {
                Some(Arc::new(value::deserialize(collection, key, &raw)?))
            }
        };
        Ok(value)
    }

    /// Reads the serialized JSON document under `collection`/`key`, verified.
    pub async fn retrieve_raw(&self, collection: &str, key: &str) -> Result<Option<Arc<[u8]>>> {
        let work = self.retrieve_raw_inner(collection, key);
        self.observer()
            .observed(Operation::RetrieveRaw, collection, Some(key), work)
            .await
    }

    async fn retrieve_raw_inner(&self, collection: &str, key: &str) -> Result<Option<Arc<[u8]>>> {
        let doc = DocKey::new(collection, key);
        match self.fetch_doc(&doc).await? {
            None => Ok(None),
            Some(Fetched::Cached(cached)) => {
                let raw = self.decode_hit(&doc, &cached)?;
                Ok(Some(Arc::from(&*raw)))
            }
            Some(Fetched::Loaded(raw)) => Ok(Some(raw)),
        }
    }

    /// Decodes a cache hit. An entry that does not decode (never expected: entries are
    /// verified before they are cached) is dropped, so the next read loads it afresh.
    pub(super) fn decode_cached<'a>(
        &self,
        cached: &'a CachedValue,
        collection: &str,
        key: &str,
    ) -> Result<std::borrow::Cow<'a, [u8]>> {
        cached
            .decode(|| format!("{collection}/{key}"))
            .inspect_err(|_| {
                self.inner.shared.cache.discard(&cache_key(collection, key));
            })
    }

    /// Finds a document: L1 (in-process, compressed) → L2 (Redis, when configured) →
    /// database. Concurrent misses of one key share one load (see `ValueCache::join_load`).
    /// A hit builds no joined key, hashes the key once (the cache and the access tracker
    /// share the hash), and reads the clock once.
    async fn fetch_doc(&self, doc: &DocKey<'_>) -> Result<Option<Fetched>> {
        let (collection, key) = (doc.collection(), doc.key());
        self.check_open()?;
        validate::key(collection, key)?;
        let shared = &self.inner.shared;
        let wall_ms = now_ms();
        if let Some((cached, prefetched)) = shared.cache.get_doc(doc, shared.clock.at(wall_ms)) {
            shared.access.record_doc(doc, wall_ms);
            if prefetched {
                // A plain hit plans no prefetch (`Prefetcher::on_read`): only the first read
                // of a prefetched entry needs the joined key. Partners to read with the
                // document come only after a miss, so none come back here.
                let _ = self.prefetch_after_read(collection, key, &doc.joined(), false, true);
            }
            // A cache hit completes without awaiting anything; spend tokio's cooperative
            // budget so a loop of hits still lets other tasks (writers) run.
            tokio::task::coop::consume_budget().await;
            return Ok(Some(Fetched::Cached(cached)));
        }
        // Boxed: the miss path's state (the L2 lookup, the database read on the blocking
        // pool, the L2 fill) is kilobytes, and inline it would size every read's future,
        // which is moved (copied) several times before it first runs, hits included.
        Box::pin(self.fetch_miss(doc)).await
    }

    /// [`fetch_doc`](Self::fetch_doc) after an L1 miss.
    async fn fetch_miss(&self, doc: &DocKey<'_>) -> Result<Option<Fetched>> {
        let (collection, key) = (doc.collection(), doc.key());
        let shared = &self.inner.shared;
        let ck = doc.joined();
        let (ticket, load, joined) = shared.cache.join_load(&ck);
        // Background prefetches start before this load, so they overlap it; the partners the
        // key templates name are read with it.
        let partners = if joined {
            Vec::new()
        } else {
            self.prefetch_after_read(collection, key, &ck, true, false)
        };
        let raw = load
            .get_or_try_init(|| self.load(collection, key, &ck, ticket, partners))
            .await
            .cloned();
        shared.cache.finish_load(&ck, ticket, &load);
        let raw = raw?;
        if raw.is_some() {
            shared.access.record(&ck, now_ms());
        }
        Ok(raw.map(Fetched::Loaded))
    }

    /// One load after an L1 miss: L2, else the database (then filling L2 and L1, each only if
    /// no write intervened since the observation taken before the database read). The
    /// database read also fills `partners` (prefetched with it); an L2 hit leaves them, as
    /// they are likely in L2 too.
    async fn load(
        &self,
        collection: &str,
        key: &str,
        ck: &str,
        ticket: FillTicket,
        partners: Vec<Arc<str>>,
    ) -> Result<Option<Arc<[u8]>>> {
        let shared = &self.inner.shared;
        let observed = match &shared.remote {
            Some(remote) => match remote.lookup(ck).await {
                // An entry past its expiry is as good as a database row past it: absent.
                Lookup::Hit(_, expires, _) if is_expired(expires, shared.clock.now_ms()) => {
                    return Ok(None);
                }
                Lookup::Hit(raw, expires, served_until) => match &shared.keyring {
                    None => {
                        let expires = l1_expiry(shared, expires, served_until);
                        let cached = CachedValue::plain(ck, &raw).expiring(expires);
                        shared.cache.fill(ticket, cached, ck);
                        return Ok(Some(raw));
                    }
                    // Encrypted: sealed per record (`crypto/l2.rs`); one that does not open
                    // (a key this node has not loaded yet) is read from the database.
                    Some(ring) => match crate::crypto::l2::open(ring, collection, key, &raw) {
                        Some(json) => {
                            let raw: Arc<[u8]> = json.into();
                            let expires = l1_expiry(shared, expires, served_until);
                            let cached = CachedValue::plain(ck, &raw).expiring(expires);
                            shared.cache.fill(ticket, cached, ck);
                            return Ok(Some(raw));
                        }
                        None => None,
                    },
                },
                Lookup::Miss(observed) => Some(observed),
                Lookup::Unavailable => None,
            },
            None => None,
        };
        let Some((raw, cached, _, expires)) =
            self.read_database_with(collection, key, partners).await?
        else {
            return Ok(None);
        };
        // Awaited rather than spawned so a read that returned has filled L2 (tests and other
        // nodes can count on it); it is one round trip after a database read.
        if let (Some(remote), Some(observed)) = (&shared.remote, observed) {
            match &shared.keyring {
                None => remote.fill(ck, observed, &raw, expires).await,
                Some(ring) => {
                    if let Some(sealed) = crate::crypto::l2::seal(ring, collection, key, &raw)? {
                        remote.fill(ck, observed, &sealed, expires).await;
                    }
                }
            }
        }
        shared.cache.fill(ticket, cached, ck);
        Ok(Some(raw))
    }

    /// Reads and verifies a document from the database (on a blocking thread unless the
    /// backend can read it at once): the JSON, the stored form for the cache, and the
    /// record's version.
    pub(super) async fn read_database(
        &self,
        collection: &str,
        key: &str,
    ) -> Result<Option<DatabaseRead>> {
        self.read_database_with(collection, key, Vec::new()).await
    }

    /// [`read_database`](Self::read_database), then, in the same trip to the blocking pool,
    /// the documents of `partners` (cache keys) into the cache as prefetches — before the
    /// read returns, so the reads that follow it find them. Without partners, a record the
    /// backend can read at once is read on the caller's thread
    /// ([`read_database_at_once`]): a miss then costs no hand-off to another thread.
    async fn read_database_with(
        &self,
        collection: &str,
        key: &str,
        partners: Vec<Arc<str>>,
    ) -> Result<Option<DatabaseRead>> {
        if partners.is_empty()
            && let Some(found) = read_database_at_once(&self.inner.shared, collection, key)
        {
            return found;
        }
        let inner = Arc::clone(&self.inner);
        let (c, k) = (collection.to_owned(), key.to_owned());
        blocking(move || {
            let shared = &inner.shared;
            let Some(record) = shared.backend.get(&c, &k)? else {
                return Ok(None);
            };
            let found = finish_database_read(shared, &c, &k, record, None)?;
            if found.is_some()
                && !partners.is_empty()
                && let Err(e) = super::prefetch::fill_partners(shared, &partners)
            {
                // Advisory: the document itself was read.
                tracing::debug!(error = %e, "prefetch with a miss failed");
            }
            Ok(found)
        })
        .await
    }

    /// Whether a record exists (served from the cache when possible; not counted as a read).
    pub async fn exists(&self, collection: &str, key: &str) -> Result<bool> {
        let work = self.exists_inner(collection, key);
        self.observer()
            .observed(Operation::Exists, collection, Some(key), work)
            .await
    }

    async fn exists_inner(&self, collection: &str, key: &str) -> Result<bool> {
        self.check_open()?;
        validate::key(collection, key)?;
        // The cache is exact: a cached key exists. (An untrusted cache answers `false` here.)
        let shared = &self.inner.shared;
        if shared
            .cache
            .contains(&cache_key(collection, key), shared.clock.now_ms())
        {
            return Ok(true);
        }
        Ok(self.live_metadata(collection, key).await?.is_some())
    }
}

#[cfg(feature = "testing")]
impl PersistentStorageManager {
    /// How many tasks this thread has handed to the blocking pool so far, across every
    /// store (`testing` feature): a test on a current-thread runtime counts the hand-offs of
    /// its own calls with it.
    pub fn blocking_tasks_started_on_this_thread() -> u64 {
        crate::rt::blocking_tasks_started_here()
    }
}

//! [`PersistentStorageManager`]: the async handle users hold. It validates input, runs the
//! value pipeline, and delegates to the cache, group commit and the backend. Blocking database
//! work never runs on the async runtime's threads.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::access::AccessTracker;
use crate::backend::sqlite::{SqliteBackend, SqliteOptions};
use crate::backend::{
    Backend, ConsistencyReport, OpOutcome, RecordMetadata, StoredDictionary, WriteOp, now_ms,
    time_from_ms,
};
use crate::background::Background;
use crate::backup::BackupManager;
use crate::cache::{ValueCache, cache_key};
use crate::cached::CachedValue;
use crate::codec::Codec;
use crate::commit::{Shared, Writer, WriterOptions};
use crate::config::{BackendTarget, StorageConfig};
use crate::dictionary::{self, Dictionaries};
use crate::error::{Result, StorageError};
use crate::list::{ListOptions, ListPage};
use crate::remote::{Lookup, RemoteTier};
use crate::stats::{Counters, StorageStatistics};
use crate::validate;
use crate::value::{self, EncodedValue, Pipeline};

/// Values larger than this are compressed on a blocking thread instead of inline.
const INLINE_ENCODE_LIMIT: usize = 256 * 1024;

/// The storage handle: cheap to clone, `Send + Sync`, usable from many tasks at once.
///
/// ```no_run
/// # async fn demo() -> bitcraps_storage::Result<()> {
/// use bitcraps_storage::{ListOptions, PersistentStorageManager, StorageConfig};
///
/// let storage = PersistentStorageManager::open(StorageConfig::with_data_path("./data")).await?;
/// storage.store("games", "g-1", &serde_json::json!({"point": 6})).await?;
/// let game: Option<serde_json::Value> = storage.retrieve("games", "g-1").await?;
/// let page = storage.list("games", ListOptions::default().prefix("g-")).await?;
/// storage.close().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PersistentStorageManager {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) shared: Arc<Shared>,
    pub(crate) writer: Writer,
    pipeline: Pipeline,
    pub(crate) config: StorageConfig,
    backups: BackupManager,
    background: std::sync::Mutex<Option<Background>>,
    closed: AtomicBool,
}

impl Inner {
    #[cfg(feature = "testing")]
    /// The running background tasks, if any (`background.rs` asks them for runs).
    pub(crate) fn background(&self) -> &std::sync::Mutex<Option<Background>> {
        &self.background
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Not closed explicitly: let the writer finish its queue and flush in the background.
        drop(self.writer.shutdown());
    }
}

impl std::fmt::Debug for PersistentStorageManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PersistentStorageManager")
            .field("data_path", &self.inner.config.data_path)
            .finish_non_exhaustive()
    }
}

/// A document found by a read: from the cache, still in its stored form, or just loaded
/// (decoded and verified).
enum Fetched {
    Cached(CachedValue),
    Loaded(Arc<[u8]>),
}

/// Runs blocking work off the async runtime.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T>
where
    F: FnOnce() -> Result<T> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StorageError::Task(format!("blocking task failed: {e}")))?
}

/// The decoder of dictionary `id`. Another node sharing the database may have trained a
/// dictionary this node never loaded: on an unknown id, reload the stored dictionaries once
/// before calling the blob corrupt. Runs on a blocking thread.
fn dictionary_decoder(
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

impl PersistentStorageManager {
    /// Opens (creating if needed) the store the configuration describes.
    pub async fn open(config: StorageConfig) -> Result<Self> {
        #[cfg_attr(not(feature = "postgres"), allow(unused_mut))]
        let mut config = config;
        config.validate()?;
        let backend: Arc<dyn Backend> = match config.target()? {
            BackendTarget::Sqlite { path } => {
                let options = SqliteOptions {
                    path,
                    readers: config.max_connections,
                    durability: config.durability,
                    deduplicate: config.enable_deduplication,
                    connection_timeout: config.connection_timeout,
                    page_cache_bytes: SqliteOptions::page_cache_for(config.cache_capacity_bytes()),
                };
                Arc::new(blocking(move || SqliteBackend::open(&options)).await?)
            }
            #[cfg(feature = "postgres")]
            BackendTarget::Postgres { url, replica_url } => {
                use crate::backend::postgres::{PostgresBackend, PostgresOptions};
                let options = PostgresOptions {
                    url,
                    replica_url,
                    pool_size: config.max_connections,
                    connection_timeout: config.connection_timeout,
                    deduplicate: config.enable_deduplication,
                    durability: config.durability,
                };
                let backend = blocking(move || PostgresBackend::open(&options)).await?;
                // THE cache decision for shared databases: other nodes write to the same
                // database, so this node's in-process cache is only coherent when their writes
                // reach it — through the Redis tier's invalidations. Without `redis_url` the
                // cache would serve stale values, so it is off.
                if config.cache_size_mb > 0 && config.redis_url.is_none() {
                    tracing::info!(
                        "in-process read cache disabled on PostgreSQL without redis_url: other \
                         nodes' writes could not invalidate it"
                    );
                    config.cache_size_mb = 0;
                }
                Arc::new(backend)
            }
            #[cfg(not(feature = "postgres"))]
            BackendTarget::Postgres { url, .. } => {
                return Err(StorageError::UnsupportedUrl {
                    url,
                    reason: "PostgreSQL support is not compiled in; enable the `postgres` \
                             feature of bitcraps-storage"
                        .into(),
                });
            }
        };
        Self::with_backend(config, backend)
    }

    pub(crate) fn from_inner(inner: Arc<Inner>) -> Self {
        PersistentStorageManager { inner }
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }

    /// The backup manager of this store (`<data_path>/backups` unless configured).
    pub fn backups(&self) -> BackupManager {
        self.inner.backups.clone()
    }

    /// Opens a store over a backend built by the caller (tests inject faulty backends here).
    /// Starts the background tasks when enabled, which needs a Tokio runtime.
    pub fn with_backend(config: StorageConfig, backend: Arc<dyn Backend>) -> Result<Self> {
        config.validate()?;
        let dictionaries = Dictionaries::new(
            config.enable_dictionaries && config.write_codec() == Codec::Zstd,
            config.compression_level,
            config.dictionary_training_samples,
        );
        for stored in backend.dictionaries()? {
            dictionaries.install(&stored);
        }
        let cache = Arc::new(ValueCache::new(config.cache_capacity_bytes()));
        let remote = start_remote_tier(&config, &cache)?;
        let shared = Arc::new(Shared {
            backend,
            cache,
            access: AccessTracker::default(),
            counters: Counters::default(),
            dictionaries,
            remote,
        });
        let writer = Writer::start(
            Arc::clone(&shared),
            WriterOptions {
                max_batch_requests: config.max_batch_requests,
                access_flush_interval: config.access_flush_interval,
            },
        )?;
        let pipeline = Pipeline {
            codec: config.write_codec(),
            level: config.compression_level,
            max_value_size: config.max_value_size,
        };
        let backups = BackupManager::new(
            Arc::clone(&shared.backend),
            config.backup_directory(),
            config.data_path.clone(),
            config.retention_policy(),
        );
        let storage = PersistentStorageManager {
            inner: Arc::new(Inner {
                shared,
                writer,
                pipeline,
                config,
                backups,
                background: std::sync::Mutex::new(None),
                closed: AtomicBool::new(false),
            }),
        };
        if storage.inner.config.enable_background_tasks {
            if tokio::runtime::Handle::try_current().is_err() {
                return Err(StorageError::Config(
                    "background tasks need a Tokio runtime; open the store inside one or \
                     set enable_background_tasks = false"
                        .into(),
                ));
            }
            let background = Background::start(&storage.inner);
            if let Ok(mut slot) = storage.inner.background.lock() {
                *slot = Some(background);
            }
        }
        Ok(storage)
    }

    /// The configuration the store was opened with.
    pub fn config(&self) -> &StorageConfig {
        &self.inner.config
    }

    pub(crate) fn check_open(&self) -> Result<()> {
        if self.inner.closed.load(Ordering::Acquire) {
            Err(StorageError::Closed)
        } else {
            Ok(())
        }
    }

    fn count_error<T>(&self, result: Result<T>) -> Result<T> {
        if result.is_err() {
            Counters::add(&self.inner.shared.counters.errors, 1);
        }
        result
    }

    fn serialize<T: Serialize + ?Sized>(collection: &str, key: &str, value: &T) -> Result<Vec<u8>> {
        serde_json::to_vec(value).map_err(|source| StorageError::Serialize {
            collection: collection.to_owned(),
            key: key.to_owned(),
            source,
        })
    }

    /// Offers a written document to dictionary sampling; starts training when it is time.
    fn observe(&self, collection: &str, encoded: &EncodedValue) {
        if let Some(samples) = self
            .inner
            .shared
            .dictionaries
            .observe(collection, &encoded.raw)
        {
            let this = self.clone();
            let collection = collection.to_owned();
            tokio::spawn(async move { this.train_dictionary(collection, samples).await });
        }
    }

    async fn encode<T: Serialize + ?Sized>(
        &self,
        collection: &str,
        key: &str,
        value: &T,
    ) -> Result<EncodedValue> {
        let pipeline = self.inner.pipeline;
        let raw = Self::serialize(collection, key, value)?;
        let dict = self.inner.shared.dictionaries.encoder(collection);
        let encoded = if raw.len() <= INLINE_ENCODE_LIMIT {
            pipeline.encode_raw_with(collection, key, raw, dict.as_deref())?
        } else {
            let (c, k) = (collection.to_owned(), key.to_owned());
            blocking(move || pipeline.encode_raw_with(&c, &k, raw, dict.as_deref())).await?
        };
        self.observe(collection, &encoded);
        Ok(encoded)
    }

    /// Trains a dictionary for `collection` off the runtime, commits it, and starts using it.
    async fn train_dictionary(&self, collection: String, samples: Vec<Arc<[u8]>>) {
        let dictionaries = &self.inner.shared.dictionaries;
        let trained = match blocking(move || dictionary::train(&samples)).await {
            Ok(data) => data,
            Err(e) => {
                tracing::info!(%collection, error = %e, "no dictionary trained; sampling again");
                dictionaries.training_done(&collection);
                return;
            }
        };
        let data: Arc<[u8]> = trained.into();
        let op = WriteOp::PutDictionary {
            collection: collection.clone(),
            data: Arc::clone(&data),
            now_ms: now_ms(),
        };
        match self.inner.writer.write(vec![op]).await.as_deref() {
            Ok([OpOutcome::Dictionary { id }]) => {
                dictionaries.install(&StoredDictionary {
                    id: *id,
                    collection: collection.clone(),
                    data: data.to_vec(),
                });
                dictionaries.training_done(&collection);
                tracing::info!(%collection, id, bytes = data.len(), "trained a zstd dictionary");
            }
            other => {
                tracing::warn!(%collection, outcome = ?other, "could not store a dictionary");
                dictionaries.training_done(&collection);
            }
        }
    }

    /// Stores `value` under `collection`/`key`, replacing any previous value. Returns once the
    /// write is durable (per [`StorageConfig::durability`]).
    pub async fn store<T: Serialize + ?Sized>(
        &self,
        collection: &str,
        key: &str,
        value: &T,
    ) -> Result<()> {
        let result = self.store_inner(collection, key, value).await;
        self.count_error(result)
    }

    async fn store_inner<T: Serialize + ?Sized>(
        &self,
        collection: &str,
        key: &str,
        value: &T,
    ) -> Result<()> {
        let started = Instant::now();
        self.check_open()?;
        validate::key(collection, key)?;
        let value = self.encode(collection, key, value).await?;
        let op = WriteOp::Put {
            collection: collection.to_owned(),
            key: key.to_owned(),
            value,
            now_ms: now_ms(),
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
        let result = self.store_batch_inner(collection, items).await;
        self.count_error(result)
    }

    async fn store_batch_inner<K: AsRef<str>, T: Serialize>(
        &self,
        collection: &str,
        items: &[(K, T)],
    ) -> Result<()> {
        let started = Instant::now();
        self.check_open()?;
        validate::collection(collection)?;
        if items.is_empty() {
            return Ok(());
        }
        let now = now_ms();
        // Serializing borrows the caller's values, so it happens here; hashing and compressing
        // a large batch (milliseconds of CPU) moves to a blocking thread so the runtime's
        // worker is not held.
        let mut raws = Vec::with_capacity(items.len());
        let mut total = 0usize;
        for (key, value) in items {
            let key = key.as_ref();
            validate::key(collection, key)?;
            let raw = Self::serialize(collection, key, value)?;
            total = total.saturating_add(raw.len());
            raws.push((key.to_owned(), raw));
        }
        let pipeline = self.inner.pipeline;
        let dict = self.inner.shared.dictionaries.encoder(collection);
        let c = collection.to_owned();
        let encode_all = move || {
            raws.into_iter()
                .map(|(key, raw)| {
                    let value = pipeline.encode_raw_with(&c, &key, raw, dict.as_deref())?;
                    Ok((key, value))
                })
                .collect::<Result<Vec<_>>>()
        };
        let encoded = if total <= INLINE_ENCODE_LIMIT {
            encode_all()?
        } else {
            blocking(encode_all).await?
        };
        let mut unit = Vec::with_capacity(encoded.len());
        for (key, value) in encoded {
            self.observe(collection, &value);
            unit.push(WriteOp::Put {
                collection: collection.to_owned(),
                key,
                value,
                now_ms: now,
            });
        }
        self.inner.writer.write(unit).await?;
        self.inner
            .shared
            .counters
            .write_call_done(started.elapsed());
        Ok(())
    }

    /// Reads the value under `collection`/`key` as `T`. `Ok(None)` when there is none; an
    /// error when the stored document does not deserialize as `T` or fails verification.
    pub async fn retrieve<T: DeserializeOwned>(
        &self,
        collection: &str,
        key: &str,
    ) -> Result<Option<T>> {
        let result = self.retrieve_inner(collection, key).await;
        self.count_error(result)
    }

    async fn retrieve_inner<T: DeserializeOwned>(
        &self,
        collection: &str,
        key: &str,
    ) -> Result<Option<T>> {
        let started = Instant::now();
        let value = match self.fetch(collection, key).await? {
            None => None,
            Some(Fetched::Cached(cached)) => {
                let raw = self.decode_cached(&cached, collection, key)?;
                Some(value::deserialize(collection, key, &raw)?)
            }
            Some(Fetched::Loaded(raw)) => Some(value::deserialize(collection, key, &raw)?),
        };
        self.inner.shared.counters.read_done(started.elapsed());
        Ok(value)
    }

    /// Reads the serialized JSON document under `collection`/`key`, verified.
    pub async fn retrieve_raw(&self, collection: &str, key: &str) -> Result<Option<Arc<[u8]>>> {
        match self.fetch(collection, key).await? {
            None => Ok(None),
            Some(Fetched::Cached(cached)) => {
                let raw = self.decode_cached(&cached, collection, key)?;
                Ok(Some(Arc::from(&*raw)))
            }
            Some(Fetched::Loaded(raw)) => Ok(Some(raw)),
        }
    }

    /// Decodes a cache hit. An entry that does not decode (never expected: entries are
    /// verified before they are cached) is dropped, so the next read loads it afresh.
    fn decode_cached<'a>(
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
    async fn fetch(&self, collection: &str, key: &str) -> Result<Option<Fetched>> {
        self.check_open()?;
        validate::key(collection, key)?;
        let shared = &self.inner.shared;
        let ck = cache_key(collection, key);
        if let Some(cached) = shared.cache.get(&ck) {
            shared.access.record(&ck, now_ms());
            // A cache hit completes without awaiting anything; spend tokio's cooperative
            // budget so a loop of hits still lets other tasks (writers) run.
            tokio::task::coop::consume_budget().await;
            return Ok(Some(Fetched::Cached(cached)));
        }
        let (ticket, load, _joined) = shared.cache.join_load(&ck);
        let raw = load
            .get_or_try_init(|| self.load(collection, key, &ck, ticket))
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
    /// no write intervened since the observation taken before the database read).
    async fn load(
        &self,
        collection: &str,
        key: &str,
        ck: &str,
        ticket: crate::cache::FillTicket,
    ) -> Result<Option<Arc<[u8]>>> {
        let shared = &self.inner.shared;
        let observed = match &shared.remote {
            Some(remote) => match remote.lookup(ck).await {
                Lookup::Hit(raw) => {
                    shared.cache.fill(ticket, CachedValue::plain(ck, &raw), ck);
                    return Ok(Some(raw));
                }
                Lookup::Miss(observed) => Some(observed),
                Lookup::Unavailable => None,
            },
            None => None,
        };
        let Some((raw, cached)) = self.read_database(collection, key).await? else {
            return Ok(None);
        };
        // Awaited rather than spawned so a read that returned has filled L2 (tests and other
        // nodes can count on it); it is one round trip after a database read.
        if let (Some(remote), Some(observed)) = (&shared.remote, observed) {
            remote.fill(ck, observed, &raw).await;
        }
        shared.cache.fill(ticket, cached, ck);
        Ok(Some(raw))
    }

    /// Reads and verifies a document from the database on a blocking thread: the JSON, and
    /// the stored form for the cache.
    async fn read_database(
        &self,
        collection: &str,
        key: &str,
    ) -> Result<Option<(Arc<[u8]>, CachedValue)>> {
        let inner = Arc::clone(&self.inner);
        let (c, k) = (collection.to_owned(), key.to_owned());
        let ck = cache_key(collection, key);
        blocking(move || {
            let shared = &inner.shared;
            let Some(blob) = shared.backend.get(&c, &k)? else {
                return Ok(None);
            };
            let location = format!("{c}/{k}");
            let dict = blob
                .dict_id
                .map(|id| dictionary_decoder(shared, id, &location))
                .transpose()?;
            let raw = value::decode(
                &location,
                blob.codec_id,
                blob.raw_len,
                &blob.hash,
                &blob.data,
                dict.as_deref(),
            )?;
            // decode() accepted the codec id, so this conversion holds; a stored form it
            // could not describe is cached decoded instead.
            let codec = u8::try_from(blob.codec_id).ok().and_then(Codec::from_id);
            let cached = match codec {
                Some(codec) if codec != Codec::None => {
                    CachedValue::new(&ck, codec, raw.len(), &blob.data, dict)
                }
                _ => CachedValue::plain(&ck, &raw),
            };
            let raw = Arc::<[u8]>::from(raw);
            Ok(Some((raw, cached)))
        })
        .await
    }

    /// Deletes the record; returns whether it existed. Its content is freed once no other
    /// record refers to it.
    pub async fn delete(&self, collection: &str, key: &str) -> Result<bool> {
        let result = self.delete_inner(collection, key).await;
        self.count_error(result)
    }

    async fn delete_inner(&self, collection: &str, key: &str) -> Result<bool> {
        self.check_open()?;
        validate::key(collection, key)?;
        let op = WriteOp::Delete {
            collection: collection.to_owned(),
            key: key.to_owned(),
        };
        let outcomes = self.inner.writer.write(vec![op]).await?;
        Ok(matches!(
            outcomes.first(),
            Some(OpOutcome::Delete { existed: true })
        ))
    }

    /// Whether a record exists (served from the cache when possible; not counted as a read).
    pub async fn exists(&self, collection: &str, key: &str) -> Result<bool> {
        self.check_open()?;
        validate::key(collection, key)?;
        // The cache is exact: a cached key exists. (An untrusted cache answers `false` here.)
        if self
            .inner
            .shared
            .cache
            .contains(&cache_key(collection, key))
        {
            return Ok(true);
        }
        let backend = Arc::clone(&self.inner.shared.backend);
        let (c, k) = (collection.to_owned(), key.to_owned());
        blocking(move || Ok(backend.metadata(&c, &k)?.is_some())).await
    }

    /// A record's metadata, including reads not yet flushed to disk.
    pub async fn metadata(&self, collection: &str, key: &str) -> Result<Option<RecordMetadata>> {
        self.check_open()?;
        validate::key(collection, key)?;
        let backend = Arc::clone(&self.inner.shared.backend);
        let (c, k) = (collection.to_owned(), key.to_owned());
        let meta = blocking(move || backend.metadata(&c, &k)).await?;
        Ok(meta.map(|mut m| {
            if let Some(p) = self
                .inner
                .shared
                .access
                .pending(&cache_key(collection, key))
            {
                m.access_count = m.access_count.saturating_add(p.count);
                let pending_last = time_from_ms(p.last_ms);
                m.last_accessed = Some(
                    m.last_accessed
                        .map_or(pending_last, |t| t.max(pending_last)),
                );
            }
            m
        }))
    }

    /// Lists keys of a collection in order; see [`ListOptions`].
    pub async fn list(&self, collection: &str, options: ListOptions) -> Result<ListPage> {
        self.check_open()?;
        validate::collection(collection)?;
        let backend = Arc::clone(&self.inner.shared.backend);
        let c = collection.to_owned();
        let result = blocking(move || backend.list(&c, &options)).await;
        self.count_error(result)
    }

    /// Names of the collections that hold at least one record, in order.
    pub async fn collections(&self) -> Result<Vec<String>> {
        self.check_open()?;
        let backend = Arc::clone(&self.inner.shared.backend);
        let result = blocking(move || backend.collections()).await;
        self.count_error(result)
    }

    /// A snapshot of the statistics.
    pub async fn statistics(&self) -> Result<StorageStatistics> {
        self.check_open()?;
        let backend = Arc::clone(&self.inner.shared.backend);
        let database = blocking(move || backend.statistics()).await?;
        let shared = &self.inner.shared;
        let pending = u64::try_from(shared.access.pending_keys()).unwrap_or(u64::MAX);
        let mut statistics = shared
            .counters
            .snapshot(shared.cache.statistics(), database, pending);
        statistics.remote_cache = shared.remote.as_ref().map(RemoteTier::statistics);
        Ok(statistics)
    }

    /// Runs the engine's integrity check and verifies every reference count.
    pub async fn check_consistency(&self) -> Result<ConsistencyReport> {
        self.check_open()?;
        let backend = Arc::clone(&self.inner.shared.backend);
        blocking(move || backend.check()).await
    }

    /// Writes buffered access statistics to the database now.
    pub async fn flush(&self) -> Result<()> {
        self.check_open()?;
        self.inner.writer.flush_access().await
    }

    /// Finishes queued writes, flushes access statistics, and stops the writer. Every clone of
    /// the handle sees the store as closed afterwards. Closing twice is harmless.
    pub async fn close(&self) -> Result<()> {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let background = self.inner.background.lock().ok().and_then(|mut b| b.take());
        if let Some(background) = background {
            background.stop().await;
        }
        if let Some(thread) = self.inner.writer.shutdown() {
            blocking(move || {
                thread
                    .join()
                    .map_err(|_| StorageError::Task("the writer thread panicked".into()))
            })
            .await?;
        }
        // After the writer's last invalidations.
        if let Some(remote) = &self.inner.shared.remote {
            remote.shutdown();
        }
        let backend = Arc::clone(&self.inner.shared.backend);
        blocking(move || backend.close()).await
    }
}

/// The Redis tier the configuration asks for, if any.
fn start_remote_tier(
    config: &StorageConfig,
    cache: &Arc<ValueCache>,
) -> Result<Option<RemoteTier>> {
    let Some(url) = config.redis_url.as_deref() else {
        return Ok(None);
    };
    #[cfg(feature = "redis")]
    {
        RemoteTier::start(config, url, Arc::clone(cache)).map(Some)
    }
    #[cfg(not(feature = "redis"))]
    {
        // `validate` already refuses this; kept so the two builds agree.
        let _ = cache;
        Err(crate::config::redis_unsupported(url))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The handle is shared across tasks and threads; losing `Send`/`Sync` breaks every user
    /// at compile time, so this test fails to build if it happens.
    #[test]
    fn handles_are_send_sync_and_cheap_to_clone() {
        fn shareable<T: Send + Sync + Clone + 'static>() {}
        shareable::<PersistentStorageManager>();
        shareable::<BackupManager>();
    }
}

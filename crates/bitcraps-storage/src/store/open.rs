//! Building a store: the backend the configuration selects, the shared state, the writer
//! thread, the Redis tier and the background tasks.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use super::{Inner, PersistentStorageManager, Shared};
use crate::access::AccessTracker;
use crate::backend::{Backend, StoreIdentity};
use crate::background::Background;
use crate::backup::BackupManager;
use crate::cache::ValueCache;
use crate::codec::Codec;
use crate::config::StorageConfig;
use crate::crypto::Attached;
use crate::dictionary::Dictionaries;
use crate::error::{Result, StorageError};
use crate::remote::RemoteTier;
use crate::rt::blocking;
use crate::stats::Counters;
use crate::value::Pipeline;
use crate::writer::{Writer, WriterOptions};

impl PersistentStorageManager {
    /// Opens (creating if needed) the store the configuration describes.
    pub async fn open(config: StorageConfig) -> Result<Self> {
        config.validate()?;
        let opened = blocking(move || crate::backend::open::open(config)).await?;
        Self::open_with(opened.config, opened.backend)
    }

    /// Opens a store over an opened backend (`open`, and `with_backend` of the `testing`
    /// feature). Starts the background tasks when enabled, which needs a Tokio runtime.
    pub(crate) fn open_with(config: StorageConfig, backend: Arc<dyn Backend>) -> Result<Self> {
        config.validate()?;
        // Before anything else reads the store: an encrypted store without its key (or with
        // a wrong one) is refused here, and an encrypted store runs on the sealing wrapper.
        let attached = crate::crypto::attach(backend, &config);
        let Attached { backend, keyring } = attached?;
        let dictionaries = Dictionaries::new(
            config.compression.dictionaries && config.compression.write_codec() == Codec::Zstd,
            config.compression.level,
            config.compression.dictionary_training_samples,
        );
        for stored in backend.dictionaries()? {
            dictionaries.install(&stored);
        }
        let identity = backend.identity()?;
        let with_redis = config.redis.url.is_some();
        // A store that runs with a Redis tier refuses writes from a process without one:
        // they would invalidate no other node's cache (this process does not know the Redis
        // to invalidate through), so the others would serve the old values.
        let read_only = config.database.read_only;
        let redis_tier_required = identity.redis_tier && !with_redis && !read_only;
        if redis_tier_required {
            tracing::warn!(
                "this store runs with a Redis tier and redis.url is not set: writes are refused"
            );
        }
        let l1_max_age = with_redis.then_some(config.redis.l1_max_age);
        // Read-only: another process writes, and nothing would invalidate this cache.
        let capacity = if read_only {
            0
        } else {
            config.cache.capacity_bytes()
        };
        let cache = Arc::new(ValueCache::with_max_age(
            capacity,
            config.cache.typed_percent,
            l1_max_age,
        ));
        let prefetch = crate::prefetch::Prefetcher::new(
            config.cache.prefetch && capacity > 0,
            config.cache.prefetch_window,
            config.cache.prefetch_budget_bytes(),
            Arc::clone(cache.ledger()),
        );
        let remote = start_remote_tier(&config, &cache, &identity)?;
        if remote.is_some() && !identity.redis_tier && !read_only {
            backend.record_redis_tier()?;
        }
        let observer = crate::observe::Observer::new(backend.name(), &config.metrics);
        let shared = Arc::new(Shared {
            observer,
            backend,
            cache,
            prefetch,
            access: if read_only {
                AccessTracker::disabled()
            } else {
                AccessTracker::default()
            },
            counters: Counters::default(),
            dictionaries,
            keyframes: crate::chunk::keyframes::Keyframes::default(),
            remote,
            clock: crate::clock::StoreClock::default(),
            keyring: keyring.clone(),
            feed_signal: Arc::new(tokio::sync::watch::Sender::new(0)),
            feed_installed: crate::feed::installed::InstallGate::default(),
            feed_listening: std::sync::atomic::AtomicBool::new(false),
            feed_waits: tokio::sync::watch::Sender::new(0),
            #[cfg(feature = "testing")]
            hooks: super::hooks::Hooks::default(),
        });
        let writer = Writer::start(
            Arc::clone(&shared),
            WriterOptions {
                max_batch_requests: config.write.max_batch_requests,
                access_flush_interval: config.write.access_flush_interval,
            },
        )?;
        let pipeline = Pipeline {
            codec: config.compression.write_codec(),
            level: config.compression.level,
            max_value_size: config.write.max_value_size,
            chunk_threshold: config.compression.chunk_threshold,
            keyframe_interval: config.compression.keyframe_interval,
        };
        let backups = BackupManager::new(
            Arc::clone(&shared.backend),
            config.backup_directory(),
            config.database.data_path.clone(),
            config.backup.retention,
            config.backup.max_total_bytes,
            keyring,
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
                redis_tier_required,
                turns: super::turns::Turns::new(),
            }),
        };
        if storage.inner.config.maintenance.background_tasks {
            if tokio::runtime::Handle::try_current().is_err() {
                return Err(StorageError::Config(
                    "background tasks need a Tokio runtime; open the store inside one or \
                     set maintenance.background_tasks = false"
                        .into(),
                ));
            }
            let background = Background::start(&storage);
            if let Ok(mut slot) = storage.inner.background.lock() {
                *slot = Some(background);
            }
        }
        Ok(storage)
    }
}

/// The Redis tier the configuration asks for, if any.
fn start_remote_tier(
    config: &StorageConfig,
    cache: &Arc<ValueCache>,
    identity: &StoreIdentity,
) -> Result<Option<RemoteTier>> {
    let Some(url) = config.redis.url.as_deref() else {
        return Ok(None);
    };
    #[cfg(feature = "redis")]
    {
        RemoteTier::start(config, url, Arc::clone(cache), identity).map(Some)
    }
    #[cfg(not(feature = "redis"))]
    {
        // `validate` already refuses this; kept so the two builds agree.
        let _ = (cache, identity);
        Err(crate::config::redis_unsupported(url))
    }
}

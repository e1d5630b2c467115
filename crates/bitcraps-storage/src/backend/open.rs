//! Opening a backend from a configuration: the one place that maps a target (a data
//! directory, `sqlite://PATH`, `postgres://…`) to an engine and the configuration's settings
//! to that engine's options. `PersistentStorageManager::open`, restores into a URL and the
//! CLI's `migrate` (which opens both of its stores through `open`) all come through here.

use std::sync::Arc;

use super::Backend;
use super::sqlite::{SqliteBackend, SqliteOptions};
use crate::config::{BackendTarget, StorageConfig};
use crate::error::Result;

/// A backend opened for a configuration, and the configuration as the store must run with it.
pub(crate) struct Opened {
    /// The backend.
    pub(crate) backend: Arc<dyn Backend>,
    /// `config`, adjusted where the backend requires it (see [`open`]).
    pub(crate) config: StorageConfig,
}

/// Opens (creating and migrating if needed) the backend `config` selects. Blocking: run it on
/// a blocking thread.
///
/// One decision is made here because it follows from the backend: a database shared by many
/// nodes (PostgreSQL) runs without the in-process read cache unless the Redis tier is
/// configured, since other nodes' writes could not invalidate it otherwise.
pub(crate) fn open(config: StorageConfig) -> Result<Opened> {
    #[cfg_attr(not(feature = "postgres"), allow(unused_mut))]
    let mut config = config;
    let backend: Arc<dyn Backend> = match config.target()? {
        BackendTarget::Sqlite { path } => {
            let options = SqliteOptions {
                path,
                readers: config.database.max_connections,
                durability: config.write.durability,
                deduplicate: config.compression.deduplication,
                connection_timeout: config.database.connection_timeout,
                page_cache_bytes: SqliteOptions::page_cache_for(config.cache.capacity_bytes()),
            };
            if config.database.read_only {
                Arc::new(SqliteBackend::open_read_only(&options)?)
            } else {
                Arc::new(SqliteBackend::open(&options)?)
            }
        }
        #[cfg(feature = "postgres")]
        BackendTarget::Postgres { url, replica_url } => {
            use super::postgres::{PostgresBackend, PostgresOptions};
            let options = PostgresOptions {
                url,
                replica_url,
                pool_size: config.database.max_connections,
                connection_timeout: config.database.connection_timeout,
                deduplicate: config.compression.deduplication,
                durability: config.write.durability,
            };
            let backend = PostgresBackend::open(&options)?;
            // THE cache decision for shared databases: other nodes write to the same
            // database, so this node's in-process cache is only coherent when their writes
            // reach it — through the Redis tier's invalidations. Without `redis_url` the
            // cache would serve stale values, so it is off.
            if config.cache.size_mb > 0 && config.redis.url.is_none() {
                tracing::info!(
                    "in-process read cache disabled on PostgreSQL without redis_url: other \
                     nodes' writes could not invalidate it"
                );
                config.cache.size_mb = 0;
                // Nothing to prefetch into, and nothing would keep it coherent either.
                config.cache.prefetch = false;
            }
            Arc::new(backend)
        }
        #[cfg(not(feature = "postgres"))]
        BackendTarget::Postgres { url, .. } => {
            return Err(crate::StorageError::UnsupportedUrl {
                url: crate::redact_url(&url),
                reason: "PostgreSQL support is not compiled in; enable the `postgres` \
                         feature of bitcraps-storage"
                    .into(),
            });
        }
    };
    Ok(Opened { backend, config })
}

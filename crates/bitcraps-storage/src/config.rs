//! Configuration: [`StorageConfig`], its builder and URL parsing.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::codec::Codec;
use crate::error::{Result, StorageError};

/// Name of the SQLite database file inside `data_path` when no URL names another.
pub const DEFAULT_DATABASE_FILE: &str = "bitcraps.db";

/// How hard an acknowledged write is pushed towards the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Durability {
    /// Every acknowledged write is fsync'd (SQLite `synchronous=FULL`; on PostgreSQL the
    /// server's `synchronous_commit` as configured). Survives power loss. Concurrent writers
    /// share one fsync through group commit. The default.
    #[default]
    Full,
    /// Writes reach the OS before they are acknowledged but are fsync'd only at checkpoints
    /// (SQLite `synchronous=NORMAL` in WAL mode; on PostgreSQL write transactions run with
    /// `synchronous_commit = off`): survives a process crash, may lose the last transactions
    /// on power loss (or a PostgreSQL server crash).
    Normal,
}

impl FromStr for Durability {
    type Err = StorageError;

    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "full" => Ok(Durability::Full),
            "normal" => Ok(Durability::Normal),
            other => Err(StorageError::Config(format!(
                "unknown durability {other:?} (expected \"full\" or \"normal\")"
            ))),
        }
    }
}

/// The backend a configuration selects, derived from [`StorageConfig::database_url`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackendTarget {
    /// An embedded SQLite database file.
    Sqlite {
        /// The database file.
        path: PathBuf,
    },
    /// A PostgreSQL database shared by any number of nodes (feature `postgres`).
    Postgres {
        /// The primary: every write and every `get`.
        url: String,
        /// Optional read replica for `list`, `collections`, `metadata`, `statistics` and
        /// `check` (from [`StorageConfig::read_replica_url`]).
        replica_url: Option<String>,
    },
}

fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// Configuration of a [`PersistentStorageManager`](crate::PersistentStorageManager).
///
/// Every field is public and documented with its default; [`StorageConfig::builder`] offers the
/// same settings fluently, and [`StorageConfig::from_url`] starts from a database URL.
#[derive(Debug, Clone, PartialEq)]
pub struct StorageConfig {
    /// Directory holding the database (unless `database_url` names another file) and, later,
    /// backups. Created on open. Default: `./bitcraps-data`.
    pub data_path: PathBuf,
    /// `None` or `sqlite://PATH` selects embedded SQLite (`None` means
    /// `<data_path>/bitcraps.db`). `postgres://…` or `postgresql://…` selects PostgreSQL
    /// (needs the `postgres` feature); the tables live in the connection's `search_path`, so
    /// `?options=-csearch_path%3Dmy_schema` picks a schema. On PostgreSQL the in-process read
    /// cache is disabled (other nodes write to the same database and nothing would tell this
    /// node's cache). Default: `None`.
    pub database_url: Option<String>,
    /// A PostgreSQL read replica (`postgres://…`) that serves `list`, `collections`,
    /// `metadata`, `exists` (when not cached), `statistics` and `check_consistency`, which may
    /// therefore lag behind the primary; `retrieve` and writes always use the primary. Gets its
    /// own pool of `max_connections`. Ignored for SQLite. Default: `None`.
    pub read_replica_url: Option<String>,
    /// Upper bound of the in-memory read cache, in MiB of memory: documents are cached in their
    /// stored (compressed) form and each entry is charged its measured overhead on top, so this
    /// bounds what the cache takes, not just document bytes. SQLite's own page caches get a
    /// quarter of it on top (at least 4 MiB, at most 32 MiB). `0` disables the cache.
    /// Default: 64.
    pub cache_size_mb: usize,
    /// Number of read-only database connections (reads run in parallel; there is always exactly
    /// one writer). On PostgreSQL: the size of each connection pool (primary and replica),
    /// shared by reads and the writer. Default: 4.
    pub max_connections: usize,
    /// Compress values when that makes them smaller. Default: `true`.
    pub enable_compression: bool,
    /// Codec-specific level: zstd 1–22 (default 3), gzip 0–9; ignored by lz4. Default: 3.
    pub compression_level: i32,
    /// Codec used for new writes when compression is enabled. Each record remembers its own
    /// codec, so this can change at any time. Default: [`Codec::Zstd`].
    pub codec: Codec,
    /// Train a zstd dictionary per collection from its first documents and compress new
    /// values with it (only with [`Codec::Zstd`]). Default: `true`.
    pub enable_dictionaries: bool,
    /// How many documents of a collection are sampled before its dictionary is trained.
    /// Default: 1000.
    pub dictionary_training_samples: usize,
    /// Store identical values once (content-addressed by blake3, reference counted).
    /// Default: `true`.
    pub enable_deduplication: bool,
    /// Days a backup is kept by retention (0: no age rule). Default: 7.
    pub backup_retention_days: u32,
    /// Where backups go; `None` means `<data_path>/backups`. Default: `None`.
    pub backup_dir: Option<PathBuf>,
    /// The newest N backups are always kept, however old. Default: 3.
    pub backup_keep_last: u32,
    /// Keep the newest backup of each of the last N days (0 disables). Default: 7.
    pub backup_keep_daily: u32,
    /// Keep the newest backup of each of the last N weeks (0 disables). Default: 4.
    pub backup_keep_weekly: u32,
    /// Keep the newest backup of each of the last N months (0 disables). Default: 6.
    pub backup_keep_monthly: u32,
    /// Maintenance creates a backup and applies retention. Default: `true`.
    pub backup_on_maintenance: bool,
    /// Maintenance vacuums when free pages exceed this percentage of the file. Default: 25.
    pub vacuum_free_percent: u32,
    /// Run the background tasks (statistics, cache upkeep, maintenance) while the store is
    /// open. Default: `true`.
    pub enable_background_tasks: bool,
    /// Hours between background maintenance runs (0 disables). Default: 1.
    pub maintenance_interval_hours: u32,
    /// Interval of the statistics report (tracing and `metrics`). Default: 60 s.
    pub statistics_interval: Duration,
    /// Interval of cache upkeep. Default: 5 min.
    pub cache_upkeep_interval: Duration,
    /// What an acknowledged write guarantees. Default: [`Durability::Full`].
    pub durability: Durability,
    /// Largest accepted serialized value, in bytes. Default: 64 MiB.
    pub max_value_size: usize,
    /// Most write requests that group commit puts in one transaction. Default: 1024.
    pub max_batch_requests: usize,
    /// How often buffered access statistics are written to the database. Default: 30 s.
    pub access_flush_interval: Duration,
    /// How long a read waits for a free connection before failing. On PostgreSQL also the
    /// connect timeout; an exhausted pool fails with [`StorageError::PoolTimeout`].
    /// Default: 30 s.
    pub connection_timeout: Duration,
    /// `redis://HOST:PORT[/DB]` enables the Redis tier (needs the `redis` feature): a shared
    /// L2 cache between the in-process cache and the database, and cross-node invalidation
    /// of the in-process cache over pub/sub, for several processes sharing one database.
    /// Redis being unreachable never fails an operation: reads fall back to the database
    /// and invalidations are retried. Opening waits up to `redis_timeout` for the
    /// invalidation subscription, then opens regardless. A single Redis instance (or a
    /// primary); Redis Cluster is not supported. `None` disables it. Default: `None`.
    pub redis_url: Option<String>,
    /// Deadline of each Redis operation; a write's acknowledgement waits at most this long
    /// for its invalidation. Default: 250 ms.
    pub redis_timeout: Duration,
    /// Time to live of a value in the Redis L2 cache. Key generations live ten times as long
    /// after the key's last write. Default: 10 min.
    pub remote_cache_ttl: Duration,
    /// Prefix of every Redis key and channel of this store. `None` derives one from the
    /// database identity (`bitcraps:` and 16 hex digits of blake3 of `database_url`, or of the
    /// absolute `data_path` for the default SQLite file), so stores sharing one Redis never
    /// collide while the nodes of one store agree. Default: `None`.
    pub redis_namespace: Option<String>,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            data_path: PathBuf::from("./bitcraps-data"),
            database_url: None,
            read_replica_url: None,
            cache_size_mb: 64,
            max_connections: 4,
            enable_compression: true,
            compression_level: 3,
            codec: Codec::Zstd,
            enable_dictionaries: true,
            dictionary_training_samples: 1000,
            enable_deduplication: true,
            backup_retention_days: 7,
            backup_dir: None,
            backup_keep_last: 3,
            backup_keep_daily: 7,
            backup_keep_weekly: 4,
            backup_keep_monthly: 6,
            backup_on_maintenance: true,
            vacuum_free_percent: 25,
            enable_background_tasks: true,
            maintenance_interval_hours: 1,
            statistics_interval: Duration::from_secs(60),
            cache_upkeep_interval: Duration::from_secs(300),
            durability: Durability::Full,
            max_value_size: 64 * 1024 * 1024,
            max_batch_requests: 1024,
            access_flush_interval: Duration::from_secs(30),
            connection_timeout: Duration::from_secs(30),
            redis_url: None,
            redis_timeout: Duration::from_millis(250),
            remote_cache_ttl: Duration::from_secs(600),
            redis_namespace: None,
        }
    }
}

impl StorageConfig {
    /// A builder starting from the defaults.
    pub fn builder() -> StorageConfigBuilder {
        StorageConfigBuilder {
            config: StorageConfig::default(),
        }
    }

    /// Defaults with `data_path` set.
    pub fn with_data_path(path: impl Into<PathBuf>) -> Self {
        StorageConfig {
            data_path: path.into(),
            ..StorageConfig::default()
        }
    }

    /// Defaults with `database_url` set to `url`, which is checked now.
    ///
    /// For `sqlite://PATH`, `data_path` becomes the directory holding `PATH`. For PostgreSQL
    /// `data_path` keeps its default (it only holds backups there).
    pub fn from_url(url: &str) -> Result<Self> {
        let mut config = StorageConfig {
            database_url: Some(url.to_owned()),
            ..StorageConfig::default()
        };
        let path = match config.target()? {
            BackendTarget::Sqlite { path } => path,
            BackendTarget::Postgres { .. } => return Ok(config),
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            config.data_path = parent.to_path_buf();
        } else {
            config.data_path = PathBuf::from(".");
        }
        Ok(config)
    }

    /// The backend this configuration selects.
    pub fn target(&self) -> Result<BackendTarget> {
        let Some(url) = self.database_url.as_deref() else {
            return Ok(BackendTarget::Sqlite {
                path: self.data_path.join(DEFAULT_DATABASE_FILE),
            });
        };
        if let Some(rest) = url.strip_prefix("sqlite://") {
            let rest = rest.split('?').next().unwrap_or(rest);
            if rest.is_empty() {
                return Err(StorageError::UnsupportedUrl {
                    url: url.to_owned(),
                    reason: "sqlite:// needs a file path, e.g. sqlite://./data/bitcraps.db".into(),
                });
            }
            return Ok(BackendTarget::Sqlite {
                path: PathBuf::from(rest),
            });
        }
        if is_postgres_url(url) {
            if !cfg!(feature = "postgres") {
                return Err(StorageError::UnsupportedUrl {
                    url: url.to_owned(),
                    reason: "PostgreSQL support is not compiled in; enable the `postgres` \
                             feature of bitcraps-storage"
                        .into(),
                });
            }
            if let Some(replica) = self.read_replica_url.as_deref()
                && !is_postgres_url(replica)
            {
                return Err(StorageError::UnsupportedUrl {
                    url: replica.to_owned(),
                    reason: "read_replica_url must be a postgres:// URL".into(),
                });
            }
            return Ok(BackendTarget::Postgres {
                url: url.to_owned(),
                replica_url: self.read_replica_url.clone(),
            });
        }
        Err(StorageError::UnsupportedUrl {
            url: url.to_owned(),
            reason: "expected sqlite://PATH or postgres://…".into(),
        })
    }

    /// Checks every field; `open` calls this.
    pub fn validate(&self) -> Result<()> {
        self.target()?;
        if self.max_connections == 0 {
            return Err(StorageError::Config(
                "max_connections must be at least 1".into(),
            ));
        }
        if self.max_batch_requests == 0 {
            return Err(StorageError::Config(
                "max_batch_requests must be at least 1".into(),
            ));
        }
        if self.max_value_size == 0 {
            return Err(StorageError::Config(
                "max_value_size must be at least 1".into(),
            ));
        }
        self.codec.check_level(self.compression_level)?;
        self.validate_redis()
    }

    fn validate_redis(&self) -> Result<()> {
        let Some(url) = self.redis_url.as_deref() else {
            return Ok(());
        };
        if !cfg!(feature = "redis") {
            return Err(redis_unsupported(url));
        }
        if !(url.starts_with("redis://") || url.starts_with("redis+unix://")) {
            return Err(StorageError::UnsupportedUrl {
                url: url.to_owned(),
                reason: "expected redis://HOST:PORT[/DB] or redis+unix:///PATH".into(),
            });
        }
        if self.redis_timeout.is_zero() {
            return Err(StorageError::Config(
                "redis_timeout must be greater than zero".into(),
            ));
        }
        if self.remote_cache_ttl < Duration::from_millis(1) {
            return Err(StorageError::Config(
                "remote_cache_ttl must be at least 1 ms".into(),
            ));
        }
        if self.redis_namespace.as_deref() == Some("") {
            return Err(StorageError::Config(
                "redis_namespace must not be empty".into(),
            ));
        }
        Ok(())
    }

    /// The Redis key prefix: `redis_namespace`, or one derived from the database identity.
    pub fn remote_namespace(&self) -> String {
        if let Some(ns) = &self.redis_namespace {
            return ns.clone();
        }
        let identity = match &self.database_url {
            Some(url) => url.clone(),
            None => std::path::absolute(&self.data_path)
                .unwrap_or_else(|_| self.data_path.clone())
                .to_string_lossy()
                .into_owned(),
        };
        let hash = blake3::hash(identity.as_bytes()).to_hex();
        format!(
            "bitcraps:{}",
            hash.as_str().get(..16).unwrap_or(hash.as_str())
        )
    }

    /// The codec new writes use: `codec`, or [`Codec::None`] when compression is off.
    pub(crate) fn write_codec(&self) -> Codec {
        if self.enable_compression {
            self.codec
        } else {
            Codec::None
        }
    }

    pub(crate) fn cache_capacity_bytes(&self) -> u64 {
        u64::try_from(self.cache_size_mb)
            .unwrap_or(u64::MAX)
            .saturating_mul(1024 * 1024)
    }

    /// The directory backups go to.
    pub fn backup_directory(&self) -> PathBuf {
        self.backup_dir
            .clone()
            .unwrap_or_else(|| self.data_path.join("backups"))
    }

    /// The retention rules the backup settings describe.
    pub fn retention_policy(&self) -> crate::backup::RetentionPolicy {
        crate::backup::RetentionPolicy {
            within_days: self.backup_retention_days,
            keep_last: self.backup_keep_last,
            keep_daily: self.backup_keep_daily,
            keep_weekly: self.backup_keep_weekly,
            keep_monthly: self.backup_keep_monthly,
        }
    }
}

/// The error for a Redis URL in a build without the `redis` feature.
pub(crate) fn redis_unsupported(url: &str) -> StorageError {
    StorageError::UnsupportedUrl {
        url: url.to_owned(),
        reason: "this build has no Redis support; enable the `redis` feature of bitcraps-storage"
            .into(),
    }
}

/// Fluent construction of a [`StorageConfig`]; every method documents the field it sets.
#[derive(Debug, Clone)]
#[must_use]
pub struct StorageConfigBuilder {
    config: StorageConfig,
}

macro_rules! setter {
    ($(#[$doc:meta])* $name:ident: $ty:ty) => {
        $(#[$doc])*
        pub fn $name(mut self, value: $ty) -> Self {
            self.config.$name = value;
            self
        }
    };
}

impl StorageConfigBuilder {
    /// Sets [`StorageConfig::data_path`].
    pub fn data_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.config.data_path = path.into();
        self
    }
    /// Sets [`StorageConfig::database_url`].
    pub fn database_url(mut self, url: impl Into<String>) -> Self {
        self.config.database_url = Some(url.into());
        self
    }
    /// Sets [`StorageConfig::read_replica_url`].
    pub fn read_replica_url(mut self, url: impl Into<String>) -> Self {
        self.config.read_replica_url = Some(url.into());
        self
    }
    setter!(/// Sets [`StorageConfig::cache_size_mb`].
        cache_size_mb: usize);
    setter!(/// Sets [`StorageConfig::max_connections`].
        max_connections: usize);
    setter!(/// Sets [`StorageConfig::enable_compression`].
        enable_compression: bool);
    setter!(/// Sets [`StorageConfig::compression_level`].
        compression_level: i32);
    setter!(/// Sets [`StorageConfig::codec`].
        codec: Codec);
    setter!(/// Sets [`StorageConfig::enable_dictionaries`].
        enable_dictionaries: bool);
    setter!(/// Sets [`StorageConfig::dictionary_training_samples`].
        dictionary_training_samples: usize);
    setter!(/// Sets [`StorageConfig::enable_deduplication`].
        enable_deduplication: bool);
    setter!(/// Sets [`StorageConfig::backup_retention_days`].
        backup_retention_days: u32);
    setter!(/// Sets [`StorageConfig::maintenance_interval_hours`].
        maintenance_interval_hours: u32);
    /// Sets [`StorageConfig::backup_dir`].
    pub fn backup_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.config.backup_dir = Some(dir.into());
        self
    }
    setter!(/// Sets [`StorageConfig::backup_keep_last`].
        backup_keep_last: u32);
    setter!(/// Sets [`StorageConfig::backup_keep_daily`].
        backup_keep_daily: u32);
    setter!(/// Sets [`StorageConfig::backup_keep_weekly`].
        backup_keep_weekly: u32);
    setter!(/// Sets [`StorageConfig::backup_keep_monthly`].
        backup_keep_monthly: u32);
    setter!(/// Sets [`StorageConfig::backup_on_maintenance`].
        backup_on_maintenance: bool);
    setter!(/// Sets [`StorageConfig::vacuum_free_percent`].
        vacuum_free_percent: u32);
    setter!(/// Sets [`StorageConfig::enable_background_tasks`].
        enable_background_tasks: bool);
    setter!(/// Sets [`StorageConfig::statistics_interval`].
        statistics_interval: Duration);
    setter!(/// Sets [`StorageConfig::cache_upkeep_interval`].
        cache_upkeep_interval: Duration);
    setter!(/// Sets [`StorageConfig::durability`].
        durability: Durability);
    setter!(/// Sets [`StorageConfig::max_value_size`].
        max_value_size: usize);
    setter!(/// Sets [`StorageConfig::max_batch_requests`].
        max_batch_requests: usize);
    setter!(/// Sets [`StorageConfig::access_flush_interval`].
        access_flush_interval: Duration);
    setter!(/// Sets [`StorageConfig::connection_timeout`].
        connection_timeout: Duration);
    /// Sets [`StorageConfig::redis_url`].
    pub fn redis_url(mut self, url: impl Into<String>) -> Self {
        self.config.redis_url = Some(url.into());
        self
    }
    setter!(/// Sets [`StorageConfig::redis_timeout`].
        redis_timeout: Duration);
    setter!(/// Sets [`StorageConfig::remote_cache_ttl`].
        remote_cache_ttl: Duration);
    /// Sets [`StorageConfig::redis_namespace`].
    pub fn redis_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.config.redis_namespace = Some(namespace.into());
        self
    }

    /// Validates and returns the configuration.
    pub fn build(self) -> Result<StorageConfig> {
        self.config.validate()?;
        Ok(self.config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_documented_values() {
        let c = StorageConfig::default();
        assert_eq!(c.data_path, PathBuf::from("./bitcraps-data"));
        assert_eq!(c.database_url, None);
        assert_eq!(c.max_value_size, 64 * 1024 * 1024);
        assert_eq!(c.codec, Codec::Zstd);
        assert_eq!(c.durability, Durability::Full);
        assert!(c.enable_compression && c.enable_deduplication);
        assert_eq!(
            c.target().ok(),
            Some(BackendTarget::Sqlite {
                path: PathBuf::from("./bitcraps-data/bitcraps.db")
            })
        );
    }

    #[test]
    fn url_parsing() -> Result<()> {
        let c = StorageConfig::from_url("sqlite://dir/sub/x.db")?;
        assert_eq!(c.data_path, PathBuf::from("dir/sub"));
        assert_eq!(
            c.target()?,
            BackendTarget::Sqlite {
                path: PathBuf::from("dir/sub/x.db")
            }
        );
        for url in [
            "postgres://localhost/x",
            "postgresql://u@h:5432/db?sslmode=disable",
        ] {
            let result = StorageConfig::from_url(url);
            if cfg!(feature = "postgres") {
                let c = result?;
                assert_eq!(c.data_path, PathBuf::from("./bitcraps-data"));
                assert_eq!(
                    c.target()?,
                    BackendTarget::Postgres {
                        url: url.to_owned(),
                        replica_url: None
                    }
                );
            } else {
                let err = result.err().map(|e| e.to_string());
                assert_eq!(
                    err.as_deref(),
                    Some(
                        format!(
                            "unsupported database URL {url:?}: PostgreSQL support is not compiled \
                             in; enable the `postgres` feature of bitcraps-storage"
                        )
                        .as_str()
                    )
                );
            }
        }
        if cfg!(feature = "postgres") {
            let mut c = StorageConfig::from_url("postgres://h/db")?;
            c.read_replica_url = Some("sqlite://x.db".into());
            assert!(matches!(
                c.target(),
                Err(StorageError::UnsupportedUrl { ref url, .. }) if url == "sqlite://x.db"
            ));
            c.read_replica_url = Some("postgres://replica/db".into());
            assert_eq!(
                c.target()?,
                BackendTarget::Postgres {
                    url: "postgres://h/db".into(),
                    replica_url: Some("postgres://replica/db".into())
                }
            );
        }
        assert!(StorageConfig::from_url("mysql://x").is_err());
        assert!(StorageConfig::from_url("sqlite://").is_err());
        Ok(())
    }

    #[test]
    fn builder_validates() {
        assert!(StorageConfig::builder().max_connections(0).build().is_err());
        assert!(
            StorageConfig::builder()
                .compression_level(99)
                .build()
                .is_err()
        );
        let c = StorageConfig::builder()
            .cache_size_mb(1)
            .codec(Codec::Lz4)
            .build();
        assert!(matches!(c, Ok(ref c) if c.codec == Codec::Lz4 && c.cache_size_mb == 1));
    }

    #[test]
    fn redis_settings_are_checked() {
        let c = StorageConfig::default();
        assert_eq!(c.redis_url, None);
        assert_eq!(c.redis_timeout, Duration::from_millis(250));
        assert_eq!(c.remote_cache_ttl, Duration::from_secs(600));
        let with = |url: &str| StorageConfig::builder().redis_url(url).build();
        if cfg!(feature = "redis") {
            assert!(with("redis://127.0.0.1:6379").is_ok());
            let err = with("http://x").err().map(|e| e.to_string());
            assert_eq!(
                err.as_deref(),
                Some(
                    "unsupported database URL \"http://x\": expected redis://HOST:PORT[/DB] or \
                     redis+unix:///PATH"
                )
            );
        } else {
            let err = with("redis://127.0.0.1:6379").err().map(|e| e.to_string());
            assert_eq!(
                err.as_deref(),
                Some(
                    "unsupported database URL \"redis://127.0.0.1:6379\": this build has no \
                     Redis support; enable the `redis` feature of bitcraps-storage"
                )
            );
        }
        assert!(
            StorageConfig::builder()
                .redis_url("redis://127.0.0.1:6379")
                .redis_timeout(Duration::ZERO)
                .build()
                .is_err()
        );
    }

    #[test]
    fn redis_namespace_defaults_to_the_database_identity() {
        let a = StorageConfig::with_data_path("/srv/a");
        let b = StorageConfig::with_data_path("/srv/b");
        assert_ne!(a.remote_namespace(), b.remote_namespace());
        assert_eq!(a.remote_namespace(), a.clone().remote_namespace());
        assert!(a.remote_namespace().starts_with("bitcraps:"));
        let named = StorageConfig::builder().redis_namespace("t1").build();
        assert_eq!(
            named.map(|c| c.remote_namespace()).ok().as_deref(),
            Some("t1")
        );
    }

    #[test]
    fn durability_parses() {
        assert_eq!("FULL".parse::<Durability>().ok(), Some(Durability::Full));
        assert_eq!(
            "normal".parse::<Durability>().ok(),
            Some(Durability::Normal)
        );
        assert!("off".parse::<Durability>().is_err());
    }
}

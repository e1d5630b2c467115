//! Configuration: [`StorageConfig`], made of one section per concern, its builder and URL
//! parsing.
//!
//! # Sections
//!
//! Each section is the set of settings one part of the store reads, so a reader who wants to
//! change "how the cache behaves" finds everything in one place, and each later feature adds
//! fields to the section it belongs to:
//!
//! - [`database`](DatabaseConfig): where the store is and how to reach it (data directory,
//!   URL, read replica, connection pool size and timeout). It is what selects and opens the
//!   backend ([`StorageConfig::target`] reads nothing else); a read-only mode would go here.
//! - [`cache`](CacheConfig): the in-process (L1) read cache: its size and its upkeep
//!   interval. The upkeep interval is here and not under `maintenance` because it is the
//!   cache's own housekeeping (and so keeps its old environment name,
//!   `BITCRAPS_STORAGE_CACHE_UPKEEP_INTERVAL`).
//! - [`compression`](CompressionConfig): the stored form of a value: codec, level,
//!   dictionaries and deduplication — everything that decides how few bytes a value takes
//!   without changing what a read returns.
//! - [`write`](WriteConfig): what happens between a write call and its acknowledgement:
//!   durability, group commit size, the value size limit, and how often buffered access
//!   statistics are written. Named `write` rather than `durability` because durability is
//!   one of its settings (`write.durability = "normal"`), and batch size and value limits
//!   are not durability settings.
//! - [`backup`](BackupConfig): where backups go, whether maintenance takes them, and one
//!   [`RetentionPolicy`](crate::backup::RetentionPolicy) — the very type the backup layer applies, so no retention rule
//!   exists twice.
//! - [`maintenance`](MaintenanceConfig): the background tasks and what they schedule
//!   (maintenance interval, statistics report interval) and the vacuum threshold
//!   maintenance applies.
//! - [`redis`](RedisConfig): the Redis tier, all of it: URL, timeout, key namespace and the
//!   time to live of its cache entries. The tier has one name everywhere: the Redis tier.
//! - [`metrics`](MetricsConfig): what the store records for monitoring (the bound on
//!   collection labels, whether keys appear in tracing spans). The exporter is the
//!   application's choice, so it has no setting here.
//! - [`key`](KeyConfig): encryption at rest, by where its master key comes from (a key
//!   file, an environment variable, a command, the application's provider). Named `key`
//!   so the CLI's variable is `BITCRAPS_STORAGE_KEY_FILE`, beside `--key-file`.
//!
//! Every section (and [`StorageConfig`] itself) is `#[non_exhaustive]`, with a documented
//! [`Default`] and consuming builder methods (`CacheConfig::default().size_mb(128)`), so a new
//! field or a new section (encryption, metrics, a change feed) breaks no user. Fields stay
//! public: read them, or assign them on a value you hold (`config.cache.size_mb = 0`).
//!
//! The CLI's TOML file and `BITCRAPS_STORAGE_*` environment variables map onto the sections
//! one to one (`[cache] size_mb = 64` is `BITCRAPS_STORAGE_CACHE_SIZE_MB=64`); every setting is
//! listed in `docs/configuration.md`.

mod backup;
mod cache;
mod compression;
mod database;
mod key;
mod maintenance;
mod metrics;
mod redis;
mod target;
mod write;

use std::path::PathBuf;

pub use self::backup::BackupConfig;
pub use self::cache::CacheConfig;
pub use self::compression::CompressionConfig;
pub use self::database::DatabaseConfig;
pub use self::key::KeyConfig;
pub use self::maintenance::MaintenanceConfig;
pub use self::metrics::MetricsConfig;
pub use self::redis::RedisConfig;
#[cfg(not(feature = "redis"))]
pub(crate) use self::redis::redis_unsupported;
pub use self::target::{BackendTarget, DEFAULT_DATABASE_FILE};
pub use self::write::{Durability, WriteConfig};
use crate::error::Result;

/// Configuration of a [`PersistentStorageManager`](crate::PersistentStorageManager): one
/// public section per concern (every setting, its TOML key, variable and default are in
/// `docs/configuration.md`).
///
/// [`StorageConfig::default`] is every section's documented defaults;
/// [`StorageConfig::builder`] sets whole sections fluently, [`StorageConfig::with_data_path`]
/// and [`StorageConfig::from_url`] start from a data directory or a database URL.
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct StorageConfig {
    /// Where the store is and how it is connected to.
    pub database: DatabaseConfig,
    /// The in-process read cache.
    pub cache: CacheConfig,
    /// Compression, dictionaries and deduplication of stored values.
    pub compression: CompressionConfig,
    /// Durability, group commit and write limits.
    pub write: WriteConfig,
    /// Backups and their retention.
    pub backup: BackupConfig,
    /// Background tasks and maintenance.
    pub maintenance: MaintenanceConfig,
    /// The Redis tier.
    pub redis: RedisConfig,
    /// Metrics and tracing.
    pub metrics: MetricsConfig,
    /// Encryption at rest: where the master key comes from.
    pub key: KeyConfig,
}

impl StorageConfig {
    /// A builder starting from the defaults.
    pub fn builder() -> StorageConfigBuilder {
        StorageConfigBuilder {
            config: StorageConfig::default(),
        }
    }

    /// Defaults with [`DatabaseConfig::data_path`] set.
    pub fn with_data_path(path: impl Into<PathBuf>) -> Self {
        let mut config = StorageConfig::default();
        config.database.data_path = path.into();
        config
    }

    /// Defaults with [`DatabaseConfig::url`] set to `url`, which is checked now.
    ///
    /// For `sqlite://PATH`, `data_path` becomes the directory holding `PATH`. For PostgreSQL
    /// `data_path` keeps its default (it only holds backups there).
    pub fn from_url(url: &str) -> Result<Self> {
        let mut config = StorageConfig::default();
        config.database.url = Some(url.to_owned());
        let path = match config.target()? {
            BackendTarget::Sqlite { path } => path,
            BackendTarget::Postgres { .. } => return Ok(config),
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            config.database.data_path = parent.to_path_buf();
        } else {
            config.database.data_path = PathBuf::from(".");
        }
        Ok(config)
    }

    /// The backend this configuration selects (from the [`database`](DatabaseConfig)
    /// section).
    pub fn target(&self) -> Result<BackendTarget> {
        target::target(&self.database)
    }

    /// Checks every section; `open` calls this.
    pub fn validate(&self) -> Result<()> {
        self.target()?;
        self.database.validate()?;
        self.write.validate()?;
        self.compression.validate()?;
        self.cache.validate()?;
        self.key.validate()?;
        self.maintenance.validate()?;
        self.redis.validate()
    }

    /// The directory backups go to: [`BackupConfig::dir`], or `<data_path>/backups`.
    pub fn backup_directory(&self) -> PathBuf {
        self.backup
            .dir
            .clone()
            .unwrap_or_else(|| self.database.data_path.join("backups"))
    }
}

/// Fluent construction of a [`StorageConfig`], one whole section at a time:
///
/// ```
/// use bitcraps_storage::{CacheConfig, DatabaseConfig, Durability, StorageConfig, WriteConfig};
///
/// let config = StorageConfig::builder()
///     .database(DatabaseConfig::default().data_path("./bitcraps-data"))
///     .cache(CacheConfig::default().size_mb(128))
///     .write(WriteConfig::default().durability(Durability::Normal))
///     .build()?;
/// assert_eq!(config.cache.size_mb, 128);
/// # Ok::<(), bitcraps_storage::StorageError>(())
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct StorageConfigBuilder {
    config: StorageConfig,
}

impl StorageConfigBuilder {
    /// Sets [`StorageConfig::database`].
    pub fn database(mut self, section: DatabaseConfig) -> Self {
        self.config.database = section;
        self
    }

    /// Sets [`StorageConfig::cache`].
    pub fn cache(mut self, section: CacheConfig) -> Self {
        self.config.cache = section;
        self
    }

    /// Sets [`StorageConfig::compression`].
    pub fn compression(mut self, section: CompressionConfig) -> Self {
        self.config.compression = section;
        self
    }

    /// Sets [`StorageConfig::write`].
    pub fn write(mut self, section: WriteConfig) -> Self {
        self.config.write = section;
        self
    }

    /// Sets [`StorageConfig::backup`].
    pub fn backup(mut self, section: BackupConfig) -> Self {
        self.config.backup = section;
        self
    }

    /// Sets [`StorageConfig::maintenance`].
    pub fn maintenance(mut self, section: MaintenanceConfig) -> Self {
        self.config.maintenance = section;
        self
    }

    /// Sets [`StorageConfig::redis`].
    pub fn redis(mut self, section: RedisConfig) -> Self {
        self.config.redis = section;
        self
    }

    /// Sets [`StorageConfig::metrics`].
    pub fn metrics(mut self, section: MetricsConfig) -> Self {
        self.config.metrics = section;
        self
    }

    /// Sets [`StorageConfig::key`].
    pub fn key(mut self, section: KeyConfig) -> Self {
        self.config.key = section;
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
    use std::time::Duration;

    use super::*;
    use crate::backup::RetentionPolicy;
    use crate::codec::Codec;
    use crate::error::StorageError;

    #[test]
    fn defaults_are_documented_values() {
        let c = StorageConfig::default();
        assert_eq!(c.database.data_path, PathBuf::from("./bitcraps-data"));
        assert_eq!(c.database.url, None);
        assert_eq!(c.write.max_value_size, 64 * 1024 * 1024);
        assert_eq!(c.compression.codec, Codec::Zstd);
        assert_eq!(c.write.durability, Durability::Full);
        assert!(c.compression.enabled && c.compression.deduplication);
        assert_eq!(
            c.target().ok(),
            Some(BackendTarget::Sqlite {
                path: PathBuf::from("./bitcraps-data/bitcraps.db")
            })
        );
    }

    /// The defaults of the flat configuration this replaced, field for field.
    #[test]
    fn every_section_keeps_the_documented_defaults() {
        let c = StorageConfig::default();
        assert_eq!(c.database.read_replica_url, None);
        assert_eq!(c.database.max_connections, 4);
        assert_eq!(c.database.connection_timeout, Duration::from_secs(30));
        assert_eq!(c.cache.size_mb, 64);
        assert_eq!(c.cache.upkeep_interval, Duration::from_secs(300));
        assert_eq!(c.compression.level, 3);
        assert!(c.compression.dictionaries);
        assert_eq!(c.compression.dictionary_training_samples, 1000);
        assert_eq!(c.write.max_batch_requests, 1024);
        assert_eq!(c.write.access_flush_interval, Duration::from_secs(30));
        assert_eq!(c.backup.dir, None);
        assert_eq!(c.backup.on_maintenance, None);
        assert!(c.backup.takes_maintenance_backups(true));
        assert!(!c.backup.takes_maintenance_backups(false));
        assert_eq!(c.backup.max_total_bytes, None);
        let r = c.backup.retention;
        assert_eq!(
            (
                r.within_days,
                r.keep_last,
                r.keep_daily,
                r.keep_weekly,
                r.keep_monthly
            ),
            (7, 3, 7, 4, 6)
        );
        assert!(c.maintenance.background_tasks);
        assert_eq!(c.maintenance.interval_hours, 1);
        assert_eq!(c.maintenance.statistics_interval, Duration::from_secs(60));
        assert_eq!(c.maintenance.vacuum_free_percent, 25);
        assert_eq!(c.cache.typed_percent, 0);
        let mut bad = StorageConfig::default();
        bad.cache.typed_percent = 101;
        assert!(bad.validate().is_err());
        assert_eq!(c.redis.namespace, None);
        assert_eq!(c.metrics.max_collection_labels, 64);
        assert!(!c.metrics.trace_keys);
        assert_eq!(c.cache.capacity_bytes(), 64 * 1024 * 1024);
        assert_eq!(c.compression.write_codec(), Codec::Zstd);
        assert_eq!(
            c.compression.clone().enabled(false).write_codec(),
            Codec::None
        );
    }

    #[test]
    fn backups_default_to_the_data_directory() {
        let c = StorageConfig::with_data_path("/srv/a");
        assert_eq!(c.backup_directory(), PathBuf::from("/srv/a/backups"));
        let c = StorageConfig::builder()
            .backup(
                BackupConfig::default()
                    .dir("/mnt/b")
                    .retention(RetentionPolicy::default().keep_last(9).within_days(0)),
            )
            .build();
        assert_eq!(
            c.as_ref().map(StorageConfig::backup_directory).ok(),
            Some(PathBuf::from("/mnt/b"))
        );
        let r = c.map(|c| c.backup.retention).ok();
        assert_eq!(
            r.map(|r| (r.keep_last, r.within_days, r.keep_daily)),
            Some((9, 0, 7))
        );
    }

    #[test]
    fn limits_are_checked_and_named_by_their_key() {
        let err = |c: StorageConfig| c.validate().err().map(|e| e.to_string());
        let mut c = StorageConfig::default();
        c.write.max_batch_requests = 0;
        assert_eq!(
            err(c).as_deref(),
            Some("invalid configuration: write.max_batch_requests must be at least 1")
        );
        let mut c = StorageConfig::default();
        c.write.max_value_size = 0;
        assert!(err(c).is_some_and(|e| e.contains("write.max_value_size")));
        let mut c = StorageConfig::default();
        c.database.max_connections = 0;
        assert!(err(c).is_some_and(|e| e.contains("database.max_connections")));
    }

    #[test]
    fn url_parsing() -> Result<()> {
        let c = StorageConfig::from_url("sqlite://dir/sub/x.db")?;
        assert_eq!(c.database.data_path, PathBuf::from("dir/sub"));
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
                assert_eq!(c.database.data_path, PathBuf::from("./bitcraps-data"));
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
                            "unsupported URL {url:?}: PostgreSQL support is not compiled \
                             in; enable the `postgres` feature of bitcraps-storage"
                        )
                        .as_str()
                    )
                );
            }
        }
        if cfg!(feature = "postgres") {
            let mut c = StorageConfig::from_url("postgres://h/db")?;
            c.database.read_replica_url = Some("sqlite://x.db".into());
            assert!(matches!(
                c.target(),
                Err(StorageError::UnsupportedUrl { ref url, .. }) if url == "sqlite://x.db"
            ));
            c.database.read_replica_url = Some("postgres://replica/db".into());
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
        assert!(
            StorageConfig::builder()
                .database(DatabaseConfig::default().max_connections(0))
                .build()
                .is_err()
        );
        assert!(
            StorageConfig::builder()
                .compression(CompressionConfig::default().level(99))
                .build()
                .is_err()
        );
        let c = StorageConfig::builder()
            .cache(CacheConfig::default().size_mb(1))
            .compression(CompressionConfig::default().codec(Codec::Lz4))
            .build();
        assert!(
            matches!(c, Ok(ref c) if c.compression.codec == Codec::Lz4 && c.cache.size_mb == 1)
        );
    }

    #[test]
    fn redis_settings_are_checked() {
        let c = StorageConfig::default();
        assert_eq!(c.redis.url, None);
        assert_eq!(c.redis.timeout, Duration::from_millis(250));
        assert_eq!(c.redis.cache_ttl, Duration::from_secs(600));
        let with = |url: &str| {
            StorageConfig::builder()
                .redis(RedisConfig::default().url(url))
                .build()
        };
        if cfg!(feature = "redis") {
            assert!(with("redis://127.0.0.1:6379").is_ok());
            assert!(with("rediss://cache.example:6380/0").is_ok());
            let err = with("http://x").err().map(|e| e.to_string());
            assert_eq!(
                err.as_deref(),
                Some(
                    "unsupported URL \"http://x\": not a Redis URL; expected \
                     redis://HOST:PORT[/DB], rediss://HOST:PORT[/DB] (TLS) or redis+unix:///PATH"
                )
            );
            let err = with("rediss://:pw@h:6380/#insecure")
                .err()
                .map(|e| e.to_string());
            assert_eq!(
                err.as_deref(),
                Some(
                    "unsupported URL \"rediss://:***@h:6380/#insecure\": #insecure (no \
                     certificate verification) is not supported; give the server's CA in \
                     redis.tls_ca_file"
                )
            );
            let ca_without_tls = StorageConfig::builder()
                .redis(
                    RedisConfig::default()
                        .url("redis://h:6379")
                        .tls_ca_file("/etc/ca.pem"),
                )
                .build();
            assert!(
                matches!(&ca_without_tls, Err(StorageError::Config(m)) if m.contains("rediss://")),
                "{ca_without_tls:?}"
            );
        } else {
            let err = with("redis://127.0.0.1:6379").err().map(|e| e.to_string());
            assert_eq!(
                err.as_deref(),
                Some(
                    "unsupported URL \"redis://127.0.0.1:6379\": this build has no \
                     Redis support; enable the `redis` feature of bitcraps-storage"
                )
            );
        }
        assert!(
            StorageConfig::builder()
                .redis(
                    RedisConfig::default()
                        .url("redis://127.0.0.1:6379")
                        .timeout(Duration::ZERO)
                )
                .build()
                .is_err()
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

//! The Redis tier: [`RedisConfig`].

use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Result, StorageError};

/// The Redis tier (feature `redis`): a shared L2 cache between the in-process cache and the
/// database, and cross-node invalidation of the in-process cache over pub/sub, for several
/// processes sharing one database (TOML `[redis]`, environment `BITCRAPS_STORAGE_REDIS_*`).
///
/// Redis being unreachable never fails an operation: reads fall back to the database and
/// invalidations are retried. A single Redis instance (or a primary); Redis Cluster is not
/// supported.
#[derive(Clone, PartialEq)]
#[non_exhaustive]
pub struct RedisConfig {
    /// `redis://HOST:PORT[/DB]`, `rediss://HOST:PORT[/DB]` (TLS: the server's certificate is
    /// verified, host name included, against `tls_ca_file` or the built-in Mozilla roots) or
    /// `redis+unix:///PATH` turns the Redis tier on. Opening waits
    /// up to `timeout` for the invalidation subscription, then opens regardless. `None`
    /// disables the tier. Default: `None`.
    pub url: Option<String>,
    /// Deadline of each Redis operation; a write's acknowledgement waits at most this long
    /// for its invalidation. Greater than zero. Default: 250 ms.
    pub timeout: Duration,
    /// Prefix of every Redis key and channel of this store. `None` derives one from the
    /// store's identity: `bitcraps:` and 16 hex digits of blake3 of the random store id the
    /// schema created in the database, so stores sharing one Redis never collide while every
    /// node of one store agrees, however it spells the database URL. Not empty.
    /// Default: `None`.
    pub namespace: Option<String>,
    /// Time to live of a value in the Redis L2 cache. Key generations live ten times as long
    /// after the key's last write. At least 1 ms. Default: 10 min.
    pub cache_ttl: Duration,
    /// Longest time an entry stays in the in-process cache while the tier is on, however
    /// often it is read. Other nodes' writes normally evict it within milliseconds; with
    /// `cache_ttl` this bounds the staleness a writer partitioned from Redis can cause: at
    /// most `max(l1_max_age, cache_ttl)` after the value was read from the database (an
    /// expired in-process entry is refilled from L2, whose entries live `cache_ttl`, so a
    /// shorter `l1_max_age` does not tighten the bound; it costs each hot entry a reload per
    /// period). Greater than zero. Default: 10 min, as `cache_ttl`.
    pub l1_max_age: Duration,
    /// PEM file of the CA certificate(s) that sign the Redis server's certificate, for a
    /// `rediss://` URL (a private CA, as managed Redis services use). `None` trusts the
    /// built-in Mozilla root certificates. Read when the store opens; an unreadable file fails
    /// the open. Only with `rediss://`. Default: `None`.
    pub tls_ca_file: Option<PathBuf>,
}

/// Every field, with the URL's password redacted.
impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &self.url.as_deref().map(crate::redact_url))
            .field("timeout", &self.timeout)
            .field("namespace", &self.namespace)
            .field("cache_ttl", &self.cache_ttl)
            .field("l1_max_age", &self.l1_max_age)
            .field("tls_ca_file", &self.tls_ca_file)
            .finish()
    }
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: None,
            timeout: Duration::from_millis(250),
            namespace: None,
            cache_ttl: Duration::from_secs(600),
            l1_max_age: Duration::from_secs(600),
            tls_ca_file: None,
        }
    }
}

impl RedisConfig {
    /// Sets [`url`](Self::url).
    #[must_use]
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }

    /// Sets [`timeout`](Self::timeout).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets [`namespace`](Self::namespace).
    #[must_use]
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// Sets [`cache_ttl`](Self::cache_ttl).
    #[must_use]
    pub fn cache_ttl(mut self, ttl: Duration) -> Self {
        self.cache_ttl = ttl;
        self
    }

    /// Sets [`l1_max_age`](Self::l1_max_age).
    #[must_use]
    pub fn l1_max_age(mut self, age: Duration) -> Self {
        self.l1_max_age = age;
        self
    }

    /// Sets [`tls_ca_file`](Self::tls_ca_file).
    #[must_use]
    pub fn tls_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.tls_ca_file = Some(path.into());
        self
    }

    /// Checks the section; nothing to check while the tier is off.
    pub(crate) fn validate(&self) -> Result<()> {
        let Some(url) = self.url.as_deref() else {
            return Ok(());
        };
        if !cfg!(feature = "redis") {
            return Err(redis_unsupported(url));
        }
        let tls = url.starts_with("rediss://");
        if !(tls || url.starts_with("redis://") || url.starts_with("redis+unix://")) {
            return Err(StorageError::UnsupportedUrl {
                url: crate::redact_url(url),
                reason: "not a Redis URL; expected redis://HOST:PORT[/DB], \
                         rediss://HOST:PORT[/DB] (TLS) or redis+unix:///PATH"
                    .into(),
            });
        }
        if tls && url.ends_with("#insecure") {
            return Err(StorageError::UnsupportedUrl {
                url: crate::redact_url(url),
                reason: "#insecure (no certificate verification) is not supported; give the \
                         server's CA in redis.tls_ca_file"
                    .into(),
            });
        }
        if self.tls_ca_file.is_some() && !tls {
            return Err(StorageError::Config(
                "redis.tls_ca_file is set but redis.url is not a rediss:// (TLS) URL".into(),
            ));
        }
        if self.timeout.is_zero() {
            return Err(StorageError::Config(
                "redis.timeout must be greater than zero".into(),
            ));
        }
        if self.cache_ttl < Duration::from_millis(1) {
            return Err(StorageError::Config(
                "redis.cache_ttl must be at least 1 ms".into(),
            ));
        }
        if self.l1_max_age.is_zero() {
            return Err(StorageError::Config(
                "redis.l1_max_age must be greater than zero".into(),
            ));
        }
        if self.namespace.as_deref() == Some("") {
            return Err(StorageError::Config(
                "redis.namespace must not be empty".into(),
            ));
        }
        Ok(())
    }
}

/// The error for a Redis URL in a build without the `redis` feature.
pub(crate) fn redis_unsupported(url: &str) -> StorageError {
    StorageError::UnsupportedUrl {
        url: crate::redact_url(url),
        reason: "this build has no Redis support; enable the `redis` feature of bitcraps-storage"
            .into(),
    }
}

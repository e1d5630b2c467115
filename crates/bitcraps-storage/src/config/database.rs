//! Where the store lives and how it is connected to: [`DatabaseConfig`].

use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Result, StorageError};

/// The store's location and its connections (TOML `[database]`, environment
/// `BITCRAPS_STORAGE_DATABASE_*`).
///
/// `#[non_exhaustive]`: start from [`DatabaseConfig::default`] and use the builder methods (or
/// assign the public fields of a value you hold).
#[derive(Clone, PartialEq)]
#[non_exhaustive]
pub struct DatabaseConfig {
    /// Directory holding the database (unless `url` names another file) and, by default,
    /// backups. Created on open. Default: `./bitcraps-data`.
    pub data_path: PathBuf,
    /// `None` or `sqlite://PATH` selects embedded SQLite (`None` means
    /// `<data_path>/bitcraps.db`). `postgres://…` or `postgresql://…` selects PostgreSQL
    /// (needs the `postgres` feature); the tables live in the connection's `search_path`, so
    /// `?options=-csearch_path%3Dmy_schema` picks a schema; TLS follows libpq's `sslmode`
    /// (default `prefer`; `verify-full` checks the certificate and host name) and
    /// `sslrootcert` (a PEM file of trusted CAs) parameters. On PostgreSQL the in-process read
    /// cache is disabled unless the Redis tier is on (other nodes write to the same database
    /// and nothing else would tell this node's cache). Default: `None`.
    pub url: Option<String>,
    /// A PostgreSQL read replica (`postgres://…`) that serves `list`, `collections`,
    /// `metadata`, `exists` (when not cached), `statistics` and `check_consistency`, which may
    /// therefore lag behind the primary; `retrieve` and writes always use the primary. Gets its
    /// own pool of `max_connections`. Ignored for SQLite. Default: `None`.
    pub read_replica_url: Option<String>,
    /// Number of read-only database connections (reads run in parallel; there is always exactly
    /// one writer). On PostgreSQL: the size of each connection pool (primary and replica),
    /// shared by reads and the writer. At least 1. Default: 4.
    pub max_connections: usize,
    /// How long a read waits for a free connection before failing with
    /// [`StorageError::PoolTimeout`] (SQLite and PostgreSQL). On PostgreSQL also the connect
    /// timeout; on SQLite also how long `close` waits for reads still holding a connection.
    /// Default: 30 s.
    pub connection_timeout: Duration,
    /// Open the store for reading only. An embedded (SQLite) store is then opened without
    /// its writer lock, so it can be inspected while the process that owns it keeps writing
    /// (WAL mode lets readers see every committed transaction); the in-process cache is off
    /// (nothing would invalidate it), access counts are not recorded, scheduled maintenance
    /// does not run, and every write, `maintenance()` and restore fails with
    /// [`StorageError::ReadOnly`]. The schema must be current (a read-only open cannot
    /// upgrade it). On PostgreSQL, which has no writer lock, it only refuses writes.
    /// Default: `false`.
    pub read_only: bool,
}

/// Every field, with the URLs' passwords redacted.
impl std::fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redacted = |url: &Option<String>| url.as_deref().map(crate::redact_url);
        f.debug_struct("DatabaseConfig")
            .field("data_path", &self.data_path)
            .field("url", &redacted(&self.url))
            .field("read_replica_url", &redacted(&self.read_replica_url))
            .field("max_connections", &self.max_connections)
            .field("connection_timeout", &self.connection_timeout)
            .field("read_only", &self.read_only)
            .finish()
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            data_path: PathBuf::from("./bitcraps-data"),
            url: None,
            read_replica_url: None,
            max_connections: 4,
            connection_timeout: Duration::from_secs(30),
            read_only: false,
        }
    }
}

impl DatabaseConfig {
    /// Sets [`data_path`](Self::data_path).
    #[must_use]
    pub fn data_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.data_path = path.into();
        self
    }

    /// Sets [`url`](Self::url).
    #[must_use]
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }

    /// Sets [`read_replica_url`](Self::read_replica_url).
    #[must_use]
    pub fn read_replica_url(mut self, url: impl Into<String>) -> Self {
        self.read_replica_url = Some(url.into());
        self
    }

    /// Sets [`max_connections`](Self::max_connections).
    #[must_use]
    pub fn max_connections(mut self, connections: usize) -> Self {
        self.max_connections = connections;
        self
    }

    /// Sets [`connection_timeout`](Self::connection_timeout).
    #[must_use]
    pub fn connection_timeout(mut self, timeout: Duration) -> Self {
        self.connection_timeout = timeout;
        self
    }

    /// Sets [`read_only`](Self::read_only).
    #[must_use]
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// Checks the fields that do not need the URL parsed (that is
    /// [`StorageConfig::target`](crate::StorageConfig::target)).
    pub(crate) fn validate(&self) -> Result<()> {
        if self.max_connections == 0 {
            return Err(StorageError::Config(
                "database.max_connections must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

//! Which backend a configuration selects: [`BackendTarget`], parsed from the database URL.

use std::path::PathBuf;

use super::DatabaseConfig;
use crate::error::{Result, StorageError};

/// Name of the SQLite database file inside `data_path` when no URL names another.
pub const DEFAULT_DATABASE_FILE: &str = "bitcraps.db";

/// The backend a configuration selects, derived from [`DatabaseConfig::url`]. Its `Debug`
/// output redacts the URLs' passwords.
#[derive(Clone, PartialEq, Eq)]
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
        /// `check` (from [`DatabaseConfig::read_replica_url`]).
        replica_url: Option<String>,
    },
}

impl std::fmt::Debug for BackendTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BackendTarget::Sqlite { path } => f.debug_struct("Sqlite").field("path", path).finish(),
            BackendTarget::Postgres { url, replica_url } => f
                .debug_struct("Postgres")
                .field("url", &crate::redact_url(url))
                .field(
                    "replica_url",
                    &replica_url.as_deref().map(crate::redact_url),
                )
                .finish(),
        }
    }
}

fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// The backend `database` selects; see [`StorageConfig::target`](crate::StorageConfig::target).
pub(super) fn target(database: &DatabaseConfig) -> Result<BackendTarget> {
    let Some(url) = database.url.as_deref() else {
        return Ok(BackendTarget::Sqlite {
            path: database.data_path.join(DEFAULT_DATABASE_FILE),
        });
    };
    if let Some(rest) = url.strip_prefix("sqlite://") {
        let rest = rest.split('?').next().unwrap_or(rest);
        if rest.is_empty() {
            return Err(StorageError::UnsupportedUrl {
                url: crate::redact_url(url),
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
                url: crate::redact_url(url),
                reason: "PostgreSQL support is not compiled in; enable the `postgres` \
                         feature of bitcraps-storage"
                    .into(),
            });
        }
        if let Some(replica) = database.read_replica_url.as_deref()
            && !is_postgres_url(replica)
        {
            return Err(StorageError::UnsupportedUrl {
                url: crate::redact_url(replica),
                reason: "database.read_replica_url must be a postgres:// URL".into(),
            });
        }
        return Ok(BackendTarget::Postgres {
            url: url.to_owned(),
            replica_url: database.read_replica_url.clone(),
        });
    }
    Err(StorageError::UnsupportedUrl {
        url: crate::redact_url(url),
        reason: "expected sqlite://PATH or postgres://…".into(),
    })
}

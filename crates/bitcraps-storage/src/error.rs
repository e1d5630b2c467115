//! The error type of every fallible operation in the crate.

use std::path::PathBuf;

/// Boxed source error, used where the underlying driver type must not leak into the API.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `Result` with [`StorageError`] as the error type.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// Everything that can go wrong in the storage layer.
///
/// Each variant names what failed and where (collection, key, path), so the message is useful
/// without a backtrace. The enum is `#[non_exhaustive]`: match with a wildcard arm.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// A collection name is empty, too long, or contains a NUL byte.
    #[error("invalid collection name {collection:?}: {reason}")]
    InvalidCollection {
        /// The rejected name.
        collection: String,
        /// Why it was rejected.
        reason: &'static str,
    },

    /// A key is empty, too long, or contains a NUL byte.
    #[error("invalid key {key:?} in collection {collection:?}: {reason}")]
    InvalidKey {
        /// The collection the key was used with.
        collection: String,
        /// The rejected key.
        key: String,
        /// Why it was rejected.
        reason: &'static str,
    },

    /// A serialized value is larger than `StorageConfig::max_value_size`.
    #[error(
        "value for {collection}/{key} is {size} bytes serialized, over the limit of {limit} bytes"
    )]
    ValueTooLarge {
        /// The collection written to.
        collection: String,
        /// The key written to.
        key: String,
        /// The serialized size in bytes.
        size: u64,
        /// The configured limit in bytes.
        limit: u64,
    },

    /// A value could not be serialized to JSON.
    #[error("cannot serialize value for {collection}/{key}")]
    Serialize {
        /// The collection written to.
        collection: String,
        /// The key written to.
        key: String,
        /// The serializer's error.
        #[source]
        source: serde_json::Error,
    },

    /// JSON text handed to `store_json` is not one JSON document.
    #[error("the JSON for {collection}/{key} is not valid: {source}")]
    InvalidJson {
        /// The collection written to.
        collection: String,
        /// The key written to.
        key: String,
        /// serde_json's account of the text (with its line and column).
        #[source]
        source: serde_json::Error,
    },

    /// JSON text handed to `store_json` nests arrays and objects deeper than
    /// [`MAX_JSON_DEPTH`](crate::MAX_JSON_DEPTH).
    #[error(
        "the JSON for {collection}/{key} nests {depth} arrays or objects deep; at most {limit} are accepted"
    )]
    JsonTooDeep {
        /// The collection written to.
        collection: String,
        /// The key written to.
        key: String,
        /// The text's deepest nesting.
        depth: usize,
        /// The limit.
        limit: u32,
    },

    /// A stored value does not deserialize as the requested type.
    #[error("value at {collection}/{key} does not deserialize as {type_name}")]
    Deserialize {
        /// The collection read from.
        collection: String,
        /// The key read from.
        key: String,
        /// The Rust type that was requested.
        type_name: &'static str,
        /// The deserializer's error.
        #[source]
        source: serde_json::Error,
    },

    /// Stored bytes failed verification: a content hash mismatch, a codec error on data that
    /// was written by this crate, or an inconsistent header. Bytes from disk never panic.
    #[error("corrupted data at {location}: {detail}")]
    Corruption {
        /// Where the corruption was found (`collection/key`, a blob id, a file path).
        location: String,
        /// What exactly did not verify.
        detail: String,
    },

    /// A codec failed while compressing (never expected; reported rather than panicking).
    #[error("{codec} compression failed")]
    Compression {
        /// The codec's name.
        codec: &'static str,
        /// The codec's error.
        #[source]
        source: std::io::Error,
    },

    /// The configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),

    /// A database or Redis URL this build does not support, or cannot use as given.
    #[error("unsupported URL {url:?}: {reason}")]
    UnsupportedUrl {
        /// The URL as given.
        url: String,
        /// Why it is not supported.
        reason: String,
    },

    /// The database was written by a newer version of this crate.
    #[error(
        "database schema version {found} is newer than this build supports ({supported}); upgrade bitcraps-storage"
    )]
    SchemaTooNew {
        /// The version recorded in the database.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },

    /// A TLS connection to PostgreSQL or Redis could not be set up: the certificate did not
    /// verify, the server does not do TLS although it is required, the root-certificate file
    /// is unusable. Not retried: each is a configuration problem.
    #[error("TLS connection to {server} failed: {failure}")]
    Tls {
        /// The server: `PostgreSQL at HOST` or the Redis URL, without any password.
        server: String,
        /// What failed.
        failure: crate::TlsFailure,
    },

    /// The database engine reported an error.
    #[error("database error while {context}")]
    Database {
        /// What the store was doing.
        context: String,
        /// The driver's error.
        #[source]
        source: BoxError,
    },

    /// A file-system operation failed.
    // The OS error is the source, not part of this message: reporters that print the chain
    // (anyhow's `{:#}`, the CLI) would otherwise show it twice.
    #[error("I/O error on {}", path.display())]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// Another process (or another open handle in this process) has the database open.
    #[error(
        "the database is in use: {} is locked by another open store ({holder})",
        path.display()
    )]
    Locked {
        /// The lock file.
        path: PathBuf,
        /// Who holds it, as the holder wrote it: pid, host and start time.
        holder: String,
    },

    /// Every pooled connection stayed busy for the whole wait timeout
    /// (`DatabaseConfig::connection_timeout`); the operation was not attempted.
    #[error("no database connection became free within {waited_ms} ms (pool of {pool_size})")]
    PoolTimeout {
        /// How long the operation waited, in milliseconds.
        waited_ms: u64,
        /// Connections in the pool (`DatabaseConfig::max_connections`).
        pool_size: usize,
    },

    /// The store was closed (or its writer stopped) before the operation could run.
    #[error("the store is closed")]
    Closed,

    /// A background worker or blocking task failed unexpectedly (for example, it panicked).
    #[error("internal task failed: {0}")]
    Task(String),

    /// No backup with this id exists in the backup directory.
    #[error("backup {id} not found")]
    BackupNotFound {
        /// The id asked for.
        id: String,
    },

    /// A backup id is not of the form backups are created with (`YYYYMMDDTHHMMSSmmmZ-xxxxxx`);
    /// refused before any file is touched.
    #[error("{id:?} is not a backup id (expected YYYYMMDDTHHMMSSmmmZ-xxxxxx)")]
    InvalidBackupId {
        /// The id as given.
        id: String,
    },

    /// A backup larger than `backup.max_total_bytes` on its own was taken and deleted again.
    #[error(
        "a backup of {archive_bytes} bytes is larger on its own than backup.max_total_bytes \
         ({max_total_bytes} bytes); it was deleted"
    )]
    BackupTooLarge {
        /// The size of the backup's archive.
        archive_bytes: u64,
        /// The configured cap.
        max_total_bytes: u64,
    },

    /// A restore (or migrate) target exists and is not empty; nothing was written to it.
    #[error("{} exists and is not empty; choose a new or empty target", path.display())]
    TargetNotEmpty {
        /// The target as given.
        path: PathBuf,
    },

    /// The writer thread panicked. Its last transaction was rolled back, every waiting and
    /// later write gets this error at once, and the in-process cache was emptied; reads still
    /// work. Reopen the store to write again.
    #[error("the store's writer failed and accepts no more writes ({reason}); reopen the store")]
    Poisoned {
        /// What the writer was doing when it failed (the panic message).
        reason: String,
    },

    /// The store runs with a Redis tier (a node opened it with `redis.url`), but this process
    /// has none: its writes would not invalidate the other nodes' caches, which would then
    /// serve the old values. Reads work; configure `redis.url` (the same Redis as the other
    /// nodes) to write.
    #[error(
        "this store runs with a Redis tier and this process has none configured; writes are \
         refused because they would leave the other nodes' caches stale (set redis.url to \
         the nodes' Redis)"
    )]
    RedisTierRequired,

    /// The store was opened read-only (`database.read_only`, the CLI's `--read-only`):
    /// `operation` (a write, maintenance, a restore) is refused.
    #[error("the store is open read-only (database.read_only): {operation} is refused")]
    ReadOnly {
        /// What was refused.
        operation: &'static str,
    },

    /// The store is encrypted and no key was configured (`key.file`, `key.env`,
    /// `key.command` or [`KeyConfig::provider`](crate::KeyConfig::provider)): nothing was
    /// read from the records or written.
    #[error(
        "the store is encrypted and no key was given; pass --key-file FILE (key.file, \
         BITCRAPS_STORAGE_KEY_FILE), key.env, key.command or a KeyProvider"
    )]
    KeyMissing,

    /// The configured key does not open this store: its key check value did not verify.
    /// Nothing was read from the records or written.
    #[error("the key from {source_name} does not open this store (wrong key)")]
    KeyMismatch {
        /// Where the key came from (`key file /etc/bitcraps.key`), never the key itself.
        source_name: String,
    },

    /// The key could not be obtained from its source: the file is missing or not 64 hex
    /// characters, the variable is unset, the command failed. Nothing was opened.
    #[error("cannot get the key from {source_name}: {reason}")]
    KeySource {
        /// Where the key was to come from (`key command "vault read …"`).
        source_name: String,
        /// What failed (never any key material).
        reason: String,
    },

    /// The collection was crypto-shredded (`bitcraps-storage key shred`): its data key was
    /// destroyed with its records; nothing of it can be read or written again.
    #[error("collection {collection} was crypto-shredded: its data key was destroyed")]
    Shredded {
        /// The collection.
        collection: String,
    },

    /// A key was configured for a store that is not encrypted: refused rather than
    /// silently writing plaintext (`bitcraps-storage key enable` encrypts it in place).
    #[error(
        "the store is not encrypted but a key was given; encrypt it first (bitcraps-storage \
         key enable --key-file FILE) or open it without a key"
    )]
    NotEncrypted,

    /// A write's condition ([`Expect`](crate::Expect)) did not hold when the write was
    /// committed: nothing was written. `update` gives up with this after its configured
    /// attempts (`write.update_max_attempts`).
    #[error("write conflict on {collection}/{key}: expected {expected}, found {}", match actual {
        Some(v) => format!("version {v}"),
        None => "no record".to_owned(),
    })]
    Conflict {
        /// The collection of the record whose condition failed.
        collection: String,
        /// The record's key.
        key: String,
        /// What the write expected.
        expected: crate::Expect,
        /// The record's version at the commit (`None`: there was no record).
        actual: Option<crate::Version>,
    },

    /// The write would have taken `collection` over a hard limit of its quota
    /// ([`CollectionQuota`](crate::CollectionQuota)): nothing of the write unit (the call, or
    /// the whole [`WriteBatch`](crate::WriteBatch)) was written.
    #[error(
        "collection {collection} is over its quota: the write would make {current} {kind}, the limit is {limit}"
    )]
    QuotaExceeded {
        /// The collection.
        collection: String,
        /// Which limit: records or bytes (of serialized JSON).
        kind: crate::QuotaKind,
        /// The limit.
        limit: u64,
        /// What the collection would have held after the write.
        current: u64,
    },

    /// A read of the change log after seq `after` asked for changes that retention
    /// (`maintenance.change_retention`) already removed: the log holds no change at or below
    /// `pruned_through`. The consumer missed changes and must resynchronize (read the
    /// records again, then follow the log from [`change_head`](crate::PersistentStorageManager::change_head));
    /// the log never silently skips them.
    #[error(
        "the change log no longer holds the changes after seq {after}: changes up to seq {pruned_through} were removed by retention; resynchronize and resume from the current head"
    )]
    ChangesPruned {
        /// The seq the read asked to resume after.
        after: u64,
        /// The highest seq retention removed.
        pruned_through: u64,
    },

    /// A read of the change log after seq `after`, beyond the log's head: the consumer
    /// followed another history than this store's (typically: the store was restored from a
    /// backup, which starts a new history, or the consumer's seq belongs to another store).
    /// Changes after `head` would reuse seqs the consumer already holds, so reading on would
    /// silently skip them; it must resynchronize instead.
    #[error(
        "the change log's head is seq {head}, before seq {after} the consumer resumes after: this store's history is not the one it followed (restored from a backup?); resynchronize and resume from the current head"
    )]
    ChangesAhead {
        /// The seq the read asked to resume after.
        after: u64,
        /// The log's head (the last seq committed).
        head: u64,
    },
}

impl StorageError {
    pub(crate) fn database(context: impl Into<String>, source: impl Into<BoxError>) -> Self {
        StorageError::Database {
            context: context.into(),
            source: source.into(),
        }
    }

    pub(crate) fn corruption(location: impl Into<String>, detail: impl Into<String>) -> Self {
        StorageError::Corruption {
            location: location.into(),
            detail: detail.into(),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StorageError::Io {
            path: path.into(),
            source,
        }
    }

    /// A copy of this error for another caller that shares its cause: the units of one failed
    /// group commit each get the same variant, fields and source chain (the source is shared,
    /// not flattened to a string).
    pub(crate) fn duplicate(&mut self) -> StorageError {
        use StorageError as E;
        if matches!(
            self,
            E::Serialize { .. }
                | E::Deserialize { .. }
                | E::InvalidJson { .. }
                | E::JsonTooDeep { .. }
        ) {
            // Serializer errors happen before a write is queued, never in a commit; keep the
            // message.
            return E::Task(self.to_string());
        }
        match self {
            E::InvalidCollection { collection, reason } => E::InvalidCollection {
                collection: collection.clone(),
                reason,
            },
            E::InvalidKey {
                collection,
                key,
                reason,
            } => E::InvalidKey {
                collection: collection.clone(),
                key: key.clone(),
                reason,
            },
            E::ValueTooLarge {
                collection,
                key,
                size,
                limit,
            } => E::ValueTooLarge {
                collection: collection.clone(),
                key: key.clone(),
                size: *size,
                limit: *limit,
            },
            E::Corruption { location, detail } => E::Corruption {
                location: location.clone(),
                detail: detail.clone(),
            },
            E::Compression { codec, source } => E::Compression {
                codec,
                source: share_io(source),
            },
            E::Config(m) => E::Config(m.clone()),
            E::UnsupportedUrl { url, reason } => E::UnsupportedUrl {
                url: url.clone(),
                reason: reason.clone(),
            },
            E::Tls { server, failure } => E::Tls {
                server: server.clone(),
                failure: failure.clone(),
            },
            E::SchemaTooNew { found, supported } => E::SchemaTooNew {
                found: *found,
                supported: *supported,
            },
            E::Database { context, source } => E::Database {
                context: context.clone(),
                source: share_box(source),
            },
            E::Io { path, source } => E::Io {
                path: path.clone(),
                source: share_io(source),
            },
            E::Locked { path, holder } => E::Locked {
                path: path.clone(),
                holder: holder.clone(),
            },
            E::Conflict {
                collection,
                key,
                expected,
                actual,
            } => E::Conflict {
                collection: collection.clone(),
                key: key.clone(),
                expected: *expected,
                actual: *actual,
            },
            E::QuotaExceeded {
                collection,
                kind,
                limit,
                current,
            } => E::QuotaExceeded {
                collection: collection.clone(),
                kind: *kind,
                limit: *limit,
                current: *current,
            },
            E::ChangesPruned {
                after,
                pruned_through,
            } => E::ChangesPruned {
                after: *after,
                pruned_through: *pruned_through,
            },
            E::ChangesAhead { after, head } => E::ChangesAhead {
                after: *after,
                head: *head,
            },
            E::BackupNotFound { id } => E::BackupNotFound { id: id.clone() },
            E::InvalidBackupId { id } => E::InvalidBackupId { id: id.clone() },
            E::TargetNotEmpty { path } => E::TargetNotEmpty { path: path.clone() },
            E::BackupTooLarge {
                archive_bytes,
                max_total_bytes,
            } => E::BackupTooLarge {
                archive_bytes: *archive_bytes,
                max_total_bytes: *max_total_bytes,
            },
            E::PoolTimeout {
                waited_ms,
                pool_size,
            } => E::PoolTimeout {
                waited_ms: *waited_ms,
                pool_size: *pool_size,
            },
            E::Closed => E::Closed,
            E::KeyMissing => E::KeyMissing,
            E::NotEncrypted => E::NotEncrypted,
            E::Shredded { collection } => E::Shredded {
                collection: collection.clone(),
            },
            E::KeyMismatch { source_name } => E::KeyMismatch {
                source_name: source_name.clone(),
            },
            E::KeySource {
                source_name,
                reason,
            } => E::KeySource {
                source_name: source_name.clone(),
                reason: reason.clone(),
            },
            E::RedisTierRequired => E::RedisTierRequired,
            E::ReadOnly { operation } => E::ReadOnly { operation },
            E::Task(m) => E::Task(m.clone()),
            E::Poisoned { reason } => E::Poisoned {
                reason: reason.clone(),
            },
            E::Serialize { .. }
            | E::Deserialize { .. }
            | E::InvalidJson { .. }
            | E::JsonTooDeep { .. } => E::Task(self.to_string()),
        }
    }

    /// True when the error means stored data failed verification.
    pub fn is_corruption(&self) -> bool {
        matches!(self, StorageError::Corruption { .. })
    }
}

/// A source error several errors point at: displays as, and chains to, the original.
#[derive(Debug, Clone)]
struct SharedSource(std::sync::Arc<dyn std::error::Error + Send + Sync + 'static>);

impl std::fmt::Display for SharedSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for SharedSource {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// Makes `source` shareable in place and returns another handle to it.
fn share_box(source: &mut BoxError) -> BoxError {
    let shared = match source.downcast_ref::<SharedSource>() {
        Some(s) => s.clone(),
        None => {
            let original = std::mem::replace(source, Box::new(std::fmt::Error));
            SharedSource(std::sync::Arc::from(original))
        }
    };
    *source = Box::new(shared.clone());
    Box::new(shared)
}

/// Another `io::Error` with the same kind (and OS error code), chaining to the same cause.
fn share_io(source: &mut std::io::Error) -> std::io::Error {
    if let Some(code) = source.raw_os_error() {
        return std::io::Error::from_raw_os_error(code);
    }
    let kind = source.kind();
    let original = std::mem::replace(source, std::io::Error::from(kind));
    let shared = match original.into_inner() {
        Some(inner) => {
            let mut inner: BoxError = inner;
            share_box(&mut inner)
        }
        None => return std::io::Error::from(kind),
    };
    // `shared` is a SharedSource, so both errors display the original message.
    let again = match shared.downcast_ref::<SharedSource>() {
        Some(s) => Box::new(s.clone()) as BoxError,
        None => Box::new(std::fmt::Error),
    };
    *source = std::io::Error::new(kind, shared);
    std::io::Error::new(kind, again)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_collection_and_key() {
        let err = StorageError::ValueTooLarge {
            collection: "games".into(),
            key: "g-1".into(),
            size: 100,
            limit: 10,
        };
        assert_eq!(
            err.to_string(),
            "value for games/g-1 is 100 bytes serialized, over the limit of 10 bytes"
        );
        let err = StorageError::InvalidKey {
            collection: "games".into(),
            key: String::new(),
            reason: "must not be empty",
        };
        assert_eq!(
            err.to_string(),
            "invalid key \"\" in collection \"games\": must not be empty"
        );
        let err = StorageError::corruption("games/g-1", "hash mismatch");
        assert_eq!(
            err.to_string(),
            "corrupted data at games/g-1: hash mismatch"
        );
        assert!(err.is_corruption());
        let err = StorageError::PoolTimeout {
            waited_ms: 250,
            pool_size: 1,
        };
        assert_eq!(
            err.to_string(),
            "no database connection became free within 250 ms (pool of 1)"
        );
    }

    /// The regression behind sharing: the other callers of a failed group commit got
    /// "database error while committing a group of writes" and a string, not the cause.
    #[test]
    fn a_duplicate_keeps_the_variant_the_message_and_the_cause() {
        use std::error::Error as _;
        let cause = std::io::Error::new(std::io::ErrorKind::StorageFull, "disk full");
        let mut original = StorageError::database("committing", cause);
        let copy = original.duplicate();
        for e in [&original, &copy] {
            assert!(matches!(e, StorageError::Database { context, .. } if context == "committing"));
            assert_eq!(e.to_string(), "database error while committing");
            assert_eq!(
                e.source().map(|s| s.to_string()).as_deref(),
                Some("disk full")
            );
        }
        let mut corrupt = StorageError::corruption("games/g-1", "hash mismatch");
        assert!(corrupt.duplicate().is_corruption());
        let mut io = StorageError::io("/x", std::io::Error::from_raw_os_error(28));
        let copy = io.duplicate();
        assert_eq!(copy.to_string(), io.to_string());
        let mut plain = StorageError::io("/y", std::io::Error::other("custom"));
        let copy = plain.duplicate();
        assert_eq!(copy.to_string(), "I/O error on /y");
        assert_eq!(plain.to_string(), "I/O error on /y");
        assert_eq!(
            copy.source().map(ToString::to_string).as_deref(),
            Some("custom")
        );
        let mut poisoned = StorageError::Poisoned {
            reason: "boom".into(),
        };
        assert_eq!(
            poisoned.duplicate().to_string(),
            "the store's writer failed and accepts no more writes (boom); reopen the store"
        );
    }
}

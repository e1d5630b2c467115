//! Exit codes, and the errors that select them.
//!
//! | code | meaning |
//! |------|---------|
//! | 0 | success |
//! | 1 | any other error (I/O, database, corruption, store locked, a `migrate` or `demo` target that holds records, ...) |
//! | 2 | usage or configuration error (clap's own code for bad arguments) |
//! | 3 | not found: `get`, `info`, or `delete` without `--force`, of a missing key; a read-only command on a data directory (or `sqlite://` file) that holds no store; a backup id that does not exist |
//! | 4 | invalid input: malformed JSON, not UTF-8, nested too deep, invalid collection or key, value too large; a backup id outside the id grammar; a restore target that exists and is not empty |
//! | 5 | conflict: `put` or `delete` with `--if-version`/`--if-absent` whose condition did not hold (nothing written) |

use bitcraps_storage::StorageError;

/// Success.
pub const OK: u8 = 0;
/// Any error not listed below.
pub const ERROR: u8 = 1;
/// Bad arguments, settings, config file or URL (clap exits with 2 too).
pub const USAGE: u8 = 2;
/// The record, or the store a read-only command names, does not exist.
pub const NOT_FOUND: u8 = 3;
/// The input is not acceptable.
pub const INVALID_INPUT: u8 = 4;
/// A conditional write's condition did not hold; nothing was written.
pub const CONFLICT: u8 = 5;

/// Errors the CLI raises itself to pick an exit code.
#[derive(Debug)]
pub enum CliError {
    /// A bad setting.
    Usage(String),
    /// `collection/key` does not exist.
    NotFound {
        /// Collection name.
        collection: String,
        /// Key.
        key: String,
    },
    /// Malformed input, with where and why.
    InvalidInput(String),
    /// A read-only command named an embedded store whose database file does not exist.
    NoStore {
        /// The database file that is missing.
        database: std::path::PathBuf,
    },
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CliError::Usage(m) => write!(f, "{m}"),
            CliError::NotFound { collection, key } => write!(f, "not found: {collection}/{key}"),
            CliError::InvalidInput(m) => write!(f, "invalid input: {m}"),
            CliError::NoStore { database } => write!(
                f,
                "no store at {} (nothing was created; check --data or --url, or create one \
                 with put or import)",
                database.display()
            ),
        }
    }
}

impl std::error::Error for CliError {}

/// The exit code for an error: the first cause in the chain that selects one, else [`ERROR`].
pub fn code(err: &anyhow::Error) -> u8 {
    err.chain()
        .find_map(|cause| {
            if let Some(e) = cause.downcast_ref::<CliError>() {
                return Some(match e {
                    CliError::Usage(_) => USAGE,
                    CliError::NotFound { .. } | CliError::NoStore { .. } => NOT_FOUND,
                    CliError::InvalidInput(_) => INVALID_INPUT,
                });
            }
            match cause.downcast_ref::<StorageError>()? {
                StorageError::InvalidCollection { .. }
                | StorageError::InvalidKey { .. }
                | StorageError::ValueTooLarge { .. }
                | StorageError::InvalidBackupId { .. }
                | StorageError::QuotaExceeded { .. }
                | StorageError::TargetNotEmpty { .. } => Some(INVALID_INPUT),
                StorageError::BackupNotFound { .. }
                | StorageError::ChangesPruned { .. }
                | StorageError::ChangesAhead { .. } => Some(NOT_FOUND),
                StorageError::Conflict { .. } => Some(CONFLICT),
                StorageError::Config(_)
                | StorageError::UnsupportedUrl { .. }
                | StorageError::ReadOnly { .. } => Some(USAGE),
                _ => None,
            }
        })
        .unwrap_or(ERROR)
}

/// Whether the error is a closed stdout (`… | head`), which is not worth reporting.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use anyhow::Context;

    use super::*;

    #[test]
    fn codes_follow_the_cause_chain() {
        let not_found: anyhow::Error = CliError::NotFound {
            collection: "c".into(),
            key: "k".into(),
        }
        .into();
        assert_eq!(not_found.to_string(), "not found: c/k");
        assert_eq!(code(&not_found), NOT_FOUND);
        let no_store: anyhow::Error = CliError::NoStore {
            database: "d/bitcraps.db".into(),
        }
        .into();
        assert_eq!(
            no_store.to_string(),
            "no store at d/bitcraps.db (nothing was created; check --data or --url, or create \
             one with put or import)"
        );
        assert_eq!(code(&no_store), NOT_FOUND);

        let wrapped = Err::<(), _>(StorageError::Config("x".into()))
            .context("opening the store")
            .err();
        assert_eq!(wrapped.as_ref().map(code), Some(USAGE));

        let invalid: anyhow::Error = StorageError::InvalidCollection {
            collection: String::new(),
            reason: "empty",
        }
        .into();
        assert_eq!(code(&invalid), INVALID_INPUT);
        assert_eq!(code(&StorageError::Closed.into()), ERROR);
        let missing = StorageError::BackupNotFound {
            id: "20261201T120000Z-0001".into(),
        };
        assert_eq!(
            missing.to_string(),
            "backup 20261201T120000Z-0001 not found"
        );
        assert_eq!(code(&missing.into()), NOT_FOUND);
        let full = StorageError::TargetNotEmpty {
            path: "restored".into(),
        };
        assert_eq!(
            full.to_string(),
            "restored exists and is not empty; choose a new or empty target"
        );
        assert_eq!(code(&full.into()), INVALID_INPUT);
        assert_eq!(code(&anyhow::anyhow!("plain")), ERROR);
        let conflict = Err::<(), _>(StorageError::Conflict {
            collection: "games".into(),
            key: "g-1".into(),
            expected: bitcraps_storage::Expect::Version(bitcraps_storage::Version::new(3)),
            actual: Some(bitcraps_storage::Version::new(7)),
        })
        .context("storing games/g-1")
        .err();
        assert_eq!(conflict.as_ref().map(code), Some(CONFLICT));
    }
}

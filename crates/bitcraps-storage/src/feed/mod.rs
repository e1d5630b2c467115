//! The change feed (issue #18): every committed put, delete and expiry appends one
//! [`Change`] to the store's change log in the same transaction as the write.
//!
//! - Here: the public types ([`Change`], [`ChangeKind`]) and [`NewChange`], a change of a
//!   unit not yet given its sequence number.
//! - `read.rs`: [`changes_since`](crate::PersistentStorageManager::changes_since) and the
//!   head of the log.
//! - `watch.rs`: [`watch`](crate::PersistentStorageManager::watch), a stream that catches up
//!   from the log and then follows it (woken by this process's commits, other PostgreSQL
//!   nodes' `NOTIFY`, or the poll interval).
//! - `installed.rs`: which of this process's group commits its cache has installed (a watch
//!   hands out a change only after that).
//! - `retention.rs`: the sweep of changes older than `maintenance.change_retention`.
//!
//! # Sequence numbers
//!
//! Each backend gives a transaction's changes their numbers at the end of the transaction,
//! after every unit ran and only for the units that committed: `seq` is dense (no gaps) and
//! strictly increasing in commit order. On SQLite and the in-memory backend one writer
//! commits at a time. On PostgreSQL, where many nodes commit at once, the numbers come from
//! the one-row table `change_clock`, updated as the transaction's last statement: the row
//! lock that update takes is held until the commit, so the next transaction to number its
//! changes waits for this one to commit (and become visible) first. A reader that sees seq
//! `n` therefore sees every seq below it: a consumer following `seq` never skips a change
//! that commits later. The cost is that the tail of write transactions (the numbering and
//! the commit's flush) is serialized across nodes.

pub(crate) mod installed;
mod read;
mod retention;
mod watch;

use std::time::SystemTime;

pub use watch::ChangeStream;

use crate::version::Version;

/// The default retention of the change log: 7 days.
pub const DEFAULT_CHANGE_RETENTION: std::time::Duration =
    std::time::Duration::from_secs(7 * 24 * 3600);

/// What a change did to a record.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    /// The record was written (created or overwritten).
    Put,
    /// The record was deleted.
    Delete,
    /// The record expired and was removed (by the sweep, or when its key was written again).
    Expire,
}

impl ChangeKind {
    /// The number the change log stores.
    pub(crate) fn code(self) -> i64 {
        match self {
            ChangeKind::Put => 1,
            ChangeKind::Delete => 2,
            ChangeKind::Expire => 3,
        }
    }

    /// The kind of a stored number.
    pub(crate) fn from_code(code: i64) -> Option<Self> {
        match code {
            1 => Some(ChangeKind::Put),
            2 => Some(ChangeKind::Delete),
            3 => Some(ChangeKind::Expire),
            _ => None,
        }
    }
}

impl std::fmt::Display for ChangeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ChangeKind::Put => "put",
            ChangeKind::Delete => "delete",
            ChangeKind::Expire => "expire",
        })
    }
}

/// One entry of the change log (`Serialize`: `at` as RFC 3339 UTC).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Change {
    /// Its position in the log: dense and strictly increasing in commit order, per store
    /// (across all nodes on PostgreSQL).
    pub seq: u64,
    /// Collection name.
    pub collection: String,
    /// Key.
    pub key: String,
    /// What happened.
    pub kind: ChangeKind,
    /// The record's version: the one written (put) or the one removed (delete, expire).
    pub version: Version,
    /// When the change was written: the writing node's clock at the write (for an expiry,
    /// when the expired record was removed).
    #[serde(serialize_with = "crate::timefmt::serialize")]
    pub at: SystemTime,
}

impl Change {
    /// A change read back from a log row; a row that does not decode is corruption.
    pub(crate) fn from_row(
        seq: i64,
        collection: String,
        key: String,
        (kind, version, at_ms): (i64, i64, i64),
    ) -> crate::Result<Self> {
        let bad = |what: String| crate::StorageError::corruption("the change log", what);
        let seq = u64::try_from(seq).map_err(|_| bad(format!("invalid seq {seq}")))?;
        let kind =
            ChangeKind::from_code(kind).ok_or_else(|| bad(format!("seq {seq}: kind {kind}")))?;
        let version = Version::from_db(version)
            .ok_or_else(|| bad(format!("seq {seq}: invalid version {version}")))?;
        Ok(Change {
            seq,
            collection,
            key,
            kind,
            version,
            at: crate::backend::time_from_ms(at_ms),
        })
    }

    /// Whether a watch of `collection` and `prefix` delivers this change.
    pub(crate) fn matches(&self, collection: &str, prefix: &str) -> bool {
        self.collection == collection && self.key.starts_with(prefix)
    }
}

/// A change made by a unit, not yet numbered: the backend numbers the changes of the units
/// that commit at the end of the transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NewChange {
    pub(crate) collection: String,
    pub(crate) key: String,
    pub(crate) kind: ChangeKind,
    /// The record's version as stored.
    pub(crate) version: i64,
    /// Milliseconds since the Unix epoch.
    pub(crate) at_ms: i64,
}

impl NewChange {
    pub(crate) fn new(
        collection: &str,
        key: &str,
        kind: ChangeKind,
        version: i64,
        at_ms: i64,
    ) -> Self {
        NewChange {
            collection: collection.to_owned(),
            key: key.to_owned(),
            kind,
            version,
            at_ms,
        }
    }

    /// This change numbered `seq` (the in-memory backend keeps changes as they are read).
    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn numbered(self, seq: u64) -> crate::Result<Change> {
        let version = Version::from_db(self.version).ok_or_else(|| {
            crate::StorageError::corruption(
                format!("{}/{}", self.collection, self.key),
                format!("invalid version {}", self.version),
            )
        })?;
        Ok(Change {
            seq,
            collection: self.collection,
            key: self.key,
            kind: self.kind,
            version,
            at: crate::backend::time_from_ms(self.at_ms),
        })
    }
}

/// Which changes the oldest retained ones are: the prefix of `rows` (`(seq, at_ms)` in seq
/// order) written before `before_ms`. Retention removes a prefix of the log, never a change
/// between two it keeps, so a consumer can never see a later change and miss an earlier one.
pub(crate) fn prunable_prefix(rows: &[(i64, i64)], before_ms: i64) -> Option<i64> {
    rows.iter()
        .take_while(|(_, at)| *at < before_ms)
        .last()
        .map(|(seq, _)| *seq)
}

/// [`StorageError::ChangesPruned`](crate::StorageError::ChangesPruned) when retention removed
/// changes above `after` (`pruned`: the highest seq it removed, as stored).
pub(crate) fn check_retained(after: u64, pruned: i64) -> crate::Result<()> {
    let pruned = u64::try_from(pruned).unwrap_or(0);
    if after < pruned {
        return Err(crate::StorageError::ChangesPruned {
            after,
            pruned_through: pruned,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_and_unknown_codes_are_refused() {
        for kind in [ChangeKind::Put, ChangeKind::Delete, ChangeKind::Expire] {
            assert_eq!(ChangeKind::from_code(kind.code()), Some(kind));
        }
        assert_eq!(ChangeKind::from_code(0), None);
        assert_eq!(ChangeKind::from_code(4), None);
    }

    #[test]
    fn a_bad_row_is_corruption() {
        let row = Change::from_row(1, "c".into(), "k".into(), (9, 1, 0));
        assert!(row.is_err_and(|e| e.is_corruption()));
        let row = Change::from_row(-1, "c".into(), "k".into(), (1, 1, 0));
        assert!(row.is_err_and(|e| e.is_corruption()));
    }

    #[test]
    fn reading_after_a_pruned_seq_is_a_typed_error() {
        assert!(
            check_retained(5, 5).is_ok(),
            "everything after 5 is still there"
        );
        let err = check_retained(4, 5).err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some(
                "the change log no longer holds the changes after seq 4: changes up to seq 5 \
                 were removed by retention; resynchronize and resume from the current head"
            )
        );
    }

    #[test]
    fn retention_removes_only_a_prefix() {
        let rows = [(1, 10), (2, 30), (3, 20), (4, 50)];
        assert_eq!(prunable_prefix(&rows, 5), None);
        assert_eq!(prunable_prefix(&rows, 25), Some(1), "3 is old but 2 is not");
        assert_eq!(prunable_prefix(&rows, 40), Some(3));
        assert_eq!(prunable_prefix(&rows, 60), Some(4));
    }

    #[test]
    fn changes_serialize_with_lowercase_kinds_and_utc_times() -> crate::Result<()> {
        let change = NewChange::new("c", "k", ChangeKind::Expire, 3, 1_000).numbered(7)?;
        let json =
            serde_json::to_value(&change).map_err(|e| crate::StorageError::Task(e.to_string()))?;
        assert_eq!(
            json,
            serde_json::json!({
                "seq": 7, "collection": "c", "key": "k", "kind": "expire", "version": 3,
                "at": "1970-01-01T00:00:01.000Z"
            })
        );
        Ok(())
    }
}

//! Record versions and write conditions.
//!
//! A [`Version`] is a number from one store-wide clock: every successful write of a key
//! (`store`, `store_batch`, `store_if`, `update`, `apply`) gives that key the next number, so a
//! key's version increases on every write and a number is never given twice — a key deleted
//! and written again gets a version it never had before, and a client holding the old one
//! cannot mistake the new record for the one it read (no ABA). Gaps are normal: a unit that
//! fails still used its numbers.
//!
//! On SQLite the clock is the higher of the newest change's version and the 'version' row of
//! the `change_clock` table (schema version 12; before version 11 a table `version_clock` of
//! its own, now a view of that value), read once per group commit and written only when the
//! commit's newest change does not carry it; on PostgreSQL it is a sequence, so nodes sharing a database draw from one clock.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::StorageError;

/// A record's version: see the module documentation. Versions of one key only increase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Version(u64);

impl Version {
    /// The version every record of a store written before versions existed has (schema
    /// version 5 added them).
    pub const INITIAL: Version = Version(1);

    /// The version with number `n` (as printed, or as stored by an application).
    pub const fn new(n: u64) -> Self {
        Version(n)
    }

    /// The version's number.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// A version read from the database; `None` for a value no store writes (zero or
    /// negative), which the caller reports as corruption.
    pub(crate) fn from_db(n: i64) -> Option<Self> {
        u64::try_from(n).ok().filter(|n| *n > 0).map(Version)
    }

    /// The stored version `n` of `collection`/`key`; a value no store writes is
    /// [`StorageError::Corruption`] of that record.
    pub(crate) fn stored(collection: &str, key: &str, n: i64) -> Result<Self, StorageError> {
        Self::from_db(n).ok_or_else(|| {
            StorageError::corruption(
                format!("{collection}/{key}"),
                format!("invalid record version {n}"),
            )
        })
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::str::FromStr for Version {
    type Err = std::num::ParseIntError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(Version)
    }
}

/// A condition on a record's state, checked inside the transaction that writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Expect {
    /// No condition.
    Any,
    /// The record does not exist.
    Absent,
    /// The record exists, at any version.
    Exists,
    /// The record exists at exactly this version.
    Version(Version),
}

impl Expect {
    /// Whether a record at `actual` (`None`: absent) satisfies the condition.
    pub fn holds(self, actual: Option<Version>) -> bool {
        match self {
            Expect::Any => true,
            Expect::Absent => actual.is_none(),
            Expect::Exists => actual.is_some(),
            Expect::Version(v) => actual == Some(v),
        }
    }

    /// `Ok` when the condition holds for `collection`/`key` at `actual`, else
    /// [`StorageError::Conflict`] (what every backend's `WriteOp::Check` answers).
    pub(crate) fn check(
        self,
        collection: &str,
        key: &str,
        actual: Option<Version>,
    ) -> Result<(), StorageError> {
        if self.holds(actual) {
            Ok(())
        } else {
            Err(StorageError::Conflict {
                collection: collection.to_owned(),
                key: key.to_owned(),
                expected: self,
                actual,
            })
        }
    }
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expect::Any => f.write_str("any state"),
            Expect::Absent => f.write_str("no record"),
            Expect::Exists => f.write_str("a record"),
            Expect::Version(v) => write!(f, "version {v}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_hold_exactly() {
        let (v1, v2) = (Version::new(1), Version::new(2));
        assert!(Expect::Any.holds(None) && Expect::Any.holds(Some(v1)));
        assert!(Expect::Absent.holds(None) && !Expect::Absent.holds(Some(v1)));
        assert!(!Expect::Exists.holds(None) && Expect::Exists.holds(Some(v2)));
        assert!(Expect::Version(v1).holds(Some(v1)));
        assert!(!Expect::Version(v1).holds(Some(v2)) && !Expect::Version(v1).holds(None));
    }

    #[test]
    fn versions_print_parse_and_serialize_as_numbers() -> Result<(), Box<dyn std::error::Error>> {
        let v = Version::new(42);
        assert_eq!(v.to_string(), "42");
        assert_eq!("42".parse::<Version>()?, v);
        assert_eq!(serde_json::to_string(&v)?, "42");
        assert_eq!(serde_json::from_str::<Version>("42")?, v);
        assert!(Version::new(2) > Version::INITIAL);
        assert_eq!(Version::from_db(0), None);
        assert_eq!(Version::from_db(-3), None);
        assert_eq!(Version::from_db(7), Some(Version::new(7)));
        assert_eq!(Expect::Version(v).to_string(), "version 42");
        Ok(())
    }
}

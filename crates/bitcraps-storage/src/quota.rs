//! Per-collection quotas: a maximum number of records and a maximum of bytes, where the bytes
//! are the **logical JSON bytes** — the serialized documents as the caller wrote them, before
//! deduplication and compression (`RecordMetadata::size_bytes` summed). That is the figure
//! users reason about and the one that does not change when content happens to be shared or
//! compress well, so dedup never lets a collection exceed its logical quota. Records that have
//! expired do not count, swept or not.
//!
//! The limits live in `collection_settings` (`max_records`, `max_bytes`, `soft_percent`), so
//! every node enforces the same ones. Each backend checks them inside the transaction that
//! writes (SQLite: the group commit's single writer; PostgreSQL: under a per-collection
//! advisory lock every writer of a collection with a quota takes; memory: its one lock): the
//! usage of each collection a write unit puts into is measured before and after the unit, and
//! the unit fails with [`StorageError::QuotaExceeded`] — rolled back as a whole — when the
//! usage after is over a hard limit and higher than before (so overwrites and deletes count by
//! their difference, and a collection already over a lowered limit can still shrink). Past
//! the soft limit (`soft_percent` of a limit) the write succeeds and the writer logs a
//! warning, counts it (`StorageStatistics::quota_warnings`) and records the metric
//! `bitcraps_storage_quota_warnings_total`.
//!
//! Measuring is a count over the collection's records (an index range scan joined to the
//! blobs for their lengths), paid only by writes into collections that have a quota: fine for
//! collections of thousands to some hundred thousand records, such as lobbies and sessions.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::PersistentStorageManager;
use crate::backend::{CollectionSetting, WriteOp};
use crate::error::{Result, StorageError};
use crate::rt::blocking;
use crate::validate;

/// `collection_settings` names.
pub(crate) const MAX_RECORDS: &str = "max_records";
/// See [`MAX_RECORDS`].
pub(crate) const MAX_BYTES: &str = "max_bytes";
/// See [`MAX_RECORDS`].
pub(crate) const SOFT_PERCENT: &str = "soft_percent";

/// The soft limit when none is set: 80 % of each hard limit.
pub const DEFAULT_SOFT_PERCENT: u8 = 80;

/// Which limit of a quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum QuotaKind {
    /// The number of (unexpired) records.
    Records,
    /// The logical JSON bytes of those records.
    Bytes,
}

impl std::fmt::Display for QuotaKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            QuotaKind::Records => "records",
            QuotaKind::Bytes => "bytes",
        })
    }
}

/// A collection's quota. `None` limits are unlimited; at least one must be set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct CollectionQuota {
    /// The most (unexpired) records.
    pub max_records: Option<u64>,
    /// The most logical JSON bytes (see the module docs).
    pub max_bytes: Option<u64>,
    /// The soft limit, in percent of each hard limit (1–100).
    pub soft_percent: u8,
}

impl CollectionQuota {
    /// A quota with these limits and the default soft limit (80 %).
    pub fn new(max_records: Option<u64>, max_bytes: Option<u64>) -> Self {
        CollectionQuota {
            max_records,
            max_bytes,
            soft_percent: DEFAULT_SOFT_PERCENT,
        }
    }

    /// The same quota with the soft limit at `percent` of each hard limit.
    #[must_use]
    pub fn soft_percent(mut self, percent: u8) -> Self {
        self.soft_percent = percent;
        self
    }

    /// The quota of `collection` among `settings` (rows of any collections), if it has one.
    pub(crate) fn of<'a>(
        collection: &str,
        settings: impl IntoIterator<Item = (&'a str, &'a str, i64)>,
    ) -> Option<Self> {
        let mut quota = CollectionQuota::new(None, None);
        for (c, name, value) in settings {
            if c != collection {
                continue;
            }
            let value = u64::try_from(value).ok();
            match name {
                MAX_RECORDS => quota.max_records = value,
                MAX_BYTES => quota.max_bytes = value,
                SOFT_PERCENT => {
                    quota.soft_percent = value
                        .and_then(|v| u8::try_from(v).ok())
                        .unwrap_or(DEFAULT_SOFT_PERCENT);
                }
                _ => {}
            }
        }
        (quota.max_records.is_some() || quota.max_bytes.is_some()).then_some(quota)
    }

    /// Checks the usage after a write unit against the usage before it: `Err` past a hard
    /// limit (when the unit grew that usage), `Ok(Some)` past a soft limit, else `Ok(None)`.
    pub(crate) fn check(
        &self,
        collection: &str,
        before: CollectionUsage,
        after: CollectionUsage,
    ) -> Result<Option<QuotaWarning>> {
        let mut warning = None;
        for (kind, limit, was, now) in [
            (
                QuotaKind::Records,
                self.max_records,
                before.records,
                after.records,
            ),
            (QuotaKind::Bytes, self.max_bytes, before.bytes, after.bytes),
        ] {
            let Some(limit) = limit else { continue };
            if now > limit && now > was {
                return Err(StorageError::QuotaExceeded {
                    collection: collection.to_owned(),
                    kind,
                    limit,
                    current: now,
                });
            }
            let soft = limit.saturating_mul(u64::from(self.soft_percent.clamp(1, 100))) / 100;
            if now >= soft && now > was && warning.is_none() {
                warning = Some(QuotaWarning {
                    kind,
                    limit,
                    current: now,
                });
            }
        }
        Ok(warning)
    }

    /// The rows that store this quota: `(name, value)`; `None` clears the setting.
    fn rows(self) -> [(&'static str, Option<i64>); 3] {
        let int = |v: Option<u64>| v.map(|v| i64::try_from(v).unwrap_or(i64::MAX));
        [
            (MAX_RECORDS, int(self.max_records)),
            (MAX_BYTES, int(self.max_bytes)),
            (SOFT_PERCENT, Some(i64::from(self.soft_percent))),
        ]
    }
}

/// What a collection holds, as quotas count it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct CollectionUsage {
    /// Unexpired records.
    pub records: u64,
    /// Their logical JSON bytes.
    pub bytes: u64,
}

impl CollectionUsage {
    /// From a count and a sum as the database returns them.
    pub(crate) fn from_db(records: i64, bytes: i64) -> Self {
        CollectionUsage {
            records: u64::try_from(records).unwrap_or(0),
            bytes: u64::try_from(bytes).unwrap_or(0),
        }
    }
}

/// A write that took a collection past a soft limit (it succeeded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaWarning {
    /// Which limit.
    pub kind: QuotaKind,
    /// The hard limit.
    pub limit: u64,
    /// The usage after the write.
    pub current: u64,
}

/// The collections a unit puts into (the ones whose quota it may exceed), in order.
pub(crate) fn put_collections(unit: &[WriteOp]) -> Vec<&str> {
    let mut names: Vec<&str> = unit
        .iter()
        .filter_map(|op| match op {
            WriteOp::Put { collection, .. } => Some(collection.as_str()),
            _ => None,
        })
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// Marks the unit's last put into `collection` with `warning`.
pub(crate) fn mark_warning(
    unit: &[WriteOp],
    outcomes: &mut [crate::backend::OpOutcome],
    collection: &str,
    warning: QuotaWarning,
) {
    let last = unit
        .iter()
        .rposition(|op| matches!(op, WriteOp::Put { collection: c, .. } if c == collection));
    if let Some(crate::backend::OpOutcome::Put { quota_warning, .. }) =
        last.and_then(|i| outcomes.get_mut(i))
    {
        *quota_warning = Some(warning);
    }
}

/// The time a unit's expiry decisions use: its latest write time (0 when it has none).
pub(crate) fn unit_now(unit: &[WriteOp]) -> i64 {
    unit.iter()
        .filter_map(|op| match op {
            WriteOp::Put { now_ms, .. } => Some(*now_ms),
            _ => None,
        })
        .max()
        .unwrap_or(0)
}

/// Quotas by collection from every stored setting.
fn quotas_of(rows: &[CollectionSetting]) -> BTreeMap<String, CollectionQuota> {
    let mut names: Vec<&str> = rows.iter().map(|r| r.collection.as_str()).collect();
    names.dedup();
    names
        .into_iter()
        .filter_map(|c| {
            let quota = CollectionQuota::of(
                c,
                rows.iter()
                    .map(|r| (r.collection.as_str(), r.name.as_str(), r.value)),
            )?;
            Some((c.to_owned(), quota))
        })
        .collect()
}

impl PersistentStorageManager {
    /// Sets (`Some`) or removes (`None`) the quota of `collection`. Kept in the store, so
    /// every node enforces it from its next write; records already written stay, and a
    /// collection over a new limit can still shrink. See [`CollectionQuota`] for what counts.
    pub async fn set_quota(&self, collection: &str, quota: Option<CollectionQuota>) -> Result<()> {
        self.check_writable()?;
        validate::collection(collection)?;
        if let Some(q) = &quota {
            if q.max_records.is_none() && q.max_bytes.is_none() {
                return Err(StorageError::Config(format!(
                    "a quota for collection {collection:?} needs a maximum of records or bytes"
                )));
            }
            if !(1..=100).contains(&q.soft_percent) {
                return Err(StorageError::Config(format!(
                    "the soft limit of collection {collection:?} must be 1-100 %, got {}",
                    q.soft_percent
                )));
            }
        }
        let rows = match quota {
            Some(q) => q.rows(),
            None => [(MAX_RECORDS, None), (MAX_BYTES, None), (SOFT_PERCENT, None)],
        };
        let unit = rows
            .into_iter()
            .map(|(name, value)| WriteOp::Setting {
                collection: collection.to_owned(),
                name,
                value,
            })
            .collect();
        self.writer().write(unit).await?;
        Ok(())
    }

    /// Every collection's quota, by collection name.
    pub async fn quotas(&self) -> Result<BTreeMap<String, CollectionQuota>> {
        self.check_open()?;
        let backend = std::sync::Arc::clone(&self.shared().backend);
        let rows = blocking(move || backend.settings()).await?;
        Ok(quotas_of(&rows))
    }

    /// What `collection` holds, as its quota counts it (unexpired records and their logical
    /// JSON bytes), now.
    pub async fn usage(&self, collection: &str) -> Result<CollectionUsage> {
        self.check_open()?;
        validate::collection(collection)?;
        let shared = std::sync::Arc::clone(self.shared());
        let c = collection.to_owned();
        blocking(move || shared.backend.usage(&c, shared.clock.now_ms())).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(records: u64, bytes: u64) -> CollectionUsage {
        CollectionUsage { records, bytes }
    }

    #[test]
    fn hard_limits_fail_growth_only_and_soft_limits_warn() -> Result<()> {
        let q = CollectionQuota::new(Some(10), Some(1000)).soft_percent(50);
        assert_eq!(q.check("c", usage(0, 0), usage(4, 100))?, None);
        let warned = q.check("c", usage(4, 100), usage(5, 100))?;
        assert_eq!(
            warned,
            Some(QuotaWarning {
                kind: QuotaKind::Records,
                limit: 10,
                current: 5
            })
        );
        assert!(
            q.check("c", usage(9, 100), usage(10, 100)).is_ok(),
            "at the limit"
        );
        let err = q.check("lobbies", usage(10, 100), usage(11, 100)).err();
        assert_eq!(
            err.map(|e| e.to_string()).as_deref(),
            Some(
                "collection lobbies is over its quota: the write would make 11 records, \
                 the limit is 10"
            )
        );
        let err = q.check("c", usage(1, 900), usage(1, 1001)).err();
        assert!(
            matches!(
                err,
                Some(StorageError::QuotaExceeded {
                    kind: QuotaKind::Bytes,
                    limit: 1000,
                    current: 1001,
                    ..
                })
            ),
            "{err:?}"
        );
        // Over a lowered limit, shrinking (or staying) is allowed.
        assert!(q.check("c", usage(20, 100), usage(19, 100)).is_ok());
        assert!(q.check("c", usage(20, 100), usage(20, 90)).is_ok());
        Ok(())
    }

    #[test]
    fn a_quota_is_read_back_from_its_settings() {
        let rows = [
            ("a", MAX_RECORDS, 5),
            ("b", MAX_BYTES, 7),
            ("b", SOFT_PERCENT, 90),
            ("c", "default_ttl_ms", 1000),
        ];
        assert_eq!(
            CollectionQuota::of("a", rows),
            Some(CollectionQuota::new(Some(5), None))
        );
        assert_eq!(
            CollectionQuota::of("b", rows),
            Some(CollectionQuota::new(None, Some(7)).soft_percent(90))
        );
        assert_eq!(CollectionQuota::of("c", rows), None);
    }
}

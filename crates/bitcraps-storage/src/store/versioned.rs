//! Versioned reads and conditional writes: `retrieve_versioned`, `store_if`, `delete_if` and
//! the optimistic read-modify-write `update`. Conditions are checked by the backend inside the
//! transaction that writes (`WriteOp::Check`), so they hold across processes and nodes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::PersistentStorageManager;
use crate::backend::{OpOutcome, WriteOp, now_ms};
use crate::cache::cache_key;
use crate::error::{Result, StorageError};
use crate::validate;
use crate::value;
use crate::version::{Expect, Version};

/// Longest wait between two attempts of an `update` that conflicted.
const MAX_BACKOFF: Duration = Duration::from_millis(20);

impl PersistentStorageManager {
    /// Reads the value under `collection`/`key` as `T` with its [`Version`], for a later
    /// [`store_if`](Self::store_if) or [`WriteBatch::expect`](crate::WriteBatch::expect).
    /// Always read from the database (never from a cache that another node's write may not
    /// have reached yet), so the version is the current one.
    pub async fn retrieve_versioned<T: DeserializeOwned>(
        &self,
        collection: &str,
        key: &str,
    ) -> Result<Option<(T, Version)>> {
        let work = async {
            let Some((raw, version)) = self.read_versioned(collection, key).await? else {
                return Ok(None);
            };
            Ok(Some((value::deserialize(collection, key, &raw)?, version)))
        };
        self.public_call(
            crate::observe::Operation::RetrieveVersioned,
            collection,
            Some(key),
            work,
        )
        .await
    }

    /// The current document and version from the database, verified; fills L1 unless a
    /// write raced with the read.
    async fn read_versioned(
        &self,
        collection: &str,
        key: &str,
    ) -> Result<Option<(Arc<[u8]>, Version)>> {
        self.check_open()?;
        validate::key(collection, key)?;
        let started = Instant::now();
        let shared = self.shared();
        let ck = cache_key(collection, key);
        let ticket = shared.cache.ticket(&ck);
        let Some((raw, cached, version, _)) = self.read_database(collection, key).await? else {
            return Ok(None);
        };
        shared.cache.fill(ticket, cached, &ck);
        shared.access.record(&ck, now_ms());
        shared.counters.read_done(started.elapsed());
        Ok(Some((raw, version)))
    }

    /// Stores `value` under `collection`/`key` if the record is in the `expect`ed state when
    /// the write commits; returns the record's new version. A failed condition is
    /// [`StorageError::Conflict`] and writes nothing.
    pub async fn store_if<T: Serialize + ?Sized>(
        &self,
        collection: &str,
        key: &str,
        value: &T,
        expect: Expect,
    ) -> Result<Version> {
        let work = self.store_if_inner(collection, key, value, expect);
        self.public_call(
            crate::observe::Operation::StoreIf,
            collection,
            Some(key),
            work,
        )
        .await
    }

    async fn store_if_inner<T: Serialize + ?Sized>(
        &self,
        collection: &str,
        key: &str,
        value: &T,
        expect: Expect,
    ) -> Result<Version> {
        let started = Instant::now();
        self.check_writable()?;
        validate::key(collection, key)?;
        let value = self.encode(collection, key, value).await?;
        let now = self.shared().clock.now_ms();
        let mut unit = condition(collection, key, expect, now);
        unit.push(WriteOp::Put {
            collection: collection.to_owned(),
            key: key.to_owned(),
            value,
            now_ms: now,
            keep_version: None,
            expires_ms: None,
        });
        let outcomes = self.writer().write(unit).await?;
        self.shared().counters.write_call_done(started.elapsed());
        match outcomes.last() {
            Some(OpOutcome::Put { version, .. }) => Ok(*version),
            _ => Err(StorageError::Task(
                "the backend did not report the written version".into(),
            )),
        }
    }

    /// Deletes `collection`/`key` if the record is in the `expect`ed state when the delete
    /// commits; returns whether a record was deleted. A failed condition is
    /// [`StorageError::Conflict`] and deletes nothing.
    pub async fn delete_if(&self, collection: &str, key: &str, expect: Expect) -> Result<bool> {
        let work = self.delete_if_inner(collection, key, expect);
        self.public_call(
            crate::observe::Operation::DeleteIf,
            collection,
            Some(key),
            work,
        )
        .await
    }

    async fn delete_if_inner(&self, collection: &str, key: &str, expect: Expect) -> Result<bool> {
        self.check_writable()?;
        validate::key(collection, key)?;
        let now = self.shared().clock.now_ms();
        let mut unit = condition(collection, key, expect, now);
        unit.push(WriteOp::Delete {
            collection: collection.to_owned(),
            key: key.to_owned(),
            now_ms: now,
        });
        let outcomes = self.writer().write(unit).await?;
        Ok(matches!(
            outcomes.last(),
            Some(OpOutcome::Delete { existed: true })
        ))
    }

    /// Read-modify-write with optimistic retry: reads the current value (`None` when there is
    /// none), calls `f` with it, and stores what `f` returns (`None` deletes the record) only
    /// if the record is still the one read; otherwise reads again and calls `f` again. Returns
    /// the value written (`None` when the record was deleted or stayed absent).
    ///
    /// `f` may run several times: it must be free of side effects. Updates of one key within
    /// this process take turns and never conflict with each other; a conflict with another
    /// process, another node or a plain `store` is retried, up to
    /// [`WriteConfig::update_max_attempts`](crate::WriteConfig::update_max_attempts) attempts
    /// in all, after which the update gives up with [`StorageError::Conflict`] (never loops
    /// forever).
    pub async fn update<T, F>(&self, collection: &str, key: &str, f: F) -> Result<Option<T>>
    where
        T: Serialize + DeserializeOwned,
        F: FnMut(Option<T>) -> Option<T>,
    {
        let work = self.update_inner(collection, key, f);
        self.public_call(
            crate::observe::Operation::Update,
            collection,
            Some(key),
            work,
        )
        .await
    }

    async fn update_inner<T, F>(&self, collection: &str, key: &str, mut f: F) -> Result<Option<T>>
    where
        T: Serialize + DeserializeOwned,
        F: FnMut(Option<T>) -> Option<T>,
    {
        self.check_writable()?;
        validate::key(collection, key)?;
        let attempts = self.config().write.update_max_attempts.max(1);
        let _turn = self.inner.turns.take(&cache_key(collection, key)).await;
        let mut attempt = 1;
        loop {
            let (old, expect) = match self.read_versioned(collection, key).await? {
                Some((raw, version)) => (
                    Some(value::deserialize::<T>(collection, key, &raw)?),
                    Expect::Version(version),
                ),
                None => (None, Expect::Absent),
            };
            let new = f(old);
            let written = match &new {
                Some(value) => self
                    .store_if_inner(collection, key, value, expect)
                    .await
                    .map(|_| ()),
                // Absent and staying absent: nothing to write.
                None if expect == Expect::Absent => return Ok(None),
                None => self
                    .delete_if_inner(collection, key, expect)
                    .await
                    .map(|_| ()),
            };
            match written {
                Ok(()) => return Ok(new),
                Err(StorageError::Conflict { .. }) if attempt < attempts => {
                    tracing::debug!(collection, key, attempt, "update conflicted; retrying");
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// The condition op of a conditional write, none for [`Expect::Any`]; a record expired at
/// `now_ms` (the store's clock) counts as absent.
fn condition(collection: &str, key: &str, expect: Expect, now_ms: i64) -> Vec<WriteOp> {
    if expect == Expect::Any {
        return Vec::with_capacity(1);
    }
    vec![WriteOp::Check {
        collection: collection.to_owned(),
        key: key.to_owned(),
        expect,
        now_ms,
    }]
}

/// A random wait before attempt `attempt + 1`, growing with the attempts up to
/// [`MAX_BACKOFF`], so writers that conflicted do not meet again in lock step.
fn backoff(attempt: u32) -> Duration {
    use std::hash::{BuildHasher, RandomState};
    let ceiling = Duration::from_micros(250)
        .saturating_mul(attempt.saturating_mul(attempt))
        .min(MAX_BACKOFF);
    let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX).max(1);
    Duration::from_nanos(RandomState::new().hash_one(attempt) % nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_bounded() {
        for attempt in [1, 2, 10, 1000, u32::MAX] {
            assert!(backoff(attempt) <= MAX_BACKOFF, "attempt {attempt}");
        }
    }

    #[test]
    fn any_needs_no_condition() {
        assert!(condition("c", "k", Expect::Any, 0).is_empty());
        assert!(matches!(
            condition("c", "k", Expect::Absent, 0).as_slice(),
            [WriteOp::Check {
                expect: Expect::Absent,
                ..
            }]
        ));
    }
}

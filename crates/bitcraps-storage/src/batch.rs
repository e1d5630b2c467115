//! [`WriteBatch`]: writes across collections, with preconditions, applied all or nothing by
//! [`PersistentStorageManager::apply`](crate::PersistentStorageManager::apply).

use std::time::Duration;

use serde::Serialize;

use crate::error::{Result, StorageError};
use crate::validate;
use crate::version::Expect;

/// One entry of a batch, in the order it was added.
#[derive(Debug, Clone)]
pub(crate) enum Entry {
    /// Store the serialized document.
    Store {
        collection: String,
        key: String,
        raw: Vec<u8>,
        /// `Some`: expires this long after the batch is applied; `None`: the collection's
        /// default TTL, if any.
        ttl: Option<Duration>,
    },
    /// Delete the record if it exists.
    Delete { collection: String, key: String },
}

/// A condition of a batch.
#[derive(Debug, Clone)]
pub(crate) struct Condition {
    pub(crate) collection: String,
    pub(crate) key: String,
    pub(crate) expect: Expect,
}

/// Writes to any number of collections and the conditions they depend on, applied in one
/// transaction by [`apply`](crate::PersistentStorageManager::apply): every condition is
/// checked against the state before the batch, and then either every write happens or none
/// does.
///
/// Values are serialized when they are added ([`WriteBatch::store`] fails on a value that does
/// not serialize or a bad key); compression and hashing happen in `apply`. Writes to the same
/// key apply in the order they were added, so the last one wins.
///
/// ```no_run
/// # async fn demo(storage: bitcraps_storage::PersistentStorageManager) -> bitcraps_storage::Result<()> {
/// use bitcraps_storage::{Expect, WriteBatch};
/// let (_, v_alice) = storage
///     .retrieve_versioned::<serde_json::Value>("players", "alice")
///     .await?
///     .expect("alice exists");
/// let mut batch = WriteBatch::new();
/// batch.store("bets", "b-17", &serde_json::json!({"amount": 10}))?;
/// batch.store("players", "alice", &serde_json::json!({"balance": 90}))?;
/// batch.delete("lobby", "seat-3");
/// batch.expect("players", "alice", Expect::Version(v_alice));
/// let versions = storage.apply(batch).await?; // Err(Conflict) if alice changed meanwhile
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
#[must_use = "a batch does nothing until it is applied"]
pub struct WriteBatch {
    pub(crate) entries: Vec<Entry>,
    pub(crate) conditions: Vec<Condition>,
    /// The first invalid `(collection, key)` given to `delete` or `expect` (they return no
    /// `Result`, so `apply` reports it).
    pub(crate) invalid: Option<(String, String)>,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a store of `value` under `collection`/`key`. Serializes `value` now; fails on an
    /// invalid key or a value that does not serialize, adding nothing.
    pub fn store<T: Serialize + ?Sized>(
        &mut self,
        collection: &str,
        key: &str,
        value: &T,
    ) -> Result<&mut Self> {
        self.push_store(collection, key, value, None)
    }

    /// Adds a store of `value` under `collection`/`key` that expires `ttl` after the batch is
    /// applied (see [`PersistentStorageManager::store_with_ttl`](crate::PersistentStorageManager::store_with_ttl));
    /// a TTL under one millisecond is refused when the batch is applied.
    pub fn store_with_ttl<T: Serialize + ?Sized>(
        &mut self,
        collection: &str,
        key: &str,
        value: &T,
        ttl: Duration,
    ) -> Result<&mut Self> {
        self.push_store(collection, key, value, Some(ttl))
    }

    fn push_store<T: Serialize + ?Sized>(
        &mut self,
        collection: &str,
        key: &str,
        value: &T,
        ttl: Option<Duration>,
    ) -> Result<&mut Self> {
        validate::key(collection, key)?;
        let raw = serde_json::to_vec(value).map_err(|source| StorageError::Serialize {
            collection: collection.to_owned(),
            key: key.to_owned(),
            source,
        })?;
        self.entries.push(Entry::Store {
            collection: collection.to_owned(),
            key: key.to_owned(),
            raw,
            ttl,
        });
        Ok(self)
    }

    /// Adds a delete of `collection`/`key` (nothing happens to a key that does not exist).
    pub fn delete(&mut self, collection: &str, key: &str) -> &mut Self {
        self.remember_invalid(collection, key);
        self.entries.push(Entry::Delete {
            collection: collection.to_owned(),
            key: key.to_owned(),
        });
        self
    }

    /// Adds a condition: `apply` fails with [`StorageError::Conflict`] (and writes nothing)
    /// unless `collection`/`key` is in the `expect`ed state before the batch. The key need not
    /// be one the batch writes.
    pub fn expect(&mut self, collection: &str, key: &str, expect: Expect) -> &mut Self {
        self.remember_invalid(collection, key);
        self.conditions.push(Condition {
            collection: collection.to_owned(),
            key: key.to_owned(),
            expect,
        });
        self
    }

    /// Number of writes (stores and deletes) in the batch.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the batch holds no write (it may still hold conditions).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn remember_invalid(&mut self, collection: &str, key: &str) {
        if self.invalid.is_none() && validate::key(collection, key).is_err() {
            self.invalid = Some((collection.to_owned(), key.to_owned()));
        }
    }

    /// The error of the first invalid key given to `delete` or `expect`, if any.
    pub(crate) fn validate(&self) -> Result<()> {
        match &self.invalid {
            Some((collection, key)) => validate::key(collection, key),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_validates_and_serializes_now() -> Result<()> {
        let mut batch = WriteBatch::new();
        batch.store("bets", "b-1", &1)?;
        assert!(matches!(
            batch.store("bets", "", &1),
            Err(StorageError::InvalidKey { .. })
        ));
        assert_eq!(batch.len(), 1, "a failed store adds nothing");
        batch.delete("lobby", "seat\0");
        assert!(matches!(
            batch.validate(),
            Err(StorageError::InvalidKey { .. })
        ));
        Ok(())
    }
}

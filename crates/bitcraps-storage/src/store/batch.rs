//! `apply`: a [`WriteBatch`] as one unit — its conditions first, then its writes — so it
//! commits all or nothing, across collections, in one transaction and one invalidation
//! message.

use std::time::Instant;

use super::PersistentStorageManager;
use super::write::INLINE_ENCODE_LIMIT;
use crate::backend::{OpOutcome, WriteOp};
use crate::batch::{Entry, WriteBatch};
use crate::error::{Result, StorageError};
use crate::rt::blocking;
use crate::settings::ttl_ms;
use crate::value::EncodedValue;
use crate::version::{Expect, Version};

/// A batch entry ready for the writer.
enum Encoded {
    Store(String, String, EncodedValue, Option<i64>),
    Delete(String, String),
}

impl PersistentStorageManager {
    /// Applies `batch` in one transaction: every condition
    /// ([`WriteBatch::expect`](crate::WriteBatch::expect)) is checked against the state
    /// before the batch, and then every write happens, or — when a condition fails
    /// ([`StorageError::Conflict`]) or anything else goes wrong — none does.
    ///
    /// Returns `(collection, key, new version)` for each store of the batch, in the order
    /// they were added (deletes leave no version to report). An empty batch returns at once;
    /// a batch of conditions only checks them.
    pub async fn apply(&self, batch: WriteBatch) -> Result<Vec<(String, String, Version)>> {
        let work = self.apply_inner(batch);
        self.public_call(crate::observe::Operation::Apply, "", None, work)
            .await
    }

    async fn apply_inner(&self, batch: WriteBatch) -> Result<Vec<(String, String, Version)>> {
        let started = Instant::now();
        self.check_writable()?;
        batch.validate()?;
        if batch.entries.is_empty() && batch.conditions.is_empty() {
            return Ok(Vec::new());
        }
        let now = self.shared().clock.now_ms();
        let mut unit: Vec<WriteOp> = batch
            .conditions
            .into_iter()
            .filter(|c| c.expect != Expect::Any)
            .map(|c| WriteOp::Check {
                collection: c.collection,
                key: c.key,
                expect: c.expect,
                now_ms: now,
            })
            .collect();
        // The stores' names, in order, to pair with the versions the writer reports.
        let mut stored = Vec::new();
        for entry in self.encode_entries(batch.entries).await? {
            unit.push(match entry {
                Encoded::Store(collection, key, value, ttl_ms) => {
                    self.observe(&collection, &value);
                    stored.push((collection.clone(), key.clone()));
                    WriteOp::Put {
                        collection,
                        key,
                        value,
                        now_ms: now,
                        keep_version: None,
                        expires_ms: ttl_ms.map(|ttl| now.saturating_add(ttl)),
                    }
                }
                Encoded::Delete(collection, key) => WriteOp::Delete {
                    collection,
                    key,
                    now_ms: now,
                },
            });
        }
        if unit.is_empty() {
            return Ok(Vec::new());
        }
        let outcomes = self.writer().write(unit).await?;
        self.shared().counters.write_call_done(started.elapsed());
        let versions: Vec<Version> = outcomes
            .iter()
            .filter_map(|outcome| match outcome {
                OpOutcome::Put { version, .. } => Some(*version),
                _ => None,
            })
            .collect();
        if versions.len() != stored.len() {
            return Err(StorageError::Task(
                "the backend reported a different number of stores".into(),
            ));
        }
        Ok(stored
            .into_iter()
            .zip(versions)
            .map(|((collection, key), version)| (collection, key, version))
            .collect())
    }

    /// Compresses and hashes the batch's documents (on a blocking thread when they are
    /// large), each with its collection's dictionary.
    async fn encode_entries(&self, entries: Vec<Entry>) -> Result<Vec<Encoded>> {
        let total: usize = entries
            .iter()
            .map(|e| match e {
                Entry::Store { raw, .. } => raw.len(),
                Entry::Delete { .. } => 0,
            })
            .fold(0, usize::saturating_add);
        let pipeline = self.inner.pipeline;
        let shared = std::sync::Arc::clone(self.shared());
        let encode_all = move || {
            entries
                .into_iter()
                .map(|entry| match entry {
                    Entry::Store {
                        collection,
                        key,
                        raw,
                        ttl,
                    } => {
                        let ttl_ms = ttl.map(|t| ttl_ms(&collection, t)).transpose()?;
                        let dict = shared.dictionaries.encoder(&collection);
                        let value =
                            pipeline.encode_raw_with(&collection, &key, raw, dict.as_deref())?;
                        Ok(Encoded::Store(collection, key, value, ttl_ms))
                    }
                    Entry::Delete { collection, key } => Ok(Encoded::Delete(collection, key)),
                })
                .collect::<Result<Vec<_>>>()
        };
        if total <= INLINE_ENCODE_LIMIT {
            encode_all()
        } else {
            blocking(encode_all).await
        }
    }
}

//! Reads and deletes of many records in one round trip: `retrieve_many`, `scan` and
//! `delete_prefix`.

use std::sync::Arc;
use std::time::Instant;

use serde::de::DeserializeOwned;

use super::PersistentStorageManager;
use super::read::decode_blob;
use crate::backend::{OpOutcome, WriteOp, is_expired, now_ms};
use crate::cache::cache_key;
use crate::error::{Result, StorageError};
use crate::list::{ListOptions, ScanPage};
use crate::rt::blocking;
use crate::validate;
use crate::value;

impl PersistentStorageManager {
    /// Reads the values under `keys` of `collection` as `T`, in the order of `keys` (`None`
    /// where there is none). Cached values come from the cache; all the others are read from
    /// the database in one read (one round trip on PostgreSQL) and verified like
    /// [`retrieve`](Self::retrieve).
    pub async fn retrieve_many<T: DeserializeOwned, K: AsRef<str>>(
        &self,
        collection: &str,
        keys: &[K],
    ) -> Result<Vec<Option<T>>> {
        let work = self.retrieve_many_inner(collection, keys);
        self.public_call(
            crate::observe::Operation::RetrieveMany,
            collection,
            None,
            work,
        )
        .await
    }

    async fn retrieve_many_inner<T: DeserializeOwned, K: AsRef<str>>(
        &self,
        collection: &str,
        keys: &[K],
    ) -> Result<Vec<Option<T>>> {
        self.check_open()?;
        let started = Instant::now();
        validate::collection(collection)?;
        for key in keys {
            validate::key(collection, key.as_ref())?;
        }
        let shared = Arc::clone(self.shared());
        let now = now_ms();
        let clock = shared.clock.now_ms();
        let mut raws: Vec<Option<Arc<[u8]>>> = Vec::with_capacity(keys.len());
        let mut missing = Vec::new();
        for (slot, key) in keys.iter().enumerate() {
            let ck = cache_key(collection, key.as_ref());
            match shared.cache.get(&ck, clock) {
                Some(cached) => {
                    let raw = self.decode_cached(&cached, collection, key.as_ref())?;
                    shared.access.record(&ck, now);
                    raws.push(Some(Arc::from(&*raw)));
                }
                None => {
                    let ticket = shared.cache.ticket(&ck);
                    missing.push((slot, key.as_ref().to_owned(), ticket));
                    raws.push(None);
                }
            }
        }
        if !missing.is_empty() {
            let names: Vec<String> = missing.iter().map(|(_, k, _)| k.clone()).collect();
            let c = collection.to_owned();
            let reader = Arc::clone(&shared);
            let loaded = blocking(move || {
                let records = reader.backend.get_many(&c, &names)?;
                if records.len() != names.len() {
                    return Err(StorageError::Task(
                        "the backend answered a different number of keys".into(),
                    ));
                }
                names
                    .iter()
                    .zip(records)
                    .map(|(k, record)| {
                        // Expired but not yet swept: absent.
                        record
                            .filter(|r| !is_expired(r.expires_ms, clock))
                            .map(|r| decode_blob(&reader, &c, k, &r.blob, r.expires_ms))
                            .transpose()
                    })
                    .collect::<Result<Vec<_>>>()
            })
            .await?;
            for ((slot, key, ticket), found) in missing.into_iter().zip(loaded) {
                if let Some((raw, cached)) = found {
                    let ck = cache_key(collection, &key);
                    shared.cache.fill(ticket, cached, &ck);
                    shared.access.record(&ck, now);
                    if let Some(place) = raws.get_mut(slot) {
                        *place = Some(raw);
                    }
                }
            }
        }
        let values = keys
            .iter()
            .zip(raws)
            .map(|(key, raw)| {
                raw.map(|raw| value::deserialize(collection, key.as_ref(), &raw))
                    .transpose()
            })
            .collect::<Result<Vec<_>>>()?;
        shared.counters.read_done(started.elapsed());
        Ok(values)
    }

    /// A page of `collection`'s records with their values as `T`, in key order, paged exactly
    /// like [`list`](Self::list) (pass `next_after` to [`ListOptions::after`] to continue).
    /// Values are read with the page from the database and verified; scans are not counted
    /// in access statistics and do not fill the cache.
    pub async fn scan<T: DeserializeOwned>(
        &self,
        collection: &str,
        options: ListOptions,
    ) -> Result<ScanPage<T>> {
        let work = self.scan_inner(collection, options);
        self.public_call(crate::observe::Operation::Scan, collection, None, work)
            .await
    }

    async fn scan_inner<T: DeserializeOwned>(
        &self,
        collection: &str,
        options: ListOptions,
    ) -> Result<ScanPage<T>> {
        self.check_open()?;
        validate::collection(collection)?;
        let shared = Arc::clone(self.shared());
        let c = collection.to_owned();
        let options = options.live_at(shared.clock.now_ms());
        let (raws, next_after) = blocking(move || {
            let page = shared.backend.scan(&c, &options)?;
            let raws = page
                .items
                .into_iter()
                .map(|(key, record)| {
                    let (raw, _) = decode_blob(&shared, &c, &key, &record.blob, None)?;
                    Ok((key, raw))
                })
                .collect::<Result<Vec<_>>>()?;
            Ok((raws, page.next_after))
        })
        .await?;
        let items = raws
            .into_iter()
            .map(|(key, raw)| {
                let value = value::deserialize(collection, &key, &raw)?;
                Ok((key, value))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(ScanPage { items, next_after })
    }

    /// Deletes every record of `collection` whose key starts with `prefix` (an empty prefix:
    /// every record of the collection) in one transaction, and returns how many there were.
    /// Their content is freed once nothing else refers to it.
    pub async fn delete_prefix(&self, collection: &str, prefix: &str) -> Result<u64> {
        let work = self.delete_prefix_inner(collection, prefix);
        self.public_call(
            crate::observe::Operation::DeletePrefix,
            collection,
            None,
            work,
        )
        .await
    }

    async fn delete_prefix_inner(&self, collection: &str, prefix: &str) -> Result<u64> {
        self.check_writable()?;
        validate::collection(collection)?;
        if prefix.contains('\0') {
            return Ok(0);
        }
        let op = WriteOp::DeletePrefix {
            collection: collection.to_owned(),
            prefix: prefix.to_owned(),
            now_ms: self.shared().clock.now_ms(),
        };
        let outcomes = self.writer().write(vec![op]).await?;
        match outcomes.first() {
            Some(OpOutcome::DeletePrefix { deleted }) => {
                Ok(u64::try_from(deleted.len()).unwrap_or(u64::MAX))
            }
            _ => Err(StorageError::Task(
                "the backend did not report the deleted keys".into(),
            )),
        }
    }
}

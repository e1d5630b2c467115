//! Queries that are not document reads: metadata, listing, collections, statistics, the
//! consistency check, and flushing access counts.

use std::sync::Arc;

use super::PersistentStorageManager;
use crate::backend::{ConsistencyReport, RecordMetadata, time_from_ms};
use crate::cache::cache_key;
use crate::error::Result;
use crate::list::{ListOptions, ListPage};
use crate::observe::Operation;
use crate::rt::blocking;
use crate::stats::StorageStatistics;
use crate::validate;

impl PersistentStorageManager {
    /// A record's metadata, including reads not yet flushed to disk.
    pub async fn metadata(&self, collection: &str, key: &str) -> Result<Option<RecordMetadata>> {
        let work = self.metadata_inner(collection, key);
        self.observer()
            .observed(Operation::Metadata, collection, Some(key), work)
            .await
    }

    async fn metadata_inner(&self, collection: &str, key: &str) -> Result<Option<RecordMetadata>> {
        self.check_open()?;
        validate::key(collection, key)?;
        let meta = self.live_metadata(collection, key).await?;
        Ok(meta.map(|mut m| {
            if let Some(p) = self
                .inner
                .shared
                .access
                .pending(&cache_key(collection, key))
            {
                m.access_count = m.access_count.saturating_add(p.count);
                let pending_last = time_from_ms(p.last_ms);
                m.last_accessed = Some(
                    m.last_accessed
                        .map_or(pending_last, |t| t.max(pending_last)),
                );
            }
            m
        }))
    }

    /// The record's metadata as stored, unless it is absent or expired by the store's clock.
    pub(super) async fn live_metadata(
        &self,
        collection: &str,
        key: &str,
    ) -> Result<Option<RecordMetadata>> {
        let shared = Arc::clone(&self.inner.shared);
        let (c, k) = (collection.to_owned(), key.to_owned());
        blocking(move || {
            let meta = shared.backend.metadata(&c, &k)?;
            let now = shared.clock.now_ms();
            let Some(mut meta) =
                meta.filter(|m| m.expires_at.is_none_or(|at| time_from_ms(now) < at))
            else {
                return Ok(None);
            };
            // `content_hash` is blake3 of the document, comparable across stores (`migrate`
            // verifies copies with it). An encrypted store's row holds the keyed address,
            // and a v2 blob no plain hash, so the document is read, verified and hashed. (A
            // record deleted in between keeps the row's value.)
            if shared.keyring.is_some()
                && let Some(record) = shared.backend.get(&c, &k)?
            {
                let (raw, _) = super::read::decode_blob(&shared, &c, &k, &record.blob, None)?;
                meta.content_hash = crate::value::hex(blake3::hash(&raw).as_bytes());
            }
            Ok(Some(meta))
        })
        .await
    }

    /// Lists keys of a collection in order; see [`ListOptions`]. Records that expired are
    /// left out even before they are swept.
    pub async fn list(&self, collection: &str, options: ListOptions) -> Result<ListPage> {
        self.check_open()?;
        validate::collection(collection)?;
        let backend = Arc::clone(&self.inner.shared.backend);
        let c = collection.to_owned();
        let options = options.live_at(self.inner.shared.clock.now_ms());
        let after = options.after_key().map(str::to_owned);
        let work = blocking(move || backend.list(&c, &options));
        let page = self
            .public_call(Operation::List, collection, None, work)
            .await?;
        self.prefetch_after_list(collection, after.as_deref(), &page.keys);
        Ok(page)
    }

    /// Names of the collections that hold at least one record, in order.
    pub async fn collections(&self) -> Result<Vec<String>> {
        self.check_open()?;
        let backend = Arc::clone(&self.inner.shared.backend);
        let work = blocking(move || backend.collections());
        self.public_call(Operation::Collections, "", None, work)
            .await
    }

    /// A snapshot of the statistics.
    pub async fn statistics(&self) -> Result<StorageStatistics> {
        self.check_open()?;
        let backend = Arc::clone(&self.inner.shared.backend);
        let database = blocking(move || backend.statistics()).await?;
        let shared = &self.inner.shared;
        let pending = u64::try_from(shared.access.pending_keys()).unwrap_or(u64::MAX);
        let mut cache = shared.cache.statistics();
        (cache.keyframe_entries, cache.keyframe_bytes) = shared.keyframes.usage();
        let mut statistics = shared.counters.snapshot(cache, database, pending);
        let prefetch = shared.prefetch.counts();
        statistics.prefetch_issued = prefetch.issued;
        statistics.prefetch_used = prefetch.used;
        statistics.prefetch_wasted = prefetch.wasted;
        if let Some(remote) = &shared.remote {
            statistics.remote_cache = Some(remote.statistics().await);
        }
        statistics.queued_write_bytes = self.inner.writer.queued_bytes();
        self.inner.backups.fill_statistics(&mut statistics).await;
        self.observer().refresh(&statistics);
        Ok(statistics)
    }

    /// Runs the engine's integrity check and verifies every reference count.
    pub async fn check_consistency(&self) -> Result<ConsistencyReport> {
        self.check_open()?;
        let backend = Arc::clone(&self.inner.shared.backend);
        blocking(move || backend.maintenance().check()).await
    }

    /// Writes buffered access statistics to the database now.
    pub async fn flush(&self) -> Result<()> {
        self.check_open()?;
        self.inner.writer.flush_access().await
    }
}

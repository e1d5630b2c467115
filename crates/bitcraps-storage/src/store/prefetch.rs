//! Running prefetches (`prefetch` decides what to read ahead): on the blocking pool, off the
//! caller's path, each document filled through the cache's ordinary fill path — a ticket
//! taken before the database read, the fill refused if a write came in between.

use std::sync::Arc;

use super::read::decode_blob;
use super::{PersistentStorageManager, Shared};
use crate::backend::is_expired;
use crate::cache::cache_key;
use crate::error::{Result, StorageError};
use crate::list::ListOptions;
use crate::prefetch::{CO_ACCESS, Job, Plan, Start};

impl PersistentStorageManager {
    /// After a read of `collection`/`key` (`missed`: not from the cache; `prefetched`: the
    /// first read of a prefetched entry): starts the background prefetch it calls for, if
    /// any, and returns the partners to read with the missed document
    /// ([`fill_partners`], before the read returns).
    pub(super) fn prefetch_after_read(
        &self,
        collection: &str,
        key: &str,
        cache_key: &str,
        missed: bool,
        prefetched: bool,
    ) -> Vec<Arc<str>> {
        let prefetch = &self.inner.shared.prefetch;
        if !prefetch.enabled() {
            return Vec::new();
        }
        let decision = prefetch.on_read(collection, key, cache_key, missed, prefetched);
        if let Some((job, plan)) = decision.background {
            self.run_prefetch(job, plan);
        }
        decision.inline
    }

    /// After a page of `keys` was listed (after `after`).
    pub(super) fn prefetch_after_list(
        &self,
        collection: &str,
        after: Option<&str>,
        keys: &[String],
    ) {
        let prefetch = &self.inner.shared.prefetch;
        if !prefetch.enabled() {
            return;
        }
        if let Some((job, plan)) = prefetch.on_list(collection, after, keys) {
            self.run_prefetch(job, plan);
        }
    }

    /// Runs `plan` on the blocking pool; `job` holds its slot until it ends.
    fn run_prefetch(&self, job: Job, plan: Plan) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.inner.shared.prefetch.abandon(&plan);
            return;
        };
        let shared = Arc::clone(&self.inner.shared);
        let span = tracing::debug_span!("prefetch");
        drop(runtime.spawn_blocking(move || {
            let _job = job;
            let _entered = span.enter();
            if let Err(e) = run(&shared, &plan) {
                // Prefetching is advisory: the read it was for already returned.
                tracing::debug!(error = %e, "prefetch failed");
                shared.prefetch.abandon(&plan);
            }
        }));
    }

    /// Waits until the prefetches started so far have finished (their documents are in the
    /// cache, or were refused because a write raced with them). Reads never wait for
    /// prefetches; this is for tests and benchmarks that want to observe them.
    pub async fn prefetch_settled(&self) {
        self.inner.shared.prefetch.settled().await;
    }
}

/// Runs a plan (on a blocking thread).
fn run(shared: &Shared, plan: &Plan) -> Result<()> {
    if let Some(readahead) = &plan.readahead {
        let collection = &readahead.collection;
        let keys = match &readahead.start {
            Start::Keys(keys) => keys.clone(),
            Start::After { key, limit } => {
                let options = ListOptions::default()
                    .after(key)
                    .limit(*limit)
                    .live_at(shared.clock.now_ms());
                shared.backend.list(collection, &options)?.keys
            }
        };
        fill(shared, collection, &keys, readahead.origin())?;
        shared.prefetch.readahead_done(readahead, &keys);
    }
    fill_partners(shared, &plan.partners)
}

/// Reads the documents of `partners` (cache keys) not cached yet and installs them as
/// co-access prefetches, one backend read per collection, while the budget has room.
pub(super) fn fill_partners(shared: &Shared, partners: &[Arc<str>]) -> Result<()> {
    // Partners, by collection, in the order they were learned.
    let mut by_collection: Vec<(&str, Vec<String>)> = Vec::new();
    for partner in partners {
        let Some((collection, key)) = partner.split_once('\0') else {
            continue;
        };
        match by_collection.iter_mut().find(|(c, _)| *c == collection) {
            Some((_, keys)) => keys.push(key.to_owned()),
            None => by_collection.push((collection, vec![key.to_owned()])),
        }
    }
    for (collection, keys) in by_collection {
        fill(shared, collection, &keys, CO_ACCESS)?;
    }
    Ok(())
}

/// Reads the documents of `keys` not cached yet and installs them, marked with `origin`, while
/// the budget has room.
fn fill(shared: &Shared, collection: &str, keys: &[String], origin: u32) -> Result<()> {
    let clock = shared.clock.now_ms();
    let mut wanted = Vec::new();
    for key in keys {
        let ck = cache_key(collection, key);
        if !shared.cache.contains(&ck, clock) {
            // Before the database read: a write after this defeats the fill.
            let ticket = shared.cache.ticket(&ck);
            wanted.push((key.clone(), ck, ticket));
        }
    }
    if wanted.is_empty() || !shared.prefetch.within_budget() {
        return Ok(());
    }
    let names: Vec<String> = wanted.iter().map(|(k, _, _)| k.clone()).collect();
    let records = shared.backend.get_many(collection, &names)?;
    if records.len() != names.len() {
        return Err(StorageError::Task(
            "the backend answered a different number of keys".into(),
        ));
    }
    for ((key, ck, ticket), record) in wanted.into_iter().zip(records) {
        if !shared.prefetch.within_budget() {
            break;
        }
        // Absent, or expired but not yet swept: nothing to prefetch.
        let Some(record) = record.filter(|r| !is_expired(r.expires_ms, clock)) else {
            continue;
        };
        let (_, cached) = decode_blob(shared, collection, &key, &record.blob, record.expires_ms)?;
        shared.cache.fill_prefetched(ticket, cached, &ck, origin);
    }
    Ok(())
}

#[cfg(feature = "testing")]
impl PersistentStorageManager {
    /// Drops `collection`/`key` from the in-process cache, as an invalidation does (`testing`
    /// feature): the next read misses, so tests can drive misses without filling the cache.
    pub fn evict_cached(&self, collection: &str, key: &str) {
        self.inner.shared.cache.discard(&cache_key(collection, key));
    }
}

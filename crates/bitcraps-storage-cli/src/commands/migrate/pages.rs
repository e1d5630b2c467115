//! Walking a collection page by page, and per-key lookups run a few at a time.

use std::future::Future;

use anyhow::{Context, Result, anyhow};
use bitcraps_storage::{ListOptions, PersistentStorageManager};
use tokio::task::JoinSet;

/// Per-key lookups in flight at once: each is one blocking database read, so a few in
/// parallel keep the read connections (or a remote server) busy without flooding the
/// blocking thread pool.
const IN_FLIGHT: usize = 8;

/// The next page of `collection`'s keys after `after` (from the start when `None`); empty at
/// the end.
pub async fn next_page(
    storage: &PersistentStorageManager,
    collection: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<String>> {
    let mut options = ListOptions::default().limit(limit);
    if let Some(after) = after {
        options = options.after(after);
    }
    let page = storage
        .list(collection, options)
        .await
        .with_context(|| format!("listing {collection}"))?;
    Ok(page.keys)
}

/// Runs `lookup(storage, key)` for every key, at most [`IN_FLIGHT`] at a time, and returns
/// the results in the order of `keys`.
pub async fn for_each_key<T, F, Fut>(
    storage: &PersistentStorageManager,
    keys: &[String],
    lookup: F,
) -> Result<Vec<T>>
where
    T: Send + 'static,
    F: Fn(PersistentStorageManager, String) -> Fut,
    Fut: Future<Output = Result<T>> + Send + 'static,
{
    let mut results: Vec<Option<T>> = std::iter::repeat_with(|| None).take(keys.len()).collect();
    let mut tasks = JoinSet::new();
    let mut pending = keys.iter().cloned().enumerate();
    loop {
        while tasks.len() < IN_FLIGHT
            && let Some((index, key)) = pending.next()
        {
            let work = lookup(storage.clone(), key);
            tasks.spawn(async move { (index, work.await) });
        }
        let Some(done) = tasks.join_next().await else {
            break;
        };
        let (index, result) = done.map_err(|e| anyhow!("a lookup task failed: {e}"))?;
        if let Some(slot) = results.get_mut(index) {
            *slot = Some(result?);
        }
    }
    results
        .into_iter()
        .map(|r| r.ok_or_else(|| anyhow!("a lookup produced no result")))
        .collect()
}

//! The copy: every collection, page by page, one `store_batch` per page, each record with
//! its version and expiry time; then the collections' settings (default TTLs, quotas).

use anyhow::{Context, Result};
use std::time::SystemTime;

use bitcraps_storage::{PersistentStorageManager, Version};
use serde_json::value::RawValue;

use super::pages::{for_each_key, next_page};
use crate::progress::Ui;

/// What was copied.
#[derive(Debug, Default)]
pub struct Copied {
    /// Records stored into the target.
    pub records: u64,
    /// Collections copied.
    pub collections: usize,
    /// Collection settings copied (default TTLs and quotas).
    pub settings: usize,
}

/// Copies every collection of `source` into `target` in batches of `limit` records.
pub async fn copy_all(
    source: &PersistentStorageManager,
    target: &PersistentStorageManager,
    limit: usize,
    ui: &Ui,
) -> Result<Copied> {
    let total = source
        .statistics()
        .await
        .context("counting the source's records")?
        .database_stats
        .record_count;
    let collections = source
        .collections()
        .await
        .context("listing the source's collections")?;
    let bar = ui.bar(Some(total), "records", "copying");
    let mut copied = Copied {
        collections: collections.len(),
        ..Copied::default()
    };
    for collection in &collections {
        let mut after: Option<String> = None;
        loop {
            let keys = next_page(source, collection, after.as_deref(), limit).await?;
            let Some(last) = keys.last().cloned() else {
                break;
            };
            let items = read_documents(source, collection, &keys).await?;
            target
                .store_batch_keeping_expiry(collection, &items)
                .await
                .with_context(|| {
                    format!(
                        "storing a batch of {} records into {collection} (after key {:?})",
                        items.len(),
                        after.as_deref().unwrap_or("")
                    )
                })?;
            let n = u64::try_from(items.len()).unwrap_or(u64::MAX);
            copied.records += n;
            bar.inc(n);
            after = Some(last);
        }
    }
    bar.finish_and_clear();
    copied.settings = copy_settings(source, target).await?;
    Ok(copied)
}

/// Copies every collection's default TTL and quota (after the records: a default TTL set
/// first would be given to the records that have no expiry time).
async fn copy_settings(
    source: &PersistentStorageManager,
    target: &PersistentStorageManager,
) -> Result<usize> {
    let ttls = source
        .default_ttls()
        .await
        .context("reading the source's default TTLs")?;
    let quotas = source
        .quotas()
        .await
        .context("reading the source's quotas")?;
    for (collection, ttl) in &ttls {
        target
            .set_default_ttl(collection, Some(*ttl))
            .await
            .with_context(|| format!("setting the default TTL of {collection}"))?;
    }
    for (collection, quota) in &quotas {
        target
            .set_quota(collection, Some(*quota))
            .await
            .with_context(|| format!("setting the quota of {collection}"))?;
    }
    Ok(ttls.len() + quotas.len())
}

/// The source's documents under `keys`, as raw JSON, with their versions and expiry times:
/// storing a [`RawValue`] writes its text unchanged, so the target stores exactly the
/// source's bytes, and the target keeps each version and expiry time. A key deleted (or
/// expired) since it was listed is skipped.
async fn read_documents(
    source: &PersistentStorageManager,
    collection: &str,
    keys: &[String],
) -> Result<Vec<(String, Box<RawValue>, Version, Option<SystemTime>)>> {
    let c = collection.to_owned();
    let documents = for_each_key(source, keys, move |storage, key| {
        let c = c.clone();
        async move {
            let found = storage
                .retrieve_versioned::<Box<RawValue>>(&c, &key)
                .await
                .with_context(|| format!("reading {c}/{key} from the source"))?;
            let Some((value, version)) = found else {
                return Ok(None);
            };
            // The expiry time the record had when it was read: a write of the key in
            // between changes both, and the version says which one was copied.
            let expires = storage
                .metadata(&c, &key)
                .await
                .with_context(|| format!("reading the metadata of {c}/{key}"))?
                .and_then(|m| m.expires_at);
            Ok(Some((key, value, version, expires)))
        }
    })
    .await?;
    Ok(documents.into_iter().flatten().collect())
}

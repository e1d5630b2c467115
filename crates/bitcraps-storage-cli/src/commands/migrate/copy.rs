//! The copy: every collection, page by page, one `store_batch` per page.

use anyhow::{Context, Result};
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
                .store_batch_keeping_versions(collection, &items)
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
    Ok(copied)
}

/// The source's documents under `keys`, as raw JSON, with their versions: storing a
/// [`RawValue`] writes its text unchanged, so the target stores exactly the source's bytes,
/// and the target keeps each version. A key deleted since it was listed is skipped.
async fn read_documents(
    source: &PersistentStorageManager,
    collection: &str,
    keys: &[String],
) -> Result<Vec<(String, Box<RawValue>, Version)>> {
    let c = collection.to_owned();
    let documents = for_each_key(source, keys, move |storage, key| {
        let c = c.clone();
        async move {
            let found = storage
                .retrieve_versioned::<Box<RawValue>>(&c, &key)
                .await
                .with_context(|| format!("reading {c}/{key} from the source"))?;
            Ok(found.map(|(value, version)| (key, value, version)))
        }
    })
    .await?;
    Ok(documents.into_iter().flatten().collect())
}

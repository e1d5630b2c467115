//! `quota set COLLECTION [--max-records N] [--max-bytes SIZE] [--soft-percent P]`,
//! `quota clear COLLECTION`, `quota show [--json]`: collection quotas, kept in the store.

use anyhow::{Context, Result};
use bitcraps_storage::{CollectionQuota, PersistentStorageManager};

use crate::cli::QuotaCommand;
use crate::commands::print;
use crate::render;

/// Sets, clears or shows quotas.
pub async fn run(storage: &PersistentStorageManager, command: QuotaCommand) -> Result<()> {
    match command {
        QuotaCommand::Set {
            collection,
            max_records,
            max_bytes,
            soft_percent,
        } => {
            let quota = CollectionQuota::new(max_records, max_bytes).soft_percent(soft_percent);
            storage
                .set_quota(&collection, Some(quota))
                .await
                .with_context(|| format!("setting the quota of {collection}"))
        }
        QuotaCommand::Clear { collection } => storage
            .set_quota(&collection, None)
            .await
            .with_context(|| format!("clearing the quota of {collection}")),
        QuotaCommand::Show { json } => {
            let rows = quota_rows(storage).await?;
            if json {
                let object: serde_json::Map<String, serde_json::Value> = rows
                    .iter()
                    .map(|(c, q, u)| (c.clone(), serde_json::json!({"quota": q, "usage": u})))
                    .collect();
                print(&format!("{}\n", serde_json::Value::Object(object)))
            } else if rows.is_empty() {
                crate::notes::note!("no collection has a quota");
                Ok(())
            } else {
                print(&format!("{}\n", render::key_value(&render::quotas(&rows))))
            }
        }
    }
}

/// Every quota with its collection's usage now, by collection.
pub async fn quota_rows(
    storage: &PersistentStorageManager,
) -> Result<Vec<(String, CollectionQuota, bitcraps_storage::CollectionUsage)>> {
    let quotas = storage.quotas().await.context("reading the quotas")?;
    let mut rows = Vec::with_capacity(quotas.len());
    for (collection, quota) in quotas {
        let usage = storage
            .usage(&collection)
            .await
            .with_context(|| format!("measuring {collection}"))?;
        rows.push((collection, quota, usage));
    }
    Ok(rows)
}

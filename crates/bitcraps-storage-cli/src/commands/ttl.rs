//! `ttl set COLLECTION DURATION`, `ttl clear COLLECTION`, `ttl show [--json]`: the default TTL
//! of collections, kept in the store.

use anyhow::{Context, Result};
use bitcraps_storage::PersistentStorageManager;

use crate::cli::TtlCommand;
use crate::commands::print;
use crate::render;

/// Sets, clears or shows default TTLs.
pub async fn run(storage: &PersistentStorageManager, command: TtlCommand) -> Result<()> {
    match command {
        TtlCommand::Set { collection, ttl } => storage
            .set_default_ttl(&collection, Some(ttl))
            .await
            .with_context(|| format!("setting the default TTL of {collection}")),
        TtlCommand::Clear { collection } => storage
            .set_default_ttl(&collection, None)
            .await
            .with_context(|| format!("clearing the default TTL of {collection}")),
        TtlCommand::Show { json } => {
            let ttls = storage
                .default_ttls()
                .await
                .context("reading the default TTLs")?;
            if json {
                let millis: serde_json::Map<String, serde_json::Value> = ttls
                    .iter()
                    .map(|(c, d)| {
                        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
                        (c.clone(), serde_json::Value::from(ms))
                    })
                    .collect();
                print(&format!("{}\n", serde_json::Value::Object(millis)))
            } else if ttls.is_empty() {
                crate::notes::note!("no collection has a default TTL");
                Ok(())
            } else {
                let rows: Vec<(String, String)> = ttls
                    .iter()
                    .map(|(c, d)| {
                        (
                            render::escape_controls(c).into_owned(),
                            humantime::format_duration(*d).to_string(),
                        )
                    })
                    .collect();
                print(&format!("{}\n", render::key_value(&rows)))
            }
        }
    }
}

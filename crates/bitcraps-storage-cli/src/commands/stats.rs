//! `stats [--json]`: the store's statistics.

use anyhow::{Context, Result};
use bitcraps_storage::PersistentStorageManager;

use crate::cli::StatsArgs;
use crate::commands::print;
use crate::{json, render};

/// Prints the statistics. The per-process counters (reads, writes, cache) only cover this
/// invocation; the database sizes and counts cover the whole store.
pub async fn run(storage: &PersistentStorageManager, args: &StatsArgs) -> Result<()> {
    let stats = storage
        .statistics()
        .await
        .context("collecting statistics")?;
    if args.json {
        print(&format!("{:#}\n", json::statistics(&stats)))
    } else {
        print(&format!(
            "{}\n",
            render::key_value(&render::statistics(&stats))
        ))
    }
}

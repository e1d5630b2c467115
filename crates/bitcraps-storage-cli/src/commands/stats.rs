//! `stats [--json | --format table|json|prometheus]`: the store's statistics.

use anyhow::{Context, Result};
use bitcraps_storage::PersistentStorageManager;

use crate::cli::{StatsArgs, StatsFormat};
use crate::commands::print;
use crate::{exporter, render};

/// Prints the statistics. The per-process counters (reads, writes, cache) only cover this
/// invocation; the database sizes and counts cover the whole store.
pub async fn run(storage: &PersistentStorageManager, args: &StatsArgs) -> Result<()> {
    let format = match (args.format, args.json) {
        (Some(format), _) => format,
        (None, true) => StatsFormat::Json,
        (None, false) => StatsFormat::Table,
    };
    if format == StatsFormat::Prometheus {
        // Installed before the snapshot, which sets the gauges.
        let handle = exporter::install()?;
        return print(&exporter::render(&handle, storage).await?);
    }
    let stats = storage
        .statistics()
        .await
        .context("collecting statistics")?;
    match format {
        StatsFormat::Json => print(&format!("{}\n", serde_json::to_string_pretty(&stats)?)),
        _ => {
            let mut rows = render::statistics(&stats);
            rows.extend(render::quotas(
                &crate::commands::quota::quota_rows(storage).await?,
            ));
            print(&format!("{}\n", render::key_value(&rows)))
        }
    }
}

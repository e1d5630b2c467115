//! `serve-metrics --metrics-addr ADDR`: serves the store's metrics until interrupted (Ctrl-C
//! closes the store and exits 0). The store is opened read-only (`commands::run` sets it), so
//! this runs beside the process that owns and writes it.

use anyhow::{Context, Result};
use bitcraps_storage::PersistentStorageManager;

use crate::cli::ServeMetricsArgs;
use crate::exporter;

pub async fn run(storage: &PersistentStorageManager, args: &ServeMetricsArgs) -> Result<()> {
    let handle = exporter::install()?;
    let server = exporter::serve(args.metrics_addr, handle, storage.clone()).await?;
    let interrupted = tokio::signal::ctrl_c()
        .await
        .context("waiting for an interrupt");
    server.abort();
    interrupted
}

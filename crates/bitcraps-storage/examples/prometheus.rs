//! Export the store's metrics to Prometheus with `metrics-exporter-prometheus`: the library
//! records through the `metrics` facade and installs nothing; the application picks the
//! exporter. This installs the Prometheus recorder, runs a few operations and prints the
//! text exposition (serve `handle.render()` at `/metrics` in a real server).
//! Run: `cargo run --example prometheus`

use bitcraps_storage::{PersistentStorageManager, StorageConfig};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Histograms need bucket bounds to be exported as Prometheus histograms (the dashboard's
    // `histogram_quantile` queries read `_bucket`); without them they are summaries.
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("bitcraps_storage_operation_duration_seconds".into()),
            &[
                0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0,
            ],
        )?
        .install_recorder()?;
    bitcraps_storage::describe_metrics();

    let dir = tempfile::tempdir()?;
    let storage = PersistentStorageManager::open(StorageConfig::with_data_path(dir.path())).await?;
    for i in 0..10 {
        storage
            .store(
                "games",
                &format!("g-{i}"),
                &serde_json::json!({ "point": i }),
            )
            .await?;
        let _: Option<serde_json::Value> = storage.retrieve("games", &format!("g-{i}")).await?;
    }
    // Gauges (sizes, space debt, cache fill, backup age) are refreshed by every statistics
    // snapshot; the statistics background task takes one every statistics_interval.
    storage.statistics().await?;
    print!("{}", handle.render());
    storage.close().await?;
    Ok(())
}

//! Background tasks, as in the original design: statistics every
//! `maintenance.statistics_interval` (to `tracing` and the `metrics` facade), cache upkeep
//! every `cache.upkeep_interval`, and maintenance every `maintenance.interval_hours`. They
//! only call the public API, hold the
//! store weakly (dropping every handle ends them), stop when signalled, and are joined by
//! `close()`. A run that fails or panics is counted in the statistics
//! (`background_failures`) and the task keeps its schedule.

use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::PersistentStorageManager;
use crate::stats::{Counters, StorageStatistics};
use crate::store::WeakStore;

/// The running tasks.
pub(crate) struct Background {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Background {
    /// Starts the tasks the configuration enables.
    pub(crate) fn start(storage: &PersistentStorageManager) -> Self {
        let (stop, stopped) = watch::channel(false);
        let config = storage.config();
        let mut tasks = Vec::new();
        let mut every = |period: Duration, name: &'static str, job: Job| {
            if !period.is_zero() {
                tasks.push(tokio::spawn(run(
                    storage.downgrade(),
                    period,
                    name,
                    job,
                    stopped.clone(),
                )));
            }
        };
        every(
            config.maintenance.statistics_interval,
            "statistics",
            Job::Statistics,
        );
        every(
            config.cache.upkeep_interval,
            "cache upkeep",
            Job::CacheUpkeep,
        );
        let hours = u64::from(config.maintenance.interval_hours);
        every(
            Duration::from_secs(hours.saturating_mul(3600)),
            "maintenance",
            Job::Maintenance,
        );
        Background { stop, tasks }
    }

    /// Signals every task and waits for it to finish its current run.
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

#[derive(Clone, Copy)]
enum Job {
    Statistics,
    CacheUpkeep,
    Maintenance,
}

async fn run(
    store: WeakStore,
    period: Duration,
    name: &'static str,
    job: Job,
    mut stopped: watch::Receiver<bool>,
) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stopped.changed() => return,
        }
        let Some(storage) = store.upgrade() else {
            return;
        };
        // Each run is its own task, so a panic is caught here instead of ending the loop.
        let outcome = tokio::spawn(once(storage.clone(), job)).await;
        let failed = match outcome {
            // A run that raced `close()` is not a failure.
            Ok(Ok(()) | Err(crate::StorageError::Closed)) => false,
            Ok(Err(e)) => {
                tracing::warn!(task = name, error = %e, "background task failed");
                true
            }
            Err(e) => {
                tracing::error!(task = name, error = %e, "background task panicked");
                true
            }
        };
        if failed {
            Counters::add(&storage.shared().counters.background_failures, 1);
        }
    }
}

async fn once(storage: PersistentStorageManager, job: Job) -> crate::Result<()> {
    match job {
        Job::Statistics => report(&storage.statistics().await?),
        Job::CacheUpkeep => storage.shared().cache.run_pending_tasks(),
        Job::Maintenance => {
            storage.maintenance().await?;
        }
    }
    Ok(())
}

#[expect(
    clippy::cast_precision_loss,
    reason = "metrics gauges are f64 by definition"
)]
fn report(s: &StorageStatistics) {
    tracing::info!(
        reads = s.total_reads,
        writes = s.total_writes,
        deletes = s.total_deletes,
        cache_hit_rate = s.cache_hit_rate,
        records = s.database_stats.record_count,
        file_bytes = s.database_stats.file_bytes,
        "storage statistics"
    );
    let db = &s.database_stats;
    for (name, value) in [
        ("bitcraps_storage_reads_total", s.total_reads),
        ("bitcraps_storage_writes_total", s.total_writes),
        ("bitcraps_storage_deletes_total", s.total_deletes),
        ("bitcraps_storage_cache_hits_total", s.cache_hits),
        ("bitcraps_storage_cache_misses_total", s.cache_misses),
        (
            "bitcraps_storage_deduplicated_writes_total",
            s.deduplicated_writes,
        ),
        ("bitcraps_storage_bytes_written_total", s.bytes_written),
        ("bitcraps_storage_errors_total", s.errors),
    ] {
        metrics::counter!(name).absolute(value);
    }
    for (name, value) in [
        ("bitcraps_storage_records", db.record_count as f64),
        ("bitcraps_storage_blobs", db.blob_count as f64),
        ("bitcraps_storage_logical_bytes", db.logical_bytes as f64),
        ("bitcraps_storage_stored_bytes", db.stored_bytes as f64),
        ("bitcraps_storage_file_bytes", db.file_bytes as f64),
        ("bitcraps_storage_wal_bytes", db.wal_bytes as f64),
        ("bitcraps_storage_cache_hit_rate", s.cache_hit_rate),
        ("bitcraps_storage_read_time_ms", s.average_read_time_ms),
        ("bitcraps_storage_write_time_ms", s.average_write_time_ms),
    ] {
        metrics::gauge!(name).set(value);
    }
    metrics::counter!("bitcraps_storage_cache_coalesced_total").absolute(s.cache_stats.coalesced);
    if let Some(r) = &s.remote_cache {
        for (name, value) in [
            ("bitcraps_storage_remote_cache_hits_total", r.hits),
            ("bitcraps_storage_remote_cache_misses_total", r.misses),
            ("bitcraps_storage_remote_cache_fills_total", r.fills),
            (
                "bitcraps_storage_remote_cache_raced_fills_total",
                r.raced_fills,
            ),
            ("bitcraps_storage_remote_cache_errors_total", r.errors),
            (
                "bitcraps_storage_remote_cache_corrupt_entries_total",
                r.corrupt_entries,
            ),
            (
                "bitcraps_storage_remote_invalidations_sent_total",
                r.invalidations_sent,
            ),
            (
                "bitcraps_storage_remote_invalidations_received_total",
                r.invalidations_received,
            ),
            ("bitcraps_storage_remote_reconnects_total", r.reconnects),
            ("bitcraps_storage_remote_l1_flushes_total", r.l1_flushes),
        ] {
            metrics::counter!(name).absolute(value);
        }
        metrics::gauge!("bitcraps_storage_remote_pending_invalidations")
            .set(r.pending_invalidations as f64);
        metrics::gauge!("bitcraps_storage_remote_connected").set(if r.connected {
            1.0
        } else {
            0.0
        });
    }
}

//! Background tasks, as in the original design: statistics every
//! `maintenance.statistics_interval` (to `tracing`; taking them refreshes the `metrics`
//! gauges, see `observe`), cache upkeep
//! every `cache.upkeep_interval`, maintenance every `maintenance.interval_hours`, and a scrub
//! step (`maintenance.scrub_bytes_per_run` of stored documents verified) every
//! `maintenance.scrub_interval`. They
//! only call the public API, hold the
//! store weakly (dropping every handle ends them), stop when signalled, and are joined by
//! `close()`. A run that fails or panics is counted in the statistics
//! (`background_failures`) and the task keeps its schedule.
//!
//! Each task also takes requests to run now, so that tests drive the schedule instead of
//! waiting on the clock: with the `testing` feature,
//! [`PersistentStorageManager::run_background_task`] sends one and awaits the run's outcome,
//! and [`PersistentStorageManager::background_runs`] counts the runs finished.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::PersistentStorageManager;
use crate::stats::{Counters, StorageStatistics};
use crate::store::WeakStore;

/// One of the background tasks (public with the `testing` feature, which lets a test run one
/// now with [`PersistentStorageManager::run_background_task`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackgroundTask {
    /// Statistics to `tracing` and the `metrics` gauges, every `statistics_interval`.
    Statistics,
    /// Cache upkeep (pending evictions), every `cache_upkeep_interval`.
    CacheUpkeep,
    /// [`PersistentStorageManager::maintenance`], every `maintenance_interval_hours`.
    Maintenance,
    /// One step of [`PersistentStorageManager::scrub`], every `maintenance.scrub_interval`;
    /// a step that finds a damaged document fails (counted in `background_failures`).
    Scrub,
    /// [`PersistentStorageManager::sweep_expired`], every
    /// `maintenance.expiry_sweep_interval`.
    ExpirySweep,
}

impl BackgroundTask {
    fn name(self) -> &'static str {
        match self {
            BackgroundTask::Statistics => "statistics",
            BackgroundTask::CacheUpkeep => "cache upkeep",
            BackgroundTask::Maintenance => "maintenance",
            BackgroundTask::Scrub => "scrub",
            BackgroundTask::ExpirySweep => "expiry sweep",
        }
    }
}

/// Where a requested run's outcome goes.
type Reply = oneshot::Sender<crate::Result<()>>;

/// How to reach a running task: ask it to run now, and see how many runs it finished.
#[cfg_attr(
    not(feature = "testing"),
    expect(dead_code, reason = "only the `testing` hooks ask for runs")
)]
struct Control {
    task: BackgroundTask,
    requests: mpsc::Sender<Reply>,
    runs: watch::Receiver<u64>,
}

/// The running tasks.
pub(crate) struct Background {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    #[cfg_attr(
        not(feature = "testing"),
        expect(dead_code, reason = "only the `testing` hooks ask for runs")
    )]
    controls: Vec<Control>,
}

impl Background {
    /// Starts the tasks the configuration enables.
    pub(crate) fn start(storage: &PersistentStorageManager) -> Self {
        let (stop, stopped) = watch::channel(false);
        let config = storage.config();
        let mut tasks = Vec::new();
        let mut controls = Vec::new();
        let mut every = |period: Duration, task: BackgroundTask| {
            if !period.is_zero() {
                let (requests, requested) = mpsc::channel(1);
                let (ran, runs) = watch::channel(0);
                tasks.push(tokio::spawn(run(
                    storage.downgrade(),
                    period,
                    task,
                    Wake {
                        stopped: stopped.clone(),
                        requested,
                    },
                    ran,
                )));
                controls.push(Control {
                    task,
                    requests,
                    runs,
                });
            }
        };
        every(
            config.maintenance.statistics_interval,
            BackgroundTask::Statistics,
        );
        every(config.cache.upkeep_interval, BackgroundTask::CacheUpkeep);
        let hours = u64::from(config.maintenance.interval_hours);
        if !config.database.read_only {
            every(
                Duration::from_secs(hours.saturating_mul(3600)),
                BackgroundTask::Maintenance,
            );
        }
        every(config.maintenance.scrub_interval, BackgroundTask::Scrub);
        if !config.database.read_only {
            every(
                config.maintenance.expiry_sweep_interval,
                BackgroundTask::ExpirySweep,
            );
        }
        Background {
            stop,
            tasks,
            controls,
        }
    }

    /// Signals every task and waits for it to finish its current run.
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// What ends a task's wait for its next run.
struct Wake {
    stopped: watch::Receiver<bool>,
    requested: mpsc::Receiver<Reply>,
}

async fn run(
    store: WeakStore,
    period: Duration,
    task: BackgroundTask,
    mut wake: Wake,
    ran: watch::Sender<u64>,
) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let reply = tokio::select! {
            _ = ticks.tick() => None,
            Some(reply) = wake.requested.recv() => Some(reply),
            _ = wake.stopped.changed() => return,
        };
        let Some(storage) = store.upgrade() else {
            return;
        };
        let outcome = execute(storage, task).await;
        ran.send_modify(|runs| *runs += 1);
        if let Some(reply) = reply {
            let _ = reply.send(outcome);
        }
    }
}

/// Runs `task` once as its own Tokio task, so that a panic is caught here instead of ending
/// the schedule, and counts a failed or panicked run.
async fn execute(storage: PersistentStorageManager, task: BackgroundTask) -> crate::Result<()> {
    let failure = match tokio::spawn(once(storage.clone(), task)).await {
        // A run that raced `close()` is not a failure.
        Ok(outcome @ (Ok(()) | Err(crate::StorageError::Closed))) => return outcome,
        Ok(Err(e)) => {
            tracing::warn!(task = task.name(), error = %e, "background task failed");
            e
        }
        Err(e) => {
            tracing::error!(task = task.name(), error = %e, "background task panicked");
            crate::StorageError::Task(format!("the {} background task panicked: {e}", task.name()))
        }
    };
    Counters::add(&storage.shared().counters.background_failures, 1);
    crate::observe::background_failure(task.name());
    Err(failure)
}

async fn once(storage: PersistentStorageManager, task: BackgroundTask) -> crate::Result<()> {
    match task {
        BackgroundTask::Statistics => report(&storage.statistics().await?),
        BackgroundTask::CacheUpkeep => storage.shared().cache.run_pending_tasks(),
        BackgroundTask::Maintenance => {
            storage.maintenance().await?;
        }
        BackgroundTask::ExpirySweep => {
            storage.sweep_expired().await?;
        }
        BackgroundTask::Scrub => {
            let step = storage.scrub().await?;
            if let Some(first) = step.damaged.first() {
                // Every record named: one damaged chunk can spoil many documents.
                let shown: Vec<String> = step
                    .damaged
                    .iter()
                    .take(10)
                    .map(|d| format!("{}/{}", d.collection, d.key))
                    .collect();
                return Err(crate::StorageError::corruption(
                    format!("{}/{}", first.collection, first.key),
                    format!(
                        "the scrub found {} damaged document(s) ({}): {}",
                        step.damaged.len(),
                        shown.join(", "),
                        first.detail
                    ),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(feature = "testing")]
impl PersistentStorageManager {
    /// Runs `task` now and returns its outcome (`testing` feature): through the scheduled
    /// task when it is scheduled, so exactly as a scheduled run (a failure or panic is
    /// counted in `background_failures` and the task keeps its schedule), else inline. A
    /// closed store returns [`StorageError::Closed`](crate::StorageError::Closed).
    pub async fn run_background_task(&self, task: BackgroundTask) -> crate::Result<()> {
        self.check_open()?;
        match self.control(task, |c| c.requests.clone()) {
            Some(requests) => {
                let (reply, outcome) = oneshot::channel();
                requests
                    .send(reply)
                    .await
                    .map_err(|_| crate::StorageError::Closed)?;
                // The task drops the reply unanswered only when it stopped.
                outcome.await.map_err(|_| crate::StorageError::Closed)?
            }
            None => execute(self.clone(), task).await,
        }
    }

    /// How many runs of `task` the scheduler has finished, scheduled or requested (`testing`
    /// feature); 0 when it is not scheduled or the store is closed. A test waits on this
    /// instead of sleeping.
    pub fn background_runs(&self, task: BackgroundTask) -> u64 {
        self.control(task, |c| *c.runs.borrow()).unwrap_or(0)
    }

    /// `f` of the running `task`'s control, if it is scheduled.
    fn control<T>(&self, task: BackgroundTask, f: impl FnOnce(&Control) -> T) -> Option<T> {
        let slot = self.background().lock().ok()?;
        slot.as_ref()?
            .controls
            .iter()
            .find(|c| c.task == task)
            .map(f)
    }
}

/// The statistics report to `tracing`. Taking the snapshot refreshed the `metrics` gauges;
/// counters and histograms are recorded as operations happen.
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
}

//! Observability: every public operation is timed into the `metrics` facade as it returns
//! (a latency histogram and a counter per operation, collection and backend) inside a
//! `tracing` span; caches count their lookups per tier; the writer reports each group commit;
//! gauges (sizes, space debt, cache fill, backup and scrub ages) are refreshed from every
//! [`statistics`](crate::PersistentStorageManager::statistics) snapshot, which the
//! statistics background task takes every `maintenance.statistics_interval`.
//!
//! The library installs no recorder: without one every call here is a no-op of the `metrics`
//! facade. Names, kinds and labels are listed once, in [`names`], which the dashboard test
//! checks the shipped Grafana dashboard against.

mod gauges;
mod keys;
mod labels;
mod latency;
mod names;

use std::future::Future;
use std::time::{Duration, Instant};

use tracing::Instrument;

pub(crate) use latency::LatencyHistogram;
pub use latency::LatencyPercentiles;
pub use names::{METRICS, MetricKind, MetricName, describe_metrics};

use crate::error::Result;
use labels::CollectionLabels;

/// Declares [`Operation`], its [`ALL`](Operation::ALL) list and its label names from one
/// table, so a new operation cannot be left out of `ALL` (whose index the metrics keys use).
macro_rules! operations {
    ($($variant:ident => $name:literal,)+) => {
        /// A public operation, as its `operation` label spells it.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(crate) enum Operation {
            $($variant,)+
        }

        impl Operation {
            /// Every operation, in declaration order (`ALL[op as usize] == op`).
            pub(crate) const ALL: &'static [Operation] = &[$(Operation::$variant,)+];

            /// The label value (OpenTelemetry's `db.operation.name` style: lower case, one
            /// word).
            pub(crate) fn name(self) -> &'static str {
                match self {
                    $(Operation::$variant => $name,)+
                }
            }
        }
    };
}

operations! {
    Store => "store",
    StoreBatch => "store_batch",
    Retrieve => "retrieve",
    RetrieveRaw => "retrieve_raw",
    RetrieveShared => "retrieve_shared",
    Delete => "delete",
    Exists => "exists",
    Metadata => "metadata",
    List => "list",
    Collections => "collections",
    RetrieveVersioned => "retrieve_versioned",
    RetrieveMany => "retrieve_many",
    Scan => "scan",
    StoreIf => "store_if",
    DeleteIf => "delete_if",
    Update => "update",
    DeletePrefix => "delete_prefix",
    Apply => "apply",
    Maintenance => "maintenance",
    Scrub => "scrub",
    Backup => "backup",
    VerifyBackup => "verify_backup",
}

/// A cache tier, as its `tier` label spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tier {
    /// The in-process cache.
    L1,
    /// The Redis tier.
    #[cfg_attr(
        not(feature = "redis"),
        expect(dead_code, reason = "the Redis tier records it")
    )]
    L2,
}

/// What one store records with: its backend's name and its bounded collection labels.
pub(crate) struct Observer {
    backend: &'static str,
    labels: CollectionLabels,
    trace_keys: bool,
}

impl Observer {
    pub(crate) fn new(backend: &'static str, config: &crate::config::MetricsConfig) -> Self {
        Observer {
            backend,
            labels: CollectionLabels::new(config.max_collection_labels, backend),
            trace_keys: config.trace_keys,
        }
    }

    /// Runs `operation` on `collection` (`""` for the whole store) inside a span, and
    /// records its duration and outcome when it returns. `key` is a span field only with
    /// `metrics.trace_keys` (keys can be personal data); no value is ever a field.
    pub(crate) async fn observed<T>(
        &self,
        operation: Operation,
        collection: &str,
        key: Option<&str>,
        work: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        self.observed_timed(operation, collection, key, work)
            .await
            .0
    }

    /// [`observed`](Self::observed), also returning the duration it recorded (the read
    /// statistics take the same one: one clock read less per read).
    pub(crate) async fn observed_timed<T>(
        &self,
        operation: Operation,
        collection: &str,
        key: Option<&str>,
        work: impl Future<Output = Result<T>>,
    ) -> (Result<T>, Duration) {
        // An operation the cache answers may await nothing: without this, a task calling
        // `exists` in a loop never gave its worker back to other tasks. Tokio's own
        // resources spend the same budget; outside a Tokio runtime this never waits.
        tokio::task::consume_budget().await;
        let span = tracing::debug_span!(
            "bitcraps_storage",
            operation = operation.name(),
            collection,
            key = tracing::field::Empty,
            backend = self.backend,
        );
        if self.trace_keys
            && let Some(key) = key
        {
            span.record("key", key);
        }
        let started = Instant::now();
        let result = work.instrument(span).await;
        let elapsed = started.elapsed();
        self.labels.with_keys(collection, |keys| {
            operation_done(keys, operation, elapsed, result.is_ok());
        });
        (result, elapsed)
    }

    /// Refreshes the gauges from a statistics snapshot.
    pub(crate) fn refresh(&self, statistics: &crate::StorageStatistics) {
        gauges::refresh(statistics);
    }
}

/// Runs an operation on the whole store (a backup, a verification) inside a span, and
/// records it like [`Observer::observed`] with an empty `collection` label.
pub(crate) async fn store_wide<T>(
    backend: &'static str,
    operation: Operation,
    work: impl Future<Output = Result<T>>,
) -> Result<T> {
    let span = tracing::debug_span!("bitcraps_storage", operation = operation.name(), backend);
    let label = metrics::SharedString::const_str("");
    timed(backend, operation, label, work.instrument(span)).await
}

async fn timed<T>(
    backend: &'static str,
    operation: Operation,
    collection: metrics::SharedString,
    work: impl Future<Output = Result<T>>,
) -> Result<T> {
    let started = Instant::now();
    let result = work.await;
    let elapsed = started.elapsed();
    metrics::histogram!(
        names::OPERATION_DURATION,
        "operation" => operation.name(),
        "collection" => collection.clone(),
        "backend" => backend,
    )
    .record(elapsed.as_secs_f64());
    metrics::counter!(
        names::OPERATIONS,
        "operation" => operation.name(),
        "collection" => collection,
        "backend" => backend,
        "outcome" => if result.is_ok() { "ok" } else { "error" },
    )
    .increment(1);
    result
}

/// Where the operation metrics are recorded from (what `metrics::histogram!` called here
/// would give them).
static OPERATION_METADATA: metrics::Metadata<'static> =
    metrics::Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

/// Records an operation that took `elapsed` and returned (`ok`) or failed, with keys built
/// once (`keys.rs`): no key is made per call.
fn operation_done(keys: &keys::LabelKeys, operation: Operation, elapsed: Duration, ok: bool) {
    let Some(keys) = keys.of(operation) else {
        return;
    };
    metrics::with_recorder(|recorder| {
        recorder
            .register_histogram(&keys.duration, &OPERATION_METADATA)
            .record(elapsed.as_secs_f64());
        let outcome = if ok { &keys.ok } else { &keys.error };
        recorder
            .register_counter(outcome, &OPERATION_METADATA)
            .increment(1);
    });
}

/// A lookup in a cache tier.
pub(crate) fn cache_request(tier: Tier, hit: bool) {
    // Static keys (name and labels built at compile time, hash included): a lookup is on every
    // read's path, and building a `Key` from runtime labels allocates and hashes each time.
    const fn labels(tier: &'static str, result: &'static str) -> [metrics::Label; 2] {
        [
            metrics::Label::from_static_parts("tier", tier),
            metrics::Label::from_static_parts("result", result),
        ]
    }
    static L1_MISS: [metrics::Label; 2] = labels("l1", "miss");
    static L1_HIT: [metrics::Label; 2] = labels("l1", "hit");
    static L2_MISS: [metrics::Label; 2] = labels("l2", "miss");
    static L2_HIT: [metrics::Label; 2] = labels("l2", "hit");
    static KEY_L1_MISS: metrics::Key =
        metrics::Key::from_static_parts(names::CACHE_REQUESTS, &L1_MISS);
    static KEY_L1_HIT: metrics::Key =
        metrics::Key::from_static_parts(names::CACHE_REQUESTS, &L1_HIT);
    static KEY_L2_MISS: metrics::Key =
        metrics::Key::from_static_parts(names::CACHE_REQUESTS, &L2_MISS);
    static KEY_L2_HIT: metrics::Key =
        metrics::Key::from_static_parts(names::CACHE_REQUESTS, &L2_HIT);
    static METADATA: metrics::Metadata<'static> =
        metrics::Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));
    let key = match (tier, hit) {
        (Tier::L1, false) => &KEY_L1_MISS,
        (Tier::L1, true) => &KEY_L1_HIT,
        (Tier::L2, false) => &KEY_L2_MISS,
        (Tier::L2, true) => &KEY_L2_HIT,
    };
    metrics::with_recorder(|recorder| recorder.register_counter(key, &METADATA)).increment(1);
}

/// A group commit of `requests` write requests that committed.
#[expect(clippy::cast_precision_loss, reason = "metrics values are f64")]
pub(crate) fn group_committed(requests: usize) {
    metrics::histogram!(names::GROUP_COMMIT_REQUESTS).record(requests as f64);
    metrics::gauge!(names::GROUP_COMMIT_SIZE).set(requests as f64);
}

/// A committed put of `logical` serialized bytes, stored as `stored` bytes unless its content
/// was already there.
pub(crate) fn put_committed(logical: u64, deduplicated: bool, stored: usize) {
    metrics::counter!(names::WRITTEN_BYTES, "kind" => "logical").increment(logical);
    if deduplicated {
        metrics::counter!(names::DEDUPLICATED_WRITES).increment(1);
    } else {
        let stored = u64::try_from(stored).unwrap_or(u64::MAX);
        metrics::counter!(names::WRITTEN_BYTES, "kind" => "stored").increment(stored);
    }
}

/// A write that took a collection past a soft limit.
pub(crate) fn quota_warning() {
    metrics::counter!(names::QUOTA_WARNINGS).increment(1);
}

/// Expired records the sweep removed.
pub(crate) fn expired_swept(n: u64) {
    metrics::counter!(names::EXPIRED_SWEPT).increment(n);
}

/// A wait for a pooled connection of `pool` that took `waited` and ended with `outcome`
/// (`ok`, `timeout` or `error`).
pub(crate) fn pool_wait(pool: &'static str, waited: std::time::Duration, outcome: &'static str) {
    metrics::histogram!(names::POOL_WAIT, "pool" => pool, "outcome" => outcome)
        .record(waited.as_secs_f64());
}

/// A group commit whose transaction failed.
pub(crate) fn group_failed() {
    metrics::counter!(names::GROUP_COMMIT_FAILURES).increment(1);
}

/// A background task run that failed or panicked.
pub(crate) fn background_failure(task: &'static str) {
    metrics::counter!(names::BACKGROUND_FAILURES, "task" => task).increment(1);
}

/// A maintenance run that returned (`ok`: it passed its health checks).
pub(crate) fn maintenance_run(ok: bool) {
    metrics::counter!(names::MAINTENANCE_RUNS, "outcome" => if ok { "ok" } else { "error" })
        .increment(1);
}

/// A backup taken at `created_at_ms`.
pub(crate) fn backup_created(created_at_ms: i64) {
    metrics::gauge!(names::LAST_BACKUP).set(gauges::seconds(created_at_ms));
}

/// A backup taken at `created_at_ms` verified.
pub(crate) fn backup_verified(created_at_ms: i64) {
    metrics::gauge!(names::LAST_VERIFIED_BACKUP).set(gauges::seconds(created_at_ms));
}

impl crate::PersistentStorageManager {
    /// This store's [`Observer`].
    pub(crate) fn observer(&self) -> &Observer {
        &self.shared().observer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_is_listed_at_its_index() {
        for (i, op) in Operation::ALL.iter().enumerate() {
            assert_eq!(*op as usize, i, "{}", op.name());
        }
    }
}

//! The names of every metric the library records, with their kind, unit and help text: the
//! one list the recording code, [`describe_metrics`] and the dashboard test read.

/// The kind of a metric, as Prometheus types it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MetricKind {
    /// Only goes up (Prometheus `counter`, name ends in `_total`).
    Counter,
    /// A value that goes up and down.
    Gauge,
    /// A distribution (`_bucket`, `_sum`, `_count` in the exposition).
    Histogram,
}

/// One metric the library records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct MetricName {
    /// The metric's name (Prometheus conventions: `bitcraps_storage_` prefix, base units).
    pub name: &'static str,
    /// Its kind.
    pub kind: MetricKind,
    /// Its labels.
    pub labels: &'static [&'static str],
    /// The help text exporters show.
    pub help: &'static str,
}

macro_rules! metrics_list {
    ($($(#[$doc:meta])* $const:ident = $name:literal, $kind:ident, [$($label:literal),*], $help:literal;)*) => {
        $(
            $(#[$doc])*
            pub(crate) const $const: &str = $name;
        )*
        /// Every metric the library records (live, or refreshed by
        /// [`statistics`](crate::PersistentStorageManager::statistics)). Names, kinds and
        /// labels are a stable contract: dashboards and alerts are written against them.
        pub const METRICS: &[MetricName] = &[
            $(MetricName {
                name: $name,
                kind: MetricKind::$kind,
                labels: &[$($label),*],
                help: $help,
            },)*
        ];
    };
}

metrics_list! {
    OPERATION_DURATION = "bitcraps_storage_operation_duration_seconds", Histogram,
        ["operation", "collection", "backend"],
        "Wall time of a public operation, from call to return.";
    OPERATIONS = "bitcraps_storage_operations_total", Counter,
        ["operation", "collection", "backend", "outcome"],
        "Public operations that returned, by outcome (ok or error).";
    CACHE_REQUESTS = "bitcraps_storage_cache_requests_total", Counter,
        ["tier", "result"],
        "Cache lookups by tier (l1 in-process, l2 Redis) and result (hit or miss).";
    PREFETCHED = "bitcraps_storage_prefetched_documents_total", Counter, ["result"],
        "Documents prefetched into the in-process cache (result=issued), then read from it (result=used) or removed unread (result=wasted) (refreshed with the statistics).";
    WRITTEN_BYTES = "bitcraps_storage_written_bytes_total", Counter, ["kind"],
        "Bytes of committed puts: serialized (kind=logical), and handed to the database after dedup and compression (kind=stored).";
    DEDUPLICATED_WRITES = "bitcraps_storage_deduplicated_writes_total", Counter, [],
        "Committed puts whose content was already stored (only a reference was added).";
    GROUP_COMMIT_REQUESTS = "bitcraps_storage_group_commit_requests", Histogram, [],
        "Write requests carried by one group commit transaction.";
    GROUP_COMMIT_SIZE = "bitcraps_storage_group_commit_size", Gauge, [],
        "Write requests carried by the last group commit transaction.";
    GROUP_COMMIT_FAILURES = "bitcraps_storage_group_commit_failures_total", Counter, [],
        "Group commit transactions that failed as a whole.";
    BACKGROUND_FAILURES = "bitcraps_storage_background_failures_total", Counter, ["task"],
        "Background task runs that failed or panicked (the store kept running).";
    EXPIRED_SWEPT = "bitcraps_storage_expired_swept_total", Counter, [],
        "Expired records removed by the sweep.";
    QUOTA_WARNINGS = "bitcraps_storage_quota_warnings_total", Counter, [],
        "Writes that took a collection past the soft limit of its quota.";
    RECORDS = "bitcraps_storage_records", Gauge, [], "Records in the store.";
    BLOBS = "bitcraps_storage_blobs", Gauge, [], "Distinct stored contents.";
    LOGICAL_BYTES = "bitcraps_storage_logical_bytes", Gauge, [],
        "Serialized bytes of every record, as if nothing were shared or compressed.";
    STORED_BYTES = "bitcraps_storage_stored_bytes", Gauge, [],
        "Stored bytes of the distinct contents, after dedup and compression.";
    FILE_BYTES = "bitcraps_storage_file_bytes", Gauge, [],
        "Size of the database on disk, WAL included.";
    WAL_BYTES = "bitcraps_storage_wal_bytes", Gauge, [], "Size of the write-ahead log.";
    SPACE_DEBT = "bitcraps_storage_space_debt_bytes", Gauge, ["kind"],
        "Space maintenance could give back: free pages (kind=free_pages) and the WAL (kind=wal).";
    CACHE_BYTES = "bitcraps_storage_cache_bytes", Gauge, ["tier"],
        "Bytes a cache tier holds: l1 charges them against its capacity; l2 is the values in Redis (counted with the statistics).";
    CACHE_CAPACITY = "bitcraps_storage_cache_capacity_bytes", Gauge, ["tier"],
        "Capacity of a cache tier in bytes.";
    CACHE_ENTRIES = "bitcraps_storage_cache_entries", Gauge, ["tier"],
        "Entries a cache tier holds (l2: counted in Redis with the statistics).";
    POOL_WAIT = "bitcraps_storage_pool_wait_duration_seconds", Histogram, ["pool", "outcome"],
        "Time a call waited for a pooled database connection (pool=sqlite_read or postgres), by outcome (ok, timeout or error).";
    QUEUED_WRITE_BYTES = "bitcraps_storage_queued_write_bytes", Gauge, [],
        "Bytes of writes queued for the writer or being committed.";
    PENDING_ACCESS_UPDATES = "bitcraps_storage_pending_access_updates", Gauge, [],
        "Records with reads buffered in memory, not yet written.";
    LAST_BACKUP = "bitcraps_storage_last_backup_timestamp_seconds", Gauge, [],
        "When the newest complete backup was taken (Unix time).";
    LAST_BACKUP_AGE = "bitcraps_storage_last_backup_age_seconds", Gauge, [],
        "Age of the newest complete backup when the statistics were last taken.";
    LAST_VERIFIED_BACKUP = "bitcraps_storage_last_verified_backup_timestamp_seconds", Gauge, [],
        "When the newest backup verified by this process was taken (Unix time).";
    LAST_VERIFIED_BACKUP_AGE = "bitcraps_storage_last_verified_backup_age_seconds", Gauge, [],
        "Age of the newest backup verified by this process when the statistics were last taken.";
    LAST_SCRUB = "bitcraps_storage_last_scrub_timestamp_seconds", Gauge, [],
        "When the last complete scrub pass finished (Unix time).";
    LAST_SCRUB_DAMAGED = "bitcraps_storage_last_scrub_damaged_documents", Gauge, [],
        "Damaged documents the last complete scrub pass found.";
    MAINTENANCE_RUNS = "bitcraps_storage_maintenance_runs_total", Counter, ["outcome"],
        "Maintenance runs, by outcome (ok, or error for a failed health check).";
    REMOTE_CONNECTED = "bitcraps_storage_remote_connected", Gauge, [],
        "1 while the Redis tier's invalidation subscription is up.";
    REMOTE_PENDING_INVALIDATIONS = "bitcraps_storage_remote_pending_invalidations", Gauge, [],
        "Invalidations not yet delivered to Redis (retried).";
    REMOTE_ERRORS = "bitcraps_storage_remote_errors_total", Counter, [],
        "Redis operations that failed or timed out (refreshed with the statistics).";
    REMOTE_REJECTED = "bitcraps_storage_remote_rejected_total", Counter, ["what"],
        "Redis entries (what=entry) or messages (what=message) refused as not authentic or damaged (refreshed with the statistics).";
}

/// Registers the help text and unit of every metric in [`METRICS`] with the installed
/// recorder. Optional: call it once after installing an exporter, so that its output carries
/// `# HELP` lines.
pub fn describe_metrics() {
    for m in METRICS {
        let unit = if m.name.ends_with("_seconds") {
            Some(metrics::Unit::Seconds)
        } else if m.name.ends_with("_bytes") {
            Some(metrics::Unit::Bytes)
        } else {
            None
        };
        match (m.kind, unit) {
            (MetricKind::Counter, _) => metrics::describe_counter!(m.name, m.help),
            (MetricKind::Gauge, Some(unit)) => metrics::describe_gauge!(m.name, unit, m.help),
            (MetricKind::Gauge, None) => metrics::describe_gauge!(m.name, m.help),
            (MetricKind::Histogram, Some(unit)) => {
                metrics::describe_histogram!(m.name, unit, m.help);
            }
            (MetricKind::Histogram, None) => metrics::describe_histogram!(m.name, m.help),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_prometheus_conventions() {
        let mut seen = std::collections::BTreeSet::new();
        for m in METRICS {
            assert!(seen.insert(m.name), "{} listed twice", m.name);
            assert!(m.name.starts_with("bitcraps_storage_"), "{}", m.name);
            assert_eq!(
                m.kind == MetricKind::Counter,
                m.name.ends_with("_total"),
                "{}: counters and only counters end in _total",
                m.name
            );
            assert!(
                m.name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{}",
                m.name
            );
        }
    }
}

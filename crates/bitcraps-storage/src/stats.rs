//! Operation counters and the [`StorageStatistics`] snapshot.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

use crate::backend::DatabaseStatistics;
use crate::cache::CacheStatistics;
use crate::observe::{LatencyHistogram, LatencyPercentiles};
use crate::remote::RemoteCacheStatistics;
use crate::scrub::{ScrubPass, ScrubState};
use crate::striped::Counter;

/// A point-in-time snapshot of the store's statistics (`Serialize`: `stats --json` prints
/// it as it is).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct StorageStatistics {
    /// Successful `retrieve` calls (found or not).
    pub total_reads: u64,
    /// Records written (each record of a batch counts).
    pub total_writes: u64,
    /// Successful `delete` calls that removed a record.
    pub total_deletes: u64,
    /// Reads served from the cache.
    pub cache_hits: u64,
    /// Reads that went to the database.
    pub cache_misses: u64,
    /// Documents prefetched into the cache (predictive prefetching, `cache.prefetch`).
    pub prefetch_issued: u64,
    /// Prefetched documents that were then read from the cache (each counted once).
    pub prefetch_used: u64,
    /// Prefetched documents that left the cache unread (evicted, expired, replaced by a
    /// write or invalidated). `prefetch_issued - prefetch_used - prefetch_wasted` are still
    /// cached, unread.
    pub prefetch_wasted: u64,
    /// Writes whose content was already stored (only a reference was added).
    pub deduplicated_writes: u64,
    /// Bytes handed to the database for new content (after compression; deduplicated
    /// writes add nothing).
    pub bytes_written: u64,
    /// Serialized bytes of every written value, before dedup and compression.
    pub logical_bytes_written: u64,
    /// Mean wall time of a `retrieve`, in milliseconds.
    pub average_read_time_ms: f64,
    /// Mean wall time of a `store` or `store_batch` call, in milliseconds.
    pub average_write_time_ms: f64,
    /// Percentiles of the `retrieve` wall times behind `average_read_time_ms`.
    pub read_latency: LatencyPercentiles,
    /// Percentiles of the `store`/`store_batch` wall times behind `average_write_time_ms`.
    pub write_latency: LatencyPercentiles,
    /// `cache_hits / (cache_hits + cache_misses)`, 0 when there were no reads.
    pub cache_hit_rate: f64,
    /// Transactions committed by group commit.
    pub group_commits: u64,
    /// Write requests those transactions carried (`/ group_commits` = mean group size).
    pub grouped_requests: u64,
    /// Records with reads buffered in memory, not yet flushed. Counts are buffered per
    /// thread, so a record read on several threads counts once per such thread until a
    /// flush takes them (the counts themselves are exact).
    pub pending_access_updates: u64,
    /// Bytes of writes queued for the writer or being committed now. Bounded: writers wait
    /// for queue space beyond 64 MiB (backpressure).
    pub queued_write_bytes: u64,
    /// Operations that returned an error.
    pub errors: u64,
    /// Completed maintenance runs (direct or scheduled).
    pub maintenance_runs: u64,
    /// Start of the last maintenance run, milliseconds since the Unix epoch.
    pub last_maintenance_at_ms: Option<i64>,
    /// Background task runs that failed or panicked (the store kept running).
    pub background_failures: u64,
    /// Reads (since open) that found a record past its expiry, not yet swept, and answered
    /// absent.
    pub expired_reads: u64,
    /// Expired records removed by the sweep (since open).
    pub expired_swept: u64,
    /// Writes (since open) that took a collection past the soft limit of its quota.
    pub quota_warnings: u64,
    /// The last complete pass of the scrub (every blob decoded and hashed), with the damaged
    /// documents it found; `None` until a pass completes in this process.
    pub last_scrub: Option<ScrubPass>,
    /// Creation time of the newest complete backup in the backup directory (listed once), or
    /// taken by this process since, milliseconds since the Unix epoch.
    pub last_backup_at_ms: Option<i64>,
    /// Creation time of the newest backup this process verified.
    pub last_verified_backup_at_ms: Option<i64>,
    /// What the database reports.
    pub database_stats: DatabaseStatistics,
    /// What the in-process cache (L1) reports.
    pub cache_stats: CacheStatistics,
    /// What the Redis tier (L2 and invalidation) reports; `None` without `redis.url`.
    pub remote_cache: Option<RemoteCacheStatistics>,
}

/// The live counters behind [`StorageStatistics`].
#[derive(Debug, Default)]
pub struct Counters {
    /// Striped per thread (`striped.rs`): every read adds to them.
    pub(crate) reads: Counter,
    pub(crate) read_nanos: Counter,
    pub(crate) write_calls: AtomicU64,
    pub(crate) write_nanos: AtomicU64,
    pub(crate) writes: AtomicU64,
    pub(crate) deletes: AtomicU64,
    pub(crate) deduplicated: AtomicU64,
    pub(crate) bytes_written: AtomicU64,
    pub(crate) logical_bytes_written: AtomicU64,
    pub(crate) group_commits: AtomicU64,
    pub(crate) grouped_requests: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) maintenance_runs: AtomicU64,
    pub(crate) last_maintenance_ms: std::sync::atomic::AtomicI64,
    pub(crate) background_failures: AtomicU64,
    pub(crate) expired_reads: AtomicU64,
    pub(crate) expired_swept: AtomicU64,
    pub(crate) quota_warnings: AtomicU64,
    pub(crate) scrub: ScrubState,
    pub(crate) reencrypt: crate::reencrypt::ReencryptState,
    pub(crate) read_latency: LatencyHistogram,
    pub(crate) write_latency: LatencyHistogram,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[expect(
    clippy::cast_precision_loss,
    reason = "statistics: averages of u64 counters as f64"
)]
fn mean_ms(total_nanos: u64, count: u64) -> f64 {
    if count == 0 {
        0.0
    } else {
        total_nanos as f64 / count as f64 / 1e6
    }
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn read_done(&self, elapsed: Duration) {
        self.reads.add(1);
        self.read_nanos.add(nanos(elapsed));
        self.read_latency.record(elapsed);
    }

    pub(crate) fn write_call_done(&self, elapsed: Duration) {
        Self::add(&self.write_calls, 1);
        Self::add(&self.write_nanos, nanos(elapsed));
        self.write_latency.record(elapsed);
    }

    /// A snapshot, with the database and cache parts filled in by the caller.
    #[expect(
        clippy::cast_precision_loss,
        reason = "statistics: a hit rate of u64 counters as f64"
    )]
    pub(crate) fn snapshot(
        &self,
        cache_stats: CacheStatistics,
        database_stats: DatabaseStatistics,
        pending_access_updates: u64,
    ) -> StorageStatistics {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let lookups = cache_stats.hits + cache_stats.misses;
        StorageStatistics {
            total_reads: self.reads.get(),
            total_writes: get(&self.writes),
            total_deletes: get(&self.deletes),
            cache_hits: cache_stats.hits,
            cache_misses: cache_stats.misses,
            prefetch_issued: 0,
            prefetch_used: 0,
            prefetch_wasted: 0,
            deduplicated_writes: get(&self.deduplicated),
            bytes_written: get(&self.bytes_written),
            logical_bytes_written: get(&self.logical_bytes_written),
            average_read_time_ms: mean_ms(self.read_nanos.get(), self.reads.get()),
            average_write_time_ms: mean_ms(get(&self.write_nanos), get(&self.write_calls)),
            read_latency: self.read_latency.percentiles(),
            write_latency: self.write_latency.percentiles(),
            cache_hit_rate: if lookups == 0 {
                0.0
            } else {
                cache_stats.hits as f64 / lookups as f64
            },
            group_commits: get(&self.group_commits),
            grouped_requests: get(&self.grouped_requests),
            pending_access_updates,
            queued_write_bytes: 0,
            errors: get(&self.errors),
            maintenance_runs: get(&self.maintenance_runs),
            last_maintenance_at_ms: Some(self.last_maintenance_ms.load(Ordering::Relaxed))
                .filter(|ms| *ms > 0),
            background_failures: get(&self.background_failures),
            expired_reads: get(&self.expired_reads),
            expired_swept: get(&self.expired_swept),
            quota_warnings: get(&self.quota_warnings),
            last_scrub: self.scrub.last(),
            last_backup_at_ms: None,
            last_verified_backup_at_ms: None,
            database_stats,
            cache_stats,
            remote_cache: None,
        }
    }
}

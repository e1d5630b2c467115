//! The gauges, refreshed from a [`StorageStatistics`] snapshot.

use super::names;
use crate::StorageStatistics;
use crate::backend::now_ms;

/// Milliseconds since the Unix epoch as seconds.
#[expect(clippy::cast_precision_loss, reason = "metrics values are f64")]
pub(super) fn seconds(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

/// Age of a Unix time in milliseconds, in seconds (0 for a time in the future).
fn age(ms: i64) -> f64 {
    seconds(now_ms().saturating_sub(ms).max(0))
}

#[expect(clippy::cast_precision_loss, reason = "metrics gauges are f64")]
pub(super) fn refresh(s: &StorageStatistics) {
    let db = &s.database_stats;
    for (name, value) in [
        (names::RECORDS, db.record_count),
        (names::BLOBS, db.blob_count),
        (names::LOGICAL_BYTES, db.logical_bytes),
        (names::STORED_BYTES, db.stored_bytes),
        (names::FILE_BYTES, db.file_bytes),
        (names::WAL_BYTES, db.wal_bytes),
        (names::QUEUED_WRITE_BYTES, s.queued_write_bytes),
        (names::PENDING_ACCESS_UPDATES, s.pending_access_updates),
    ] {
        metrics::gauge!(name).set(value as f64);
    }
    let free = db.free_pages.saturating_mul(db.page_size);
    metrics::gauge!(names::SPACE_DEBT, "kind" => "free_pages").set(free as f64);
    metrics::gauge!(names::SPACE_DEBT, "kind" => "wal").set(db.wal_bytes as f64);
    let c = &s.cache_stats;
    metrics::gauge!(names::CACHE_BYTES, "tier" => "l1").set(c.weighted_bytes as f64);
    metrics::gauge!(names::CACHE_CAPACITY, "tier" => "l1").set(c.capacity_bytes as f64);
    metrics::gauge!(names::CACHE_ENTRIES, "tier" => "l1").set(c.entry_count as f64);
    // The ledger counts these itself; `absolute` publishes its count as the counter.
    for (result, count) in [
        ("issued", s.prefetch_issued),
        ("used", s.prefetch_used),
        ("wasted", s.prefetch_wasted),
    ] {
        metrics::counter!(names::PREFETCHED, "result" => result).absolute(count);
    }
    if let Some(ms) = s.last_backup_at_ms {
        metrics::gauge!(names::LAST_BACKUP).set(seconds(ms));
        metrics::gauge!(names::LAST_BACKUP_AGE).set(age(ms));
    }
    if let Some(ms) = s.last_verified_backup_at_ms {
        metrics::gauge!(names::LAST_VERIFIED_BACKUP).set(seconds(ms));
        metrics::gauge!(names::LAST_VERIFIED_BACKUP_AGE).set(age(ms));
    }
    if let Some(pass) = &s.last_scrub {
        metrics::gauge!(names::LAST_SCRUB).set(seconds(pass.finished_at_ms));
        metrics::gauge!(names::LAST_SCRUB_DAMAGED).set(pass.damaged.len() as f64);
    }
    if let Some(r) = &s.remote_cache {
        metrics::gauge!(names::REMOTE_CONNECTED).set(if r.connected { 1.0 } else { 0.0 });
        metrics::gauge!(names::REMOTE_PENDING_INVALIDATIONS).set(r.pending_invalidations as f64);
        if let (Some(entries), Some(bytes)) = (r.entries, r.bytes) {
            metrics::gauge!(names::CACHE_ENTRIES, "tier" => "l2").set(entries as f64);
            metrics::gauge!(names::CACHE_BYTES, "tier" => "l2").set(bytes as f64);
        }
        // The tier counts these itself; `absolute` publishes its count as the counter.
        metrics::counter!(names::REMOTE_ERRORS).absolute(r.errors);
        metrics::counter!(names::REMOTE_REJECTED, "what" => "entry")
            .absolute(r.corrupt_entries.saturating_add(r.rejected_entries));
        metrics::counter!(names::REMOTE_REJECTED, "what" => "message")
            .absolute(r.rejected_messages);
    }
}

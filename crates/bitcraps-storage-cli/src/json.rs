//! JSON forms of the library's reports, for `--json` (the library structs are not
//! `Serialize`). Field names follow the library's field names.

use std::time::SystemTime;

use bitcraps_storage::{RecordMetadata, StorageStatistics};
use serde_json::{Value, json};

/// RFC 3339 in UTC with milliseconds, e.g. `2025-01-02T03:04:05.678Z`.
pub fn timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// `stats --json`.
pub fn statistics(s: &StorageStatistics) -> Value {
    let d = &s.database_stats;
    let c = &s.cache_stats;
    json!({
        "total_reads": s.total_reads,
        "total_writes": s.total_writes,
        "total_deletes": s.total_deletes,
        "cache_hits": s.cache_hits,
        "cache_misses": s.cache_misses,
        "cache_hit_rate": s.cache_hit_rate,
        "deduplicated_writes": s.deduplicated_writes,
        "bytes_written": s.bytes_written,
        "logical_bytes_written": s.logical_bytes_written,
        "average_read_time_ms": s.average_read_time_ms,
        "average_write_time_ms": s.average_write_time_ms,
        "group_commits": s.group_commits,
        "grouped_requests": s.grouped_requests,
        "pending_access_updates": s.pending_access_updates,
        "errors": s.errors,
        "maintenance_runs": s.maintenance_runs,
        "last_maintenance_at_ms": s.last_maintenance_at_ms,
        "background_failures": s.background_failures,
        "database_stats": {
            "backend": d.backend,
            "schema_version": d.schema_version,
            "record_count": d.record_count,
            "blob_count": d.blob_count,
            "logical_bytes": d.logical_bytes,
            "unique_bytes": d.unique_bytes,
            "stored_bytes": d.stored_bytes,
            "dictionary_count": d.dictionary_count,
            "dictionary_bytes": d.dictionary_bytes,
            "file_bytes": d.file_bytes,
            "wal_bytes": d.wal_bytes,
            "page_count": d.page_count,
            "free_pages": d.free_pages,
            "page_size": d.page_size,
        },
        "cache_stats": {
            "entry_count": c.entry_count,
            "weighted_bytes": c.weighted_bytes,
            "capacity_bytes": c.capacity_bytes,
            "hits": c.hits,
            "misses": c.misses,
            "raced_fills": c.raced_fills,
        },
    })
}

/// `info --json`.
pub fn metadata(m: &RecordMetadata) -> Value {
    json!({
        "collection": m.collection,
        "key": m.key,
        "version": m.version,
        "size_bytes": m.size_bytes,
        "stored_bytes": m.stored_bytes,
        "codec": m.codec.to_string(),
        "is_compressed": m.is_compressed,
        "dictionary_id": m.dictionary_id,
        "content_hash": m.content_hash,
        "shared_by": m.shared_by,
        "created_at": timestamp(m.created_at),
        "updated_at": timestamp(m.updated_at),
        "access_count": m.access_count,
        "last_accessed": m.last_accessed.map(timestamp),
    })
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[test]
    fn statistics_carry_every_section() {
        let v = statistics(&StorageStatistics::default());
        assert_eq!(v["total_writes"], 0);
        assert_eq!(v["database_stats"]["record_count"], 0);
        assert_eq!(v["cache_stats"]["hits"], 0);
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(timestamp(t), "2023-11-14T22:13:20.123Z");
    }
}

//! Human output: tables (comfy-table) and number formats.

use std::time::Duration;

use bitcraps_storage::{ConsistencyReport, RecordMetadata, StorageStatistics};
use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{ContentArrangement, Table};

use crate::json::timestamp;

/// A two-column table; a row whose value is empty is a section heading.
pub fn key_value(rows: &[(String, String)]) -> Table {
    let mut table = Table::new();
    table
        .load_style(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic);
    for (name, value) in rows {
        table.add_row(vec![name.as_str(), value.as_str()]);
    }
    table
}

/// `text` with every control character (U+0000–U+001F, U+007F–U+009F) escaped as `\n`, `\r`,
/// `\t` or `\u{1b}`, so a key can neither break a one-per-line listing nor send escape
/// sequences to a terminal. Everything else, backslashes included, is kept as it is.
pub fn escape_controls(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// `1536` → `1.5 KiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = as_f64(n);
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    match (unit, UNITS.get(unit)) {
        (0, _) => format!("{n} B"),
        (_, Some(u)) => format!("{value:.1} {u}"),
        (_, None) => format!("{n} B"),
    }
}

/// `0.1234` → `12.3%`.
pub fn percent(ratio: f64) -> String {
    format!("{:.1}%", ratio * 100.0)
}

/// `part / whole` as a ratio, 0 when `whole` is 0.
pub fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        as_f64(part) / as_f64(whole)
    }
}

/// A latency in the unit that reads best.
pub fn latency(d: Duration) -> String {
    if d < Duration::from_millis(1) {
        format!("{} µs", d.as_micros())
    } else {
        format!("{:.2} ms", d.as_secs_f64() * 1e3)
    }
}

#[expect(
    clippy::cast_precision_loss,
    reason = "display only: byte counts far below 2^53"
)]
fn as_f64(n: u64) -> f64 {
    n as f64
}

fn row(name: &str, value: impl ToString) -> (String, String) {
    (name.to_owned(), value.to_string())
}

/// `stats` as table rows.
pub fn statistics(s: &StorageStatistics) -> Vec<(String, String)> {
    let d = &s.database_stats;
    let c = &s.cache_stats;
    vec![
        row(
            "backend",
            format!("{} (schema v{})", d.backend, d.schema_version),
        ),
        row("records", d.record_count),
        row("distinct blobs", d.blob_count),
        row("logical size (all records)", bytes(d.logical_bytes)),
        row("after deduplication", bytes(d.unique_bytes)),
        row("after compression (stored)", bytes(d.stored_bytes)),
        row(
            "saved by dedup + compression",
            percent(1.0 - ratio(d.stored_bytes, d.logical_bytes)),
        ),
        row(
            "compression dictionaries",
            format!("{} ({})", d.dictionary_count, bytes(d.dictionary_bytes)),
        ),
        row("on disk (database + WAL)", bytes(d.file_bytes)),
        row("  of which WAL", bytes(d.wal_bytes)),
        row(
            "free pages",
            format!(
                "{} of {} × {}",
                d.free_pages,
                d.page_count,
                bytes(d.page_size)
            ),
        ),
        row("reads (this process)", s.total_reads),
        row("writes (this process)", s.total_writes),
        row("deletes (this process)", s.total_deletes),
        row("deduplicated writes", s.deduplicated_writes),
        row(
            "cache hit rate",
            format!(
                "{} ({} hits, {} misses)",
                percent(s.cache_hit_rate),
                c.hits,
                c.misses
            ),
        ),
        row(
            "cache entries",
            format!(
                "{} ({} of {})",
                c.entry_count,
                bytes(c.weighted_bytes),
                bytes(c.capacity_bytes)
            ),
        ),
        row(
            "group commits",
            format!("{} ({} requests)", s.group_commits, s.grouped_requests),
        ),
        row("errors", s.errors),
        row(
            "maintenance runs (this process)",
            format!(
                "{} ({} background failures)",
                s.maintenance_runs, s.background_failures
            ),
        ),
        row(
            "expired records (this process)",
            format!(
                "{} swept, {} reads found one unswept",
                s.expired_swept, s.expired_reads
            ),
        ),
    ]
}

/// `info` as table rows.
pub fn metadata(m: &RecordMetadata) -> Vec<(String, String)> {
    vec![
        row("collection", escape_controls(&m.collection)),
        row("key", escape_controls(&m.key)),
        row("version", m.version),
        row(
            "size (JSON)",
            format!("{} ({} B)", bytes(m.size_bytes), m.size_bytes),
        ),
        row(
            "stored",
            format!("{} ({} B)", bytes(m.stored_bytes), m.stored_bytes),
        ),
        row(
            "codec",
            match m.dictionary_id {
                Some(id) => format!("{} (dictionary {id})", m.codec),
                None => m.codec.to_string(),
            },
        ),
        row("compressed", m.is_compressed),
        row("content hash (blake3)", &m.content_hash),
        row("shared by records", m.shared_by),
        row("created", timestamp(m.created_at)),
        row("updated", timestamp(m.updated_at)),
        row("reads", m.access_count),
        row(
            "last read",
            m.last_accessed
                .map_or_else(|| "never".to_owned(), timestamp),
        ),
        row(
            "expires",
            m.expires_at.map_or_else(|| "never".to_owned(), timestamp),
        ),
    ]
}

/// The summary of `migrate`: one row per collection and a total.
pub fn migration(rows: &[crate::commands::MigrationRow]) -> Table {
    let mut table = Table::new();
    table
        .load_style(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(vec![
            "collection",
            "source records",
            "target records",
            "mismatches",
            "verified",
        ]);
    let status = |mismatches: u64| if mismatches == 0 { "ok" } else { "MISMATCH" };
    let mut total = (0u64, 0u64, 0u64);
    for row in rows {
        total.0 += row.source_records;
        total.1 += row.target_records;
        total.2 += row.mismatches;
        table.add_row(vec![
            row.collection.clone(),
            row.source_records.to_string(),
            row.target_records.to_string(),
            row.mismatches.to_string(),
            status(row.mismatches).to_owned(),
        ]);
    }
    table.add_row(vec![
        format!("total ({} collections)", rows.len()),
        total.0.to_string(),
        total.1.to_string(),
        total.2.to_string(),
        status(total.2).to_owned(),
    ]);
    table
}

/// A consistency report in one line.
pub fn consistency(r: &ConsistencyReport) -> String {
    if r.is_ok() {
        "ok".to_owned()
    } else {
        format!(
            "FAILED: integrity {:?}, {} dangling records, {} orphaned blobs, {} refcount mismatches",
            r.integrity, r.dangling_records, r.orphaned_blobs, r.refcount_mismatches
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(5 * 1024 * 1024), "5.0 MiB");
        assert_eq!(percent(0.1234), "12.3%");
        assert!(ratio(1, 0).abs() < f64::EPSILON);
        assert_eq!(latency(Duration::from_micros(250)), "250 µs");
        assert_eq!(latency(Duration::from_micros(2500)), "2.50 ms");
    }

    #[test]
    fn control_characters_are_escaped() {
        assert!(matches!(
            escape_controls("plain \\ key é"),
            std::borrow::Cow::Borrowed("plain \\ key é")
        ));
        assert_eq!(
            escape_controls("a\nb\r\tc\u{1b}[31m\u{7f}\u{85}"),
            "a\\nb\\r\\tc\\u{1b}[31m\\u{7f}\\u{85}"
        );
    }

    #[test]
    fn table_has_every_row() {
        let table = key_value(&statistics(&StorageStatistics::default())).to_string();
        assert!(table.contains("cache hit rate"), "{table}");
        assert!(table.contains("writes (this process)"), "{table}");
    }
}

//! Human output: tables (comfy-table) and number formats.

use std::time::Duration;

use bitcraps_storage::{ConsistencyReport, RecordMetadata, StorageStatistics};
use comfy_table::presets::{NOTHING, UTF8_FULL_CONDENSED};
use comfy_table::{ContentArrangement, Table};

use crate::json::timestamp;

/// The one table style of every command: UTF-8 borders fitted to the terminal's width when
/// stdout is a terminal; plain columns (no borders, no wrapping, no trailing blanks) when it
/// is a pipe or a file, so that `grep`, `awk` and `cut` see one line per row.
pub fn table() -> StyledTable {
    styled(std::io::IsTerminal::is_terminal(&std::io::stdout()))
}

/// A comfy-table [`Table`] in the one style; it derefs to the table for adding rows, and
/// displays in the style.
pub struct StyledTable {
    table: Table,
    plain: bool,
}

fn styled(terminal: bool) -> StyledTable {
    let mut table = Table::new();
    if terminal {
        table
            .load_style(UTF8_FULL_CONDENSED)
            .set_content_arrangement(ContentArrangement::Dynamic);
    } else {
        table
            .load_style(NOTHING)
            .set_content_arrangement(ContentArrangement::Disabled)
            .force_no_tty();
    }
    StyledTable {
        table,
        plain: !terminal,
    }
}

impl std::ops::Deref for StyledTable {
    type Target = Table;
    fn deref(&self) -> &Table {
        &self.table
    }
}

impl std::ops::DerefMut for StyledTable {
    fn deref_mut(&mut self) -> &mut Table {
        &mut self.table
    }
}

impl std::fmt::Display for StyledTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if !self.plain {
            return write!(f, "{}", self.table);
        }
        // Columns two spaces apart, flush left, and no blanks at the ends of lines.
        let mut table = self.table.clone();
        for column in table.column_iter_mut() {
            column.set_padding((0, 2));
        }
        let text = table.to_string();
        let mut lines = text.lines().map(str::trim_end).peekable();
        while let Some(line) = lines.next() {
            f.write_str(line)?;
            if lines.peek().is_some() {
                f.write_str("\n")?;
            }
        }
        Ok(())
    }
}

/// A two-column table; a row whose value is empty is a section heading.
pub fn key_value(rows: &[(String, String)]) -> StyledTable {
    let mut table = table();
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
    let mut rows = vec![
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
        row(
            "chunked documents",
            format!(
                "{} blobs in {} distinct chunks ({} saved by sharing chunks)",
                d.chunked_blobs,
                d.chunk_count,
                bytes(d.chunk_dedup_saved_bytes)
            ),
        ),
        row(
            "delta-encoded documents",
            format!(
                "{} ({} saved against storing them whole)",
                d.delta_blobs,
                bytes(d.delta_saved_bytes)
            ),
        ),
    ];
    if d.backend == "sqlite" {
        rows.extend([
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
        ]);
    } else {
        // A server's WAL and free space are its own (autovacuum reclaims dead rows).
        rows.push(row(
            &format!("size on the {} server (tables, indexes)", d.backend),
            bytes(d.file_bytes),
        ));
    }
    rows.extend([
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
            "prefetched documents",
            format!(
                "{} ({} used, {} wasted)",
                s.prefetch_issued, s.prefetch_used, s.prefetch_wasted
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
    ]);
    if let Some(r) = &s.remote_cache {
        let held = match (r.entries, r.bytes) {
            (Some(entries), Some(b)) => format!("{entries} entries ({})", bytes(b)),
            _ => "not counted (Redis unavailable)".to_owned(),
        };
        rows.extend([
            row(
                "Redis tier (L2)",
                format!(
                    "{}, namespace {}",
                    if r.connected {
                        "connected"
                    } else {
                        "DISCONNECTED"
                    },
                    escape_controls(&r.namespace)
                ),
            ),
            row("  holds", held),
            row(
                "  hit rate",
                format!(
                    "{} ({} hits, {} misses, {} fills)",
                    percent(ratio(r.hits, r.hits.saturating_add(r.misses))),
                    r.hits,
                    r.misses,
                    r.fills
                ),
            ),
            row(
                "  errors, rejected",
                format!(
                    "{} errors, {} entries and {} messages rejected",
                    r.errors,
                    r.corrupt_entries.saturating_add(r.rejected_entries),
                    r.rejected_messages
                ),
            ),
        ]);
    }
    rows
}

/// The space rows of a maintenance report: WAL and free pages for an embedded store; for a
/// database server only the size of the tables (its WAL and free space are the server's).
pub fn space_debt(
    backend: &str,
    before: &bitcraps_storage::SpaceDebt,
    after: &bitcraps_storage::SpaceDebt,
) -> Vec<(String, String)> {
    let change =
        |name: &str, b: String, a: String| (format!("{name} before → after"), format!("{b} → {a}"));
    if backend == "sqlite" {
        vec![
            change("WAL", bytes(before.wal_bytes), bytes(after.wal_bytes)),
            change(
                "free pages",
                before.free_pages.to_string(),
                after.free_pages.to_string(),
            ),
            change("file", bytes(before.file_bytes), bytes(after.file_bytes)),
        ]
    } else {
        vec![change(
            &format!("size on the {backend} server"),
            bytes(before.file_bytes),
            bytes(after.file_bytes),
        )]
    }
}

/// Quotas with their usage, as table rows: `collection  records a / b, bytes c / d (soft p %)`.
pub fn quotas(
    rows: &[(
        String,
        bitcraps_storage::CollectionQuota,
        bitcraps_storage::CollectionUsage,
    )],
) -> Vec<(String, String)> {
    rows.iter()
        .map(|(c, q, u)| {
            let records = match q.max_records {
                Some(max) => format!("{} / {max} records", u.records),
                None => format!("{} records", u.records),
            };
            let size = match q.max_bytes {
                Some(max) => format!("{} / {} of JSON", bytes(u.bytes), bytes(max)),
                None => format!("{} of JSON", bytes(u.bytes)),
            };
            (
                format!("quota {}", escape_controls(c)),
                format!("{records}, {size} (warns at {} %)", q.soft_percent),
            )
        })
        .collect()
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
        row(
            "stored as",
            if m.is_delta {
                format!("a delta against its keyframe ({} chunks)", m.chunk_count)
            } else if m.chunk_count == 0 {
                "one blob".to_owned()
            } else {
                format!("{} content-defined chunks", m.chunk_count)
            },
        ),
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
pub fn migration(rows: &[crate::commands::MigrationRow]) -> StyledTable {
    let mut table = table();
    table.set_header(vec![
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
    fn one_style_boxed_on_a_terminal_and_plain_in_a_pipe() {
        let rows = [
            row("records", 3),
            row("a much longer name", "a much longer value"),
        ];
        let fill = |mut t: StyledTable| {
            t.set_header(vec!["name", "value"]);
            for (name, value) in &rows {
                t.add_row(vec![name.as_str(), value.as_str()]);
            }
            t.to_string()
        };
        let boxed = fill(styled(true));
        assert!(boxed.contains('│') && boxed.contains('─'), "{boxed}");
        let plain = fill(styled(false));
        assert!(
            !plain
                .chars()
                .any(|c| matches!(c, '│' | '─' | '┌' | '+' | '|' | '=')),
            "{plain}"
        );
        let lines: Vec<&str> = plain.lines().collect();
        assert_eq!(lines.len(), 3, "a header and one line per row: {plain}");
        assert!(
            lines[2].contains("a much longer name") && lines[2].contains("a much longer value")
        );
    }

    /// Issue #17: no "WAL" or "free pages" for a PostgreSQL store, whose WAL and free space
    /// are the server's; both for SQLite.
    #[test]
    fn space_wording_follows_the_backend() {
        let mut s = StorageStatistics::default();
        let debt = bitcraps_storage::SpaceDebt::default();
        for (backend, embedded) in [("sqlite", true), ("postgres", false)] {
            s.database_stats.backend = backend;
            let names: Vec<String> = statistics(&s)
                .into_iter()
                .chain(space_debt(backend, &debt, &debt))
                .map(|(name, _)| name)
                .collect();
            let says = |word: &str| names.iter().any(|n| n.contains(word));
            assert_eq!(says("WAL"), embedded, "{backend}: {names:?}");
            assert_eq!(says("free pages"), embedded, "{backend}: {names:?}");
            assert_eq!(says("postgres server"), !embedded, "{backend}: {names:?}");
        }
    }

    #[test]
    fn table_has_every_row() {
        let table = key_value(&statistics(&StorageStatistics::default())).to_string();
        assert!(table.contains("cache hit rate"), "{table}");
        assert!(table.contains("writes (this process)"), "{table}");
    }
}

//! The demo's closing report.

use std::time::Duration;

use bitcraps_storage::{ConsistencyReport, StorageStatistics};

use super::latency::Samples;
use super::ledger::Invariant;
use super::table::Outcome;
use crate::render::{self, bytes, percent, ratio};

/// Everything the report shows.
#[derive(Debug)]
pub struct Report {
    /// The database file.
    pub location: String,
    /// Whether it lives in a temporary directory.
    pub temporary: bool,
    /// Concurrent tables.
    pub tasks: u32,
    /// Seed of the run.
    pub seed: u64,
    /// Wall time of the simulated play.
    pub elapsed: Duration,
    /// What the tables did.
    pub outcome: Outcome,
    /// Statistics at the end of play.
    pub stats: StorageStatistics,
    /// The consistency check after play.
    pub consistency: ConsistencyReport,
    /// The chip invariant after play.
    pub chips: Invariant,
    /// What expired, and what the change feed logged.
    pub expirations: super::lifecycle::Expirations,
    /// The backup → verify → restore → compare round trip.
    pub backup: Option<super::backup::BackupCheck>,
    /// Database file size after close (WAL checkpointed into it).
    pub file_bytes_after_close: Option<u64>,
}

fn row(name: &str, value: impl ToString) -> (String, String) {
    (name.to_owned(), value.to_string())
}

fn heading(name: &str) -> (String, String) {
    (format!("— {name} —"), String::new())
}

fn per_second(count: u64, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64();
    if secs <= 0.0 {
        return "-".to_owned();
    }
    #[expect(clippy::cast_precision_loss, reason = "display only")]
    let rate = count as f64 / secs;
    format!("{rate:.0}/s")
}

fn latency_row(name: &str, samples: &Samples) -> (String, String) {
    let value = samples.summary().map_or_else(
        || "no calls".to_owned(),
        |s| {
            format!(
                "p50 {}  p99 {}  max {}  ({} calls)",
                render::latency(s.p50),
                render::latency(s.p99),
                render::latency(s.max),
                samples.count()
            )
        },
    );
    row(name, value)
}

impl Report {
    /// `demo --json`: the workload, per-call latency percentiles (milliseconds), the
    /// library's statistics and consistency report as they serialize, and the backup round
    /// trip.
    pub fn json(&self) -> serde_json::Value {
        let o = &self.outcome;
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let latency = |s: &Samples| {
            let summary = s.summary();
            serde_json::json!({
                "calls": s.count(),
                "p50_ms": summary.map(|x| ms(x.p50)),
                "p99_ms": summary.map(|x| ms(x.p99)),
                "max_ms": summary.map(|x| ms(x.max)),
            })
        };
        let l = &o.latencies;
        serde_json::json!({
            "store": self.location,
            "temporary": self.temporary,
            "tasks": self.tasks,
            "seed": self.seed,
            "elapsed_seconds": self.elapsed.as_secs_f64(),
            "records_written": o.records_written,
            "games": o.games,
            "rolls": o.rolls,
            "bets": o.bets,
            "latency": {
                "store": latency(&l.store),
                "store_batch": latency(&l.store_batch),
                "retrieve": latency(&l.retrieve),
                "delete": latency(&l.delete),
            },
            "statistics": self.stats,
            "consistency": self.consistency,
            "consistency_ok": self.consistency.is_ok(),
            "expirations": self.expirations,
            "backup": self.backup.as_ref().map(|b| serde_json::json!({
                "id": b.id,
                "archive_bytes": b.archive_bytes,
                "create_seconds": b.create.as_secs_f64(),
                "verify_seconds": b.verify.as_secs_f64(),
                "restore_seconds": b.restore.as_secs_f64(),
                "records_compared": b.compared,
            })),
            "file_bytes_after_close": self.file_bytes_after_close,
        })
    }

    /// The chip invariant after play and, when the backup round trip ran, in the restored
    /// copy, each with where it was checked.
    pub fn invariants(&self) -> Vec<(&'static str, Invariant)> {
        let mut all = vec![("after play", self.chips)];
        if let Some(b) = &self.backup {
            all.push((
                "in the restored backup",
                Invariant::check(self.chips.opening, b.chips),
            ));
        }
        all
    }

    /// `Ok` when the consistency check and every chip invariant held; else what failed (the
    /// demo's exit status).
    pub fn verdict(&self) -> anyhow::Result<()> {
        if !self.consistency.is_ok() {
            anyhow::bail!("the consistency check failed after the demo")
        }
        let e = &self.expirations;
        if e.expired_total() < e.swept {
            anyhow::bail!(
                "the change feed logged {} expirations but the sweep removed {} records",
                e.expired_total(),
                e.swept
            )
        }
        if e.waited_for_lobby && e.lobby_listings_left > 0 {
            anyhow::bail!("lobby listings outlived their TTL")
        }
        for (place, invariant) in self.invariants() {
            if !invariant.held() {
                anyhow::bail!(
                    "the chip invariant failed {place}: {}",
                    invariant.describe()
                );
            }
        }
        Ok(())
    }

    /// The report as table rows.
    pub fn rows(&self) -> Vec<(String, String)> {
        let o = &self.outcome;
        let s = &self.stats;
        let d = &s.database_stats;
        let l = &o.latencies;
        let calls = |x: &Samples| u64::try_from(x.count()).unwrap_or(u64::MAX);
        let operations = [
            &l.store,
            &l.store_batch,
            &l.retrieve,
            &l.retrieve_versioned,
            &l.apply,
            &l.update,
            &l.delete,
        ]
        .into_iter()
        .map(calls)
        .sum();
        let mean_group = ratio(s.grouped_requests, s.group_commits);
        let mut rows = vec![
            heading("workload"),
            row(
                "store",
                format!(
                    "{}{}",
                    self.location,
                    if self.temporary { " (temporary)" } else { "" }
                ),
            ),
            row(
                "tables (concurrent tasks)",
                format!("{} (seed {})", self.tasks, self.seed),
            ),
            row(
                "games / rolls / bets",
                format!("{} / {} / {}", o.games, o.rolls, o.bets),
            ),
            row("records written", o.records_written),
            row(
                "calls",
                format!(
                    "{} store, {} store_batch, {} retrieve, {} retrieve_versioned, {} apply, \
                     {} update, {} delete",
                    l.store.count(),
                    l.store_batch.count(),
                    l.retrieve.count(),
                    l.retrieve_versioned.count(),
                    l.apply.count(),
                    l.update.count(),
                    l.delete.count()
                ),
            ),
            row(
                "conflicts retried",
                format!(
                    "{} (an apply found a balance, tray or the vault changed since it was \
                     read: nothing written, read again)",
                    o.conflicts
                ),
            ),
            row("elapsed", format!("{:.2} s", self.elapsed.as_secs_f64())),
            row(
                "throughput",
                format!(
                    "{} operations, {} records written",
                    per_second(operations, self.elapsed),
                    per_second(o.records_written, self.elapsed)
                ),
            ),
            heading("latency"),
            latency_row("store", &l.store),
            latency_row("store_batch", &l.store_batch),
            latency_row("retrieve", &l.retrieve),
            latency_row("retrieve_versioned", &l.retrieve_versioned),
            latency_row("apply", &l.apply),
            latency_row("update", &l.update),
            latency_row("delete", &l.delete),
            heading("cache and commits"),
            row(
                "cache hit rate",
                format!(
                    "{} ({} hits, {} misses)",
                    percent(s.cache_hit_rate),
                    s.cache_hits,
                    s.cache_misses
                ),
            ),
            row(
                "group commit",
                format!(
                    "{} transactions, {mean_group:.1} requests each",
                    s.group_commits
                ),
            ),
            heading("space"),
            row(
                "records / distinct blobs",
                format!("{} / {}", d.record_count, d.blob_count),
            ),
            row("JSON size of all records", bytes(d.logical_bytes)),
            row(
                "after deduplication",
                format!(
                    "{} (saves {}; {} writes deduplicated)",
                    bytes(d.unique_bytes),
                    percent(1.0 - ratio(d.unique_bytes, d.logical_bytes)),
                    s.deduplicated_writes
                ),
            ),
            row(
                "after compression",
                format!(
                    "{} (saves {} of the deduplicated bytes)",
                    bytes(d.stored_bytes),
                    percent(1.0 - ratio(d.stored_bytes, d.unique_bytes))
                ),
            ),
            row(
                "compression dictionaries",
                format!(
                    "{} trained ({})",
                    d.dictionary_count,
                    bytes(d.dictionary_bytes)
                ),
            ),
            row("on disk (database + WAL)", bytes(d.file_bytes)),
        ];
        if let Some(size) = self.file_bytes_after_close {
            rows.push(row("on disk after close", bytes(size)));
        }
        let e = &self.expirations;
        let feed = |c: &str| {
            let (p, d, x) = e.by_collection.get(c).copied().unwrap_or_default();
            format!("{p} puts, {d} deletes, {x} expirations")
        };
        rows.extend([
            heading("lifecycle"),
            row(
                "TTL (lobby seats / rolls)",
                format!(
                    "{} / {}",
                    humantime::format_duration(Duration::from_millis(
                        u64::try_from(e.lobby_ttl_ms).unwrap_or(u64::MAX)
                    )),
                    humantime::format_duration(Duration::from_millis(
                        u64::try_from(e.roll_ttl_ms).unwrap_or(u64::MAX)
                    ))
                ),
            ),
            row(
                "expired records swept at the end",
                format!(
                    "{}{}",
                    e.swept,
                    if e.waited_for_lobby {
                        format!(" ({} lobby listings left)", e.lobby_listings_left)
                    } else {
                        " (lobby TTL over 10 s: not waited for)".to_owned()
                    }
                ),
            ),
            row(
                "change feed",
                format!("{} changes, {} expirations", e.changes, e.expired_total()),
            ),
            row("change feed: lobby", feed(super::lifecycle::LOBBY)),
            row("change feed: rolls", feed(super::lifecycle::ROLLS)),
        ]);
        rows.extend([
            heading("integrity"),
            row("consistency check", render::consistency(&self.consistency)),
            row("errors", errors_line(s.errors, o.conflicts)),
            row("chips (balances + house bank)", self.chips.describe()),
        ]);
        if let Some(b) = &self.backup {
            rows.push(row(
                "backup → verify → restore",
                format!(
                    "{} ({}): created {} ms, verified {} ms, restored {} ms; {} records identical",
                    b.id,
                    bytes(b.archive_bytes),
                    b.create.as_millis(),
                    b.verify.as_millis(),
                    b.restore.as_millis(),
                    b.compared
                ),
            ));
            rows.push(row(
                "chips in the restored copy",
                Invariant::check(self.chips.opening, b.chips).describe(),
            ));
        }
        rows
    }
}

/// The integrity section's error count: the store counts a version conflict as a failed call,
/// so the conflicts the demo retried (and reported above) are named, not left to read as
/// damage.
fn errors_line(errors: u64, conflicts: u64) -> String {
    if errors == 0 {
        return "0".into();
    }
    let retried = conflicts.min(errors);
    if retried == errors {
        format!("{errors} (all of them the version conflicts retried above)")
    } else {
        format!("{errors} ({retried} of them the version conflicts retried above)")
    }
}

#[cfg(test)]
mod tests {
    use super::super::backup::BackupCheck;
    use super::super::ledger::Holdings;
    use super::*;

    fn report(after_play: i64, restored: i64) -> Report {
        let holdings = |bank| Holdings {
            players: 2,
            player_chips: 2_000,
            bank,
        };
        let mut consistency = ConsistencyReport::default();
        consistency.integrity = vec!["ok".to_owned()];
        Report {
            location: "test".to_owned(),
            temporary: true,
            tasks: 1,
            seed: 1,
            elapsed: Duration::from_secs(1),
            outcome: Outcome::default(),
            stats: StorageStatistics::default(),
            consistency,
            chips: Invariant::check(10_000, holdings(after_play)),
            expirations: Default::default(),
            backup: Some(BackupCheck {
                id: "b".to_owned(),
                archive_bytes: 1,
                create: Duration::ZERO,
                verify: Duration::ZERO,
                restore: Duration::ZERO,
                compared: 3,
                chips: holdings(restored),
            }),
            file_bytes_after_close: None,
        }
    }

    fn row_of(report: &Report, name: &str) -> String {
        report
            .rows()
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
            .unwrap_or_default()
    }

    /// The store counts a retried version conflict as an error; the report names them, so
    /// "errors 66" after a clean run does not read as damage.
    #[test]
    fn errors_name_the_conflicts_retried() {
        assert_eq!(errors_line(0, 0), "0");
        assert_eq!(
            errors_line(66, 66),
            "66 (all of them the version conflicts retried above)"
        );
        assert_eq!(
            errors_line(70, 66),
            "70 (66 of them the version conflicts retried above)"
        );
        let mut r = report(8_000, 8_000);
        r.stats.errors = 3;
        r.outcome.conflicts = 3;
        assert_eq!(
            row_of(&r, "errors"),
            "3 (all of them the version conflicts retried above)"
        );
    }

    #[test]
    fn balanced_chips_pass() {
        let r = report(8_000, 8_000);
        assert!(r.verdict().is_ok());
        assert!(row_of(&r, "chips (balances + house bank)").starts_with("held: "));
        assert!(row_of(&r, "chips in the restored copy").starts_with("held: "));
    }

    #[test]
    fn unbalanced_chips_fail_the_demo() {
        let after_play = report(7_990, 7_990);
        let err = after_play.verdict().expect_err("10 chips vanished in play");
        assert!(
            err.to_string()
                .starts_with("the chip invariant failed after play: BROKEN: "),
            "{err}"
        );
        assert!(row_of(&after_play, "chips (balances + house bank)").starts_with("BROKEN: "));

        let restored = report(8_000, 8_050);
        let err = restored
            .verdict()
            .expect_err("the restored copy has 50 more");
        assert!(
            err.to_string()
                .contains("failed in the restored backup: BROKEN: "),
            "{err}"
        );
        assert!(row_of(&restored, "chips in the restored copy").contains("(+50 chips)"));
    }
}

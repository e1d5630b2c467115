//! Medians, spreads and ratios, as terminal tables and as Markdown.

use std::time::Duration;

use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};

use crate::workloads::Measured;

/// Every sample of every store, ours first.
pub type Results = [(String, Vec<Measured>)];

/// The runs whose child was killed at the time limit: (store, how many), for the stores
/// that lost any. Those stores' cells are medians over the runs that finished.
pub struct TimedOut<'a> {
    /// Per store, the runs that timed out.
    pub runs: &'a [(String, usize)],
    /// The limit each child had.
    pub limit: Duration,
}

impl TimedOut<'_> {
    /// None timed out.
    #[cfg(test)]
    pub const NONE: TimedOut<'static> = TimedOut {
        runs: &[],
        limit: Duration::ZERO,
    };
}

struct Metric {
    name: &'static str,
    get: fn(&Measured) -> f64,
    higher_is_better: bool,
}

const METRICS: [Metric; 20] = [
    Metric {
        name: "durable puts/s, 8 writers",
        get: |m| m.concurrent_puts,
        higher_is_better: true,
    },
    Metric {
        name: "  share of the limit 8 / fsync latency",
        get: |m| limit_share(m.concurrent_puts, 8.0, m.fsync_ms),
        higher_is_better: true,
    },
    Metric {
        name: "durable puts/s, 64 writers",
        get: |m| m.concurrent_puts_64,
        higher_is_better: true,
    },
    Metric {
        name: "  share of the limit 64 / fsync latency",
        get: |m| limit_share(m.concurrent_puts_64, 64.0, m.fsync_ms),
        higher_is_better: true,
    },
    Metric {
        name: "fsync latency ms (4 KiB, this disk)",
        get: |m| m.fsync_ms,
        higher_is_better: false,
    },
    Metric {
        name: "bulk load docs/s (1,000/batch)",
        get: |m| m.bulk_load,
        higher_is_better: true,
    },
    Metric {
        name: "zipf typed reads/s, 1 thread",
        get: |m| m.zipf_reads_1t,
        higher_is_better: true,
    },
    Metric {
        name: "zipf typed reads/s, 2 threads",
        get: |m| m.zipf_reads_2t,
        higher_is_better: true,
    },
    Metric {
        name: "zipf typed reads/s, 4 threads",
        get: |m| m.zipf_reads_4t,
        higher_is_better: true,
    },
    Metric {
        name: "mixed 95/5 ops/s, 4 threads",
        get: |m| m.mixed_95_5,
        higher_is_better: true,
    },
    Metric {
        name: "prefix listing keys/s (pages of 100)",
        get: |m| m.prefix_list_keys,
        higher_is_better: true,
    },
    Metric {
        name: "prefix scan records/s (pages of 100, typed; peers: list + get)",
        get: |m| m.prefix_scan_records,
        higher_is_better: true,
    },
    Metric {
        name: "footprint / logical JSON bytes",
        get: |m| m.footprint,
        higher_is_better: false,
    },
    Metric {
        name: "  of which change log (ours; peers have none)",
        get: |m| m.change_log.unwrap_or(f64::NAN),
        higher_is_better: false,
    },
    Metric {
        name: "peak RSS MiB",
        get: |m| m.peak_rss_mib,
        higher_is_better: false,
    },
    Metric {
        name: "CPU µs per durable put, 8 writers",
        get: |m| measured(m.cpu_us.durable_8),
        higher_is_better: false,
    },
    Metric {
        name: "CPU µs per bulk-loaded document",
        get: |m| measured(m.cpu_us.bulk),
        higher_is_better: false,
    },
    Metric {
        name: "CPU µs per zipf read, 1 thread",
        get: |m| measured(m.cpu_us.reads_1t),
        higher_is_better: false,
    },
    Metric {
        name: "CPU µs per zipf read, 4 threads",
        get: |m| measured(m.cpu_us.reads_4t),
        higher_is_better: false,
    },
    Metric {
        name: "CPU µs per mixed 95/5 operation",
        get: |m| measured(m.cpu_us.mixed),
        higher_is_better: false,
    },
];

/// `v`, or NaN when it was not measured (a run recorded before the field existed).
fn measured(v: f64) -> f64 {
    if v > 0.0 { v } else { f64::NAN }
}

/// What fraction of `writers / fsync latency` (puts/s when every sync serves every waiting
/// writer) `puts` reached; NaN when not measured.
fn limit_share(puts: f64, writers: f64, fsync_ms: f64) -> f64 {
    if puts > 0.0 && fsync_ms > 0.0 {
        puts / (writers * 1000.0 / fsync_ms)
    } else {
        f64::NAN
    }
}

/// (median, min, max)
fn spread(samples: &[Measured], f: fn(&Measured) -> f64) -> (f64, f64, f64) {
    let mut v: Vec<f64> = samples.iter().map(f).collect();
    v.sort_by(f64::total_cmp);
    // Of an even count (a run that timed out leaves two of three), the mean of the two
    // middle values: the upper one alone would report the better run as the median.
    let mid = v.len() / 2;
    let median = match v.len() {
        0 => f64::NAN,
        n if n % 2 == 0 => f64::midpoint(v[mid - 1], v[mid]),
        _ => v[mid],
    };
    let min = v.first().copied().unwrap_or(f64::NAN);
    let max = v.last().copied().unwrap_or(f64::NAN);
    (median, min, max)
}

fn num(x: f64) -> String {
    if !x.is_finite() {
        "–".to_owned()
    } else if x >= 1e6 {
        format!("{:.2}M", x / 1e6)
    } else if x >= 1e4 {
        format!("{:.0}k", x / 1e3)
    } else if x >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}

fn ratio(ours: f64, peer: f64) -> String {
    if ours.is_finite() && peer.is_finite() && peer > 0.0 {
        format!("{:.2}×", ours / peer)
    } else {
        "–".to_owned()
    }
}

/// The measurement table: per store "median (min–max)".
fn values(results: &Results) -> (Vec<String>, Vec<Vec<String>>) {
    let mut header = vec!["workload".to_owned()];
    header.extend(results.iter().map(|(n, _)| n.clone()));
    let rows = METRICS
        .iter()
        .map(|metric| {
            let mut row = vec![metric.name.to_owned()];
            row.extend(results.iter().map(|(_, samples)| {
                let (med, min, max) = spread(samples, metric.get);
                if med.is_finite() {
                    format!("{} ({}–{})", num(med), num(min), num(max))
                } else {
                    "–".to_owned()
                }
            }));
            row
        })
        .collect();
    (header, rows)
}

/// The ratio table: ours (the first column) / each embedded peer, and ours / the best peer
/// (for footprint and RSS the best peer is the smallest, so under 1× is ours being smaller).
/// Our other configurations (on PostgreSQL) and the PostgreSQL peer are not embedded peers;
/// `None` when no embedded peer ran (a PostgreSQL-only run), rather than a table of "–".
fn ratios(results: &Results) -> Option<(Vec<String>, Vec<Vec<String>>)> {
    let compared: Vec<(String, Vec<Measured>)> = results
        .iter()
        .enumerate()
        .filter(|(i, (name, _))| {
            *i == 0 || !(crate::stores::is_ours(name) || name == crate::stores::PEER_POSTGRES)
        })
        .map(|(_, r)| r.clone())
        .collect();
    if compared.len() < 2 {
        return None;
    }
    let (mut header, mut rows) = ratios_of(&compared);
    // Ours reading through `retrieve_shared` against the same best peer, beside ours.
    if let Some((name, samples)) = results
        .iter()
        .find(|(name, _)| name == crate::stores::OURS_SHARED)
    {
        header.push(format!("{name} / best peer"));
        for (metric, row) in METRICS.iter().zip(&mut rows) {
            let peers = compared
                .iter()
                .skip(1)
                .map(|(_, s)| spread(s, metric.get).0);
            let best = best_of(metric, peers);
            row.push(ratio(spread(samples, metric.get).0, best));
        }
    }
    Some((header, rows))
}

/// Each of our PostgreSQL columns against the PostgreSQL peer, when both ran: `None`
/// otherwise.
fn postgres_ratios(results: &Results) -> Option<(Vec<String>, Vec<Vec<String>>)> {
    against(results, crate::stores::PEER_POSTGRES, |name| {
        name.starts_with(crate::stores::OURS_POSTGRES)
    })
}

/// Ours encrypted at rest against ours in plaintext, when both ran (the cost of encryption:
/// under 1× on rates and over 1× on CPU time is what it costs).
fn encryption_ratios(results: &Results) -> Option<(Vec<String>, Vec<Vec<String>>)> {
    against(results, crate::stores::OURS, |name| {
        name == crate::stores::OURS_ENCRYPTED
    })
}

/// The columns whose names `pick` chooses against the column `base`, when both ran.
fn against(
    results: &Results,
    base: &str,
    pick: impl Fn(&str) -> bool,
) -> Option<(Vec<String>, Vec<Vec<String>>)> {
    let base = results.iter().find(|(name, _)| name == base)?;
    let ours: Vec<_> = results.iter().filter(|(name, _)| pick(name)).collect();
    if ours.is_empty() {
        return None;
    }
    let mut header = vec!["workload".to_owned()];
    header.extend(ours.iter().map(|(n, _)| format!("{n} / {}", base.0)));
    let rows = METRICS
        .iter()
        .map(|metric| {
            let theirs = spread(&base.1, metric.get).0;
            let mut row = vec![metric.name.to_owned()];
            row.extend(
                ours.iter()
                    .map(|(_, s)| ratio(spread(s, metric.get).0, theirs)),
            );
            row
        })
        .collect();
    Some((header, rows))
}

/// The best of the peers' medians for `metric` (the highest rate, the smallest cost).
fn best_of(metric: &Metric, peers: impl Iterator<Item = f64>) -> f64 {
    if metric.higher_is_better {
        peers.fold(f64::NEG_INFINITY, f64::max)
    } else {
        peers.fold(f64::INFINITY, f64::min)
    }
}

/// The first column against every other one, and against the best of them.
fn ratios_of(results: &Results) -> (Vec<String>, Vec<Vec<String>>) {
    let mut header = vec!["workload".to_owned()];
    header.extend(results.iter().skip(1).map(|(n, _)| format!("ours / {n}")));
    header.push("ours / best peer".to_owned());
    let rows = METRICS
        .iter()
        .map(|metric| {
            let medians: Vec<f64> = results
                .iter()
                .map(|(_, s)| spread(s, metric.get).0)
                .collect();
            let ours = medians.first().copied().unwrap_or(f64::NAN);
            let peers = medians.iter().skip(1).copied();
            let best = best_of(metric, peers.clone());
            let mut row = vec![metric.name.to_owned()];
            row.extend(peers.map(|p| ratio(ours, p)));
            row.push(ratio(ours, best));
            row
        })
        .collect();
    (header, rows)
}

fn caption(results: &Results, quick: bool, runs: usize, lost: &TimedOut<'_>) -> String {
    let mut caption = format!(
        "{runs} run{} per store, {} size; each cell is the median (min–max) over the runs",
        if runs == 1 { "" } else { "s" },
        if quick { "quick" } else { "full" }
    );
    if results
        .iter()
        .any(|(name, _)| name.starts_with(crate::stores::OURS_POSTGRES))
    {
        caption.push_str(
            ". PostgreSQL columns: footprint is the relation sizes the library reports as \
             file_bytes (tables, indexes and TOAST of its schema), not a directory; peak RSS \
             is the benchmark process only, without the PostgreSQL server (or Redis)",
        );
    }
    for (name, n) in lost.runs {
        let finished = runs.saturating_sub(*n);
        let cells = if finished == 0 {
            "it has no cells".to_owned()
        } else {
            format!("its cells are medians over the {finished} that finished")
        };
        caption.push_str(&format!(
            ". {name}: {n} of {runs} run{} timed out (killed after {} s); {cells}",
            if runs == 1 { "" } else { "s" },
            lost.limit.as_secs(),
        ));
    }
    caption
}

fn terminal((header, rows): (Vec<String>, Vec<Vec<String>>)) -> Table {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED).set_header(header);
    for r in rows {
        table.add_row(r);
    }
    table
}

fn markdown_table((header, rows): (Vec<String>, Vec<Vec<String>>)) -> String {
    let mut s = format!(
        "| {} |\n|{}\n",
        header.join(" | "),
        "---|".repeat(header.len())
    );
    for r in rows {
        s.push_str(&format!("| {} |\n", r.join(" | ")));
    }
    s
}

/// The tables for the terminal.
pub fn render(results: &Results, quick: bool, runs: usize, lost: &TimedOut<'_>) -> String {
    let mut out = format!(
        "{}\n{}",
        caption(results, quick, runs, lost),
        terminal(values(results))
    );
    if let Some(embedded) = ratios(results) {
        out.push_str(&format!("\n{}", terminal(embedded)));
    }
    if let Some(pg) = postgres_ratios(results) {
        out.push_str(&format!("\n{}", terminal(pg)));
    }
    if let Some(encrypted) = encryption_ratios(results) {
        out.push_str(&format!("\n{}", terminal(encrypted)));
    }
    out
}

/// Both tables as Markdown.
pub fn markdown(results: &Results, quick: bool, runs: usize, lost: &TimedOut<'_>) -> String {
    format!(
        "{}.\n\n{}",
        caption(results, quick, runs, lost),
        markdown_table(values(results))
    ) + &ratios(results)
        .map(|embedded| {
            format!(
                "\nRatios of medians (ours first; for footprint and peak RSS lower is better, \
                 so under 1× means ours is smaller):\n\n{}",
                markdown_table(embedded)
            )
        })
        .unwrap_or_default()
        + &postgres_ratios(results)
            .map(|pg| {
                format!(
                    "\nOn PostgreSQL, ours against the tuned `key → JSONB` peer (same server, same \
                 durability, a pool of 4 connections each):\n\n{}",
                    markdown_table(pg)
                )
            })
            .unwrap_or_default()
        + &encryption_ratios(results)
            .map(|encrypted| {
                format!(
                    "\nEncryption at rest, ours encrypted against ours in plaintext (rates under \
                     1× and CPU time over 1× are its cost):\n\n{}",
                    markdown_table(encrypted)
                )
            })
            .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_postgres_peer_is_compared_only_with_our_postgres_columns() {
        let results = vec![
            ("bitcraps-storage".to_owned(), sample(100.0)),
            ("bitcraps-storage-pg".to_owned(), sample(300.0)),
            ("bitcraps-storage-pg-redis".to_owned(), sample(600.0)),
            ("rusqlite".to_owned(), sample(50.0)),
            ("postgres-jsonb".to_owned(), sample(200.0)),
        ];
        let (header, rows) = ratios(&results).expect("a peer ran");
        assert_eq!(header, ["workload", "ours / rusqlite", "ours / best peer"]);
        assert_eq!(
            rows.first().and_then(|r| r.get(2)).map(String::as_str),
            Some("2.00×")
        );
        let (header, rows) = postgres_ratios(&results).expect("both ran");
        assert_eq!(
            header,
            [
                "workload",
                "bitcraps-storage-pg / postgres-jsonb",
                "bitcraps-storage-pg-redis / postgres-jsonb"
            ]
        );
        assert_eq!(
            rows.first().map(|r| r[1..].to_vec()),
            Some(vec!["1.50×".to_owned(), "3.00×".to_owned()])
        );
    }

    #[test]
    fn the_shared_reads_column_is_compared_with_the_best_peer_not_counted_as_one() {
        let results = vec![
            ("bitcraps-storage".to_owned(), sample(100.0)),
            ("bitcraps-storage-shared".to_owned(), sample(400.0)),
            ("sled".to_owned(), sample(50.0)),
            ("fjall".to_owned(), sample(200.0)),
        ];
        let (header, rows) = ratios(&results).expect("a peer ran");
        assert_eq!(
            header,
            [
                "workload",
                "ours / sled",
                "ours / fjall",
                "ours / best peer",
                "bitcraps-storage-shared / best peer"
            ]
        );
        assert_eq!(
            rows.first().map(|r| r[1..].to_vec()),
            Some(vec![
                "2.00×".to_owned(),
                "0.50×".to_owned(),
                "0.50×".to_owned(),
                "2.00×".to_owned()
            ])
        );
    }

    fn sample(puts: f64) -> Vec<Measured> {
        vec![Measured {
            concurrent_puts: puts,
            ..Measured::default()
        }]
    }

    #[test]
    fn our_postgres_columns_are_shown_but_not_compared_as_peers() {
        let results = vec![
            ("bitcraps-storage".to_owned(), sample(100.0)),
            ("bitcraps-storage-pg".to_owned(), sample(1000.0)),
            ("rusqlite".to_owned(), sample(50.0)),
        ];
        let (header, rows) = values(&results);
        assert_eq!(
            header,
            [
                "workload",
                "bitcraps-storage",
                "bitcraps-storage-pg",
                "rusqlite"
            ]
        );
        let (header, rows_r) = ratios(&results).expect("a peer ran");
        assert_eq!(header, ["workload", "ours / rusqlite", "ours / best peer"]);
        assert_eq!(
            rows_r.first().map(|r| r.as_slice()),
            Some(
                &[
                    "durable puts/s, 8 writers".to_owned(),
                    "2.00×".to_owned(),
                    "2.00×".to_owned()
                ][..]
            )
        );
        assert_eq!(rows.len(), METRICS.len());
        assert!(postgres_ratios(&results).is_none());
        assert!(caption(&results, true, 1, &TimedOut::NONE).contains("relation sizes"));
        assert!(!caption(&results[..1], true, 1, &TimedOut::NONE).contains("relation sizes"));
    }

    #[test]
    fn encryption_is_compared_with_ours_in_plaintext_and_cpu_rows_skip_missing_samples() {
        let with_cpu = |puts: f64, bulk_us: f64| {
            let mut m = sample(puts);
            for s in &mut m {
                s.cpu_us.bulk = bulk_us;
            }
            m
        };
        let results = vec![
            ("bitcraps-storage".to_owned(), with_cpu(100.0, 8.0)),
            (
                "bitcraps-storage-encrypted".to_owned(),
                with_cpu(90.0, 10.0),
            ),
            ("rusqlite".to_owned(), with_cpu(50.0, 0.0)),
        ];
        let (header, rows) = encryption_ratios(&results).expect("both ran");
        assert_eq!(
            header,
            ["workload", "bitcraps-storage-encrypted / bitcraps-storage"]
        );
        let cell = |name: &str| {
            rows.iter()
                .find(|r| r.first().map(String::as_str) == Some(name))
                .and_then(|r| r.get(1))
                .cloned()
        };
        assert_eq!(cell("durable puts/s, 8 writers").as_deref(), Some("0.90×"));
        assert_eq!(
            cell("CPU µs per bulk-loaded document").as_deref(),
            Some("1.25×")
        );
        // The encrypted column is ours, not a peer; a store without the CPU sample shows none.
        let (header, _) = ratios(&results).expect("a peer ran");
        assert_eq!(header, ["workload", "ours / rusqlite", "ours / best peer"]);
        let (_, values) = values(&results);
        let bulk_cpu = values
            .iter()
            .find(|r| r.first().map(String::as_str) == Some("CPU µs per bulk-loaded document"))
            .map(|r| r[1..].to_vec());
        assert_eq!(
            bulk_cpu,
            Some(vec![
                "8.00 (8.00–8.00)".to_owned(),
                "10.00 (10.00–10.00)".to_owned(),
                "–".to_owned()
            ])
        );
        assert!(encryption_ratios(&results[2..]).is_none());
    }

    #[test]
    fn a_postgres_only_run_prints_no_embedded_ratio_table() {
        let results = vec![
            ("bitcraps-storage-pg".to_owned(), sample(300.0)),
            ("bitcraps-storage-pg-redis".to_owned(), sample(600.0)),
            ("postgres-jsonb".to_owned(), sample(200.0)),
        ];
        assert!(ratios(&results).is_none());
        let lost = TimedOut {
            runs: &[],
            limit: Duration::from_secs(600),
        };
        let md = markdown(&results, true, 1, &lost);
        assert!(!md.contains("best peer"), "{md}");
        assert!(!md.contains("Ratios of medians"), "{md}");
        assert!(md.contains("bitcraps-storage-pg / postgres-jsonb"), "{md}");
        let text = render(&results, true, 1, &lost);
        assert!(!text.contains("best peer"), "{text}");
        assert!(
            text.contains("bitcraps-storage-pg-redis / postgres-jsonb"),
            "{text}"
        );
    }

    #[test]
    fn a_store_whose_runs_timed_out_is_reported_with_medians_over_the_rest() {
        let mut sled = sample(50.0);
        sled.extend(sample(70.0));
        let results = vec![
            ("bitcraps-storage".to_owned(), sample(100.0)),
            ("sled".to_owned(), sled),
            ("fjall".to_owned(), Vec::new()),
        ];
        let timed_out = [("sled".to_owned(), 1), ("fjall".to_owned(), 3)];
        let lost = TimedOut {
            runs: &timed_out,
            limit: Duration::from_secs(600),
        };
        let md = markdown(&results, true, 3, &lost);
        assert!(
            md.contains("sled: 1 of 3 runs timed out (killed after 600 s); its cells are medians over the 2 that finished"),
            "{md}"
        );
        assert!(
            md.contains("fjall: 3 of 3 runs timed out (killed after 600 s); it has no cells"),
            "{md}"
        );
        let (_, rows) = values(&results);
        assert_eq!(
            rows.first().map(|r| r[1..].to_vec()),
            Some(vec![
                "100 (100–100)".to_owned(),
                "60.00 (50.00–70.00)".to_owned(),
                "–".to_owned()
            ])
        );
        assert!(render(&results, true, 3, &lost).contains("fjall: 3 of 3 runs timed out"));
    }
}

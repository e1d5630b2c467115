//! Medians, spreads and ratios, as a terminal table and as Markdown.

use comfy_table::{Table, presets::UTF8_FULL};

use crate::workloads::Measured;

type Metric = (&'static str, fn(&Measured) -> f64, bool);

/// (name, accessor, higher is better)
pub const METRICS: [Metric; 8] = [
    ("durable puts/s, 8 writers", |m| m.concurrent_puts, true),
    ("bulk load docs/s (1,000/batch)", |m| m.bulk_load, true),
    ("zipf typed reads/s, 1 thread", |m| m.zipf_reads_1t, true),
    ("zipf typed reads/s, 4 threads", |m| m.zipf_reads_4t, true),
    ("mixed 95/5 ops/s, 4 threads", |m| m.mixed_95_5, true),
    ("prefix listing keys/s", |m| m.prefix_list_keys, true),
    ("footprint / logical JSON", |m| m.footprint, false),
    ("peak RSS MiB", |m| m.peak_rss_mib, false),
];

fn stats(samples: &[Measured], f: fn(&Measured) -> f64) -> (f64, f64, f64) {
    let mut v: Vec<f64> = samples.iter().map(f).collect();
    v.sort_by(f64::total_cmp);
    let median = v.get(v.len() / 2).copied().unwrap_or(0.0);
    (
        median,
        v.first().copied().unwrap_or(0.0),
        v.last().copied().unwrap_or(0.0),
    )
}

fn fmt(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.3}")
    }
}

/// Rows: metric, then per store "median (min–max)", then ours / best peer.
fn rows(results: &[(String, Vec<Measured>)]) -> (Vec<String>, Vec<Vec<String>>) {
    let mut header = vec!["workload".to_owned()];
    header.extend(results.iter().map(|(n, _)| n.clone()));
    header.push("ours / best peer".to_owned());
    let mut out = Vec::new();
    for (name, f, higher) in METRICS {
        let mut row = vec![name.to_owned()];
        let medians: Vec<f64> = results.iter().map(|(_, s)| stats(s, f).0).collect();
        for (_, samples) in results {
            let (med, min, max) = stats(samples, f);
            row.push(format!("{} ({}–{})", fmt(med), fmt(min), fmt(max)));
        }
        let ours = medians.first().copied().unwrap_or(0.0);
        let peers = medians.iter().skip(1).copied();
        let best = if higher {
            peers.fold(f64::MIN, f64::max)
        } else {
            peers.fold(f64::MAX, f64::min)
        };
        let ratio = if best > 0.0 && best.is_finite() && best != f64::MIN && best != f64::MAX {
            format!("{:.2}×", ours / best)
        } else {
            "–".to_owned()
        };
        row.push(ratio);
        out.push(row);
    }
    (header, out)
}

pub fn render(results: &[(String, Vec<Measured>)], quick: bool, runs: usize) -> String {
    let (header, rows) = rows(results);
    let mut table = Table::new();
    table.load_preset(UTF8_FULL).set_header(header);
    for r in rows {
        table.add_row(r);
    }
    format!(
        "{} run{}, {} size; medians (min–max)\n{table}",
        runs,
        if runs == 1 { "" } else { "s" },
        if quick { "quick" } else { "full" }
    )
}

pub fn markdown(results: &[(String, Vec<Measured>)], quick: bool, runs: usize) -> String {
    let (header, rows) = rows(results);
    let mut s = format!(
        "{runs} runs, {} size; each cell is the median (min–max); the last column is ours divided by the best peer (for footprint and RSS lower is better, so a ratio under 1 is ours being smaller).\n\n",
        if quick { "quick" } else { "full" }
    );
    s.push_str(&format!("| {} |\n", header.join(" | ")));
    s.push_str(&format!("|{}\n", "---|".repeat(header.len())));
    for r in rows {
        s.push_str(&format!("| {} |\n", r.join(" | ")));
    }
    s
}

//! The workloads, run on one store in one (child) process.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{Result, anyhow};
use serde::{Deserialize, Serialize};

use crate::docs::{Game, Rng, document};
use crate::stores::{self, Store};
use crate::zipf::Zipf;

/// Sizes of one run.
#[derive(Debug, Clone, Copy)]
pub struct Scale {
    pub writers: usize,
    pub puts_per_writer: usize,
    pub bulk_docs: usize,
    pub reads: usize,
    pub mixed_ops: usize,
}

impl Scale {
    pub fn new(quick: bool) -> Self {
        if quick {
            Scale {
                writers: 8,
                puts_per_writer: 60,
                bulk_docs: 20_000,
                reads: 40_000,
                mixed_ops: 4_000,
            }
        } else {
            Scale {
                writers: 8,
                puts_per_writer: 250,
                bulk_docs: 100_000,
                reads: 200_000,
                mixed_ops: 20_000,
            }
        }
    }
}

/// What one run measured (operations per second unless named otherwise).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Measured {
    pub concurrent_puts: f64,
    pub bulk_load: f64,
    pub zipf_reads_1t: f64,
    pub zipf_reads_4t: f64,
    pub mixed_95_5: f64,
    pub prefix_list_keys: f64,
    pub footprint: f64,
    pub peak_rss_mib: f64,
}

#[expect(clippy::cast_precision_loss, reason = "rates as f64")]
fn rate(count: usize, started: Instant) -> f64 {
    count as f64 / started.elapsed().as_secs_f64()
}

fn bulk_key(i: usize) -> String {
    format!("g-{i:08}")
}

fn threads<F>(n: usize, f: F) -> Result<()>
where
    F: Fn(usize) -> Result<()> + Sync,
{
    std::thread::scope(|s| {
        let f = &f;
        let handles: Vec<_> = (0..n).map(|t| s.spawn(move || f(t))).collect();
        handles
            .into_iter()
            .map(|h| h.join().map_err(|_| anyhow!("worker panicked"))?)
            .collect::<Result<Vec<()>>>()
    })?;
    Ok(())
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_bytes(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

/// Runs every workload on store `name`.
pub fn run(name: &str, scale: Scale) -> Result<Measured> {
    let dir = tempfile::tempdir()?;
    let store: Box<dyn Store> = stores::open(name, dir.path())?;
    let live = Mutex::new(HashMap::<String, usize>::new());
    let note = |key: &str, doc: &Game| -> Result<()> {
        let len = serde_json::to_vec(doc)?.len();
        live.lock()
            .map_err(|_| anyhow!("poisoned"))?
            .insert(key.to_owned(), len);
        Ok(())
    };
    let mut m = Measured::default();

    // 1. Durable single stores from concurrent writers.
    let started = Instant::now();
    threads(scale.writers, |t| {
        for i in 0..scale.puts_per_writer {
            let key = format!("w-{t}-{i:06}");
            let doc = document(1_000_000_000 + (t * 1_000_000 + i) as u64);
            store.put(&key, &doc)?;
            note(&key, &doc)?;
        }
        Ok(())
    })?;
    m.concurrent_puts = rate(scale.writers * scale.puts_per_writer, started);

    // 2. Bulk load, 1,000 per batch.
    let started = Instant::now();
    for chunk in (0..scale.bulk_docs).collect::<Vec<_>>().chunks(1000) {
        let items: Vec<(String, Game)> = chunk
            .iter()
            .map(|&i| (bulk_key(i), document(i as u64)))
            .collect();
        store.put_batch(&items)?;
        for (k, d) in &items {
            note(k, d)?;
        }
    }
    m.bulk_load = rate(scale.bulk_docs, started);

    // 3. Zipfian typed reads, 1 and 4 threads.
    let zipf = Zipf::new(scale.bulk_docs, 0.99);
    let read = |t: usize, n: usize| -> Result<()> {
        let mut rng = Rng(0x5EED + t as u64);
        for _ in 0..n {
            let i = zipf.sample(&mut rng);
            let doc = store.get(&bulk_key(i))?;
            anyhow::ensure!(doc.is_some(), "{name}: missing g-{i}");
        }
        Ok(())
    };
    let started = Instant::now();
    read(0, scale.reads / 4)?;
    m.zipf_reads_1t = rate(scale.reads / 4, started);
    let started = Instant::now();
    threads(4, |t| read(t + 1, scale.reads / 4))?;
    m.zipf_reads_4t = rate(scale.reads, started);

    // 4. Mixed 95% reads / 5% durable updates, 4 threads.
    let started = Instant::now();
    threads(4, |t| {
        let mut rng = Rng(0xABC + t as u64);
        for j in 0..scale.mixed_ops / 4 {
            let i = zipf.sample(&mut rng);
            if rng.below(100) < 5 {
                let doc = document(2_000_000_000 + (t * 1_000_000 + j) as u64);
                store.put(&bulk_key(i), &doc)?;
                note(&bulk_key(i), &doc)?;
            } else {
                store.get(&bulk_key(i))?;
            }
        }
        Ok(())
    })?;
    m.mixed_95_5 = rate(scale.mixed_ops, started);

    // 5. Paged prefix listing, 100 keys a page, through the whole bulk set.
    let started = Instant::now();
    let mut after: Option<String> = None;
    let mut listed = 0;
    loop {
        let page = store.list("g-", after.as_deref(), 100)?;
        listed += page.len();
        match page.last() {
            Some(last) if page.len() == 100 => after = Some(last.clone()),
            _ => break,
        }
    }
    anyhow::ensure!(listed == scale.bulk_docs, "{name}: listed {listed} keys");
    m.prefix_list_keys = rate(listed, started);

    // 6. Footprint after settling, and peak memory.
    store.settle()?;
    let logical: usize = live.lock().map_err(|_| anyhow!("poisoned"))?.values().sum();
    #[expect(clippy::cast_precision_loss, reason = "a ratio of byte counts")]
    {
        m.footprint = dir_bytes(dir.path()) as f64 / logical as f64;
    }
    m.peak_rss_mib = peak_rss_mib();
    drop(store);
    Ok(m)
}

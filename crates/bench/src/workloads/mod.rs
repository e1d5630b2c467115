//! The workloads, run on one store in one (child) process. Every operation is generated
//! before its clock starts, so the timings hold only the store's work (and, as a user would
//! pay it, serde_json).

mod measure;
mod plan;

use std::time::Instant;

use anyhow::{Result, ensure};
use serde::{Deserialize, Serialize};

use crate::docs::{Game, document};
use crate::stores::{self, Servers, Store};
use measure::{
    cpu_seconds, dir_bytes, fsync_latency_ms, peak_rss_mib, per_item_us, rate, timed,
    timed_with_cpu,
};
use plan::{Live, Picker, bulk_key};

/// Sizes of one run.
#[derive(Debug, Clone, Copy)]
pub struct Scale {
    pub writers: usize,
    pub puts_per_writer: usize,
    /// The many-writers row: a game server with many tables.
    pub many_writers: usize,
    pub puts_per_many_writer: usize,
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
                many_writers: 64,
                puts_per_many_writer: 8,
                bulk_docs: 20_000,
                reads: 40_000,
                mixed_ops: 8_000,
            }
        } else {
            Scale {
                writers: 8,
                puts_per_writer: 400,
                many_writers: 64,
                puts_per_many_writer: 50,
                bulk_docs: 200_000,
                reads: 300_000,
                mixed_ops: 80_000,
            }
        }
    }
}

/// What one run measured (operations per second unless named otherwise).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Measured {
    pub concurrent_puts: f64,
    #[serde(default)]
    pub concurrent_puts_64: f64,
    /// Median fdatasync of 4 KiB on the run's disk, ms.
    #[serde(default)]
    pub fsync_ms: f64,
    pub bulk_load: f64,
    pub zipf_reads_1t: f64,
    pub zipf_reads_2t: f64,
    pub zipf_reads_4t: f64,
    pub mixed_95_5: f64,
    pub prefix_list_keys: f64,
    #[serde(default)]
    pub prefix_scan_records: f64,
    pub footprint: f64,
    /// The change log's share of the footprint, per logical JSON byte (`None`: the store
    /// has no change feed).
    #[serde(default)]
    pub change_log: Option<f64>,
    pub peak_rss_mib: f64,
    /// CPU time of the whole process per operation, µs (`measure::cpu_seconds`): per durable
    /// put with 8 writers, per bulk-loaded document, per read with 1 and 4 threads, per mixed
    /// operation. For stores on a server, the server's own CPU time is not in it.
    #[serde(default)]
    pub cpu_us: CpuPerOp,
}

/// CPU µs per operation of some workloads (see [`Measured::cpu_us`]).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CpuPerOp {
    pub durable_8: f64,
    pub bulk: f64,
    pub reads_1t: f64,
    pub reads_4t: f64,
    pub mixed: f64,
}

/// Which workloads a run measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phases {
    /// Every workload.
    All,
    /// Only the bulk load and the footprint it leaves: to profile the bulk load alone.
    Bulk,
    /// Only the durable single stores (8 and 64 writers) and the fsync probe: to profile
    /// the writer alone, at full size in a second.
    Durable,
    /// The bulk load, then the listing and the typed scan over it, and the footprint (to
    /// profile the scan alone, e.g. at full size).
    Scan,
    /// The bulk load, then the zipfian typed reads (1, 2 and 4 threads), and the footprint
    /// (to profile the reads alone, e.g. at full size).
    Reads,
}

/// Runs the `phases` of the workloads on store `name`.
pub fn run(name: &str, scale: Scale, servers: &Servers, phases: Phases) -> Result<Measured> {
    let mut dir = tempfile::tempdir()?;
    // For inspecting what a store left on disk (e.g. with sqlite3's dbstat): keep the run's
    // directory and name it on stderr.
    if std::env::var_os("BITCRAPS_BENCH_KEEP").is_some() {
        dir.disable_cleanup(true);
        eprintln!("keeping {}", dir.path().display());
    }
    let store: Box<dyn Store> = stores::open(name, dir.path(), servers)?;
    let mut live = Live::default();
    let mut m = Measured::default();
    match phases {
        Phases::All | Phases::Durable => {}
        Phases::Bulk => {
            bulk_load(store.as_ref(), scale, &mut live, &mut m)?;
            return settle(store, dir.path(), &live, m);
        }
        Phases::Scan => {
            bulk_load(store.as_ref(), scale, &mut live, &mut m)?;
            list_and_scan(name, store.as_ref(), scale, &mut m)?;
            return settle(store, dir.path(), &live, m);
        }
        Phases::Reads => {
            bulk_load(store.as_ref(), scale, &mut live, &mut m)?;
            zipf_reads(store.as_ref(), scale, &mut m)?;
            return settle(store, dir.path(), &live, m);
        }
    }

    // 1. Durable single stores from concurrent writers.
    let workers = plan::puts(scale.writers, scale.puts_per_writer, &mut live)?;
    (m.concurrent_puts, m.cpu_us.durable_8) =
        timed_with_cpu(scale.writers * scale.puts_per_writer, || {
            store.run_workers(&workers)
        })?;
    drop(workers);

    // 1b. The same from many writers, and what one sync costs on this disk.
    let workers = plan::puts(scale.many_writers, scale.puts_per_many_writer, &mut live)?;
    m.concurrent_puts_64 = timed(scale.many_writers * scale.puts_per_many_writer, || {
        store.run_workers(&workers)
    })?;
    drop(workers);
    m.fsync_ms = fsync_latency_ms(dir.path(), 200)?;
    if phases == Phases::Durable {
        return settle(store, dir.path(), &live, m);
    }

    // 2. Bulk load, 1,000 per batch.
    bulk_load(store.as_ref(), scale, &mut live, &mut m)?;

    // 3. Zipfian typed reads from 1, 2 and 4 threads.
    let picker = zipf_reads(store.as_ref(), scale, &mut m)?;

    // 4. Mixed 95% reads / 5% durable updates, 4 threads.
    let workers = plan::mixed(&picker, 4, scale.mixed_ops, &mut live)?;
    (m.mixed_95_5, m.cpu_us.mixed) =
        timed_with_cpu(scale.mixed_ops, || store.run_workers(&workers))?;
    drop(workers);

    // 5. Listing, and scanning the same pages.
    list_and_scan(name, store.as_ref(), scale, &mut m)?;

    // 6. Footprint after the store's own settle step, and peak memory.
    settle(store, dir.path(), &live, m)
}

/// Zipfian typed reads from 1, 2 and 4 threads over the bulk keys; the picker, for the
/// mixed workload.
fn zipf_reads(store: &dyn Store, scale: Scale, m: &mut Measured) -> Result<Picker> {
    let picker = Picker::new(scale.bulk_docs);
    // `BITCRAPS_BENCH_READ_THREADS=1` (a comma list) runs only those phases: to profile the
    // 1-thread read loop alone (the others are left at 0).
    let only: Option<Vec<usize>> = std::env::var("BITCRAPS_BENCH_READ_THREADS")
        .ok()
        .map(|v| v.split(',').filter_map(|t| t.trim().parse().ok()).collect());
    for (threads, slot) in [
        (1, &mut m.zipf_reads_1t),
        (2, &mut m.zipf_reads_2t),
        (4, &mut m.zipf_reads_4t),
    ] {
        if only.as_ref().is_some_and(|o| !o.contains(&threads)) {
            continue;
        }
        let workers = plan::reads(&picker, threads, scale.reads, 0x5EED * threads as u64);
        let (rate, cpu) = timed_with_cpu(scale.reads, || store.run_workers(&workers))?;
        *slot = rate;
        match threads {
            1 => m.cpu_us.reads_1t = cpu,
            4 => m.cpu_us.reads_4t = cpu,
            _ => {}
        }
    }
    Ok(picker)
}

/// Paged prefix listing, 100 keys a page, through the whole bulk set; then the same pages
/// with their documents.
fn list_and_scan(name: &str, store: &dyn Store, scale: Scale, m: &mut Measured) -> Result<()> {
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
    ensure!(listed == scale.bulk_docs, "{name}: listed {listed} keys");
    m.prefix_list_keys = rate(listed, started);

    // 5b. The same pages with their documents (typed): `scan` for ours, list + one read per
    // key for the peers (what they offer through this harness).
    let started = Instant::now();
    let mut after: Option<String> = None;
    let mut scanned = 0;
    loop {
        let page = store.scan("g-", after.as_deref(), 100)?;
        scanned += page.len();
        match page.last() {
            Some((last, _)) if page.len() == 100 => after = Some(last.clone()),
            _ => break,
        }
    }
    ensure!(
        scanned == scale.bulk_docs,
        "{name}: scanned {scanned} records"
    );
    m.prefix_scan_records = rate(scanned, started);
    Ok(())
}

/// The footprint after the store's own settle step, and peak memory.
fn settle(
    store: Box<dyn Store>,
    dir: &std::path::Path,
    live: &Live,
    mut m: Measured,
) -> Result<Measured> {
    store.settle()?;
    let bytes = match store.remote_footprint() {
        Some(bytes) => bytes,
        None => dir_bytes(dir)?,
    };
    #[expect(clippy::cast_precision_loss, reason = "a ratio of byte counts")]
    {
        m.footprint = bytes as f64 / live.bytes() as f64;
        m.change_log = store
            .change_log_bytes(dir)?
            .map(|log| log as f64 / live.bytes() as f64);
    }
    drop(store);
    m.peak_rss_mib = peak_rss_mib()?;
    Ok(m)
}

/// The bulk load, 1,000 per batch (documents made outside the clock, batch by batch).
fn bulk_load(store: &dyn Store, scale: Scale, live: &mut Live, m: &mut Measured) -> Result<()> {
    let mut elapsed = std::time::Duration::ZERO;
    let mut cpu = 0.0;
    for start in (0..scale.bulk_docs).step_by(1000) {
        let items: Vec<(String, Game)> = (start..(start + 1000).min(scale.bulk_docs))
            .map(|i| (bulk_key(i), document(i as u64)))
            .collect();
        for (k, d) in &items {
            live.note(k, d)?;
        }
        let cpu_before = cpu_seconds()?;
        let started = Instant::now();
        store.put_batch(&items)?;
        elapsed += started.elapsed();
        cpu += cpu_seconds()? - cpu_before;
    }
    m.bulk_load = per_second(scale.bulk_docs, elapsed);
    m.cpu_us.bulk = per_item_us(cpu, scale.bulk_docs);
    Ok(())
}

#[expect(clippy::cast_precision_loss, reason = "rates as f64")]
fn per_second(count: usize, elapsed: std::time::Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64()
}

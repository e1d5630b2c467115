//! Rates, peak memory and on-disk bytes.

use std::path::Path;
use std::time::Instant;

use anyhow::Result;

/// Items per second since `started`.
#[expect(clippy::cast_precision_loss, reason = "rates as f64")]
pub fn rate(count: usize, started: Instant) -> f64 {
    count as f64 / started.elapsed().as_secs_f64()
}

/// Runs `f` and returns `count` per second of its wall time.
pub fn timed(count: usize, f: impl FnOnce() -> Result<()>) -> Result<f64> {
    let started = Instant::now();
    f()?;
    Ok(rate(count, started))
}

/// The median time of one durable write on the disk under `dir`: 4 KiB written and
/// `fdatasync`ed, `rounds` times, in milliseconds. `writers / latency` bounds what durable
/// single stores can reach when every writer waits for its own write to be on disk, and
/// group commit reaches it only when each sync serves every waiting writer.
pub fn fsync_latency_ms(dir: &Path, rounds: usize) -> Result<f64> {
    use std::io::{Seek, Write};
    let path = dir.join("fsync-probe");
    let mut file = std::fs::File::create(&path)?;
    let block = [0x5a_u8; 4096];
    let mut samples = Vec::with_capacity(rounds);
    for _ in 0..rounds.max(1) {
        file.rewind()?;
        let started = Instant::now();
        file.write_all(&block)?;
        file.sync_data()?;
        samples.push(started.elapsed().as_secs_f64() * 1e3);
    }
    drop(file);
    std::fs::remove_file(&path)?;
    samples.sort_by(f64::total_cmp);
    Ok(samples.get(samples.len() / 2).copied().unwrap_or(f64::NAN))
}

/// This process's peak resident set (`VmHWM`), in MiB.
pub fn peak_rss_mib() -> Result<f64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .ok_or_else(|| anyhow::anyhow!("no VmHWM in /proc/self/status"))?;
    Ok(kib / 1024.0)
}

/// Bytes of every file under `dir` (apparent sizes).
pub fn dir_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            dir_bytes(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

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

/// Runs `f` and returns `count` per second of its wall time and the CPU time the whole
/// process spent per item (every thread: callers, the store's writer and pools), in µs.
pub fn timed_with_cpu(count: usize, f: impl FnOnce() -> Result<()>) -> Result<(f64, f64)> {
    let cpu = cpu_seconds()?;
    let started = Instant::now();
    f()?;
    let rate = rate(count, started);
    Ok((rate, per_item_us(cpu_seconds()? - cpu, count)))
}

/// `seconds` of CPU time spread over `count` items, in µs each.
#[expect(clippy::cast_precision_loss, reason = "a ratio")]
pub fn per_item_us(seconds: f64, count: usize) -> f64 {
    seconds * 1e6 / count.max(1) as f64
}

/// Clock ticks per second of `/proc/self/stat`'s times (`USER_HZ`, 100 on Linux).
const USER_HZ: f64 = 100.0;

/// The CPU time (user + system) this process has used so far, with the threads that have
/// exited, in seconds (10 ms resolution: meant for phases of a second or more). On a machine
/// shared with other jobs this moves far less than wall time, so the CPU time per operation
/// compares two stores' costs where their rates would only compare their luck.
pub fn cpu_seconds() -> Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // Fields after the command name (which may hold spaces), from field 3 (state) on:
    // utime is field 14 and stime field 15.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| anyhow::anyhow!("/proc/self/stat has no command name"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> Result<f64> {
        Ok(fields
            .get(i)
            .ok_or_else(|| anyhow::anyhow!("/proc/self/stat has no field {}", i + 3))?
            .parse::<f64>()?)
    };
    Ok((ticks(11)? + ticks(12)?) / USER_HZ)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_grows_with_work_done() -> Result<()> {
        let before = cpu_seconds()?;
        // Spin until the CPU time moves (a tick is 10 ms of this thread's time, however busy
        // the machine); if it never moves within 30 s of wall time, it is not counted.
        let started = Instant::now();
        let mut x = 0u64;
        let mut spent = 0.0;
        while spent <= 0.0 && started.elapsed() < std::time::Duration::from_secs(30) {
            for _ in 0..100_000 {
                x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1));
            }
            spent = cpu_seconds()? - before;
        }
        assert!(spent > 0.0, "no CPU time counted for 30 s of spinning");
        assert!((per_item_us(0.5, 1000) - 500.0).abs() < 1e-9);
        Ok(())
    }
}

//! What a cache entry really costs in memory: the measurement behind the cache's
//! `ENTRY_OVERHEAD` (the bytes each entry is charged on top of its own).
//! Run: `cargo run --release --example cache_entry_memory` (Linux: reads /proc/self/statm).
//!
//! Two fills, each in a process of its own: 200,000 entries of 154 bytes
//! (a compressed game document and its key) in a cache large enough for all of them, and a
//! cache that holds about 100,000 of them after 400,000 writes (evicting as it goes, with the
//! ghost entries its admission keeps). The resident memory each adds, per entry held, minus
//! the entry's 154 bytes, is the overhead to charge.

use bitcraps_storage::testing::{ENTRY_OVERHEAD, FilledCache};

const ENTRY_LEN: usize = 154;

fn resident_bytes() -> Result<u64, Box<dyn std::error::Error>> {
    let statm = std::fs::read_to_string("/proc/self/statm")?;
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .ok_or("no resident field in /proc/self/statm")?
        .parse()?;
    Ok(pages * 4096)
}

fn measure(label: &str, capacity: u64, writes: usize) -> Result<(), Box<dyn std::error::Error>> {
    let before = resident_bytes()?;
    let cache = FilledCache::fill(capacity, writes, ENTRY_LEN);
    let after = resident_bytes()?;
    let stats = cache.statistics();
    let held = stats.entry_count.max(1);
    let per_entry = (after.saturating_sub(before)) / held;
    println!(
        "{label}: {held} entries held of {writes} written, {} MiB resident added, \
         {per_entry} bytes an entry, {} beyond its {ENTRY_LEN} bytes; charged {} bytes \
         an entry of a capacity of {} MiB",
        (after.saturating_sub(before)) >> 20,
        per_entry.saturating_sub(ENTRY_LEN as u64),
        stats.weighted_bytes / held,
        capacity >> 20,
    );
    drop(cache);
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The charge per entry is ENTRY_LEN + ENTRY_OVERHEAD: a capacity for ~100,000 of them.
    let room_for_100k = u64::try_from(100_000 * (ENTRY_LEN + ENTRY_OVERHEAD))?;
    match std::env::args().nth(1).as_deref() {
        Some("all") => measure("room for all", 1 << 30, 200_000),
        Some("evicting") => measure("full, evicting", room_for_100k, 400_000),
        // Each fill in a process of its own: memory freed by one would serve the next.
        _ => {
            for scenario in ["all", "evicting"] {
                let status = std::process::Command::new(std::env::current_exe()?)
                    .arg(scenario)
                    .status()?;
                if !status.success() {
                    return Err(format!("{scenario}: {status}").into());
                }
            }
            Ok(())
        }
    }
}

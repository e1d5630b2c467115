//! `--large`: the large-document workload of issue #16, on ours only (SQLite, durable), stored
//! whole (as before), chunked (64 KiB threshold) and chunked with deltas (the defaults):
//!
//! - **Rewrite**: a 1 MiB JSON game log rewritten `versions` times, each version ~130 bytes
//!   longer (one more roll), each store durable. Reported: rewrites per second in a store
//!   already open (the rewrites after the first: the open, the first rewrite's read of the
//!   keyframe and the close are not timed, see `Timer`), and the bytes the process wrote to
//!   the block device (`write_bytes` of `/proc/self/io`, including the open, the first
//!   rewrite, the WAL's checkpoints and the close) per version.
//! - **Rewrite from text**: the same rewrites by a caller that keeps the log as JSON text and
//!   appends each roll's text to it (as the CLI's `import` stores documents as given): the
//!   text is handed to `store_json`, which checks it (from its keyframe's marks when the
//!   version becomes a delta) and stores it as it is, so no `Value` is serialized. Reported:
//!   rewrites per second, timed alike; `--text-versions N` sets how many (to profile them).
//! - **Read**: the latest version read back `reads` times from the database (cache off).
//! - **Share**: a second 1 MiB document that shares 95 % of its content with the first, under
//!   another key: the stored bytes it adds, as a share of the first's.
//! - **History**: what `versions` retained versions of the log would take (a backup history,
//!   the change feed, a point-in-time restore): the sum over the versions of the stored form
//!   the store wrote for each (`metadata().stored_bytes`: a whole zstd blob, or a keyframe's
//!   chunks, or a delta's patch). The live store keeps only the latest; this is the size of
//!   keeping them all in the form they were written.

use std::time::Instant;

use anyhow::{Context, Result};
use bitcraps_storage::{PersistentStorageManager, StorageConfig};
use serde_json::{Value, json};

/// One configuration's numbers.
#[derive(Debug, Default)]
struct Numbers {
    rewrites_per_sec: f64,
    text_rewrites_per_sec: f64,
    disk_bytes_per_version: f64,
    reads_per_sec: f64,
    first_stored: u64,
    second_adds: u64,
    history: u64,
}

/// One roll of the log: about 130 bytes of JSON.
fn roll(game: u64, n: u64) -> Value {
    json!({"n": n, "dice": [n % 6 + 1, (n * 7 + game) % 6 + 1], "shooter": format!("p-{}", n % 7),
           "bets": [{"kind": "pass", "amount": 10 + n % 90}], "point": 4 + n % 7})
}

/// A game log of `rolls` rolls (about 130 bytes each).
fn log(game: u64, rolls: u64) -> Value {
    json!({"game": game, "rolls": (0..rolls).map(|n| roll(game, n)).collect::<Vec<_>>()})
}

/// Appends `roll`'s JSON text to the rolls of `log`, the JSON text of a [`log`].
fn append_roll(log: &mut String, roll: &Value) -> Result<()> {
    let end = log
        .strip_suffix("]}")
        .map(str::len)
        .context("the log's text does not end its rolls")?;
    log.truncate(end);
    log.push(',');
    log.push_str(&serde_json::to_string(roll)?);
    log.push_str("]}");
    Ok(())
}

/// The process's bytes written to storage so far (Linux; 0 elsewhere).
fn disk_written() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("write_bytes: "))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// How a configuration stores large documents: `(chunk_threshold, keyframe_interval)`.
type Mode = (usize, u32);

fn config(dir: &std::path::Path, (chunk_threshold, keyframe_interval): Mode) -> StorageConfig {
    let mut config = StorageConfig::with_data_path(dir);
    config.compression.chunk_threshold = chunk_threshold;
    config.compression.keyframe_interval = keyframe_interval;
    config.maintenance.background_tasks = false;
    config
}

/// Times a loop of rewrites from the end of its first one to the end of its last: the rate
/// of rewrites in a store already open and warm. Opening the store, the first rewrite after
/// it (which reads the key's keyframe back, decodes it and checks its JSON whole, once per
/// open) and the close (the WAL's checkpoint) are not rewrites of a running application, so
/// they are left out; the bytes written still count them.
#[derive(Default)]
struct Timer {
    started: Option<Instant>,
    timed: u64,
}

impl Timer {
    /// One rewrite returned.
    fn rewritten(&mut self) {
        match self.started {
            None => self.started = Some(Instant::now()),
            Some(_) => self.timed += 1,
        }
    }

    /// Rewrites per second after the first (0 with fewer than two).
    fn per_sec(&self) -> f64 {
        match self.started {
            Some(started) if self.timed > 0 => self.timed as f64 / started.elapsed().as_secs_f64(),
            _ => 0.0,
        }
    }
}

async fn measure(
    chunk_threshold: Mode,
    (versions, text_versions): (u64, u64),
    reads: u32,
) -> Result<Numbers> {
    let dir = tempfile::tempdir()?;
    let mut numbers = Numbers::default();
    // About 1 MiB: 8,000 rolls of ~130 bytes.
    let base_rolls = 8_000;
    let first = log(1, base_rolls);
    {
        let s = PersistentStorageManager::open(config(dir.path(), chunk_threshold)).await?;
        s.store("logs", "game-1", &first).await?;
        s.close().await?;
    }
    // Rewrites: one more roll each, durable. The bytes written count the open, every
    // rewrite and the close (its checkpoint); the rate counts the rewrites after the first
    // (see `Timer`).
    let mut doc = first.clone();
    let before = disk_written();
    {
        let s = PersistentStorageManager::open(config(dir.path(), chunk_threshold)).await?;
        let mut timer = Timer::default();
        for v in 0..versions {
            if let Some(rolls) = doc.get_mut("rolls").and_then(Value::as_array_mut) {
                rolls.push(roll(1, base_rolls + v));
            }
            s.store("logs", "game-1", &doc).await?;
            timer.rewritten();
        }
        numbers.rewrites_per_sec = timer.per_sec();
        s.close().await?;
    }
    numbers.disk_bytes_per_version = disk_written().saturating_sub(before) as f64 / versions as f64;

    // The same rewrites from JSON text: the log kept as text, each roll's text appended.
    let mut text = serde_json::to_string(&doc)?;
    {
        let s = PersistentStorageManager::open(config(dir.path(), chunk_threshold)).await?;
        let mut timer = Timer::default();
        for v in 0..text_versions {
            append_roll(&mut text, &roll(1, base_rolls + versions + v))?;
            s.store_json("logs", "game-1", &text).await?;
            timer.rewritten();
        }
        numbers.text_rewrites_per_sec = timer.per_sec();
        s.close().await?;
    }

    // Reads of the latest version from the database: no cache.
    let mut read_config = config(dir.path(), chunk_threshold);
    read_config.cache.size_mb = 0;
    let s = PersistentStorageManager::open(read_config).await?;
    let started = Instant::now();
    for _ in 0..reads {
        let got = s.retrieve_raw("logs", "game-1").await?;
        got.context("the log is missing")?;
    }
    numbers.reads_per_sec = f64::from(reads) / started.elapsed().as_secs_f64();
    let stats = s.statistics().await?.database_stats;
    numbers.first_stored = stats.stored_bytes;
    s.close().await?;

    // A second document sharing 95 % of the first's content (its first 95 % of rolls),
    // under another key, in a fresh store holding only the first.
    let dir = tempfile::tempdir()?;
    let s = PersistentStorageManager::open(config(dir.path(), chunk_threshold)).await?;
    s.store("logs", "game-1", &first).await?;
    let alone = s.statistics().await?.database_stats.stored_bytes;
    let mut second = first.clone();
    if let Some(rolls) = second.get_mut("rolls").and_then(Value::as_array_mut) {
        let keep = rolls.len() * 95 / 100;
        for (n, r) in rolls.iter_mut().enumerate().skip(keep) {
            *r = roll(2, u64::try_from(n).unwrap_or(u64::MAX));
        }
    }
    s.store("logs", "game-2", &second).await?;
    let both = s.statistics().await?.database_stats.stored_bytes;
    numbers.first_stored = alone;
    numbers.second_adds = both.saturating_sub(alone);
    s.close().await?;
    numbers.history = history(chunk_threshold, versions).await?;
    Ok(numbers)
}

/// The stored bytes of `versions` versions of the log (the first and `versions - 1`
/// appends), each in the stored form the store wrote for it, summed.
async fn history(mode: Mode, versions: u64) -> Result<u64> {
    let dir = tempfile::tempdir()?;
    let s = PersistentStorageManager::open(config(dir.path(), mode)).await?;
    let base_rolls = 8_000;
    let mut doc = log(1, base_rolls);
    let mut total = 0u64;
    for v in 0..versions {
        if v > 0
            && let Some(rolls) = doc.get_mut("rolls").and_then(Value::as_array_mut)
        {
            rolls.push(roll(1, base_rolls + v));
        }
        s.store("logs", "game-1", &doc).await?;
        let meta = s
            .metadata("logs", "game-1")
            .await?
            .context("the log is missing")?;
        total = total.saturating_add(meta.stored_bytes);
    }
    s.close().await?;
    Ok(total)
}

/// Runs the workload stored whole, chunked, and chunked with deltas (or only the one `only`
/// names: `whole`, `chunks`, `deltas`), the deltas with `keyframe_interval` when given;
/// returns a Markdown table.
pub fn run(
    quick: bool,
    only: Option<&str>,
    keyframe_interval: Option<u32>,
    text_versions: Option<u64>,
) -> Result<String> {
    let (versions, reads) = if quick { (20, 10) } else { (100, 50) };
    let text_versions = text_versions.unwrap_or(versions);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let defaults = StorageConfig::default().compression;
    let modes: [(&str, Mode); 3] = [
        ("whole (chunk_threshold = 0)", (0, 0)),
        (
            "chunks (keyframe_interval = 0)",
            (defaults.chunk_threshold, 0),
        ),
        (
            "chunks + deltas",
            (
                defaults.chunk_threshold,
                keyframe_interval.unwrap_or(defaults.keyframe_interval),
            ),
        ),
    ];
    let mut all = Vec::new();
    let short = ["whole", "chunks", "deltas"];
    let deltas_interval = modes[2].1.1;
    if let Some(only) = only
        && !short.contains(&only)
    {
        anyhow::bail!("--mode is one of whole, chunks, deltas, not {only}");
    }
    for ((name, mode), short) in modes.into_iter().zip(short) {
        if only.is_some_and(|o| o != short) {
            continue;
        }
        all.push((
            name,
            rt.block_on(measure(mode, (versions, text_versions), reads))?,
        ));
    }
    let mut out = format!(
        "Large documents: a 1 MiB JSON game log, {versions} durable rewrites of ~130-byte \
         appends ({text_versions} from JSON text; each rate counts the rewrites after the \
         first, in a store already open), {reads} uncached reads of the latest version; a \
         second 1 MiB document sharing 95 %. SQLite, Durability::Full; deltas with \
         keyframe_interval = {deltas_interval}.\n\n| |"
    );
    for (name, _) in &all {
        out.push_str(&format!(" {name} |"));
    }
    out.push_str("\n|---|");
    for _ in &all {
        out.push_str("---:|");
    }
    out.push('\n');
    let row = |out: &mut String, label: &str, cell: &dyn Fn(&Numbers) -> String| {
        out.push_str(&format!("| {label} |"));
        for (_, n) in &all {
            out.push_str(&format!(" {} |", cell(n)));
        }
        out.push('\n');
    };
    row(&mut out, "rewrites/s", &|n| {
        format!("{:.1}", n.rewrites_per_sec)
    });
    row(&mut out, "rewrites/s from JSON text (store_json)", &|n| {
        format!("{:.1}", n.text_rewrites_per_sec)
    });
    row(&mut out, "bytes written to disk per version", &|n| {
        format!("{:.0}", n.disk_bytes_per_version)
    });
    row(&mut out, "reads/s of the latest version (no cache)", &|n| {
        format!("{:.1}", n.reads_per_sec)
    });
    row(&mut out, "stored bytes of the first document", &|n| {
        n.first_stored.to_string()
    });
    row(
        &mut out,
        "stored bytes the 95 %-shared second document adds",
        &|n| {
            let share = if n.first_stored > 0 {
                100.0 * n.second_adds as f64 / n.first_stored as f64
            } else {
                0.0
            };
            format!("{} ({share:.0} %)", n.second_adds)
        },
    );
    row(
        &mut out,
        &format!("stored bytes of {versions} retained versions (each as written)"),
        &|n| n.history.to_string(),
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The text rewrite stores what the `Value` rewrite stores, byte for byte.
    #[test]
    fn appending_a_roll_to_the_text_is_serializing_the_longer_log() -> Result<()> {
        let mut doc = log(1, 3);
        let mut text = serde_json::to_string(&doc)?;
        append_roll(&mut text, &roll(1, 3))?;
        if let Some(rolls) = doc.get_mut("rolls").and_then(Value::as_array_mut) {
            rolls.push(roll(1, 3));
        }
        assert_eq!(text, serde_json::to_string(&doc)?);
        assert!(append_roll(&mut "{}".to_owned(), &roll(1, 0)).is_err());
        Ok(())
    }
}

//! `--prefetch`: the predictive-prefetching workload of issue #15, on ours (SQLite) with
//! prefetching off and on; the peers have no cache of ours to prefetch into, so they do not
//! run it.
//!
//! Documents (the harness's ~1 KiB games, `docs::document`): `games` games, each with 4
//! player and 6 bet documents in the `players` and `bets` collections (keys
//! `game-NNNNNNNNNN-pK`, `...-bK`), and a `ledger` collection of `ledger` documents. The cache
//! (4 MiB) holds about a sixth of them. Single reader, so the hit rate is the reader's.
//!
//! - **Sessions**: a game picked by Zipf(0.8), then its players, then its bets — `warmup`
//!   sessions not measured, then `sessions` measured (co-access: the partners of a game that
//!   fell out of the cache are prefetched when it misses).
//! - **Walk**: the ledger read in key order, once (sequential readahead).
//!
//! Reported per mode (medians of the runs): hit rate of the sessions, of the walk and of both,
//! prefetched documents and the share of them used (both since the store opened), and
//! sessions per second.

use std::time::Instant;

use anyhow::Result;
use bitcraps_storage::{PersistentStorageManager, StorageConfig, StorageStatistics};

use crate::docs::{Game, Rng, document};
use crate::zipf::Zipf;

const PLAYERS: u64 = 4;
const BETS: u64 = 6;

struct Scale {
    games: u64,
    ledger: u64,
    warmup: u64,
    sessions: u64,
}

#[derive(Debug, Default, Clone, Copy)]
struct Numbers {
    session_hit_rate: f64,
    walk_hit_rate: f64,
    hit_rate: f64,
    issued: u64,
    used_share: f64,
    sessions_per_sec: f64,
}

fn game_key(g: u64) -> String {
    format!("game-{g:010}")
}

fn config(dir: &std::path::Path, prefetch: bool) -> StorageConfig {
    let mut config = StorageConfig::with_data_path(dir);
    config.maintenance.background_tasks = false;
    config.cache.size_mb = 4;
    config.cache.prefetch = prefetch;
    config
}

async fn load(dir: &std::path::Path, scale: &Scale) -> Result<()> {
    let s = PersistentStorageManager::open(config(dir, false)).await?;
    let mut n = 0u64;
    let mut next = || {
        n += 1;
        document(n)
    };
    for chunk in (0..scale.games).collect::<Vec<_>>().chunks(100) {
        let mut games = Vec::new();
        let mut players = Vec::new();
        let mut bets = Vec::new();
        for &g in chunk {
            games.push((game_key(g), next()));
            for p in 0..PLAYERS {
                players.push((format!("{}-p{p}", game_key(g)), next()));
            }
            for b in 0..BETS {
                bets.push((format!("{}-b{b}", game_key(g)), next()));
            }
        }
        s.store_batch("games", &games).await?;
        s.store_batch("players", &players).await?;
        s.store_batch("bets", &bets).await?;
    }
    for chunk in (0..scale.ledger).collect::<Vec<_>>().chunks(1000) {
        let entries: Vec<(String, Game)> = chunk
            .iter()
            .map(|&i| (format!("entry-{i:010}"), next()))
            .collect();
        s.store_batch("ledger", &entries).await?;
    }
    s.close().await?;
    Ok(())
}

async fn session(s: &PersistentStorageManager, g: u64) -> Result<()> {
    let key = game_key(g);
    s.retrieve::<Game>("games", &key).await?;
    for p in 0..PLAYERS {
        s.retrieve::<Game>("players", &format!("{key}-p{p}"))
            .await?;
    }
    for b in 0..BETS {
        s.retrieve::<Game>("bets", &format!("{key}-b{b}")).await?;
    }
    Ok(())
}

fn rate(before: &StorageStatistics, after: &StorageStatistics) -> f64 {
    let hits = after.cache_hits - before.cache_hits;
    let misses = after.cache_misses - before.cache_misses;
    if hits + misses == 0 {
        0.0
    } else {
        hits as f64 / (hits + misses) as f64
    }
}

async fn measure(scale: &Scale, dir: &std::path::Path, prefetch: bool) -> Result<Numbers> {
    let s = PersistentStorageManager::open(config(dir, prefetch)).await?;
    let zipf = Zipf::new(usize::try_from(scale.games)?, 0.8);
    let mut rng = Rng(0x5EED_0015);
    for _ in 0..scale.warmup {
        session(&s, zipf.sample(&mut rng) as u64).await?;
    }
    s.prefetch_settled().await;
    let start = s.statistics().await?;
    let started = Instant::now();
    for _ in 0..scale.sessions {
        session(&s, zipf.sample(&mut rng) as u64).await?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    s.prefetch_settled().await;
    let sessions = s.statistics().await?;
    for i in 0..scale.ledger {
        s.retrieve::<Game>("ledger", &format!("entry-{i:010}"))
            .await?;
    }
    s.prefetch_settled().await;
    let end = s.statistics().await?;
    // Since the store opened: a document prefetched in the warm-up may be used later.
    let (issued, used) = (end.prefetch_issued, end.prefetch_used);
    s.close().await?;
    Ok(Numbers {
        session_hit_rate: rate(&start, &sessions),
        walk_hit_rate: rate(&sessions, &end),
        hit_rate: rate(&start, &end),
        issued,
        used_share: if issued == 0 {
            0.0
        } else {
            used as f64 / issued as f64
        },
        sessions_per_sec: scale.sessions as f64 / elapsed,
    })
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// A table row: its label, the number it shows, and whether that is a percentage.
type Row = (&'static str, fn(&Numbers) -> f64, bool);

/// Runs the workload `runs` times in each mode; returns a Markdown table of the medians.
pub fn run(quick: bool, runs: usize) -> Result<String> {
    let scale = if quick {
        Scale {
            games: 1_000,
            ledger: 500,
            warmup: 1_000,
            sessions: 2_000,
        }
    } else {
        Scale {
            games: 4_000,
            ledger: 3_000,
            warmup: 4_000,
            sessions: 8_000,
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut modes: Vec<(&str, Vec<Numbers>)> =
        vec![("prefetch off", Vec::new()), ("prefetch on", Vec::new())];
    for run in 0..runs.max(1) {
        // One data set per run, read in both modes (each opens it with a cold cache).
        let dir = tempfile::tempdir()?;
        rt.block_on(load(dir.path(), &scale))?;
        for (n, (name, samples)) in modes.iter_mut().enumerate() {
            eprintln!("run {}/{runs}: {name}", run + 1);
            samples.push(rt.block_on(measure(&scale, dir.path(), n == 1))?);
        }
    }
    let mut out = format!(
        "Prefetching: {} games × (1 game + {PLAYERS} players + {BETS} bets) and a {}-document \
         ledger, 4 MiB cache, SQLite; {} warm-up then {} measured sessions (Zipf 0.8 over \
         games), then one walk of the ledger in key order; one reader; medians of {} runs.\n\n\
         | | prefetch off | prefetch on | on / off |\n|---|---:|---:|---:|\n",
        scale.games,
        scale.ledger,
        scale.warmup,
        scale.sessions,
        runs.max(1)
    );
    let med = |samples: &[Numbers], f: fn(&Numbers) -> f64| median(samples.iter().map(f).collect());
    let rows: [Row; 6] = [
        ("hit rate, sessions", |n| n.session_hit_rate, true),
        ("hit rate, walk", |n| n.walk_hit_rate, true),
        ("hit rate, both", |n| n.hit_rate, true),
        ("documents prefetched", |n| n.issued as f64, false),
        ("share of prefetched documents used", |n| n.used_share, true),
        ("sessions/s", |n| n.sessions_per_sec, false),
    ];
    let (off, on) = (&modes[0].1, &modes[1].1);
    for (label, f, percent) in rows {
        let (a, b) = (med(off, f), med(on, f));
        let cell = |v: f64| {
            if percent {
                format!("{:.1} %", 100.0 * v)
            } else {
                format!("{v:.0}")
            }
        };
        let ratio = if a > 0.0 {
            format!("{:.2}×", b / a)
        } else {
            "—".to_owned()
        };
        out.push_str(&format!(
            "| {label} | {} | {} | {ratio} |\n",
            cell(a),
            cell(b)
        ));
    }
    Ok(out)
}

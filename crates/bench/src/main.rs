//! Benchmarks bitcraps-storage against rusqlite, redb, sled and fjall on the same documents,
//! durability and thread counts. Each store runs in its own child process (so peak RSS is its
//! own), several times; the table shows medians, the spread (min–max), and our ratio.
//!
//! ```text
//! cargo run --release -p bitcraps-storage-bench -- [--quick] [--runs N] [--stores a,b]
//!     [--markdown FILE] [--postgres URL [--redis URL]]
//! ```
//!
//! `--postgres URL` (or `BITCRAPS_TEST_POSTGRES_URL`) adds ours on PostgreSQL
//! (`bitcraps-storage-pg`), and with `--redis URL` (or `BITCRAPS_TEST_REDIS_URL`) also ours on
//! PostgreSQL with the Redis cache tier (`bitcraps-storage-pg-redis`); every run gets a fresh
//! schema (and Redis namespace), created and dropped by the benchmark.
//!
//! `--large` runs only the large-document workload (issue #16: a 1 MiB game log rewritten
//! with small appends, chunking off and on; `large.rs`) and prints its table.
//!
//! `--prefetch` runs only the predictive-prefetching workload (issue #15: a game, then its
//! players and bets, and a walk in key order; ours with prefetching off and on; `prefetch.rs`)
//! `--runs` times (default 3) and prints its table.
//!
//! `--child NAME` (hidden) runs every workload on one store and prints its measurements as
//! JSON; the parent re-executes itself with it once per store and run.

mod docs;
mod large;
mod prefetch;
mod report;
mod stores;
mod workloads;
mod zipf;

use std::process::Command;

use anyhow::{Context, Result, bail};

use stores::Servers;
use workloads::{Measured, Scale};

/// The value after `flag`, if the flag is given.
fn flag_value(args: &[String], flag: &str) -> Result<Option<String>> {
    match args.iter().position(|a| a == flag) {
        Some(p) => Ok(Some(
            args.get(p + 1)
                .with_context(|| format!("{flag} needs a value"))?
                .clone(),
        )),
        None => Ok(None),
    }
}

/// `--postgres`/`--redis`, else the test environment's variables.
fn servers(args: &[String]) -> Result<Servers> {
    let postgres = flag_value(args, "--postgres")?;
    let redis = flag_value(args, "--redis")?;
    if redis.is_some() && postgres.is_none() {
        bail!("--redis adds ours on PostgreSQL with the Redis tier: it needs --postgres too");
    }
    Ok(Servers {
        postgres: postgres.or_else(|| std::env::var("BITCRAPS_TEST_POSTGRES_URL").ok()),
        redis: redis.or_else(|| std::env::var("BITCRAPS_TEST_REDIS_URL").ok()),
    })
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let servers = servers(&args)?;
    if args.iter().any(|a| a == "--large") {
        println!("{}", large::run(quick)?);
        return Ok(());
    }
    if args.iter().any(|a| a == "--prefetch") {
        let runs: usize = match args.iter().position(|a| a == "--runs") {
            Some(p) => args.get(p + 1).context("--runs needs a number")?.parse()?,
            None => 3,
        };
        println!("{}", prefetch::run(quick, runs)?);
        return Ok(());
    }
    if let Some(pos) = args.iter().position(|a| a == "--child") {
        let name = args.get(pos + 1).context("--child needs a store name")?;
        let measured = workloads::run(name, Scale::new(quick), &servers)?;
        println!("{}", serde_json::to_string(&measured)?);
        return Ok(());
    }
    let runs: usize = match args.iter().position(|a| a == "--runs") {
        Some(p) => args.get(p + 1).context("--runs needs a number")?.parse()?,
        None => 3,
    };
    let markdown = args
        .iter()
        .position(|a| a == "--markdown")
        .and_then(|p| args.get(p + 1).cloned());
    let only: Vec<&str> = match args.iter().position(|a| a == "--stores") {
        Some(p) => args
            .get(p + 1)
            .context("--stores needs a list")?
            .split(',')
            .collect(),
        None => {
            let mut all = stores::ALL.to_vec();
            if servers.postgres.is_some() {
                all.insert(1, stores::OURS_POSTGRES);
                if servers.redis.is_some() {
                    all.insert(2, stores::OURS_POSTGRES_REDIS);
                }
                all.push(stores::PEER_POSTGRES);
            }
            all
        }
    };
    let exe = std::env::current_exe()?;
    let mut results: Vec<(String, Vec<Measured>)> =
        only.iter().map(|s| (s.to_string(), Vec::new())).collect();
    for run in 0..runs {
        for (name, samples) in &mut results {
            eprintln!("run {}/{runs}: {name}", run + 1);
            let mut cmd = Command::new(&exe);
            cmd.arg("--child").arg(name.as_str());
            if quick {
                cmd.arg("--quick");
            }
            if let Some(url) = &servers.postgres {
                cmd.arg("--postgres").arg(url);
                if let Some(url) = &servers.redis {
                    cmd.arg("--redis").arg(url);
                }
            }
            let out = cmd.output()?;
            if !out.status.success() {
                bail!("{name} failed: {}", String::from_utf8_lossy(&out.stderr));
            }
            samples.push(serde_json::from_slice(&out.stdout)?);
        }
    }
    let table = report::render(&results, quick, runs);
    println!("{table}");
    if let Some(path) = markdown {
        std::fs::write(&path, report::markdown(&results, quick, runs))?;
        eprintln!("wrote {path}");
    }
    Ok(())
}

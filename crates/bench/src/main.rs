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
//! `--child-timeout SECS` limits each child (default: 20 minutes for a full run of every
//! workload, 10 for one phase, 5 and 2.5 with `--quick`): a child still running
//! then is killed, its run is recorded as timed out (the table's caption says so, and that
//! store's cells are medians over the runs that finished), and the other runs go on. The
//! parent then drops the PostgreSQL schema (and Redis keys) the killed child left.
//! `BITCRAPS_BENCH_CHILD_HANG=NAME` (hidden, for the harness's own test) makes the child of
//! that store open it and hang instead of measuring.
//!
//! `--child NAME` (hidden) runs every workload on one store and prints its measurements as
//! JSON; the parent re-executes itself with it once per store and run. `--bulk` runs only the
//! bulk load (and the footprint it leaves), with `--child` or across stores: to profile it
//! (`valgrind --tool=callgrind … --child bitcraps-storage --quick --bulk`) or compare it alone.
//! `--durable` likewise runs only the durable single stores (8 and 64 writers).
//! `--scan` runs the bulk load, then only the listing and the typed scan over it: to profile
//! the scan at full size without the other workloads.
//! `--reads` runs the bulk load, then only the zipfian typed reads (1, 2 and 4 threads): to
//! profile the reads (and the cache's hit rate) at full size without the other workloads.
//! With `BITCRAPS_BENCH_READ_THREADS=1` (a comma list of 1, 2, 4) only those read phases run,
//! and `BITCRAPS_BENCH_CACHE_MB=N` sizes our cache (default 64): e.g. a `--quick` run whose
//! cache misses as often as the full-size run's, cheap enough for callgrind.

mod child;
mod docs;
mod large;
mod prefetch;
mod report;
mod stores;
mod workloads;
mod zipf;

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use stores::Servers;
use workloads::{Measured, Phases, Scale};

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

/// Drops what a killed child (started with `tag`, `stores::TAG_VAR`) left on the servers
/// (its PostgreSQL schema and Redis keys), and says so; a failure is reported, not fatal (the
/// table is still worth printing).
fn drop_left_schemas(servers: &Servers, tag: &str) {
    let Some(postgres) = servers.postgres.as_deref() else {
        return;
    };
    let dropped = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| {
            rt.block_on(stores::drop_left_by(
                postgres,
                servers.redis.as_deref(),
                tag,
            ))
        });
    match dropped {
        Ok(names) => {
            for name in names {
                eprintln!("dropped schema {name}, left by the killed child");
            }
        }
        Err(e) => eprintln!("could not drop what the killed child left: {e:#}"),
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

const USAGE: &str = "\
usage: bitcraps-storage-bench [--quick] [--runs N] [--stores a,b] [--markdown FILE]
                              [--postgres URL [--redis URL]] [--child-timeout SECS]
       bitcraps-storage-bench --large [--quick] [--mode whole|chunks|deltas]
                              [--keyframe-interval N] [--text-versions N]
       bitcraps-storage-bench --prefetch [--quick] [--runs N]
       bitcraps-storage-bench --bulk [--quick] [--runs N] [--stores a,b]
       bitcraps-storage-bench --durable [--quick] [--runs N] [--stores a,b]
       bitcraps-storage-bench --scan [--quick] [--runs N] [--stores a,b]
       bitcraps-storage-bench --reads [--quick] [--runs N] [--stores a,b]

  --quick          small sizes (20,000 documents instead of 200,000)
  --runs N         runs per store (default 3); the table shows medians and min-max
  --stores a,b     only these stores (default: every embedded store, and ours on
                   PostgreSQL with the peer postgres-jsonb when a server is given)
  --markdown FILE  also write the tables as Markdown
  --child-timeout SECS
                   kill a store's child still running after SECS and record that run
                   as timed out (default 1200, 600 for one phase; 300 and 150 with
                   --quick)
  --postgres URL   PostgreSQL server (default: $BITCRAPS_TEST_POSTGRES_URL); ours and
                   the peer both connect with the URL's sslmode, sslmode=disable (plain)
                   when it names none
  --redis URL      Redis for ours on PostgreSQL (default: $BITCRAPS_TEST_REDIS_URL)
  --large          the large-document workload only (issue #16)
  --mode M         with --large: one configuration alone (whole, chunks or deltas)
  --keyframe-interval N
                   with --large: the deltas configuration's keyframe_interval (default:
                   the library's default)
  --text-versions N
                   with --large: how many rewrites from JSON text (default: as many as
                   the other rewrites, 100 or 20 with --quick; more to profile them)
  --prefetch       the prefetching workload only (issue #15), prefetching off and on
  --bulk           the bulk load only (and its footprint); the other rows stay 0
  --durable        the durable single stores only (8 and 64 writers, the fsync probe);
                   the other rows stay 0
  --scan           the bulk load, then the listing and the typed scan only (and the
                   footprint); the other rows stay 0
  --reads          the bulk load, then the zipfian typed reads only (and the
                   footprint); the other rows stay 0";

/// Flags that take a value, and flags that do not.
const WITH_VALUE: [&str; 10] = [
    "--mode",
    "--keyframe-interval",
    "--text-versions",
    "--runs",
    "--stores",
    "--markdown",
    "--postgres",
    "--redis",
    "--child",
    "--child-timeout",
];
const SWITCHES: [&str; 7] = [
    "--quick",
    "--large",
    "--prefetch",
    "--bulk",
    "--durable",
    "--scan",
    "--reads",
];

/// Each child's time limit: `--child-timeout SECS` (at least 1), else the mode's default.
fn child_limit(args: &[String], quick: bool, one_phase: bool) -> Result<Duration> {
    Ok(match flag_value(args, "--child-timeout")? {
        Some(secs) => match secs.parse().context("--child-timeout needs seconds")? {
            0 => bail!("--child-timeout must be at least 1 second (0 would kill every run)"),
            secs => Duration::from_secs(secs),
        },
        None => child::default_timeout(quick, one_phase),
    })
}

/// Refuses what the benchmark does not take, so a mistyped flag never starts a long run with
/// the defaults. `Ok(false)` when help was asked for (and printed).
fn check_args(args: &[String]) -> Result<bool> {
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        if arg == "--help" || arg == "-h" {
            println!("{USAGE}");
            return Ok(false);
        }
        if WITH_VALUE.contains(&arg.as_str()) {
            rest.next()
                .with_context(|| format!("{arg} needs a value\n\n{USAGE}"))?;
        } else if !SWITCHES.contains(&arg.as_str()) {
            bail!("unknown argument {arg:?}\n\n{USAGE}");
        }
    }
    Ok(true)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !check_args(&args)? {
        return Ok(());
    }
    let quick = args.iter().any(|a| a == "--quick");
    let phases = if args.iter().any(|a| a == "--bulk") {
        Phases::Bulk
    } else if args.iter().any(|a| a == "--durable") {
        Phases::Durable
    } else if args.iter().any(|a| a == "--scan") {
        Phases::Scan
    } else if args.iter().any(|a| a == "--reads") {
        Phases::Reads
    } else {
        Phases::All
    };
    let servers = servers(&args)?;
    if args.iter().any(|a| a == "--large") {
        // `--mode whole|chunks|deltas`: one configuration alone (to profile it).
        let mode = args
            .iter()
            .position(|a| a == "--mode")
            .and_then(|p| args.get(p + 1))
            .map(String::as_str);
        let interval: Option<u32> = match args.iter().position(|a| a == "--keyframe-interval") {
            Some(p) => Some(
                args.get(p + 1)
                    .context("--keyframe-interval needs a number")?
                    .parse()?,
            ),
            None => None,
        };
        let text_versions: Option<u64> = match args.iter().position(|a| a == "--text-versions") {
            Some(p) => Some(
                args.get(p + 1)
                    .context("--text-versions needs a number")?
                    .parse()?,
            ),
            None => None,
        };
        println!("{}", large::run(quick, mode, interval, text_versions)?);
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
        if std::env::var("BITCRAPS_BENCH_CHILD_HANG").is_ok_and(|hang| hang == *name) {
            // The harness's own test: a child that opens its store (on PostgreSQL: creates
            // its schema) and never finishes.
            let dir = tempfile::tempdir()?;
            let _store = stores::open(name, dir.path(), &servers)?;
            eprintln!("{name} opened; hanging");
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        let measured = workloads::run(name, Scale::new(quick), &servers, phases)?;
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
    let limit = child_limit(&args, quick, phases != Phases::All)?;
    let exe = std::env::current_exe()?;
    let mut results: Vec<(String, Vec<Measured>)> =
        only.iter().map(|s| (s.to_string(), Vec::new())).collect();
    let mut timed_out = vec![0; results.len()];
    for run in 0..runs {
        for ((name, samples), timed_out) in results.iter_mut().zip(&mut timed_out) {
            eprintln!("run {}/{runs}: {name}", run + 1);
            let mut cmd = Command::new(&exe);
            let tag = stores::child_tag();
            cmd.arg("--child")
                .arg(name.as_str())
                .env(stores::TAG_VAR, &tag);
            if quick {
                cmd.arg("--quick");
            }
            match phases {
                Phases::All => {}
                Phases::Bulk => {
                    cmd.arg("--bulk");
                }
                Phases::Durable => {
                    cmd.arg("--durable");
                }
                Phases::Scan => {
                    cmd.arg("--scan");
                }
                Phases::Reads => {
                    cmd.arg("--reads");
                }
            }
            if let Some(url) = &servers.postgres {
                cmd.arg("--postgres").arg(url);
                if let Some(url) = &servers.redis {
                    cmd.arg("--redis").arg(url);
                }
            }
            let out = match child::run(&mut cmd, limit)? {
                child::Ended::Exited(out) => out,
                child::Ended::TimedOut { stderr } => {
                    eprintln!(
                        "run {}/{runs}: {name} timed out after {} s, killed; the end of its \
                         stderr:\n{}",
                        run + 1,
                        limit.as_secs(),
                        child::tail(&stderr, 20)
                    );
                    drop_left_schemas(&servers, &tag);
                    *timed_out += 1;
                    continue;
                }
            };
            if !out.status.success() {
                bail!("{name} failed: {}", String::from_utf8_lossy(&out.stderr));
            }
            samples.push(serde_json::from_slice(&out.stdout)?);
        }
    }
    let timed_out: Vec<(String, usize)> = results
        .iter()
        .zip(timed_out)
        .filter(|(_, n)| *n > 0)
        .map(|((name, _), n)| (name.clone(), n))
        .collect();
    let lost = report::TimedOut {
        runs: &timed_out,
        limit,
    };
    let table = report::render(&results, quick, runs, &lost);
    println!("{table}");
    if let Some(path) = markdown {
        std::fs::write(&path, report::markdown(&results, quick, runs, &lost))?;
        eprintln!("wrote {path}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|a| (*a).to_owned()).collect()
    }

    #[test]
    fn help_and_unknown_flags_never_start_a_run() -> Result<()> {
        assert!(!check_args(&args(&["--help"]))?);
        assert!(!check_args(&args(&["--quick", "-h"]))?);
        let unknown = check_args(&args(&["--quik"])).err().map(|e| e.to_string());
        assert!(
            unknown.as_deref().is_some_and(|e| e.contains("--quik")),
            "{unknown:?}"
        );
        assert!(
            check_args(&args(&["--runs"])).is_err(),
            "a value is missing"
        );
        assert!(check_args(&args(&[
            "--quick",
            "--runs",
            "2",
            "--stores",
            "rusqlite,sled",
            "--markdown",
            "out.md"
        ]))?);
        assert!(check_args(&args(&["--large"]))?);
        assert!(check_args(&args(&["--large", "--mode", "deltas"]))?);
        assert!(check_args(&args(&[
            "--large",
            "--keyframe-interval",
            "64"
        ]))?);
        assert!(check_args(&args(&["--prefetch", "--runs", "1"]))?);
        assert!(check_args(&args(&[
            "--child", "fjall", "--quick", "--bulk"
        ]))?);
        assert!(check_args(&args(&["--durable", "--runs", "3"]))?);
        assert!(check_args(&args(&["--quick", "--child-timeout", "60"]))?);
        assert_eq!(
            child_limit(&args(&["--child-timeout", "60"]), true, false)?,
            Duration::from_secs(60)
        );
        assert!(child_limit(&args(&["--child-timeout", "0"]), true, false).is_err());
        assert!(child_limit(&args(&["--child-timeout", "soon"]), true, false).is_err());
        assert!(check_args(&args(&["--child", "fjall", "--scan"]))?);
        assert!(check_args(&args(&[
            "--child", "redb", "--reads", "--quick"
        ]))?);
        Ok(())
    }
}

//! `demo`: simulated BitCraps tables — games created, players joining, bets placed and
//! settled, dice rolled, finished games archived, identical lobby listings — played through the
//! public API from several concurrent tasks, then a report of throughput, latency, cache,
//! compression, deduplication, size and integrity. Every chip moves between a player and the
//! house bank (the table's tray, refilled from the vault) in one atomic `apply`, so the
//! report can check that play neither created nor destroyed any: the sum of all balances plus the bank must equal the opening total, in the
//! store and in its restored backup; the demo fails when it does not.
//!
//! The demo runs in a fresh temporary directory (removed afterwards unless `--keep`), so it
//! never touches real data; `--data`/`--url` on the command line point it at a store instead,
//! which must hold no records unless `--force`.

mod backup;
mod latency;
mod ledger;
mod lifecycle;
mod model;
mod report;
mod table;

use std::time::Instant;

use anyhow::{Context, Result};
use bitcraps_storage::BackendTarget;

use crate::cli::DemoArgs;
use crate::commands::{self, print};
use crate::progress::Ui;
use crate::render;
use crate::settings::Settings;
use ledger::{Holdings, Invariant};
use report::Report;
use table::{Outcome, Table};

/// Runs the demo and prints its report on stdout.
pub async fn run(settings: &Settings, args: &DemoArgs, ui: &Ui) -> Result<()> {
    let mut config = settings.config.clone();
    let temp = if settings.location_from_flags {
        None
    } else {
        let dir = tempfile::Builder::new()
            .prefix("bitcraps-demo-")
            .tempdir()
            .context("cannot create a temporary directory")?;
        config.database.data_path = dir.path().to_path_buf();
        config.database.url = None;
        Some(dir)
    };
    let location = commands::describe(&config);
    let db_file = match config.target() {
        Ok(BackendTarget::Sqlite { path }) => Some(path),
        _ => None,
    };
    ui.suspend(|| crate::notes::note!("demo store: {location}"));

    let storage = commands::open(config).await?;
    let server = match args.metrics_addr {
        Some(addr) => serve_metrics(addr, &storage).await,
        None => Ok(None),
    };
    let server = match server {
        Ok(server) => server,
        Err(e) => {
            // The store is closed either way; the serving error is the one reported.
            let _ = storage.close().await;
            return Err(e);
        }
    };
    if temp.is_none() && !args.force {
        let refused = refuse_records(&storage, &location).await;
        if refused.is_err() {
            let closed = storage.close().await.context("closing the store");
            return refused.and(closed);
        }
    }
    let started = Instant::now();
    let played = match lifecycle::prepare(&storage, args.lobby_ttl, args.roll_ttl).await {
        Ok(run) => match ledger::open(&storage).await {
            Ok(opening) => play(&storage, args, ui)
                .await
                .map(|outcome| (run, opening, outcome)),
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    let elapsed = started.elapsed();
    let settled = match played {
        Ok((run, opening, outcome)) => lifecycle::settle(&storage, run)
            .await
            .map(|expirations| (opening, outcome, expirations)),
        Err(e) => Err(e),
    };
    let checked = match settled {
        Ok((opening, outcome, expirations)) => {
            collect(&storage).await.map(|(stats, consistency, chips)| {
                (
                    outcome,
                    stats,
                    consistency,
                    Invariant::check(opening, chips),
                    expirations,
                )
            })
        }
        Err(e) => Err(e),
    };
    let backup = match &checked {
        Ok(_) => Some(backup::round_trip(&storage, ui).await),
        Err(_) => None,
    };
    if let Some(server) = server {
        server.abort();
    }
    let closed = storage.close().await.context("closing the store");
    let (outcome, stats, consistency, chips, expirations) = checked?;
    let backup = backup.transpose()?;
    closed?;

    let report = Report {
        location,
        temporary: temp.is_some(),
        tasks: args.tasks,
        seed: args.seed,
        elapsed,
        outcome,
        stats,
        consistency,
        chips,
        expirations,
        backup,
        file_bytes_after_close: db_file
            .and_then(|p| std::fs::metadata(p).ok())
            .map(|m| m.len()),
    };
    if args.json {
        print(&format!(
            "{}\n",
            serde_json::to_string_pretty(&report.json())?
        ))?;
    } else {
        print(&format!("{}\n", render::key_value(&report.rows())))?;
    }

    if let Some(dir) = temp {
        if args.keep {
            let kept = dir.keep();
            crate::notes::note!("kept the demo store in {}", kept.display());
        } else {
            dir.close()
                .context("removing the demo's temporary directory")?;
        }
    }
    report.verdict()
}

/// Serves the demo store's metrics at `addr` while it plays.
async fn serve_metrics(
    addr: std::net::SocketAddr,
    storage: &bitcraps_storage::PersistentStorageManager,
) -> Result<Option<tokio::task::JoinHandle<()>>> {
    let handle = crate::exporter::install()?;
    let server = crate::exporter::serve(addr, handle, storage.clone()).await?;
    Ok(Some(server))
}

/// Fails (exit 1, like `migrate` into a store that holds records) when the store named by
/// `--data`/`--url` already holds records: the demo would mix its own into them and replace
/// those under the keys it uses.
async fn refuse_records(
    storage: &bitcraps_storage::PersistentStorageManager,
    location: &str,
) -> Result<()> {
    let records = storage
        .statistics()
        .await
        .context("counting the store's records")?
        .database_stats
        .record_count;
    if records > 0 {
        let noun = if records == 1 { "record" } else { "records" };
        anyhow::bail!(
            "the store at {location} already holds {records} {noun}; the demo would add its \
             own and replace any under the keys it uses. Point --data at an empty directory, \
             leave --data out for a temporary store, or give --force to play into it anyway"
        );
    }
    Ok(())
}

/// Plays every table concurrently; each writes about `records / tasks` records.
async fn play(
    storage: &bitcraps_storage::PersistentStorageManager,
    args: &DemoArgs,
    ui: &Ui,
) -> Result<Outcome> {
    let budget = args.records.div_ceil(u64::from(args.tasks)).max(1);
    let bar = ui.bar(Some(args.records), "records", "playing");
    let mut tasks = tokio::task::JoinSet::new();
    for id in 0..args.tasks {
        let table = Table::new(id, args.seed, storage.clone(), bar.clone(), budget);
        tasks.spawn(table.run());
    }
    let mut total = Outcome::default();
    while let Some(joined) = tasks.join_next().await {
        total.merge(joined.context("a table task panicked")??);
    }
    bar.finish_and_clear();
    Ok(total)
}

async fn collect(
    storage: &bitcraps_storage::PersistentStorageManager,
) -> Result<(
    bitcraps_storage::StorageStatistics,
    bitcraps_storage::ConsistencyReport,
    Holdings,
)> {
    let stats = storage
        .statistics()
        .await
        .context("collecting statistics")?;
    let consistency = storage
        .check_consistency()
        .await
        .context("checking consistency")?;
    let chips = ledger::count(storage).await?;
    Ok((stats, consistency, chips))
}

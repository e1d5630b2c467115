//! `watch COLLECTION [--prefix P] [--since SEQ]`: prints the collection's changes as they
//! commit, one JSON object per line (the library's `Change`: seq, collection, key, kind,
//! version, at), until interrupted (Ctrl-C closes the store and exits 0).
//!
//! The store is opened read-only (`commands::run` sets it): on the embedded store this takes
//! no writer lock, so the application and other CLI commands keep writing while it follows.
//! Changes committed by other processes are found by reading the change log at least every
//! `maintenance.change_poll_interval` (default 1 s); on PostgreSQL every node's commits also
//! wake it at once (`LISTEN`/`NOTIFY`).

use anyhow::{Context, Result};
use bitcraps_storage::PersistentStorageManager;

use crate::cli::WatchArgs;

pub async fn run(storage: &PersistentStorageManager, args: &WatchArgs) -> Result<()> {
    let since = match args.since {
        Some(seq) => seq,
        None => storage
            .change_head()
            .await
            .context("reading the head of the change log")?,
    };
    let mut changes = storage
        .watch_from(&args.collection, &args.prefix, since)
        .await?;
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        tokio::select! {
            signal = &mut interrupted => {
                return signal.context("waiting for an interrupt");
            }
            next = changes.next() => match next {
                Some(Ok(change)) => {
                    let mut line = serde_json::to_string(&change).context("encoding a change")?;
                    line.push('\n');
                    super::print(&line)?;
                }
                Some(Err(e)) => return Err(e).context("following the change log"),
                None => return Ok(()),
            },
        }
    }
}

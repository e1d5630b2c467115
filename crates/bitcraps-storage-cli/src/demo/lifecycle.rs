//! The demo's data lifecycle: lobby seat listings and roll records get a TTL (the
//! collections' default TTLs, kept in the store), and the change feed reports what happened.
//!
//! Seat listings are short-lived adverts (`--lobby-ttl`, default 2 s): after play the demo
//! waits until the last one it wrote has expired (only when that is at most
//! [`MAX_WAIT`] away), sweeps, and reports how many records expired and what the change feed
//! logged — puts, deletes and expirations, by collection. Rolls live longer
//! (`--roll-ttl`, default 10 minutes): they are archived with their game, and the raw records
//! go by themselves.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use bitcraps_storage::{ChangeKind, ListOptions, PersistentStorageManager};

/// The longest the demo waits for its lobby listings to expire.
pub const MAX_WAIT: Duration = Duration::from_secs(10);
/// Seat listings.
pub const LOBBY: &str = "lobby";
/// Roll records.
pub const ROLLS: &str = "rolls";

/// Where the run started.
#[derive(Debug, Clone, Copy)]
pub struct Lifecycle {
    lobby_ttl: Duration,
    roll_ttl: Duration,
    /// The change log's head before play.
    head: u64,
}

/// What expired, and what the change feed logged during the run.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Expirations {
    /// The lobby's TTL, milliseconds.
    pub lobby_ttl_ms: u128,
    /// The rolls' TTL, milliseconds.
    pub roll_ttl_ms: u128,
    /// Whether the demo waited for the lobby's listings to expire.
    pub waited_for_lobby: bool,
    /// Records the closing sweep removed.
    pub swept: u64,
    /// Live listings left in the lobby after the sweep.
    pub lobby_listings_left: usize,
    /// Changes the feed logged during the run.
    pub changes: u64,
    /// Of those: `collection → (puts, deletes, expirations)`.
    pub by_collection: BTreeMap<String, (u64, u64, u64)>,
}

impl Expirations {
    /// Every expiration the feed logged.
    pub fn expired_total(&self) -> u64 {
        self.by_collection.values().map(|c| c.2).sum()
    }
}

/// Gives the lobby and the rolls their TTLs (persisted in the store) and notes the change
/// log's head.
pub async fn prepare(
    storage: &PersistentStorageManager,
    lobby_ttl: Duration,
    roll_ttl: Duration,
) -> Result<Lifecycle> {
    storage
        .set_default_ttl(LOBBY, Some(lobby_ttl))
        .await
        .context("setting the lobby's TTL")?;
    storage
        .set_default_ttl(ROLLS, Some(roll_ttl))
        .await
        .context("setting the rolls' TTL")?;
    let head = storage
        .change_head()
        .await
        .context("reading the change log")?;
    Ok(Lifecycle {
        lobby_ttl,
        roll_ttl,
        head,
    })
}

/// After play: waits for the lobby's listings to expire (if soon), sweeps, and reads the
/// change feed of the run.
pub async fn settle(storage: &PersistentStorageManager, run: Lifecycle) -> Result<Expirations> {
    let mut out = Expirations {
        lobby_ttl_ms: run.lobby_ttl.as_millis(),
        roll_ttl_ms: run.roll_ttl.as_millis(),
        ..Expirations::default()
    };
    if run.lobby_ttl <= MAX_WAIT {
        // Every listing was written before now, so each expires by now + TTL (a record is
        // expired from its expiry time on; the clock counts milliseconds).
        let due = SystemTime::now() + run.lobby_ttl + Duration::from_millis(1);
        while let Ok(left) = due.duration_since(SystemTime::now()) {
            tokio::time::sleep(left).await;
        }
        out.waited_for_lobby = true;
    }
    out.swept = storage
        .sweep_expired()
        .await
        .context("sweeping expired records")?;
    out.lobby_listings_left = storage
        .list(LOBBY, ListOptions::default().limit(1))
        .await
        .context("listing the lobby")?
        .keys
        .len();
    let mut after = run.head;
    loop {
        let page = storage
            .changes_since(after, 10_000)
            .await
            .context("reading the change feed")?;
        let Some(last) = page.last() else {
            break;
        };
        after = last.seq;
        for change in &page {
            out.changes += 1;
            let counts = out
                .by_collection
                .entry(change.collection.clone())
                .or_default();
            match change.kind {
                ChangeKind::Put => counts.0 += 1,
                ChangeKind::Delete => counts.1 += 1,
                ChangeKind::Expire => counts.2 += 1,
            }
        }
    }
    Ok(out)
}

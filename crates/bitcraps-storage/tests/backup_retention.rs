//! Retention keeps exactly what the rules say, with an injected clock (no real days pass).

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bitcraps_storage::PersistentStorageManager;
use common::{game, sqlite_fixture};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

const DAY: u64 = 86_400;
/// 2026-11-23T12:00:00Z, a Monday.
const NOW: u64 = 20_780 * DAY + DAY / 2;

fn at(days_ago: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW - days_ago * DAY)
}

#[tokio::test]
async fn retention_keeps_exactly_what_the_rules_say() -> Result {
    let f = sqlite_fixture();
    let mut config = f.config.clone();
    config.backup.retention.within_days = 3; // younger than 3 days
    config.backup.retention.keep_last = 2;
    config.backup.retention.keep_daily = 0;
    config.backup.retention.keep_weekly = 2; // newest of this week and last week
    config.backup.retention.keep_monthly = 3; // newest of Nov, Oct, Sep
    let s = PersistentStorageManager::open(config).await?;
    s.store("games", "g", &game("g", 1)).await?;
    // One backup a day for 100 days, taken "in the past" through the injected clock.
    let mut ids = Vec::new();
    for days_ago in (0..100).rev() {
        let backups = s.backups().with_clock(move || at(days_ago));
        ids.push((days_ago, backups.create_backup().await?.id));
    }
    let outcome = s.backups().with_clock(|| at(0)).apply_retention().await?;
    let kept: BTreeSet<u64> = ids
        .iter()
        .filter(|(_, id)| outcome.kept.contains(id))
        .map(|(d, _)| *d)
        .collect();
    // within 3 days: 0, 1, 2. keep_last 2: 0, 1. weekly: this week's newest (0, Monday) and
    // last week's newest (1, Sunday). monthly: Nov (0), Oct 31 (23), Sep 30 (54).
    assert_eq!(kept, BTreeSet::from([0, 1, 2, 23, 54]));
    assert_eq!(outcome.deleted.len(), 95);
    let listed: Vec<String> = s
        .backups()
        .list_backups()
        .await?
        .into_iter()
        .map(|b| b.id)
        .collect();
    assert_eq!(
        listed, outcome.kept,
        "listing is newest first and matches what was kept"
    );
    // Deleted backups leave no files behind.
    let files = std::fs::read_dir(s.backups().directory())?.count();
    assert_eq!(files, 2 * 5);
    s.close().await?;
    Ok(())
}

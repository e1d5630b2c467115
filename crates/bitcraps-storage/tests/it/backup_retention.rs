//! Retention keeps exactly what the rules say, with an injected clock (no real days pass).

use crate::common;

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

/// Issue #17: `backup.max_total_bytes` bounds what the backup directory holds. Each new
/// backup makes room by deleting the oldest (never itself); a backup larger than the cap on its
/// own is refused and leaves nothing behind; retention applies the cap after its rules.
#[tokio::test]
async fn the_size_cap_deletes_the_oldest_and_refuses_a_backup_over_it() -> Result {
    let f = sqlite_fixture();
    let s = PersistentStorageManager::open(f.config.clone()).await?;
    s.store("games", "g", &game("g", 1)).await?;
    let one = s.backups().with_clock(|| at(10)).create_backup().await?;
    s.close().await?;
    let size = one.archive_bytes;
    assert!(size > 0);

    // Room for two backups of this size, not three.
    let mut config = f.config.clone();
    config.backup.max_total_bytes = Some(size * 2 + size / 2);
    let s = PersistentStorageManager::open(config).await?;
    let two = s.backups().with_clock(|| at(9)).create_backup().await?;
    assert_eq!(ids(&s).await?, [two.id.clone(), one.id.clone()]);
    let three = s.backups().with_clock(|| at(8)).create_backup().await?;
    // The oldest went to make room; the directory holds exactly the two newest.
    assert_eq!(ids(&s).await?, [three.id.clone(), two.id.clone()]);
    let files = std::fs::read_dir(s.backups().directory())?.count();
    assert_eq!(files, 2 * 2, "no file of the deleted backup is left");
    let total: u64 = s
        .backups()
        .list_backups()
        .await?
        .iter()
        .map(|b| b.archive_bytes)
        .sum();
    assert!(total <= size * 2 + size / 2, "{total}");
    s.close().await?;

    // A cap smaller than one backup: the new backup is refused and deleted; retention (even a
    // dry run) keeps only the newest, which is never deleted for the cap.
    let mut config = f.config.clone();
    config.backup.max_total_bytes = Some(size / 2);
    let s = PersistentStorageManager::open(config).await?;
    let err = s
        .backups()
        .with_clock(|| at(7))
        .create_backup()
        .await
        .expect_err("a backup over the cap on its own is refused");
    assert!(
        matches!(err, bitcraps_storage::StorageError::BackupTooLarge { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("backup.max_total_bytes"), "{err}");
    assert_eq!(ids(&s).await?, [three.id.clone(), two.id.clone()]);
    let plan = s.backups().with_clock(|| at(0)).plan_retention().await?;
    assert_eq!(plan.kept, std::slice::from_ref(&three.id));
    assert_eq!(plan.deleted, std::slice::from_ref(&two.id));
    assert_eq!(ids(&s).await?.len(), 2, "a dry run deletes nothing");
    let done = s.backups().with_clock(|| at(0)).apply_retention().await?;
    assert_eq!(done, plan);
    assert_eq!(ids(&s).await?, [three.id]);
    s.close().await?;
    Ok(())
}

async fn ids(s: &PersistentStorageManager) -> Result<Vec<String>> {
    Ok(s.backups()
        .list_backups()
        .await?
        .into_iter()
        .map(|b| b.id)
        .collect())
}

//! The demo's last act: back the store up while it is open, verify the backup, restore it
//! into a temporary directory, compare every record with the live store, and count the chips
//! in the restored copy.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use bitcraps_storage::{ListOptions, PersistentStorageManager, StorageConfig};

use super::ledger::{self, Holdings};
use crate::progress::Ui;

/// What the backup round trip found.
#[derive(Debug, Clone)]
pub struct BackupCheck {
    /// The backup's id.
    pub id: String,
    /// Its archive size.
    pub archive_bytes: u64,
    /// Time to create it.
    pub create: Duration,
    /// Time to verify it.
    pub verify: Duration,
    /// Time to restore it.
    pub restore: Duration,
    /// Records compared between the live store and the restored copy (all equal).
    pub compared: u64,
    /// The chips counted in the restored copy.
    pub chips: Holdings,
}

/// Backup → verify → restore → compare. Fails on the first difference.
pub async fn round_trip(storage: &PersistentStorageManager, ui: &Ui) -> Result<BackupCheck> {
    let backups = storage.backups();
    let t = Instant::now();
    let info = backups
        .create_backup()
        .await
        .context("creating the backup")?;
    let create = t.elapsed();
    let t = Instant::now();
    backups
        .verify_backup(&info.id)
        .await
        .context("verifying the backup")?;
    let verify = t.elapsed();
    let scratch = tempfile::Builder::new()
        .prefix("bitcraps-demo-restore-")
        .tempdir()
        .context("cannot create a temporary directory")?;
    let target = scratch.path().join("restored");
    let t = Instant::now();
    backups
        .restore_backup(&info.id, &target)
        .await
        .context("restoring the backup")?;
    let restore = t.elapsed();

    let mut config = StorageConfig::with_data_path(&target);
    config.maintenance.background_tasks = false;
    let restored = PersistentStorageManager::open(config)
        .await
        .context("opening the restored store")?;
    let bar = ui.bar(
        Some(info.snapshot.record_count),
        "records",
        "comparing with the backup",
    );
    let mut compared = 0u64;
    let result = async {
        for collection in storage.collections().await? {
            let mut options = ListOptions::default().limit(1000);
            loop {
                let page = storage.list(&collection, options.clone()).await?;
                for key in &page.keys {
                    let live = storage.retrieve_raw(&collection, key).await?;
                    let copy = restored.retrieve_raw(&collection, key).await?;
                    ensure!(
                        live == copy,
                        "{collection}/{key} differs in the restored copy"
                    );
                    compared += 1;
                    bar.inc(1);
                }
                match page.next_after {
                    Some(after) => options = options.after(&after),
                    None => break,
                }
            }
        }
        let restored_count = restored.statistics().await?.database_stats.record_count;
        ensure!(
            restored_count == compared,
            "the restored copy holds {restored_count} records, the live store {compared}"
        );
        ledger::count(&restored).await
    }
    .await;
    bar.finish_and_clear();
    restored
        .close()
        .await
        .context("closing the restored store")?;
    let chips = result?;
    Ok(BackupCheck {
        id: info.id,
        archive_bytes: info.archive_bytes,
        create,
        verify,
        restore,
        compared,
        chips,
    })
}

//! A byte flipped inside one stored document (the blob's data changed on a closed store, so
//! its content hash no longer matches): the deep check and the scrub name that key,
//! maintenance refuses to back the store up (keeping the older backup), and a backup taken
//! anyway fails verification naming the key.
//!
//! The regression: `check_consistency` said ok, maintenance exited 0, the new backup
//! verified, and only a read of that key found the hash mismatch.

use crate::common;

use std::time::{Duration, Instant};

use bitcraps_storage::testing::BackgroundTask;
use bitcraps_storage::{PersistentStorageManager, StorageConfig, StorageError};
use common::{game, sqlite_fixture};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

const DAMAGED: &str = "g-0042";

/// Flips one byte in the middle of the blob of `games/<key>` in the closed database.
fn flip_a_byte(config: &StorageConfig, key: &str) -> Result {
    let conn = rusqlite::Connection::open(config.database.data_path.join("bitcraps.db"))?;
    let (id, mut data): (i64, Vec<u8>) = conn.query_row(
        "SELECT b.id, b.data FROM blobs b JOIN records r ON r.blob_id = b.id
         WHERE r.collection = 'games' AND r.key = ?1",
        [key],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let mid = data.len() / 2;
    data[mid] ^= 0x20;
    conn.execute(
        "UPDATE blobs SET data = ?1 WHERE id = ?2",
        rusqlite::params![data, id],
    )?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_document_byte_is_found_named_and_never_certified() -> Result {
    let f = sqlite_fixture();
    let mut config = f.config.clone();
    // Scheduled but never due: the test drives each scrub step. A budget of one byte is one
    // page of blobs per step, so the pass takes several steps and must resume.
    config.maintenance.scrub_interval = Duration::from_secs(3600);
    config.maintenance.scrub_bytes_per_run = 1;
    let s = PersistentStorageManager::open(config.clone()).await?;
    let items: Vec<(String, _)> = (0..300)
        .map(|i| (format!("g-{i:04}"), game(&format!("g-{i}"), i)))
        .collect();
    s.store_batch("games", &items).await?;
    let good = s.backups().create_backup().await?;
    s.close().await?;
    drop(s);
    flip_a_byte(&config, DAMAGED)?;

    let s = PersistentStorageManager::open(config.clone()).await?;
    // The shallow check reads no document: it cannot see this damage.
    assert!(s.check_consistency().await?.is_ok());
    let deep = s.check_consistency_deep().await?;
    assert!(!deep.is_ok(), "{deep:?}");
    assert!(deep.deep);
    assert_eq!(deep.damaged_blobs, 1, "{deep:?}");
    let keys: Vec<(&str, &str)> = deep
        .damaged
        .iter()
        .map(|d| (d.collection.as_str(), d.key.as_str()))
        .collect();
    assert_eq!(keys, [("games", DAMAGED)]);
    let blobs = s.statistics().await?.database_stats.blob_count;
    assert_eq!(deep.blobs_verified, blobs);

    // The scrub, step by step, until its pass completes.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut steps = 0;
    let mut failures = Vec::new();
    let pass = loop {
        if let Some(pass) = s.statistics().await?.last_scrub {
            break pass;
        }
        assert!(Instant::now() < deadline, "the scrub pass never completed");
        steps += 1;
        if let Err(e) = s.run_background_task(BackgroundTask::Scrub).await {
            failures.push(e);
        }
    };
    assert!(
        steps > 1,
        "a budget of one page per step took {steps} step(s)"
    );
    assert_eq!(s.background_runs(BackgroundTask::Scrub), steps);
    assert_eq!(pass.blobs_checked, blobs, "every blob, each once");
    assert_eq!(pass.records_checked, 300);
    assert_eq!(pass.damaged_blobs, 1);
    let named: Vec<&str> = pass.damaged.iter().map(|d| d.key.as_str()).collect();
    assert_eq!(named, [DAMAGED]);
    assert!(
        pass.damaged[0].detail.contains("hash mismatch")
            || pass.damaged[0].detail.contains("decompress"),
        "{:?}",
        pass.damaged
    );
    // The step that met the damage failed, naming the key, and was counted.
    assert_eq!(failures.len(), 1, "{failures:?}");
    match &failures[0] {
        StorageError::Corruption { location, .. } => {
            assert_eq!(location, &format!("games/{DAMAGED}"));
        }
        other => panic!("expected corruption, got {other:?}"),
    }
    assert_eq!(s.statistics().await?.background_failures, 1);

    // Maintenance refuses to certify the store with a backup, and keeps the good one.
    let err = s
        .maintenance()
        .await
        .expect_err("a damaged store is not backed up");
    assert!(err.is_corruption(), "{err}");
    assert!(
        err.to_string().contains(&format!("games/{DAMAGED}")),
        "{err}"
    );
    assert!(err.to_string().contains("No backup was taken"), "{err}");
    let ids: Vec<String> = s
        .backups()
        .list_backups()
        .await?
        .into_iter()
        .map(|b| b.id)
        .collect();
    assert_eq!(ids, std::slice::from_ref(&good.id));
    s.backups().verify_backup(&good.id).await?;

    // A backup taken anyway does not verify: verification reads every byte too.
    let bad = s.backups().create_backup().await?;
    let err = s
        .backups()
        .verify_backup(&bad.id)
        .await
        .expect_err("the copy holds a damaged document");
    assert!(err.is_corruption(), "{err}");
    assert!(err.to_string().contains(DAMAGED), "{err}");
    s.close().await?;
    Ok(())
}

//! A bulk batch on PostgreSQL writes its new blobs by binary `COPY` (`backend/postgres/
//! copy.rs`), opened in the group's first round trip: the rows must read back, decode to
//! their hashes and carry exact reference counts, and a group that declines the set-based
//! path after the `COPY` opened (a quota, a chunked current value) must still commit through
//! the statement path. Needs `BITCRAPS_TEST_POSTGRES_URL`; skipped without.

#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use bitcraps_storage::{CollectionQuota, PersistentStorageManager};
use serde_json::{Value, json};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// More keys than the fine-grained locks allow: the batch takes the store's exclusive lock,
/// the path that copies.
const BATCH: usize = 300;

fn doc(i: usize) -> Value {
    // Every third document is the same lobby record (deduplicated).
    if i.is_multiple_of(3) {
        json!({"lobby": true, "seats": 8})
    } else {
        json!({"game": i, "players": ["alice", "bob"], "pot": i * 10})
    }
}

async fn open(fixture: &common::Fixture) -> Result<PersistentStorageManager> {
    let mut config = fixture.config.clone();
    config.maintenance.background_tasks = false;
    Ok(PersistentStorageManager::open(config).await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copied_bulk_batch_reads_back_with_exact_counts() -> Result {
    let Some(fixture) = common::pg_fixture() else {
        return Ok(());
    };
    let s = open(&fixture).await?;
    let first: Vec<(String, Value)> = (0..BATCH).map(|i| (format!("g-{i:04}"), doc(i))).collect();
    s.store_batch("games", &first).await?;
    // Again over the same keys: half rewritten to new content, half to what they hold, and
    // new keys sharing the lobby record.
    let second: Vec<(String, Value)> = (0..BATCH)
        .map(|i| {
            let d = if i.is_multiple_of(2) {
                doc(i + 1)
            } else {
                doc(i)
            };
            (format!("g-{i:04}"), d)
        })
        .chain((BATCH..BATCH + 50).map(|i| (format!("g-{i:04}"), doc(0))))
        .collect();
    s.store_batch("games", &second).await?;
    for (key, want) in &second {
        let got: Option<Value> = s.retrieve("games", key).await?;
        assert_eq!(got.as_ref(), Some(want), "{key}");
    }
    let report = s.check_consistency_deep().await?;
    assert!(report.is_ok(), "{report:?}");
    // The lobby record and the 100 odd game numbers below 300 not divisible by 3.
    assert_eq!(report.blobs_verified, 101, "{report:?}");
    let log = s.changes_since(0, 10_000).await?;
    assert_eq!(log.len(), first.len() + second.len());
    s.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_batch_declined_after_its_copy_opened_commits() -> Result {
    let Some(fixture) = common::pg_fixture() else {
        return Ok(());
    };
    let s = open(&fixture).await?;
    // A quota: the set-based path declines once it has read the settings.
    s.set_quota("seats", Some(CollectionQuota::new(Some(10_000), None)))
        .await?;
    let seats: Vec<(String, Value)> = (0..BATCH).map(|i| (format!("s-{i:04}"), doc(i))).collect();
    s.store_batch("seats", &seats).await?;
    // A chunked current value: it declines once it has read the records.
    let big = json!({ "blob": "x".repeat(200 * 1024) });
    s.store("games", "g-0000", &big).await?;
    let games: Vec<(String, Value)> = (0..BATCH).map(|i| (format!("g-{i:04}"), doc(i))).collect();
    s.store_batch("games", &games).await?;
    for (collection, batch) in [("seats", &seats), ("games", &games)] {
        for (key, want) in batch {
            let got: Option<Value> = s.retrieve(collection, key).await?;
            assert_eq!(got.as_ref(), Some(want), "{collection}/{key}");
        }
    }
    let report = s.check_consistency_deep().await?;
    assert!(report.is_ok(), "{report:?}");
    s.close().await?;
    Ok(())
}

//! Regression (issue #16, round 3): a delta kept in its record's row (SQLite schema 13) holds
//! bytes no blob row does, and the deep check, the scrub and backup verification read blob
//! rows only, so a damaged inline delta was certified by all three and found only when the
//! record was read. A byte of such a delta is flipped through SQL in a closed store (plain
//! and encrypted): the read, the deep check, the scrub and a backup's verification must all
//! name the record.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use std::path::Path;

use bitcraps_storage::{PersistentStorageManager, StorageConfig, StorageError};
use serde_json::{Value, json};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

use common::game_log as log;

fn tune(mut config: StorageConfig) -> StorageConfig {
    config.maintenance.background_tasks = false;
    config.cache.size_mb = 0;
    config.compression.keyframe_interval = 4;
    // One page a scrub step: the pass crosses from the blobs to the records between steps.
    config.maintenance.scrub_bytes_per_run = 1;
    config
}

/// Writes "a" as an inline delta over its keyframe and "b" as a plain document, closes the
/// store and flips a byte in the middle of "a"'s inline delta.
async fn write_and_damage(config: &StorageConfig, dir: &Path) -> Result {
    let s = PersistentStorageManager::open(config.clone()).await?;
    s.store("logs", "a", &log(800)).await?;
    s.store("logs", "a", &log(801)).await?;
    s.store("logs", "a", &log(802)).await?;
    s.store("logs", "b", &json!({"x": 1})).await?;
    assert!(s.check_consistency_deep().await?.is_ok());
    s.close().await?;
    drop(s);
    let db = rusqlite::Connection::open(dir.join("bitcraps.db"))?;
    let mut delta: Vec<u8> = db.query_row(
        "SELECT substr(delta, 53) FROM records WHERE collection = 'logs' AND key = 'a'
         AND delta IS NOT NULL",
        [],
        |r| r.get(0),
    )?;
    let middle = delta.len() / 2;
    delta[middle] ^= 0x5a;
    let changed = db.execute(
        "UPDATE records SET delta = CAST(substr(delta, 1, 52) || ?1 AS BLOB)
         WHERE collection = 'logs' AND key = 'a'",
        [&delta],
    )?;
    assert_eq!(changed, 1);
    Ok(())
}

/// Every check that reads stored bytes names logs/a, and only it.
async fn every_check_names_the_record(config: &StorageConfig) -> Result {
    let s = PersistentStorageManager::open(config.clone()).await?;
    match s.retrieve::<Value>("logs", "a").await {
        Err(StorageError::Corruption { location, .. }) => assert_eq!(location, "logs/a"),
        other => panic!("expected corruption of logs/a, got {other:?}"),
    }
    assert_eq!(
        s.retrieve::<Value>("logs", "b").await?,
        Some(json!({"x": 1}))
    );

    let deep = s.check_consistency_deep().await?;
    assert!(!deep.is_ok(), "the deep check certified a damaged delta");
    let named: Vec<(&str, &str)> = deep
        .damaged
        .iter()
        .map(|d| (d.collection.as_str(), d.key.as_str()))
        .collect();
    assert_eq!(named, [("logs", "a")], "{deep:?}");
    assert_eq!(deep.inline_deltas_verified, 1, "{deep:?}");
    assert!(deep.problems().contains("logs/a"), "{}", deep.problems());

    // The scrub, one step at a time until its pass completes: the step that reads the
    // delta names it, and so does the pass.
    let (mut pass, mut steps, mut named_in_step) = (None, 0, Vec::new());
    while pass.is_none() && steps < 1_000 {
        let step = s.scrub().await?;
        steps += 1;
        named_in_step.extend(step.damaged.into_iter().map(|d| d.key));
        pass = step.completed;
    }
    let pass = pass.ok_or("the scrub pass did not complete")?;
    assert_eq!(named_in_step, ["a"]);
    assert!(steps >= 3, "blobs, the delta, the end: {steps} steps");
    let named: Vec<&str> = pass.damaged.iter().map(|d| d.key.as_str()).collect();
    assert_eq!(named, ["a"], "{pass:?}");
    assert_eq!(pass.inline_deltas_checked, 1);
    assert!(!pass.is_clean());

    // A backup copies the row as it is; its verification reads the copy the same way.
    let info = s.backups().create_backup().await?;
    let err = s
        .backups()
        .verify_backup(&info.id)
        .await
        .expect_err("a backup with a damaged delta verified");
    assert!(err.is_corruption(), "{err}");
    assert!(err.to_string().contains("logs/a"), "{err}");
    // Maintenance certifies the store before its backup with the same check.
    let err = s
        .maintenance()
        .await
        .expect_err("a store with a damaged delta was certified");
    assert!(err.to_string().contains("logs/a"), "{err}");
    s.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_inline_delta_is_named_by_the_deep_check_and_the_scrub() -> Result {
    let dir = tempfile::tempdir()?;
    let config = tune(StorageConfig::with_data_path(dir.path()));
    write_and_damage(&config, dir.path()).await?;
    every_check_names_the_record(&config).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_encrypted_inline_delta_is_named_by_the_deep_check_and_the_scrub() -> Result {
    let dir = tempfile::tempdir()?;
    let (_key_dir, key) = common::key_file();
    let config = tune(common::keyed_config(dir.path(), &key));
    write_and_damage(&config, dir.path()).await?;
    every_check_names_the_record(&config).await
}

/// Regression (review of schema 13): a row with only some of the three inline-delta columns
/// set read as its keyframe, an older version whose own hash checks out, so the reader got
/// stale data. It must be `Corruption` of the record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partly_missing_inline_delta_is_corruption_not_the_keyframe() -> Result {
    let dir = tempfile::tempdir()?;
    let config = tune(StorageConfig::with_data_path(dir.path()));
    let s = PersistentStorageManager::open(config.clone()).await?;
    s.store("logs", "a", &log(800)).await?;
    s.store("logs", "a", &log(801)).await?;
    s.close().await?;
    drop(s);
    let db = rusqlite::Connection::open(dir.path().join("bitcraps.db"))?;
    let changed = db.execute(
        // The mark the schema-16 migration gives a delta with a missing column: length −1.
        "UPDATE records
         SET delta = CAST(substr(delta, 1, 32) || printf('%020d', -1) || substr(delta, 53) AS BLOB)
         WHERE collection = 'logs' AND key = 'a' AND delta IS NOT NULL",
        [],
    )?;
    assert_eq!(changed, 1, "the second version is kept inline");
    drop(db);
    let s = PersistentStorageManager::open(config).await?;
    match s.retrieve::<Value>("logs", "a").await {
        Err(StorageError::Corruption { location, .. }) => assert_eq!(location, "logs/a"),
        other => panic!("expected corruption of logs/a, got {other:?}"),
    }
    s.close().await?;
    Ok(())
}

/// Writes "a" as an inline delta over its keyframe, closes the store, sets its `delta` to
/// `damaged` (an SQL expression over `delta`), reopens it: `metadata` must be `Corruption`
/// naming the record, a read must refuse it and the statistics must count it as nothing.
async fn a_damaged_length_is_corruption(damaged: &str) -> Result {
    let dir = tempfile::tempdir()?;
    let config = tune(StorageConfig::with_data_path(dir.path()));
    let s = PersistentStorageManager::open(config.clone()).await?;
    s.store("logs", "a", &log(800)).await?;
    s.store("logs", "a", &log(801)).await?;
    let before = s.metadata("logs", "a").await?.ok_or("logs/a is missing")?;
    assert!(before.is_delta, "the second version is a delta: {before:?}");
    let logical = s.statistics().await?.database_stats.logical_bytes;
    assert!(logical > 0);
    s.close().await?;
    drop(s);
    let db = rusqlite::Connection::open(dir.path().join("bitcraps.db"))?;
    let changed = db.execute(
        &format!(
            "UPDATE records SET delta = CAST({damaged} AS BLOB)
             WHERE collection = 'logs' AND key = 'a' AND delta IS NOT NULL"
        ),
        [],
    )?;
    assert_eq!(changed, 1, "the second version is kept inline");
    drop(db);
    let s = PersistentStorageManager::open(config).await?;
    match s.metadata("logs", "a").await {
        Err(StorageError::Corruption { location, .. }) => assert_eq!(location, "logs/a"),
        other => panic!("expected corruption of logs/a, got {other:?}"),
    }
    assert!(
        s.retrieve_raw("logs", "a").await.is_err(),
        "a read refuses it"
    );
    let after = s.statistics().await?.database_stats.logical_bytes;
    assert_eq!(
        after, 0,
        "the damaged length was summed as a number (of {logical} bytes)"
    );
    s.close().await?;
    Ok(())
}

/// Regression (review of schema 16): SQL read an inline delta's length with a bare `CAST`,
/// which takes the digits before a damaged byte for the length, so `metadata` reported a
/// made-up size for a record every read refuses. Its length is now read with the decoder's
/// rule: a damaged one is `Corruption` of the record, and the statistics count it as nothing
/// rather than as what the digits before the damage say.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_inline_delta_length_is_corruption_in_metadata() -> Result {
    // The last of the 20 digits becomes a letter: `CAST` reads the 19 before it.
    a_damaged_length_is_corruption("substr(delta, 1, 51) || 'x' || substr(delta, 53)").await
}

/// Regression (review of the `inline_delta_len!` fix): twenty digits past `i64::MAX` are
/// digits, but `decode` refuses them (they do not parse) while SQL's `CAST` read them as
/// `i64::MAX`, so `metadata` reported a 9.2-exabyte document every read refuses and the sums
/// (statistics, quota usage) counted it. SQL now refuses them too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inline_delta_length_past_i64_is_corruption_in_metadata() -> Result {
    a_damaged_length_is_corruption(
        "substr(delta, 1, 32) || '99999999999999999999' || substr(delta, 53)",
    )
    .await
}

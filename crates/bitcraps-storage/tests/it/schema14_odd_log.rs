//! Schema 15 migration, hostile input: a schema-14 store whose change log was pruned (its first
//! row sharing its time with the removed row before it), with changes appended at odd seqs
//! and versions (a version smaller than its seq, a seq far past the others, a version far
//! past its seq, a collection seen only in the log, a time going backwards, runs of one
//! time across the 64-row boundaries), and records whose `updated_at` is before or equal to
//! `created_at`, upgrades and reads back the same, from every `after`; and retention after
//! the upgrade leaves the rest readable.

use std::time::Duration;

use bitcraps_storage::{PersistentStorageManager, StorageConfig, StorageError};
use rusqlite::Connection;

use crate::schema14_upgrade::{Logged, feed_from, ms};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_odd_schema_14_change_log_upgrades_and_reads_back() -> Result {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("bitcraps.db");
    std::fs::copy(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/schema-v14.db"),
        &db,
    )?;
    let (changes, pruned, records) = {
        let c = Connection::open(&db)?;
        // Prune a prefix whose last row shares its time with the next one.
        let cut: i64 = c.query_row(
            "SELECT a.seq FROM changes a JOIN changes b ON b.seq = a.seq + 1
             WHERE a.at = b.at AND a.seq > 10 ORDER BY a.seq LIMIT 1",
            [],
            |r| r.get(0),
        )?;
        c.execute("DELETE FROM changes WHERE seq <= ?1", [cut])?;
        c.execute(
            "UPDATE change_clock SET value = ?1 WHERE name = 'pruned'",
            [cut],
        )?;
        let (head, at): (i64, i64) = c.query_row(
            "SELECT seq, at FROM changes ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let mut insert = c.prepare(
            "INSERT INTO changes (seq, collection, key, kind, version, at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        let mut seq = head;
        // 130 changes of one time, two collections, one seen only here; versions below seqs.
        for i in 0..130i64 {
            seq += 1;
            let coll = if i % 3 == 0 { "only-in-log" } else { "imports" };
            insert.execute(rusqlite::params![
                seq,
                coll,
                format!("o-{i}"),
                1 + i % 3,
                1 + i,
                at + 5
            ])?;
        }
        // A time going backwards, then a seq far past the others with a version far past it.
        seq += 1;
        insert.execute(rusqlite::params![
            seq,
            "imports",
            "back",
            1,
            seq,
            at - 1_000
        ])?;
        seq += 1 << 40;
        insert.execute(rusqlite::params![
            seq,
            "imports",
            "far",
            1,
            1i64 << 50,
            at - 1_000
        ])?;
        seq += 1;
        insert.execute(rusqlite::params![seq, "imports", "far2", 2, 3, at - 1_000])?;
        drop(insert);
        c.execute(
            "UPDATE change_clock SET value = max(value, ?1) WHERE name = 'last'",
            [seq],
        )?;
        // Records: updated before created, and equal.
        c.execute_batch(
            "UPDATE records SET updated_at = created_at - 7
                 WHERE collection = 'imports' AND key = 'i-0001';
             UPDATE records SET updated_at = created_at
                 WHERE collection = 'imports' AND key = 'i-0002';",
        )?;
        let changes: Vec<Logged> = c
            .prepare("SELECT seq, collection, key, kind, version, at FROM changes ORDER BY seq")?
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })?
            .collect::<rusqlite::Result<_>>()?;
        let records: Vec<(String, i64, i64)> = c
            .prepare(
                "SELECT key, created_at, updated_at FROM records
                 WHERE collection = 'imports' AND key IN ('i-0001', 'i-0002') ORDER BY key",
            )?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<rusqlite::Result<_>>()?;
        (changes, u64::try_from(cut)?, records)
    };
    assert_eq!(records.len(), 2);

    let mut config = StorageConfig::with_data_path(dir.path());
    config.maintenance.background_tasks = false;
    let s = PersistentStorageManager::open(config.clone()).await?;
    assert_eq!(feed_from(&s, pruned, 1000).await?, changes, "the whole log");
    for page in [1, 2, 63, 64, 65] {
        assert_eq!(
            feed_from(&s, pruned, page).await?,
            changes,
            "pages of {page}"
        );
    }
    for (i, c) in changes.iter().enumerate().step_by(7) {
        let after = u64::try_from(c.0)?;
        assert_eq!(
            feed_from(&s, after, 50).await?,
            changes[i + 1..],
            "after {after}"
        );
    }
    assert!(matches!(
        s.changes_since(pruned - 1, 10).await,
        Err(StorageError::ChangesPruned { .. })
    ));
    for (key, created, updated) in &records {
        let m = s.metadata("imports", key).await?.ok_or("missing")?;
        assert_eq!(
            (ms(m.created_at)?, ms(m.updated_at)?),
            (*created, *updated),
            "{key}"
        );
    }
    // Retention after the upgrade: everything is older than a second.
    s.close().await?;
    drop(s);
    config.maintenance.change_retention = Duration::from_secs(1);
    let s = PersistentStorageManager::open(config).await?;
    s.store("imports", "new", &1).await?;
    let removed = s.prune_changes().await?;
    assert_eq!(
        removed,
        u64::try_from(changes.len())?,
        "all the old changes go"
    );
    let tail = s
        .changes_since(u64::try_from(changes.last().ok_or("empty")?.0)?, 10)
        .await?;
    assert_eq!(tail.len(), 1);
    s.close().await?;
    Ok(())
}

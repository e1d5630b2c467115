//! Schema 16 migration, hostile and odd input: a schema-15 store with changes whose kind
//! and version offset stretch the one-column encoding (deletes and expiries far behind
//! their seq, a version far past its seq, offsets of 0 and 1 for every kind), a record
//! whose `updated_at` is before its `created_at`, a blob whose stored length is not its
//! data's, and an inline delta with a column missing, upgrades and reads back the same;
//! the damaged delta reads as corruption of its record, never as its keyframe. A version
//! offset too large for the encoding fails the upgrade and leaves the file at schema 15.

use bitcraps_storage::{PersistentStorageManager, StorageConfig, StorageError};
use rusqlite::Connection;
use serde_json::Value;

use crate::schema14_upgrade::{feed_from, ms};
use crate::schema15_upgrade::{changes_v15, fixture};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Appends `(key, kind, version offset)` rows to a schema-15 log after its head, at `at`.
fn append_v15(c: &Connection, rows: &[(&str, i64, i64)], at: i64) -> Result<i64> {
    let head: i64 = c.query_row("SELECT max(seq) FROM changes", [], |r| r.get(0))?;
    let mut seq = head;
    for (key, kind, offset) in rows {
        seq += 1;
        c.execute(
            "INSERT INTO changes (seq, collection_id, key, kind, version_offset, at)
             VALUES (?1, 1, ?2, ?3, ?4, ?5)",
            rusqlite::params![seq, key, kind, offset, at],
        )?;
    }
    c.execute(
        "UPDATE change_clock SET value = max(value, ?1) WHERE name = 'last'",
        [seq],
    )?;
    Ok(seq)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_odd_schema_15_store_upgrades_and_reads_back() -> Result {
    let (dir, db) = fixture()?;
    let (changes, updated) = {
        let c = Connection::open(&db)?;
        let at: i64 = c.query_row("SELECT max(at) FROM changes", [], |r| r.get(0))?;
        let mut odd = Vec::new();
        for kind in 1..=3 {
            // Versions stay >= 1: the log's seqs are past 1,000 here.
            for offset in [-1_000i64, -5, -1, 0, 1, 2, 1 << 20] {
                odd.push(("odd", kind, offset));
            }
        }
        append_v15(&c, &odd, at + 1)?;
        // A version far past its seq (2^59), and back to a small one.
        append_v15(&c, &[("far", 1, 1 << 59), ("near", 2, -3)], at + 2)?;
        c.execute_batch(
            "UPDATE records SET updated_at = created_at - 7
                 WHERE collection = 'imports' AND key = 'i-0001';
             UPDATE blobs SET stored_len = stored_len + 3
                 WHERE id = (SELECT blob_id FROM records
                             WHERE collection = 'imports' AND key = 'i-0002');
             UPDATE records SET delta_raw_len = NULL WHERE delta_data IS NOT NULL;",
        )?;
        let updated: (i64, i64) = c.query_row(
            "SELECT created_at, updated_at FROM records
             WHERE collection = 'imports' AND key = 'i-0001'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        (changes_v15(&c)?, updated)
    };

    let mut config = StorageConfig::with_data_path(dir.path());
    config.maintenance.background_tasks = false;
    let s = PersistentStorageManager::open(config).await?;
    for page in [1, 7, 64, 1000] {
        assert_eq!(feed_from(&s, 0, page).await?, changes, "pages of {page}");
    }
    let m = s.metadata("imports", "i-0001").await?.ok_or("missing")?;
    assert_eq!((ms(m.created_at)?, ms(m.updated_at)?), updated);
    assert!(s.retrieve::<Value>("imports", "i-0001").await?.is_some());
    assert!(s.retrieve::<Value>("imports", "i-0002").await?.is_some());
    match s.retrieve::<Value>("logs", "big").await {
        Err(StorageError::Corruption { location, .. }) => assert_eq!(location, "logs/big"),
        other => panic!("expected corruption of logs/big, got {other:?}"),
    }
    let report = s.check_consistency_deep().await?;
    assert!(!report.is_ok(), "the damaged delta is reported");
    s.close().await?;
    drop(s);
    let c = Connection::open(&db)?;
    let kept: Option<i64> = c.query_row(
        "SELECT stored_len FROM blobs WHERE id = (SELECT blob_id FROM records
                                                  WHERE collection = 'imports' AND key = 'i-0002')",
        [],
        |r| r.get(0),
    )?;
    assert!(
        kept.is_some(),
        "a stored length that is not the data's is kept"
    );
    Ok(())
}

/// A version offset of 2^61 + 1 does not fit `kind_offset`: the upgrade fails as a whole, and
/// the file stays a schema-15 store with its log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_offset_past_the_encoding_fails_the_upgrade_and_changes_nothing() -> Result {
    let (dir, db) = fixture()?;
    let before = {
        let c = Connection::open(&db)?;
        append_v15(&c, &[("huge", 1, (1 << 61) + 1)], 1_000)?;
        changes_v15(&c)?
    };
    let mut config = StorageConfig::with_data_path(dir.path());
    config.maintenance.background_tasks = false;
    assert!(PersistentStorageManager::open(config).await.is_err());
    let c = Connection::open(&db)?;
    let v: i64 = c.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    assert_eq!(v, 15);
    assert_eq!(changes_v15(&c)?, before);
    Ok(())
}

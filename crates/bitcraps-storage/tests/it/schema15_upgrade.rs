//! Schema 16 (issue #15, footprint): a store written by the build before it
//! (`fixtures/schema-v15.db`, schema 15) upgrades to one-column change kinds and offsets,
//! one-column inline deltas and NULL blob lengths, and reads back the same: every live
//! document byte for byte (`fixtures/schema-v15.jsonl`, the same build's `export` of a
//! copy), every record's metadata (created, updated and last-accessed times, access count,
//! version, expiry, content hash), the whole change feed (seq, collection, key, kind,
//! version, time), the statistics and the deep consistency check; writes after the upgrade
//! continue the feed, and the store reopens.
//!
//! The fixture was written by main's debug build at 9f465cd (schema 15) through its CLI
//! (`bitcraps-storage -q`), into an empty directory `D`, with the default settings (the
//! documents of `schema14_upgrade`):
//!
//! ```text
//! cli --data D demo --records 300 --tasks 4 --seed 7 --lobby-ttl 1s --roll-ttl 100y
//! cli --data D import imports.jsonl --batch-size 100  # import_doc(0..300) as imports/i-0000..
//! cli --data D put logs big - < big-1.json             # big_log(2000): chunked
//! cli --data D put logs big - < big-2.json             # big_log(2001): an inline delta
//! cli --data D delete imports i-0007
//! cli --data D put imports i-0008 '{"replaced":true}'
//! cli --data D put imports i-0011 '{"replaced":2}'
//! cli --data D get imports i-0001; cli --data D get imports i-0002 (twice); get logs big
//! cli --read-only --data COPY export -o schema-v15.jsonl
//! ```

use std::collections::BTreeMap;

use bitcraps_storage::{ChangeKind, PersistentStorageManager, StorageConfig};
use rusqlite::Connection;
use serde_json::{Value, json};

use crate::schema14_upgrade::{Logged, feed_from, ms};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// A record as schema 15 stored it: created, updated, access count, last accessed, version,
/// expiry, content hash.
type Stored = (i64, i64, i64, Option<i64>, i64, Option<i64>, String);

/// The records by (collection, key).
type Records = BTreeMap<(String, String), Stored>;

/// The fixture, copied into a fresh directory: (directory, database path).
pub(crate) fn fixture() -> Result<(tempfile::TempDir, std::path::PathBuf)> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("bitcraps.db");
    std::fs::copy(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/schema-v15.db"),
        &db,
    )?;
    Ok((dir, db))
}

/// Every record of a schema-15 file.
fn records_v15(c: &Connection) -> Result<Records> {
    Ok(c.prepare(
        "SELECT r.collection, r.key, r.created_at, coalesce(r.updated_at, r.created_at),
                r.access_count, r.last_accessed, r.version, r.expires_at,
                lower(hex(coalesce(r.delta_hash, b.hash)))
         FROM records r JOIN blobs b ON b.id = r.blob_id",
    )?
    .query_map([], |r| {
        Ok((
            (r.get(0)?, r.get(1)?),
            (
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
                r.get(8)?,
            ),
        ))
    })?
    .collect::<rusqlite::Result<BTreeMap<_, _>>>()?)
}

/// Every change of a schema-15 file, decoded as schema 15 reads it (collection ids, version
/// offsets, a NULL time is the previous row's).
pub(crate) fn changes_v15(c: &Connection) -> Result<Vec<Logged>> {
    let rows: Vec<(i64, String, String, i64, i64, Option<i64>)> = c
        .prepare(
            "SELECT seq, (SELECT name FROM collection_ids WHERE id = collection_id), key, kind,
                    seq + version_offset, at
             FROM changes ORDER BY seq",
        )?
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
    let mut previous = None;
    rows.into_iter()
        .map(|(seq, c, k, kind, version, at)| {
            let at = at.or(previous).ok_or("a first row without a time")?;
            previous = Some(at);
            Ok((seq, c, k, kind, version, at))
        })
        .collect()
}

/// The live documents the schema-15 build exported.
fn exported() -> Result<BTreeMap<(String, String), Value>> {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/schema-v15.jsonl"),
    )?;
    text.lines()
        .map(|line| {
            let mut v: Value = serde_json::from_str(line)?;
            let c = v["collection"].as_str().ok_or("collection")?.to_owned();
            let k = v["key"].as_str().ok_or("key")?.to_owned();
            Ok(((c, k), v["value"].take()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_15_store_upgrades_with_its_records_and_change_feed() -> Result {
    let (dir, db) = fixture()?;
    let (records, changes) = {
        let c = Connection::open(&db)?;
        let v: i64 = c.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        assert_eq!(v, 15);
        (records_v15(&c)?, changes_v15(&c)?)
    };
    let documents = exported()?;
    // What the fixture must hold for this test to mean something.
    assert!(
        records.values().any(|r| r.0 != r.1),
        "an overwritten record"
    );
    assert!(records.values().any(|r| r.3.is_some()), "access statistics");
    assert!(
        records.values().any(|r| r.5.is_some()),
        "an expiring record"
    );
    let kinds: std::collections::BTreeSet<i64> = changes.iter().map(|c| c.3).collect();
    assert_eq!(kinds, [1, 2, 3].into(), "puts, deletes and expiries");
    assert!(
        changes.iter().any(|c| c.4 - c.0 != 1) && changes.iter().any(|c| c.4 - c.0 == 1),
        "version offsets of 1 and others"
    );
    assert_eq!(documents.len(), records.len(), "every record is live");
    {
        let c = Connection::open(&db)?;
        let (inline, chunked): (i64, i64) = c.query_row(
            "SELECT (SELECT count(*) FROM records WHERE delta_data IS NOT NULL),
                    (SELECT count(*) FROM blob_chunks)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        assert!(inline == 1 && chunked > 0, "an inline delta over chunks");
    }

    let mut config = StorageConfig::with_data_path(dir.path());
    config.maintenance.background_tasks = false;
    let s = PersistentStorageManager::open(config.clone()).await?;
    assert_eq!(
        feed_from(&s, 0, 37).await?,
        changes,
        "the change feed after the upgrade"
    );
    // Metadata first: the reads below count as accesses.
    for ((collection, key), (created, updated, count, last, version, expires, hash)) in &records {
        let m = s
            .metadata(collection, key)
            .await?
            .ok_or_else(|| format!("{collection}/{key} missing"))?;
        let got = (
            ms(m.created_at)?,
            ms(m.updated_at)?,
            i64::try_from(m.access_count)?,
            m.last_accessed.map(ms).transpose()?,
            i64::try_from(m.version.get())?,
            m.expires_at.map(ms).transpose()?,
            m.content_hash.clone(),
        );
        assert_eq!(
            got,
            (
                *created,
                *updated,
                *count,
                *last,
                *version,
                *expires,
                hash.clone()
            ),
            "{collection}/{key}"
        );
    }
    for ((collection, key), value) in &documents {
        assert_eq!(
            s.retrieve::<Value>(collection, key).await?.as_ref(),
            Some(value),
            "{collection}/{key}"
        );
    }
    let big_meta = s.metadata("logs", "big").await?.ok_or("logs/big")?;
    assert!(big_meta.is_delta, "the inline delta reads as a delta");
    let stats = s.statistics().await?.database_stats;
    assert_eq!(stats.record_count, u64::try_from(records.len())?);
    assert_eq!(stats.schema_version, 16);
    let report = s.check_consistency_deep().await?;
    assert!(report.is_ok(), "{report:?}");

    // Writes after the upgrade continue the feed: a new collection, an overwrite, a new
    // version of the large document (a delta), a delete.
    let head = changes.last().map_or(0, |c| c.0);
    s.store("after", "a", &json!({"n": 1})).await?;
    s.store("imports", "i-0009", &json!({"n": 2})).await?;
    let big = documents
        .get(&("logs".to_owned(), "big".to_owned()))
        .ok_or("logs/big")?;
    let mut bigger = big.clone();
    bigger["game"] = json!("bigger");
    s.store("logs", "big", &bigger).await?;
    s.delete("imports", "i-0010").await?;
    let tail = s.changes_since(u64::try_from(head)?, 100).await?;
    let tail: Vec<(u64, &str, &str, ChangeKind)> = tail
        .iter()
        .map(|c| (c.seq, c.collection.as_str(), c.key.as_str(), c.kind))
        .collect();
    let h = u64::try_from(head)?;
    assert_eq!(
        tail,
        [
            (h + 1, "after", "a", ChangeKind::Put),
            (h + 2, "imports", "i-0009", ChangeKind::Put),
            (h + 3, "logs", "big", ChangeKind::Put),
            (h + 4, "imports", "i-0010", ChangeKind::Delete),
        ]
    );
    let overwritten = s.metadata("imports", "i-0009").await?.ok_or("missing")?;
    assert!(overwritten.updated_at > overwritten.created_at);
    s.close().await?;
    drop(s);

    {
        let c = Connection::open(&db)?;
        let v: i64 = c.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        assert_eq!(v, 16);
        let (zero, lengths): (i64, i64) = c.query_row(
            "SELECT (SELECT count(*) FROM changes WHERE kind_offset = 0),
                    (SELECT count(*) FROM blobs WHERE stored_len IS NOT NULL)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        assert!(zero > 0, "a put one version ahead stores 0");
        assert_eq!(lengths, 0, "every blob's stored length is its data's");
        let ok: String = c.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
        assert_eq!(ok, "ok");
    }
    let s = PersistentStorageManager::open(config).await?;
    let again = feed_from(&s, 0, 64).await?;
    assert_eq!(again.len(), changes.len() + 4);
    assert_eq!(again[..changes.len()], changes[..]);
    assert_eq!(
        s.retrieve::<Value>("logs", "big").await?,
        Some(bigger.clone())
    );
    let report = s.check_consistency_deep().await?;
    assert!(report.is_ok(), "{report:?}");
    s.close().await?;
    Ok(())
}

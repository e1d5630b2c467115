//! Schema 15 (issue #15, footprint): a store written by the build before it
//! (`fixtures/schema-v14.db`, schema 14) upgrades to the smaller change-log and record rows
//! and reads back the same: every record's metadata (times, version, expiry, content hash)
//! and document, the whole change feed (seq, collection, key, kind, version, time), the
//! statistics and the deep consistency check; writes after the upgrade continue the feed,
//! and the store reopens.
//!
//! The fixture was written by main's debug build at 2308f51 (schema 14) through its CLI
//! (`bitcraps-storage`), into an empty directory `D`, with the default settings (no
//! dictionary: fewer than 1,000 samples per collection):
//!
//! ```text
//! cli --data D demo --records 300 --tasks 4 --seed 7 --lobby-ttl 1s --roll-ttl 100y
//! cli --data D import imports.jsonl --batch-size 100  # import_doc(0..300) as imports/i-0000..
//! cli --data D put logs big - < big-1.json             # big_log(2000): chunked
//! cli --data D put logs big - < big-2.json             # big_log(2001): a delta over it
//! cli --data D delete imports i-0007
//! cli --data D put imports i-0008 '{"replaced":true}'
//! ```

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use bitcraps_storage::{ChangeKind, PersistentStorageManager, StorageConfig};
use rusqlite::Connection;
use serde_json::{Value, json};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// The imported documents (`imports/i-{i:04}`).
fn import_doc(i: usize) -> Value {
    json!({"id": format!("imp-{i:04}"), "table": i % 7, "stake": i * 5,
           "players": [format!("p{}", i % 11), format!("p{}", (i + 3) % 11)]})
}

/// The large document `logs/big` (a game log of `n` rolls).
fn big_log(n: usize) -> Value {
    let rolls: Vec<Value> = (0..n)
        .map(|i| json!({"roll": i, "dice": [i % 6 + 1, (i * 7) % 6 + 1], "shooter": format!("p{}", i % 13)}))
        .collect();
    json!({"game": "big", "rolls": rolls})
}

/// `t` in milliseconds since the epoch.
pub(crate) fn ms(t: SystemTime) -> Result<i64> {
    Ok(i64::try_from(t.duration_since(UNIX_EPOCH)?.as_millis())?)
}

/// A record as schema 14 stored it: created, updated, version, expiry, content hash.
type Stored = (i64, i64, i64, Option<i64>, String);

/// A change: seq, collection, key, kind, version, time (ms).
pub(crate) type Logged = (i64, String, String, i64, i64, i64);

/// The records by (collection, key).
type Records = BTreeMap<(String, String), Stored>;

/// Every record of the schema-14 file, and every change (seq → collection, key, kind,
/// version, time).
fn read_v14(c: &Connection) -> Result<(Records, Vec<Logged>)> {
    let records = c
        .prepare(
            "SELECT r.collection, r.key, r.created_at, r.updated_at, r.version, r.expires_at,
                    lower(hex(coalesce(r.delta_hash, b.hash)))
             FROM records r JOIN blobs b ON b.id = r.blob_id",
        )?
        .query_map([], |r| {
            Ok((
                (r.get(0)?, r.get(1)?),
                (r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?),
            ))
        })?
        .collect::<rusqlite::Result<BTreeMap<_, _>>>()?;
    let changes = c
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
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok((records, changes))
}

fn kind_code(kind: ChangeKind) -> i64 {
    match kind {
        ChangeKind::Put => 1,
        ChangeKind::Delete => 2,
        ChangeKind::Expire => 3,
    }
}

/// The whole feed through the API, as (seq, collection, key, kind, version, time).
async fn feed(s: &PersistentStorageManager) -> Result<Vec<Logged>> {
    // Small pages, so pages open on rows whose time is the previous row's.
    feed_from(s, 0, 37).await
}

/// The feed after `from` through the API, read in pages of `page`.
pub(crate) async fn feed_from(
    s: &PersistentStorageManager,
    from: u64,
    page: usize,
) -> Result<Vec<Logged>> {
    let mut out = Vec::new();
    let mut after = from;
    loop {
        let got = s.changes_since(after, page).await?;
        let Some(last) = got.last() else {
            return Ok(out);
        };
        after = last.seq;
        for c in got {
            out.push((
                i64::try_from(c.seq)?,
                c.collection,
                c.key,
                kind_code(c.kind),
                i64::try_from(c.version.get())?,
                ms(c.at)?,
            ));
        }
    }
}

async fn reads_back(s: &PersistentStorageManager, records: &Records) -> Result {
    let now = ms(SystemTime::now())?;
    let mut live = 0;
    for ((collection, key), (created, updated, version, expires, hash)) in records {
        if expires.is_some_and(|e| e <= now) {
            continue;
        }
        live += 1;
        let meta = s
            .metadata(collection, key)
            .await?
            .ok_or_else(|| format!("{collection}/{key} missing"))?;
        assert_eq!(ms(meta.created_at)?, *created, "{collection}/{key}");
        assert_eq!(ms(meta.updated_at)?, *updated, "{collection}/{key}");
        assert_eq!(
            i64::try_from(meta.version.get())?,
            *version,
            "{collection}/{key}"
        );
        assert_eq!(
            meta.expires_at.map(ms).transpose()?,
            *expires,
            "{collection}/{key}"
        );
        assert_eq!(&meta.content_hash, hash, "{collection}/{key}");
        assert!(
            s.retrieve::<Value>(collection, key).await?.is_some(),
            "{collection}/{key}"
        );
    }
    assert!(live > 500, "{live} live records");
    for i in (0..300).filter(|i| ![7, 8].contains(i)) {
        assert_eq!(
            s.retrieve::<Value>("imports", &format!("i-{i:04}")).await?,
            Some(import_doc(i)),
            "{i}"
        );
    }
    assert_eq!(
        s.retrieve::<Value>("imports", "i-0008").await?,
        Some(json!({"replaced": true}))
    );
    assert_eq!(s.retrieve::<Value>("imports", "i-0007").await?, None);
    assert_eq!(
        s.retrieve::<Value>("logs", "big").await?,
        Some(big_log(2001))
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_14_store_upgrades_with_its_records_and_change_feed() -> Result {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("bitcraps.db");
    std::fs::copy(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/schema-v14.db"),
        &db,
    )?;
    let (records, changes) = {
        let c = Connection::open(&db)?;
        let v: i64 = c.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        assert_eq!(v, 14);
        read_v14(&c)?
    };
    // What the fixture must hold for this test to mean something.
    assert!(
        records.values().any(|r| r.0 != r.1),
        "an overwritten record"
    );
    let kinds: std::collections::BTreeSet<i64> = changes.iter().map(|c| c.3).collect();
    assert_eq!(kinds, [1, 2, 3].into(), "puts, deletes and expiries");
    let collections: std::collections::BTreeSet<&str> =
        changes.iter().map(|c| c.1.as_str()).collect();
    assert!(collections.len() >= 4, "{collections:?}");
    assert!(
        changes.windows(2).any(|w| w[0].5 == w[1].5),
        "changes sharing a time"
    );

    let mut config = StorageConfig::with_data_path(dir.path());
    config.maintenance.background_tasks = false;
    let s = PersistentStorageManager::open(config.clone()).await?;
    assert_eq!(
        feed(&s).await?,
        changes,
        "the change feed after the upgrade"
    );
    reads_back(&s, &records).await?;
    assert_eq!(
        s.statistics().await?.database_stats.record_count,
        u64::try_from(records.len())?
    );
    let report = s.check_consistency_deep().await?;
    assert!(report.is_ok(), "{report:?}");

    // Writes after the upgrade continue the feed: a new collection, an overwrite, a delete.
    let head = changes.last().map_or(0, |c| c.0);
    s.store("after", "a", &json!({"n": 1})).await?;
    s.store("imports", "i-0009", &json!({"n": 2})).await?;
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
            (h + 3, "imports", "i-0010", ChangeKind::Delete),
        ]
    );
    let overwritten = s.metadata("imports", "i-0009").await?.ok_or("missing")?;
    assert!(overwritten.updated_at >= overwritten.created_at);
    s.close().await?;
    drop(s);

    {
        let c = Connection::open(&db)?;
        let v: i64 = c.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        assert_eq!(v, 16);
        let (same, nulls): (i64, i64) = c.query_row(
            "SELECT (SELECT count(*) FROM records WHERE updated_at = created_at),
                    (SELECT count(*) FROM changes WHERE at IS NULL)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        assert_eq!(
            same, 0,
            "an updated_at equal to created_at is stored as NULL"
        );
        assert!(nulls > 0, "changes sharing a time store it once");
        let ok: String = c.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
        assert_eq!(ok, "ok");
    }
    let s = PersistentStorageManager::open(config).await?;
    let mut expected = changes.clone();
    let again = feed(&s).await?;
    expected.extend(again.iter().skip(changes.len()).cloned());
    assert_eq!(again.len(), changes.len() + 3);
    assert_eq!(again, expected);
    let report = s.check_consistency_deep().await?;
    assert!(report.is_ok(), "{report:?}");
    s.close().await?;
    Ok(())
}

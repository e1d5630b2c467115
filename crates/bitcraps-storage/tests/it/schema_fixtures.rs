//! Databases written by earlier schema versions open, read back exactly, accept writes, and
//! end up with the latest schema's indexes.
//!
//! `fixtures/schema-v1.db` was written by version 0.1.0: one game per codec and four records
//! sharing one lobby blob.
//!
//! `fixtures/schema-v2.db` was written by the schema-version-2 code (the commit before schema
//! version 3), with background tasks off:
//! - `games/g-{i}` for each codec of `Codec::ALL` in order (each written by its own open with
//!   that codec, dictionaries off), each read once before close (`access_count` 1);
//! - `lobbies/l-0`..`l-3`: the same document, so one blob shared by four records;
//! - `rounds/r-001`..`r-023`: `round(i)` below, zstd with dictionaries trained after 16
//!   samples; `r-001`..`r-015` are stored without a dictionary, `r-016`..`r-023` with
//!   dictionary 1 (the only one);
//! - `rounds/r-000` replaced by `{"replaced": true}` (its first blob was freed, so blob ids
//!   have a gap), and `games/gone` written and deleted.
//!
//! `fixtures/schema-v4.db` is `schema-v2.db` brought to version 4 by the SQL of migrations 3
//! and 4 (the index change and the `meta` table with a store id and Redis secret) — the last
//! schema before record versions (version 5).
//!
//! `fixtures/schema-v5.db` is `schema-v4.db` brought to version 5 by the SQL of migration 5
//! (every record at version 1) — the last schema before record expiry and collection
//! settings (version 6) and encryption at rest (version 7, the `data_keys` table).
//!
//! `fixtures/schema-v7.db` is `schema-v5.db` brought to version 7 by the SQL of migrations 6
//! and 7, plus a default TTL of 10 minutes for `lobbies` and an expiry time (2100-01-01) on
//! `lobbies/l-0` — the last schema before the change log (version 8).

use std::path::Path;

use bitcraps_storage::{Codec, Expect, PersistentStorageManager, StorageConfig, Version};
use serde_json::{Value, json};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// The indexes of the latest schema: `blobs_by_hash` (full hash) and `records_by_blob` are
/// gone since version 3; since version 4 the `meta` table holds the store's identity (a
/// random store id and Redis secret, created by the upgrade); since version 5 every record
/// has a version and the clock is past every one of them; since version 6 records may expire
/// (found through the partial index `records_by_expiry`) and collections have settings;
/// since version 7 the (empty, for a plaintext store) `data_keys` table holds an encrypted
/// store's wrapped keys; since version 8 the change log (`changes`) and its clock
/// (`change_clock`, whose 'last' row is the log's head) record every committed change; since
/// version 9 large
/// documents are chunk lists (`chunks`, `blob_chunks`: empty after an upgrade), and since
/// version 10 the chunks' reference counts are rows of `chunk_refs`; since version 11 the
/// version clock is the 'version' row of `change_clock` (`version_clock` a view of it) and
/// `blobs_by_hash_prefix` leaves deltas out; since version 12 both clocks are read as the
/// change log's newest row or their `change_clock` row, whichever is higher; since version
/// 13 a record may carry a small delta (`delta_*` columns: NULL after an upgrade); since
/// version 14 `blobs_by_hash_prefix` holds the hash's first 4 bytes, not 8; since version
/// 15 the change log names collections by their id in `collection_ids` (unique names).
fn assert_latest_schema(db: &Path) -> Result {
    let conn = rusqlite::Connection::open(db)?;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    assert_eq!(version, 16);
    let inline: i64 = conn.query_row(
        "SELECT count(*) FROM records WHERE delta IS NOT NULL",
        [],
        |r| r.get(0),
    )?;
    assert_eq!(inline, 0, "an upgrade inlines nothing");
    let chunks: i64 = conn.query_row(
        "SELECT (SELECT count(*) FROM chunks) + (SELECT count(*) FROM blob_chunks)
              + (SELECT count(*) FROM chunk_refs)",
        [],
        |r| r.get(0),
    )?;
    assert_eq!(chunks, 0, "an upgrade chunks nothing");
    let (head, newest): (i64, Option<i64>) = conn.query_row(
        "SELECT max((SELECT value FROM change_clock WHERE name = 'last'),
                    coalesce((SELECT max(seq) FROM changes), 0)),
                (SELECT max(seq) FROM changes)",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    assert_eq!(
        Some(head).filter(|h| *h > 0),
        newest,
        "the clock is the log's head"
    );
    let settings: i64 =
        conn.query_row("SELECT count(*) FROM collection_settings", [], |r| r.get(0))?;
    assert!(settings >= 0);
    let keys: i64 = conn.query_row("SELECT count(*) FROM data_keys", [], |r| r.get(0))?;
    assert_eq!(keys, 0, "a plaintext store has no data keys");
    let (clock, newest): (i64, i64) = conn.query_row(
        "SELECT (SELECT last FROM version_clock), (SELECT max(version) FROM records)",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    assert!(
        clock >= newest && newest > 1,
        "clock {clock}, newest {newest}"
    );
    let tables: i64 = conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE name = 'version_clock' AND type = 'table'",
        [],
        |r| r.get(0),
    )?;
    assert_eq!(tables, 0, "the version clock is a row of change_clock");
    let meta = conn
        .prepare("SELECT name, length(value) FROM meta ORDER BY name")?
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    assert_eq!(
        meta,
        [("redis_secret".to_owned(), 64), ("store_id".to_owned(), 32)]
    );
    let indexes = conn
        .prepare("SELECT name, sql FROM sqlite_master WHERE type = 'index' ORDER BY name")?
        .query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    assert_eq!(
        indexes,
        [
            (
                "blobs_by_hash_prefix".to_owned(),
                Some(
                    "CREATE INDEX blobs_by_hash_prefix ON blobs(substr(hash, 1, 4)) \
                     WHERE codec <> 17"
                        .to_owned()
                )
            ),
            // Version 9: chunks are found by hash the way blobs are.
            (
                "chunks_by_hash_prefix".to_owned(),
                Some("CREATE INDEX chunks_by_hash_prefix ON chunks(substr(hash, 1, 8))".to_owned())
            ),
            (
                "records_by_expiry".to_owned(),
                Some(
                    "CREATE INDEX records_by_expiry ON records(expires_at) \
                     WHERE expires_at IS NOT NULL"
                        .to_owned()
                )
            ),
            // Version 15: UNIQUE (name) of `collection_ids`.
            ("sqlite_autoindex_collection_ids_1".to_owned(), None),
            // Version 7: UNIQUE (collection, version) of `data_keys`.
            ("sqlite_autoindex_data_keys_1".to_owned(), None)
        ]
    );
    let check: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    assert_eq!(check, "ok");
    Ok(())
}

fn round(i: u32) -> Value {
    json!({
        "round": i,
        "shooter": format!("player-{}", i % 5),
        "dice": [i % 6 + 1, (i * 7) % 6 + 1],
        "bets": [{"kind": "pass", "amount": 10 + i % 3}, {"kind": "field", "amount": 5}],
        "outcome": if i.is_multiple_of(3) { "point" } else { "natural" },
    })
}

fn game(codec: Codec) -> Value {
    json!({
        "codec": codec.name(),
        "rolls": [[3, 4], [6, 6], [2, 5]],
        "notes": "seven out, line away ".repeat(8),
    })
}

#[tokio::test]
async fn schema_v1_fixture_reads_back_and_upgrades() -> Result {
    let dir = tempfile::tempdir()?;
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/schema-v1.db"),
        dir.path().join("bitcraps.db"),
    )?;
    let s = PersistentStorageManager::open(StorageConfig::with_data_path(dir.path())).await?;
    for (i, codec) in Codec::ALL.into_iter().enumerate() {
        let key = format!("g-{i}");
        assert_eq!(s.retrieve::<Value>("games", &key).await?, Some(game(codec)));
        let meta = s.metadata("games", &key).await?.ok_or("missing")?;
        assert_eq!(meta.codec, codec, "{key}");
        // One read recorded in the fixture, one just now (buffered, included in metadata).
        assert_eq!(meta.access_count, 2);
        let lobby = s.retrieve::<Value>("lobbies", &format!("l-{i}")).await?;
        assert_eq!(lobby, Some(json!({"lobby": "default", "min_bet": 10})));
    }
    assert_eq!(
        s.metadata("lobbies", "l-0")
            .await?
            .ok_or("missing")?
            .shared_by,
        4
    );
    assert_versions_start_at_initial(&s, "lobbies", "l-0").await?;
    s.store("games", "new", &json!({"after": "upgrade"}))
        .await?;
    let stats = s.statistics().await?;
    assert_eq!(stats.database_stats.record_count, 9);
    assert!(s.check_consistency().await?.is_ok());
    s.close().await?;
    assert_latest_schema(&dir.path().join("bitcraps.db"))?;
    Ok(())
}

#[tokio::test]
async fn schema_v2_fixture_reads_back_and_upgrades() -> Result {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("bitcraps.db");
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/schema-v2.db"),
        &db,
    )?;
    let s = PersistentStorageManager::open(StorageConfig::with_data_path(dir.path())).await?;
    assert_eq!(s.collections().await?, ["games", "lobbies", "rounds"]);
    for (i, codec) in Codec::ALL.into_iter().enumerate() {
        let key = format!("g-{i}");
        assert_eq!(s.retrieve::<Value>("games", &key).await?, Some(game(codec)));
        let meta = s.metadata("games", &key).await?.ok_or("missing")?;
        assert_eq!(meta.codec, codec, "{key}");
        assert_eq!(meta.dictionary_id, None, "{key}");
        assert_eq!(meta.shared_by, 1, "{key}");
        assert_eq!(meta.access_count, 2, "{key}");
        let lobby = s.retrieve::<Value>("lobbies", &format!("l-{i}")).await?;
        assert_eq!(lobby, Some(json!({"lobby": "default", "min_bet": 10})));
        let meta = s.metadata("lobbies", &format!("l-{i}")).await?;
        assert_eq!(meta.ok_or("missing")?.shared_by, 4);
    }
    assert_eq!(s.retrieve::<Value>("games", "gone").await?, None);
    assert_eq!(
        s.retrieve::<Value>("rounds", "r-000").await?,
        Some(json!({"replaced": true}))
    );
    for i in 1..24u32 {
        let key = format!("r-{i:03}");
        assert_eq!(s.retrieve::<Value>("rounds", &key).await?, Some(round(i)));
        let meta = s.metadata("rounds", &key).await?.ok_or("missing")?;
        assert_eq!(meta.codec, Codec::Zstd, "{key}");
        assert_eq!(meta.shared_by, 1, "{key}");
        let dictionary = if i < 16 { None } else { Some(1) };
        assert_eq!(meta.dictionary_id, dictionary, "{key}");
    }
    let stats = s.statistics().await?;
    assert_eq!(stats.database_stats.record_count, 32);
    assert_eq!(stats.database_stats.blob_count, 29);
    assert_eq!(stats.database_stats.dictionary_count, 1);
    assert_versions_start_at_initial(&s, "rounds", "r-001").await?;
    // Writes after the upgrade: new content, content already stored (dedup goes through the
    // new hash index), and a replacement that frees a blob.
    s.store("rounds", "r-100", &round(100)).await?;
    s.store("rounds", "r-101", &round(5)).await?;
    s.store("lobbies", "l-0", &json!({"lobby": "vip"})).await?;
    let copy = s.metadata("rounds", "r-101").await?.ok_or("missing")?;
    assert_eq!(copy.shared_by, 2, "deduplicated against r-005");
    assert_eq!(
        s.metadata("lobbies", "l-1")
            .await?
            .ok_or("missing")?
            .shared_by,
        3
    );
    assert_eq!(
        s.retrieve::<Value>("rounds", "r-100").await?,
        Some(round(100))
    );
    assert!(s.check_consistency().await?.is_ok());
    s.close().await?;
    assert_latest_schema(&db)?;
    Ok(())
}

/// Records written before version 5 have version 1; a conditional write against it succeeds
/// once and gives a later version.
async fn assert_versions_start_at_initial(
    s: &PersistentStorageManager,
    collection: &str,
    key: &str,
) -> Result {
    let (value, version) = s
        .retrieve_versioned::<Value>(collection, key)
        .await?
        .ok_or("missing")?;
    assert_eq!(version, Version::INITIAL);
    assert_eq!(
        s.metadata(collection, key).await?.ok_or("missing")?.version,
        Version::INITIAL
    );
    let next = s
        .store_if(collection, key, &value, Expect::Version(Version::INITIAL))
        .await?;
    assert!(next > Version::INITIAL);
    let stale = s
        .store_if(collection, key, &value, Expect::Version(Version::INITIAL))
        .await;
    assert!(stale.is_err(), "{stale:?}");
    Ok(())
}

#[tokio::test]
async fn schema_v4_fixture_gets_versions() -> Result {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("bitcraps.db");
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/schema-v4.db"),
        &db,
    )?;
    let identity_before: String = rusqlite::Connection::open(&db)?.query_row(
        "SELECT value FROM meta WHERE name = 'store_id'",
        [],
        |r| r.get(0),
    )?;
    let s = PersistentStorageManager::open(StorageConfig::with_data_path(dir.path())).await?;
    assert_eq!(s.collections().await?, ["games", "lobbies", "rounds"]);
    for i in 1..24u32 {
        let key = format!("r-{i:03}");
        let (value, version) = s
            .retrieve_versioned::<Value>("rounds", &key)
            .await?
            .ok_or("missing")?;
        assert_eq!(value, round(i));
        assert_eq!(version, Version::INITIAL, "{key}");
    }
    assert_versions_start_at_initial(&s, "lobbies", "l-2").await?;
    let updated = s
        .update("rounds", "r-000", |v: Option<Value>| {
            let mut v = v?;
            v["updated"] = json!(true);
            Some(v)
        })
        .await?;
    assert_eq!(updated, Some(json!({"replaced": true, "updated": true})));
    assert!(s.check_consistency().await?.is_ok());
    s.close().await?;
    assert_latest_schema(&db)?;
    let identity_after: String = rusqlite::Connection::open(&db)?.query_row(
        "SELECT value FROM meta WHERE name = 'store_id'",
        [],
        |r| r.get(0),
    )?;
    assert_eq!(
        identity_before, identity_after,
        "the upgrade keeps the identity"
    );
    Ok(())
}

#[tokio::test]
async fn schema_v5_fixture_gets_expiry() -> Result {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("bitcraps.db");
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/schema-v5.db"),
        &db,
    )?;
    let mut config = StorageConfig::with_data_path(dir.path());
    config.maintenance.expiry_sweep_interval = std::time::Duration::ZERO;
    let s = PersistentStorageManager::open(config).await?;
    // Nothing written before expires.
    for i in 1..24u32 {
        let key = format!("r-{i:03}");
        let meta = s.metadata("rounds", &key).await?.ok_or("missing")?;
        assert_eq!(meta.expires_at, None, "{key}");
        assert_eq!(meta.version, Version::INITIAL, "{key}");
    }
    assert!(s.default_ttls().await?.is_empty());
    let minute = std::time::Duration::from_secs(60);
    s.set_default_ttl("rounds", Some(minute)).await?;
    s.store("rounds", "r-100", &round(100)).await?;
    s.store_with_ttl("lobbies", "l-9", &json!({"seat": 9}), minute)
        .await?;
    s.advance_clock(2 * minute);
    assert_eq!(s.retrieve::<Value>("rounds", "r-100").await?, None);
    assert_eq!(s.retrieve::<Value>("lobbies", "l-9").await?, None);
    assert_eq!(
        s.retrieve::<Value>("rounds", "r-001").await?,
        Some(round(1))
    );
    assert_eq!(s.sweep_expired().await?, 2);
    s.store("games", "after-upgrade", &json!({"open": true}))
        .await?;
    assert!(s.check_consistency().await?.is_ok());
    s.close().await?;
    assert_latest_schema(&db)?;
    Ok(())
}

/// A version-5 store upgrades to the latest version as plaintext (its data unchanged), and with a key
/// it is refused as a plaintext store holding data rather than half encrypted.
#[tokio::test]
async fn schema_v5_fixture_upgrades_and_stays_plaintext() -> Result {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("bitcraps.db");
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/schema-v5.db"),
        &db,
    )?;
    let key_dir = tempfile::tempdir()?;
    let key = key_dir.path().join("master.key");
    std::fs::write(
        &key,
        bitcraps_storage::MasterKey::generate()?.to_hex().as_bytes(),
    )?;
    let mut keyed = StorageConfig::with_data_path(dir.path());
    keyed.key = bitcraps_storage::KeyConfig::default().file(&key);
    let refused = PersistentStorageManager::open(keyed).await;
    assert!(
        matches!(refused, Err(bitcraps_storage::StorageError::NotEncrypted)),
        "{refused:?}"
    );
    let s = PersistentStorageManager::open(StorageConfig::with_data_path(dir.path())).await?;
    for i in 1..24u32 {
        let key = format!("r-{i:03}");
        assert_eq!(s.retrieve::<Value>("rounds", &key).await?, Some(round(i)));
    }
    assert_versions_start_at_initial(&s, "lobbies", "l-1").await?;
    assert!(s.check_consistency_deep().await?.is_ok());
    s.close().await?;
    assert_latest_schema(&db)?;
    Ok(())
}

/// A version-7 store upgrades to version 8 with an empty change log at seq 0: its records,
/// expiry times and settings are kept, and the first writes after the upgrade are seq 1, 2.
#[tokio::test]
async fn schema_v7_fixture_gets_a_change_log() -> Result {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("bitcraps.db");
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/schema-v7.db"),
        &db,
    )?;
    let mut config = StorageConfig::with_data_path(dir.path());
    config.maintenance.background_tasks = false;
    let s = PersistentStorageManager::open(config).await?;
    assert_eq!(s.change_head().await?, 0);
    assert!(s.changes_since(0, 100).await?.is_empty());
    let meta = s.metadata("lobbies", "l-0").await?.ok_or("missing")?;
    assert!(meta.expires_at.is_some(), "the expiry time is kept");
    assert_eq!(
        s.default_ttls().await?.len(),
        1,
        "the default TTL of lobbies is kept"
    );
    s.store("games", "after-upgrade", &json!({"open": true}))
        .await?;
    assert!(s.delete("lobbies", "l-1").await?);
    let changes = s.changes_since(0, 100).await?;
    let seen: Vec<(u64, &str, &str, bitcraps_storage::ChangeKind)> = changes
        .iter()
        .map(|c| (c.seq, c.collection.as_str(), c.key.as_str(), c.kind))
        .collect();
    assert_eq!(
        seen,
        [
            (
                1,
                "games",
                "after-upgrade",
                bitcraps_storage::ChangeKind::Put
            ),
            (2, "lobbies", "l-1", bitcraps_storage::ChangeKind::Delete),
        ]
    );
    assert_eq!(changes.get(1).map(|c| c.version), Some(Version::INITIAL));
    assert!(s.check_consistency().await?.is_ok());
    s.close().await?;
    assert_latest_schema(&db)?;
    Ok(())
}

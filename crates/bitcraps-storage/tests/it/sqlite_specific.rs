//! Behaviour specific to the SQLite backend, and fault injection through the backend seam.

use crate::common;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bitcraps_storage::testing::Pipeline;
use bitcraps_storage::testing::sqlite::SqliteBackend;
use bitcraps_storage::testing::{Backend, WriteOp};
use bitcraps_storage::{Codec, Expect, PersistentStorageManager, StorageConfig, StorageError};
use common::faulty::{Fault, FaultInjector, Method, When};
use common::nodes::DEADLINE;
use common::{Game, game, sqlite_fixture};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn db_path(config: &StorageConfig) -> PathBuf {
    config.database.data_path.join("bitcraps.db")
}

fn sqlite(config: &StorageConfig) -> bitcraps_storage::Result<SqliteBackend> {
    SqliteBackend::open(&crate::common::sqlite_options(db_path(config), 2))
}

fn raw_conn(config: &StorageConfig) -> Result<rusqlite::Connection> {
    Ok(rusqlite::Connection::open(db_path(config))?)
}

#[tokio::test]
async fn corrupted_blob_is_reported_not_returned() -> Result {
    let f = sqlite_fixture();
    let s = PersistentStorageManager::open(f.config.clone()).await?;
    s.store("games", "g", &game("g", 4)).await?;
    s.store("games", "plain", &7).await?;
    s.close().await?;
    drop(s);
    {
        let conn = raw_conn(&f.config)?;
        // Flip one bit in every stored blob.
        let rows: Vec<(i64, Vec<u8>)> = conn
            .prepare("SELECT id, data FROM blobs")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        for (id, mut data) in rows {
            let mid = data.len() / 2;
            data[mid] ^= 0x01;
            conn.execute(
                "UPDATE blobs SET data = ?1 WHERE id = ?2",
                rusqlite::params![data, id],
            )?;
        }
    }
    let s = PersistentStorageManager::open(f.config.clone()).await?;
    for key in ["g", "plain"] {
        match s.retrieve::<serde_json::Value>("games", key).await {
            Err(StorageError::Corruption { location, detail }) => {
                assert_eq!(location, format!("games/{key}"));
                assert!(!detail.is_empty());
            }
            other => panic!("expected corruption for {key}, got {other:?}"),
        }
    }
    s.close().await?;
    Ok(())
}

#[tokio::test]
async fn dangling_record_is_corruption_not_absence() -> Result {
    let f = sqlite_fixture();
    let s = PersistentStorageManager::open(f.config.clone()).await?;
    s.store("games", "g", &game("g", 1)).await?;
    s.close().await?;
    drop(s);
    raw_conn(&f.config)?.execute_batch("DELETE FROM blobs")?;
    let s = PersistentStorageManager::open(f.config.clone()).await?;
    let err = s
        .retrieve::<Game>("games", "g")
        .await
        .expect_err("dangling");
    assert!(err.is_corruption(), "{err}");
    assert!(err.to_string().contains("which does not exist"), "{err}");
    let report = s.check_consistency().await?;
    assert_eq!(report.dangling_records, 1);
    assert!(!report.is_ok());
    s.close().await?;
    Ok(())
}

#[tokio::test]
async fn second_open_of_the_same_database_is_refused() -> Result {
    let f = sqlite_fixture();
    let s = PersistentStorageManager::open(f.config.clone()).await?;
    let err = PersistentStorageManager::open(f.config.clone())
        .await
        .expect_err("locked");
    assert!(matches!(err, StorageError::Locked { .. }), "{err}");
    assert!(
        err.to_string().starts_with("the database is in use"),
        "{err}"
    );
    // The error names who holds the lock.
    let pid = format!("pid {} on host ", std::process::id());
    assert!(err.to_string().contains(&pid), "{err}");
    s.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_share_one_commit() -> Result {
    let f = sqlite_fixture();
    let backend = Arc::new(FaultInjector::new(Arc::new(sqlite(&f.config)?)));
    // Hold the first commit so that the other writers queue up behind it.
    let gate = backend.hold_next(Method::Apply, false);
    let s = PersistentStorageManager::with_backend(f.config.clone(), backend.clone())?;
    let first = {
        let s = s.clone();
        tokio::spawn(async move { s.store("games", "g-0", &game("g", 0)).await })
    };
    assert!(
        gate.arrivals(1, DEADLINE).await,
        "the first commit never started"
    );
    // Each of the others is queued once its future has been polled up to the commit wait.
    let mut rest: Vec<_> = (1..16)
        .map(|i| {
            let s = s.clone();
            Box::pin(async move { s.store("games", &format!("g-{i}"), &game("g", i)).await })
        })
        .collect();
    for write in &mut rest {
        std::future::poll_fn(|cx| {
            let _ = write.as_mut().poll(cx);
            std::task::Poll::Ready(())
        })
        .await;
    }
    gate.open();
    first.await??;
    for write in rest {
        write.await?;
    }
    let stats = s.statistics().await?;
    assert_eq!(stats.grouped_requests, 16);
    assert!(
        stats.group_commits < 16,
        "16 writers arriving during one commit must share later commits: {} commits",
        stats.group_commits
    );
    assert_eq!(stats.database_stats.record_count, 16);
    s.close().await?;
    Ok(())
}

#[tokio::test]
async fn failed_commit_leaves_cache_and_data_untouched() -> Result {
    let f = sqlite_fixture();
    let backend = Arc::new(FaultInjector::new(Arc::new(sqlite(&f.config)?)));
    let s = PersistentStorageManager::with_backend(f.config.clone(), backend.clone())?;
    s.store("games", "g", &1).await?;
    backend.inject(Method::Apply, When::Always, Fault::Fail);
    let err = s.store("games", "g", &2).await.expect_err("injected");
    assert!(err.to_string().contains("injected"), "{err}");
    assert!(s.delete("games", "g").await.is_err());
    // Neither the cache nor the database saw the failed writes.
    assert_eq!(s.retrieve::<i32>("games", "g").await?, Some(1));
    backend.clear(Method::Apply);
    s.store("games", "g", &3).await?;
    assert_eq!(s.retrieve::<i32>("games", "g").await?, Some(3));
    assert!(s.statistics().await?.errors >= 2);
    s.close().await?;
    Ok(())
}

/// The n-th commit fails alone: the writes before and after it are stored, the failed one is
/// neither stored nor cached.
#[tokio::test]
async fn the_nth_commit_fails_alone() -> Result {
    let f = sqlite_fixture();
    let backend = Arc::new(FaultInjector::new(Arc::new(sqlite(&f.config)?)));
    let s = PersistentStorageManager::with_backend(f.config.clone(), backend.clone())?;
    backend.fail_nth(Method::Apply, 2);
    s.store("games", "a", &1).await?;
    assert!(s.store("games", "b", &2).await.is_err());
    s.store("games", "c", &3).await?;
    assert_eq!(s.retrieve::<i32>("games", "a").await?, Some(1));
    assert_eq!(s.retrieve::<i32>("games", "b").await?, None);
    assert_eq!(s.retrieve::<i32>("games", "c").await?, Some(3));
    assert_eq!(backend.calls(Method::Apply), 3);
    assert!(s.check_consistency().await?.is_ok());
    s.close().await?;
    Ok(())
}

#[test]
fn a_failing_unit_rolls_back_alone() -> Result {
    let f = sqlite_fixture();
    let backend = sqlite(&f.config)?;
    let p = Pipeline {
        codec: Codec::Zstd,
        level: 3,
        max_value_size: 1 << 20,
        chunk_threshold: 0,
        keyframe_interval: 0,
    };
    let put = |k: &str, v: &str| -> Result<WriteOp> {
        Ok(WriteOp::Put {
            collection: "c".into(),
            key: k.into(),
            value: p.encode("c", k, v)?,
            now_ms: 1,
            keep_version: None,
            expires_ms: None,
        })
    };
    backend.apply(&[vec![put("seed", "shared")?]])?;
    // Make the stored content disagree with its hash's length: a later dedup hit on that
    // content must fail its unit, and only its unit.
    raw_conn(&f.config)?.execute_batch("UPDATE blobs SET raw_len = raw_len + 1")?;
    let results = backend.apply(&[
        vec![put("a", "one")?],
        vec![put("b", "two")?, put("c", "shared")?],
        vec![put("d", "three")?],
    ])?;
    assert_eq!(results.len(), 3);
    assert!(results[0].is_ok() && results[2].is_ok());
    assert!(matches!(results[1], Err(StorageError::Corruption { .. })));
    assert!(backend.get("c", "a")?.is_some());
    assert!(backend.get("c", "d")?.is_some());
    assert!(
        backend.get("c", "b")?.is_none(),
        "unit rolled back as a whole"
    );
    // The failed unit had no savepoint in the first pass (`group.rs`): the group ran again,
    // and the log holds exactly the committed puts, in order, with increasing versions.
    let log = backend.changes_since(0, 100)?;
    let keys: Vec<&str> = log.iter().map(|c| c.key.as_str()).collect();
    assert_eq!(keys, ["seed", "a", "d"]);
    assert!(log.windows(2).all(|w| w[0].version < w[1].version));
    backend.close()?;
    Ok(())
}

/// The settings a group reads are read once per group (`settings.rs`, `SettingsCache`):
/// a default TTL set by an earlier unit of the group applies to a later unit's put, and one
/// set by a unit that was rolled back does not, even after that unit's own put read it.
#[test]
fn a_group_reads_settings_as_its_units_left_them() -> Result {
    let f = sqlite_fixture();
    let backend = sqlite(&f.config)?;
    let p = Pipeline {
        codec: Codec::None,
        level: 0,
        max_value_size: 1 << 20,
        chunk_threshold: 0,
        keyframe_interval: 0,
    };
    let now = 1_000;
    let put = |k: &str| -> Result<WriteOp> {
        Ok(WriteOp::Put {
            collection: "c".into(),
            key: k.into(),
            value: p.encode("c", k, k)?,
            now_ms: now,
            keep_version: None,
            expires_ms: None,
        })
    };
    let ttl = |ms: Option<i64>| WriteOp::Setting {
        collection: "c".into(),
        name: "default_ttl_ms",
        value: ms,
    };
    let conflict = || WriteOp::Check {
        collection: "c".into(),
        key: "never-written".into(),
        expect: Expect::Exists,
        now_ms: now,
    };
    let expiry = |k: &str| -> Result<Option<i64>> {
        Ok(backend.get("c", k)?.ok_or("record missing")?.expires_ms)
    };
    // Before any TTL: read (and remembered) by the first put.
    let results = backend.apply(&[
        vec![put("plain")?],
        vec![ttl(Some(500))],
        vec![put("ttl")?],
        vec![ttl(Some(9_000)), put("gone")?, conflict()],
        vec![put("still-ttl")?],
    ])?;
    assert!(results[0].is_ok() && results[1].is_ok() && results[2].is_ok());
    assert!(matches!(results[3], Err(StorageError::Conflict { .. })));
    assert!(results[4].is_ok());
    assert_eq!(expiry("plain")?, None);
    assert_eq!(expiry("ttl")?, Some(now + 500));
    assert!(backend.get("c", "gone")?.is_none());
    assert_eq!(
        expiry("still-ttl")?,
        Some(now + 500),
        "a rolled-back unit's setting leaked into the next unit"
    );
    backend.close()?;
    Ok(())
}

/// Regression: a loop of cache hits never awaited anything, so on a busy runtime it starved
/// the task that was writing (found as a hang in `cache_never_serves_stale_values`).
#[tokio::test(flavor = "current_thread")]
async fn cache_hits_yield_to_other_tasks() -> Result {
    let f = sqlite_fixture();
    let s = PersistentStorageManager::open(f.config.clone()).await?;
    s.store("c", "k", &1).await?;
    let ran = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&ran);
    tokio::spawn(async move { flag.store(true, Ordering::SeqCst) });
    for _ in 0..10_000 {
        if ran.load(Ordering::SeqCst) {
            break;
        }
        let _: Option<i32> = s.retrieve("c", "k").await?;
    }
    assert!(
        ran.load(Ordering::SeqCst),
        "10,000 cache hits never yielded"
    );
    s.close().await?;
    Ok(())
}

/// Every file and directory the store creates is private (0600 / 0700) whatever the umask,
/// and files found more open are tightened on open. (The CLI test `file_modes` checks the
/// same through the binary under umask 022, with backups and restores.)
#[cfg(unix)]
#[tokio::test]
async fn store_files_are_private_and_tightened_on_open() -> Result {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("store");
    let mut config = StorageConfig::with_data_path(&data);
    config.maintenance.background_tasks = false;
    let s = PersistentStorageManager::open(config.clone()).await?;
    s.store("games", "g", &game("g", 1)).await?;
    s.close().await?;
    let mode = |p: &std::path::Path| -> std::io::Result<u32> {
        Ok(std::fs::metadata(p)?.permissions().mode() & 0o777)
    };
    assert_eq!(mode(&data)?, 0o700);
    let db = data.join("bitcraps.db");
    for entry in std::fs::read_dir(&data)? {
        let path = entry?.path();
        assert_eq!(mode(&path)?, 0o600, "{}", path.display());
    }
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644))?;
    let s = PersistentStorageManager::open(config).await?;
    assert_eq!(
        mode(&db)?,
        0o600,
        "an existing database is tightened on open"
    );
    s.close().await?;
    Ok(())
}

/// A unit reads each collection's default TTL once (issue #15: once per put was a statement
/// per record of a bulk load); a `Setting` in the same unit must not leave the puts after it
/// with the TTL read before it.
#[test]
fn a_setting_in_a_unit_applies_to_the_puts_after_it() -> Result {
    use bitcraps_storage::testing::OpOutcome;
    let f = sqlite_fixture();
    let backend = sqlite(&f.config)?;
    let p = Pipeline {
        codec: Codec::Zstd,
        level: 3,
        max_value_size: 1 << 20,
        chunk_threshold: 0,
        keyframe_interval: 0,
    };
    let put = |k: &str| -> Result<WriteOp> {
        Ok(WriteOp::Put {
            collection: "c".into(),
            key: k.into(),
            value: p.encode("c", k, k)?,
            now_ms: 1_000,
            keep_version: None,
            expires_ms: None,
        })
    };
    let ttl = |value: Option<i64>| WriteOp::Setting {
        collection: "c".into(),
        name: "default_ttl_ms",
        value,
    };
    let unit = vec![
        put("a")?,
        ttl(Some(60_000)),
        put("b")?,
        put("c")?,
        ttl(None),
        put("d")?,
    ];
    let outcomes = backend.apply(&[unit])?.remove(0)?;
    let expiries: Vec<Option<i64>> = outcomes
        .iter()
        .filter_map(|o| match o {
            OpOutcome::Put { expires_ms, .. } => Some(*expires_ms),
            _ => None,
        })
        .collect();
    assert_eq!(expiries, [None, Some(61_000), Some(61_000), None]);
    Ok(())
}

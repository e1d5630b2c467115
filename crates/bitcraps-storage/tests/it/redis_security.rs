//! The Redis tier's trust boundary (issue #12): whoever can write to Redis cannot make a node
//! serve a document the database does not hold, and no configuration difference between the
//! processes of one store leaves a stale window.
//!
//! - a forged, a replayed-from-another-key and an older-generation L2 entry are rejected, on
//!   SQLite+Redis and on PostgreSQL+Redis, and the node returns the database's value;
//! - a flood of unauthenticated invalidation messages is dropped and counted;
//! - two nodes spelling one PostgreSQL URL differently share one namespace;
//! - a process without Redis cannot write a store that runs with a Redis tier.
#![cfg(feature = "redis")]

use crate::common;

use std::time::Duration;

use bitcraps_storage::{PersistentStorageManager, StorageConfig, StorageError};
use common::nodes::{
    Nodes, TestResult, delete_namespace, node_config, redis_url, remote_stats, two_nodes_with,
    two_pg_nodes, unique_namespace, wait_connected, wait_until,
};
use common::{Game, game};

fn admin(url: &str) -> TestResult<redis::Connection> {
    Ok(redis::Client::open(url)?.get_connection_with_timeout(Duration::from_secs(2))?)
}

fn get(conn: &mut redis::Connection, key: &str) -> TestResult<Vec<u8>> {
    let value: Option<Vec<u8>> = redis::cmd("GET").arg(key).query(conn)?;
    Ok(value.ok_or_else(|| format!("{} is not in Redis", key.escape_debug()))?)
}

fn set(conn: &mut redis::Connection, key: &str, value: &[u8]) -> TestResult {
    redis::cmd("SET").arg(key).arg(value).query::<()>(conn)?;
    Ok(())
}

/// Both nodes without an in-process cache, so every read asks L2.
fn no_l1(config: &mut StorageConfig, _is_a: bool) {
    config.cache.size_mb = 0;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_l2_entries_are_rejected_on_sqlite() -> TestResult {
    let Some(url) = redis_url() else {
        return Ok(());
    };
    hostile_l2_entries_are_rejected(two_nodes_with(&url, "hostile_sqlite", |b| b, no_l1)?).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_l2_entries_are_rejected_on_postgres() -> TestResult {
    let Some(url) = redis_url() else {
        return Ok(());
    };
    let Some(nodes) = two_pg_nodes(&url, "hostile_pg", no_l1).await? else {
        return Ok(());
    };
    hostile_l2_entries_are_rejected(nodes).await
}

async fn hostile_l2_entries_are_rejected(nodes: Nodes) -> TestResult {
    let (a, b, ns) = (&nodes.a, &nodes.b, nodes.namespace.as_str());
    let mut redis = admin(&nodes.redis_url)?;
    let val = |key: &str| format!("{ns}:val:games\0{key}");
    let generation = |key: &str| format!("{ns}:gen:games\0{key}");
    let (g1, g2) = (game("g-1", 3), game("g-2", 4));
    a.store("games", "g-1", &g1).await?;
    a.store("games", "g-2", &g2).await?;
    // B fills L2 for both keys, then hits.
    for (key, want) in [("g-1", &g1), ("g-2", &g2)] {
        assert_eq!(b.retrieve::<Game>("games", key).await?.as_ref(), Some(want));
    }
    assert_eq!(b.retrieve::<Game>("games", "g-1").await?, Some(g1.clone()));
    let filled = remote_stats(b).await?;
    assert_eq!((filled.fills, filled.hits), (2, 1), "{filled:?}");
    let genuine_g1 = get(&mut redis, &val("g-1"))?;
    let forged = game("g-1", 99);
    assert_ne!(forged, g1);
    let forged_json = serde_json::to_vec(&forged)?;

    // 1. Forged, as the old format allowed: blake3(document) || document.
    let mut legacy = blake3::hash(&forged_json).as_bytes().to_vec();
    legacy.extend_from_slice(&forged_json);
    set(&mut redis, &val("g-1"), &legacy)?;
    assert_eq!(b.retrieve::<Game>("games", "g-1").await?, Some(g1.clone()));
    // 1b. Forged in the current format: a genuine entry's header and MAC, another document.
    let header_len = genuine_g1.len() - serde_json::to_vec(&g1)?.len();
    let mut spliced = genuine_g1.get(..header_len).ok_or("short entry")?.to_vec();
    spliced.extend_from_slice(&forged_json);
    set(&mut redis, &val("g-1"), &spliced)?;
    assert_eq!(b.retrieve::<Game>("games", "g-1").await?, Some(g1.clone()));
    let after_forgery = remote_stats(b).await?;
    assert_eq!(after_forgery.corrupt_entries, 1, "{after_forgery:?}");
    assert_eq!(after_forgery.rejected_entries, 1, "{after_forgery:?}");
    assert_eq!(after_forgery.hits, 1, "no forged entry was a hit");

    // 2. Replayed from another key: g-1's genuine entry (and its generation) under g-2.
    let g1_generation = get(&mut redis, &generation("g-1"))?;
    set(&mut redis, &generation("g-2"), &g1_generation)?;
    set(&mut redis, &val("g-2"), &genuine_g1)?;
    assert_eq!(b.retrieve::<Game>("games", "g-2").await?, Some(g2.clone()));
    assert_eq!(remote_stats(b).await?.rejected_entries, 2);

    // 3. An older generation of the same key: g-1 is overwritten, then its old entry comes
    //    back.
    let g1_new = game("g-1", 5);
    a.store("games", "g-1", &g1_new).await?;
    assert_eq!(
        b.retrieve::<Game>("games", "g-1").await?,
        Some(g1_new.clone())
    );
    set(&mut redis, &val("g-1"), &genuine_g1)?;
    assert_eq!(
        b.retrieve::<Game>("games", "g-1").await?,
        Some(g1_new.clone())
    );
    let end = remote_stats(b).await?;
    assert_eq!(end.rejected_entries, 3, "{end:?}");
    assert_eq!(end.errors, 0);
    // The rejected entry was replaced by a genuine fill: the next read is a hit again.
    let hits = end.hits;
    assert_eq!(b.retrieve::<Game>("games", "g-1").await?, Some(g1_new));
    assert_eq!(remote_stats(b).await?.hits, hits + 1);
    Ok(())
}

/// Forged invalidations (what anyone who can PUBLISH sends) are dropped and counted: they
/// evict nothing, and a genuine write still reaches the other node at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_invalidations_are_dropped() -> TestResult {
    let Some(url) = redis_url() else {
        return Ok(());
    };
    let nodes = two_nodes_with(&url, "flood", |b| b, |_, _| {})?;
    let (a, b) = (&nodes.a, &nodes.b);
    wait_connected(b).await?;
    let v1 = game("g-1", 1);
    a.store("games", "g-1", &v1).await?;
    // A's genuine announcement of that write arrives first, so it cannot evict what B reads.
    wait_until("B heard A's write", || async {
        Ok(remote_stats(b).await?.invalidations_received == 1)
    })
    .await?;
    assert_eq!(b.retrieve::<Game>("games", "g-1").await?, Some(v1.clone()));
    let mut redis = admin(&url)?;
    let channel = format!("{}:invalidate", nodes.namespace);
    const FLOOD: u64 = 2_000;
    for i in 0..FLOOD {
        let forged = serde_json::json!({
            "origin": format!("attacker-{i}"),
            "keys": ["games\u{0}g-1"],
            "mac": "00".repeat(32),
        });
        redis::cmd("PUBLISH")
            .arg(&channel)
            .arg(serde_json::to_vec(&forged)?)
            .query::<i64>(&mut redis)?;
    }
    wait_until("B dropped every forged message", || async {
        Ok(remote_stats(b).await?.rejected_messages >= FLOOD)
    })
    .await?;
    let stats = remote_stats(b).await?;
    assert_eq!(stats.rejected_messages, FLOOD);
    assert_eq!(stats.invalidations_received, 1, "{stats:?}");
    assert!(stats.connected);
    // B's in-process entry survived the flood: reading it asks neither Redis nor the database.
    let l2_lookups = stats.hits + stats.misses;
    assert_eq!(b.retrieve::<Game>("games", "g-1").await?, Some(v1));
    let after = remote_stats(b).await?;
    assert_eq!(after.hits + after.misses, l2_lookups, "{after:?}");
    // A genuine write still gets through.
    let v2 = game("g-1", 2);
    a.store("games", "g-1", &v2).await?;
    wait_until("B reads A's new value", || async {
        Ok(b.retrieve::<Game>("games", "g-1").await? == Some(v2.clone()))
    })
    .await?;
    assert_eq!(remote_stats(b).await?.invalidations_received, 2);
    Ok(())
}

/// `localhost` and `127.0.0.1` name one PostgreSQL database: both nodes derive the same
/// namespace from the store id in it, so B's in-process cache hears A's write. (With the old
/// URL-text namespace B kept serving the old value.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn differently_spelled_urls_share_one_namespace() -> TestResult {
    let Some(url) = redis_url() else {
        return Ok(());
    };
    let Some(pg) = common::postgres_url() else {
        return Ok(());
    };
    if !pg.contains("127.0.0.1") {
        common::skip("BITCRAPS_TEST_POSTGRES_URL does not name 127.0.0.1");
        return Ok(());
    }
    let schema = common::PgSchema::create(&pg);
    let (dir_a, dir_b) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let open = |dir: &std::path::Path, db_url: String| {
        let mut config = node_config(dir, &url, "unused");
        config.redis.namespace = None;
        config.database.url = Some(db_url);
        PersistentStorageManager::open(config)
    };
    let a = open(dir_a.path(), schema.url()).await?;
    let b = open(dir_b.path(), schema.url().replace("127.0.0.1", "localhost")).await?;
    let namespace = remote_stats(&a).await?.namespace;
    let result = async {
        assert_eq!(remote_stats(&b).await?.namespace, namespace);
        assert!(namespace.starts_with("bitcraps:"), "{namespace}");
        wait_connected(&b).await?;
        let v1 = game("g-1", 1);
        a.store("games", "g-1", &v1).await?;
        assert_eq!(b.retrieve::<Game>("games", "g-1").await?, Some(v1));
        let v2 = game("g-1", 2);
        a.store("games", "g-1", &v2).await?;
        wait_until("B reads A's new value", || async {
            Ok(b.retrieve::<Game>("games", "g-1").await? == Some(v2.clone()))
        })
        .await?;
        TestResult::Ok(())
    }
    .await;
    a.close().await?;
    b.close().await?;
    delete_namespace(&url, &namespace);
    result
}

/// A store opened once with a Redis tier refuses writes from a process without one, with an
/// error saying why; reads still work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_without_redis_cannot_write_a_redis_store() -> TestResult {
    let Some(url) = redis_url() else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let namespace = unique_namespace("no_redis_writer");
    let config = node_config(dir.path(), &url, &namespace);
    let s = PersistentStorageManager::open(config.clone()).await?;
    let v1 = game("g-1", 1);
    s.store("games", "g-1", &v1).await?;
    s.close().await?;
    delete_namespace(&url, &namespace);

    let mut without = config;
    without.redis.url = None;
    let s = PersistentStorageManager::open(without).await?;
    assert_eq!(s.retrieve::<Game>("games", "g-1").await?, Some(v1.clone()));
    let err = s.store("games", "g-1", &game("g-1", 2)).await.err();
    assert!(
        matches!(err, Some(StorageError::RedisTierRequired)),
        "{err:?}"
    );
    let message = err.map(|e| e.to_string()).unwrap_or_default();
    assert!(
        message.contains("Redis tier") && message.contains("redis.url"),
        "{message}"
    );
    assert!(matches!(
        s.delete("games", "g-1").await,
        Err(StorageError::RedisTierRequired)
    ));
    assert_eq!(s.retrieve::<Game>("games", "g-1").await?, Some(v1));
    s.close().await?;
    Ok(())
}

/// The same for a third process next to two PostgreSQL nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_without_redis_cannot_write_next_to_pg_nodes() -> TestResult {
    let Some(url) = redis_url() else {
        return Ok(());
    };
    let Some(nodes) = two_pg_nodes(&url, "pg_no_redis_writer", |_, _| {}).await? else {
        return Ok(());
    };
    let v1 = game("g-1", 1);
    nodes.a.store("games", "g-1", &v1).await?;
    let dir = tempfile::tempdir()?;
    let mut config = nodes.a.config().clone();
    config.database.data_path = dir.path().to_owned();
    config.redis.url = None;
    let operator = PersistentStorageManager::open(config).await?;
    assert_eq!(
        operator.retrieve::<Game>("games", "g-1").await?,
        Some(v1.clone())
    );
    assert!(matches!(
        operator.store("games", "g-1", &game("g-1", 2)).await,
        Err(StorageError::RedisTierRequired)
    ));
    assert_eq!(nodes.b.retrieve::<Game>("games", "g-1").await?, Some(v1));
    operator.close().await?;
    Ok(())
}

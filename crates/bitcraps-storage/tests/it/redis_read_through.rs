//! The Redis L2 tier on one node: read-through, verified entries, and a dead Redis that is
//! never an error.
#![cfg(feature = "redis")]

use crate::common;

use std::time::Duration;

use bitcraps_storage::PersistentStorageManager;
use common::nodes::{TestResult, node_config, redis_url, remote_stats, unique_namespace};
use common::{Game, game};

/// With L1 disabled, the second read of a key is an L2 hit; a damaged L2 entry (garbage
/// written over it in Redis) is a miss that heals, never an error or wrong data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_read_is_an_l2_hit_and_damage_heals() -> TestResult {
    let Some(url) = redis_url() else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let namespace = unique_namespace("read_through");
    let mut config = node_config(dir.path(), &url, &namespace);
    config.cache.size_mb = 0;
    let s = PersistentStorageManager::open(config).await?;
    let g = game("g-1", 4);
    s.store("games", "g-1", &g).await?;

    assert_eq!(s.retrieve::<Game>("games", "g-1").await?, Some(g.clone()));
    let after_first = remote_stats(&s).await?;
    assert_eq!((after_first.hits, after_first.misses), (0, 1));
    assert_eq!(after_first.fills, 1, "the database read filled L2");

    assert_eq!(s.retrieve::<Game>("games", "g-1").await?, Some(g.clone()));
    let after_second = remote_stats(&s).await?;
    assert_eq!(after_second.hits, 1, "{after_second:?}");
    assert_eq!(after_second.misses, 1);

    // Damage the entry behind the store's back.
    let client = redis::Client::open(url.as_str())?;
    let mut conn = client.get_connection_with_timeout(Duration::from_secs(2))?;
    let value_key = format!("{namespace}:val:games\0g-1");
    let exists: bool = redis::cmd("EXISTS").arg(&value_key).query(&mut conn)?;
    assert!(exists, "the documented key layout holds the value");
    redis::cmd("SET")
        .arg(&value_key)
        .arg(b"garbage that is no entry".as_slice())
        .query::<()>(&mut conn)?;

    assert_eq!(s.retrieve::<Game>("games", "g-1").await?, Some(g.clone()));
    let damaged = remote_stats(&s).await?;
    assert_eq!(damaged.corrupt_entries, 1);
    assert_eq!(damaged.hits, 1, "a damaged entry is not a hit");
    assert_eq!(damaged.fills, 2, "the miss refilled the entry");
    assert_eq!(damaged.errors, 0);

    assert_eq!(s.retrieve::<Game>("games", "g-1").await?, Some(g));
    assert_eq!(remote_stats(&s).await?.hits, 2, "healed");
    assert_eq!(s.statistics().await?.errors, 0);
    s.close().await?;
    common::nodes::delete_namespace(&url, &namespace);
    Ok(())
}

/// Issue #17: the statistics count the tier's entries and bytes in Redis (this namespace
/// only, glob characters in it escaped), and so do the l2 gauges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statistics_count_the_entries_in_redis() -> TestResult {
    let Some(url) = redis_url() else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    // A namespace with glob characters: SCAN MATCH must not read them as a pattern.
    let namespace = unique_namespace("census[*]?");
    let mut config = node_config(dir.path(), &url, &namespace);
    config.cache.size_mb = 0;
    let s = PersistentStorageManager::open(config).await?;
    // A key of another namespace that the pattern, unescaped, would have matched.
    let client = redis::Client::open(url.as_str())?;
    let mut conn = client.get_connection_with_timeout(Duration::from_secs(2))?;
    let decoy = format!(
        "{}:val:decoy",
        namespace.replacen("census[*]?", "census*X", 1)
    );
    redis::cmd("SET")
        .arg(&decoy)
        .arg("0123456789")
        .query::<()>(&mut conn)?;

    let before = remote_stats(&s).await?;
    assert_eq!(
        (before.entries, before.bytes),
        (Some(0), Some(0)),
        "{before:?}"
    );
    for i in 0..3 {
        s.store("games", &format!("g-{i}"), &game(&format!("g-{i}"), i))
            .await?;
        let _ = s.retrieve::<Game>("games", &format!("g-{i}")).await?;
    }
    let filled = remote_stats(&s).await?;
    assert_eq!(filled.fills, 3);
    assert_eq!(filled.entries, Some(3), "{filled:?}");
    let bytes = filled.bytes.unwrap_or_default();
    assert!(
        bytes > 3 * 32,
        "three entries, each a MAC and a document: {bytes}"
    );
    // A write invalidates its entry in Redis: one fewer.
    s.store("games", "g-0", &game("g-0", 9)).await?;
    assert_eq!(remote_stats(&s).await?.entries, Some(2));
    s.close().await?;
    redis::cmd("DEL").arg(&decoy).query::<()>(&mut conn)?;
    common::nodes::delete_namespace(&url, &namespace);
    Ok(())
}

/// A node whose Redis does not answer keeps working from the database: no error reaches the
/// caller, the failures are counted, and the in-process cache is bypassed (untrusted).
/// Needs no Redis: it points at a closed port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_redis_is_never_an_error() -> TestResult {
    let dir = tempfile::tempdir()?;
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    drop(listener);
    let mut config = node_config(
        dir.path(),
        &format!("redis://127.0.0.1:{port}"),
        "bitcraps-test:unreachable",
    );
    config.redis.timeout = Duration::from_millis(100);
    let s = PersistentStorageManager::open(config).await?;
    for i in 0..20u32 {
        let key = format!("g-{}", i % 3);
        s.store("games", &key, &game(&key, i)).await?;
        assert_eq!(
            s.retrieve::<Game>("games", &key).await?,
            Some(game(&key, i))
        );
        assert!(s.delete("games", "absent").await.is_ok());
    }
    let stats = s.statistics().await?;
    let remote = stats.remote_cache.expect("tier configured");
    assert!(!remote.connected);
    assert!(remote.errors > 0, "{remote:?}");
    assert_eq!(remote.hits, 0);
    assert!(
        remote.pending_invalidations > 0,
        "kept for retry: {remote:?}"
    );
    assert_eq!(stats.cache_hits, 0, "an untrusted L1 is not read");
    assert_eq!(stats.errors, 0);
    s.close().await?;
    Ok(())
}

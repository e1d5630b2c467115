//! The keyframe cache (issue #16, `chunk/keyframes.rs`): delta writes and reads take the
//! decoded keyframe from a bounded cache instead of decompressing its chunks each time. It
//! must stay coherent — a new keyframe, a delete and a rewrite of the key, or another key
//! with other content, never read back a stale document — and its bytes are reported.

use crate::common;

use bitcraps_storage::PersistentStorageManager;
use serde_json::{Value, json};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// A game log of `rolls` rolls of game `game` (~130 bytes each).
fn log(game: u64, rolls: u64) -> Value {
    let rolls: Vec<Value> = (0..rolls)
        .map(|n| json!({"n": n, "dice": [n % 6 + 1, (n * 7 + game) % 6 + 1], "game": game}))
        .collect();
    json!({"rolls": rolls})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deltas_read_back_exactly_through_the_cache() -> Result {
    let f = common::sqlite_fixture();
    let mut config = f.config.clone();
    config.maintenance.background_tasks = false;
    // No document cache: every read assembles the document from the database.
    config.cache.size_mb = 0;
    config.compression.keyframe_interval = 4;
    let s = PersistentStorageManager::open(config).await?;
    for rolls in 3_000..3_010 {
        s.store("logs", "a", &log(1, rolls)).await?;
        assert_eq!(s.retrieve::<Value>("logs", "a").await?, Some(log(1, rolls)));
    }
    let meta = s.metadata("logs", "a").await?.ok_or("missing")?;
    assert!(meta.is_delta, "{meta:?}");
    let cache = s.statistics().await?.cache_stats;
    assert!(cache.keyframe_entries >= 1, "{cache:?}");
    assert!(cache.keyframe_bytes > 100_000, "{cache:?}");

    // Another game under the same key: a new keyframe, then deltas against it.
    for rolls in 3_000..3_003 {
        s.store("logs", "a", &log(2, rolls)).await?;
        assert_eq!(s.retrieve::<Value>("logs", "a").await?, Some(log(2, rolls)));
    }
    // Deleted and written again from the first game's history.
    s.delete("logs", "a").await?;
    assert_eq!(s.retrieve::<Value>("logs", "a").await?, None);
    for rolls in 3_005..3_008 {
        s.store("logs", "a", &log(1, rolls)).await?;
        assert_eq!(s.retrieve::<Value>("logs", "a").await?, Some(log(1, rolls)));
    }
    // A second key with its own deltas, read alternately with the first.
    for rolls in 3_000..3_003 {
        s.store("logs", "b", &log(3, rolls)).await?;
        assert_eq!(s.retrieve::<Value>("logs", "b").await?, Some(log(3, rolls)));
        assert_eq!(s.retrieve::<Value>("logs", "a").await?, Some(log(1, 3_007)));
    }
    let report = s.check_consistency_deep().await?;
    assert!(report.is_ok(), "{report:?}");
    s.close().await?;
    Ok(())
}

/// A keyframe write fills the cache with its own document (`store/delta.rs`,
/// `remember_keyframe`): the first delta after it reads no chunk back, and the entry then
/// also holds the hashing states of `chunk/prefix_hash.rs`. Before, the cache stayed empty
/// until the first delta decoded the keyframe from its chunks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyframe_write_fills_the_cache() -> Result {
    let f = common::sqlite_fixture();
    let mut config = f.config.clone();
    config.maintenance.background_tasks = false;
    config.cache.size_mb = 0;
    let s = PersistentStorageManager::open(config).await?;
    s.store("logs", "a", &log(1, 3_000)).await?;
    let meta = s.metadata("logs", "a").await?.ok_or("missing")?;
    assert!(meta.chunk_count > 1 && !meta.is_delta, "{meta:?}");
    let cache = s.statistics().await?.cache_stats;
    assert_eq!(cache.keyframe_entries, 1, "{cache:?}");
    let before = cache.keyframe_bytes;
    s.store("logs", "a", &log(1, 3_001)).await?;
    assert_eq!(s.retrieve::<Value>("logs", "a").await?, Some(log(1, 3_001)));
    let cache = s.statistics().await?.cache_stats;
    assert_eq!(cache.keyframe_entries, 1, "{cache:?}");
    assert!(
        cache.keyframe_bytes > before,
        "the states are kept: {cache:?}"
    );
    s.close().await?;
    Ok(())
}

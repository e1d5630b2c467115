//! Storing exactly a large document's current value again keeps its delta depth: under
//! deduplication the rewrite is the same content as the current delta, yet it was encoded
//! one version deeper each time, so identical rewrites alone ran the chain to its end (reads
//! of every version between keyframes decode more) and forced an early keyframe.

use crate::common;

use bitcraps_storage::PersistentStorageManager;
use serde_json::{Value, json};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// The JSON text of a game log of `rolls` rolls (~60 bytes each).
fn log(rolls: u64) -> String {
    let rolls: Vec<Value> = (0..rolls)
        .map(|n| json!({"n": n, "dice": [n % 6 + 1, (n * 7) % 6 + 1]}))
        .collect();
    json!({ "rolls": rolls }).to_string()
}

async fn is_delta(s: &PersistentStorageManager) -> Result<bool> {
    Ok(s.metadata("logs", "a").await?.ok_or("missing")?.is_delta)
}

/// How the identical versions are written.
#[derive(Clone, Copy, PartialEq)]
enum Via {
    /// `store_json`, this process's last write known (the delta encoded on the caller's task).
    Text,
    /// `store_json` after reopening: the current version read from the database.
    TextReopened,
    /// `store` of a value (the delta encoded on the blocking pool).
    Value,
}

async fn identical_rewrites_keep_the_depth(via: Via) -> Result {
    let f = common::sqlite_fixture();
    let mut config = f.config.clone();
    config.maintenance.background_tasks = false;
    config.compression.keyframe_interval = 4;
    let mut s = PersistentStorageManager::open(config.clone()).await?;
    s.store_json("logs", "a", &log(3_000)).await?;
    assert!(!is_delta(&s).await?, "the first version is a keyframe");
    s.store_json("logs", "a", &log(3_001)).await?;
    assert!(is_delta(&s).await?, "depth 1");
    // The same value again, more times than the chain is long.
    for n in 0..4 {
        if via == Via::TextReopened {
            s.close().await?;
            s = PersistentStorageManager::open(config.clone()).await?;
        }
        let before = s.metadata("logs", "a").await?.ok_or("missing")?.version;
        if via == Via::Value {
            let value: Value = serde_json::from_str(&log(3_001))?;
            s.store("logs", "a", &value).await?;
        } else {
            s.store_json("logs", "a", &log(3_001)).await?;
        }
        let after = s.metadata("logs", "a").await?.ok_or("missing")?.version;
        assert!(after > before, "a rewrite is still a new version");
        assert!(
            is_delta(&s).await?,
            "identical rewrite {n} went deeper, to a keyframe"
        );
        assert_eq!(
            s.retrieve_raw("logs", "a").await?.as_deref(),
            Some(log(3_001).as_bytes())
        );
    }
    // Depth 2 and 3 are still deltas; depth 4 is the keyframe.
    for rolls in 3_002..3_005 {
        s.store_json("logs", "a", &log(rolls)).await?;
        assert_eq!(is_delta(&s).await?, rolls < 3_004, "{rolls}");
    }
    assert!(s.check_consistency_deep().await?.is_ok());
    s.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identical_rewrite_of_a_delta_keeps_its_depth() -> Result {
    identical_rewrites_keep_the_depth(Via::Text).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identical_rewrite_of_a_stored_value_keeps_its_depth() -> Result {
    identical_rewrites_keep_the_depth(Via::Value).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identical_rewrite_read_from_the_database_keeps_its_depth() -> Result {
    identical_rewrites_keep_the_depth(Via::TextReopened).await
}

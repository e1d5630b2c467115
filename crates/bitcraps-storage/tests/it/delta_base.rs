//! A delta write's base (`store/delta.rs`, `chunk/latest.rs`): when this process committed
//! the key's current version and its keyframe is cached, the next version is made a delta
//! of that keyframe without reading the key's record back from the database (a read that
//! cost ~16 page reads after every commit). The versions read back exactly whatever
//! happened to the key in between — a delete, a small value, an expiry sweep — and a new
//! keyframe still comes every `keyframe_interval` versions.

use crate::common;

use std::time::Duration;

use bitcraps_storage::PersistentStorageManager;
use common::faulty::{Method, faulty_sqlite};
use serde_json::{Value, json};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// The JSON text of a game log of `rolls` rolls of game `game` (~60 bytes each).
fn log(game: u64, rolls: u64) -> String {
    let rolls: Vec<Value> = (0..rolls)
        .map(|n| json!({"n": n, "dice": [n % 6 + 1, (n * 7 + game) % 6 + 1], "game": game}))
        .collect();
    json!({ "rolls": rolls }).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delta_of_this_processes_last_write_reads_no_record() -> Result {
    let f = common::sqlite_fixture();
    let backend = faulty_sqlite(&f.config)?;
    let mut config = f.config.clone();
    config.maintenance.background_tasks = false;
    // No document cache: reads go to the database, and only the writes' base is counted.
    config.cache.size_mb = 0;
    config.compression.keyframe_interval = 4;
    let s = PersistentStorageManager::with_backend(config, backend.clone())?;
    s.store_json("logs", "a", &log(1, 3_000)).await?;
    let meta = s.metadata("logs", "a").await?.ok_or("missing")?;
    assert!(meta.chunk_count > 1 && !meta.is_delta, "{meta:?}");

    // Three deltas of the keyframe, then a keyframe again (depth 4 = keyframe_interval).
    for rolls in 3_001..3_005 {
        let gets = backend.calls(Method::Get);
        s.store_json("logs", "a", &log(1, rolls)).await?;
        assert_eq!(
            backend.calls(Method::Get),
            gets,
            "the write of {rolls} rolls read the record back"
        );
        let meta = s.metadata("logs", "a").await?.ok_or("missing")?;
        assert_eq!(meta.is_delta, rolls < 3_004, "{rolls}: {meta:?}");
        let got = s.retrieve_raw("logs", "a").await?.ok_or("missing")?;
        assert_eq!(&*got, log(1, rolls).as_bytes(), "{rolls}");
    }
    // The same through `store` of a value.
    let value: Value = serde_json::from_str(&log(1, 3_005))?;
    let gets = backend.calls(Method::Get);
    s.store("logs", "a", &value).await?;
    assert_eq!(backend.calls(Method::Get), gets);
    assert!(s.metadata("logs", "a").await?.ok_or("missing")?.is_delta);
    assert_eq!(s.retrieve::<Value>("logs", "a").await?, Some(value));

    // A small value in between, a delete, an expiry: each version still reads back exactly.
    s.store_json("logs", "a", "{\"small\":true}").await?;
    s.store_json("logs", "a", &log(1, 3_006)).await?;
    assert_eq!(
        s.retrieve_raw("logs", "a").await?.as_deref(),
        Some(log(1, 3_006).as_bytes())
    );
    s.delete("logs", "a").await?;
    s.store_json("logs", "a", &log(2, 3_000)).await?;
    assert_eq!(
        s.retrieve_raw("logs", "a").await?.as_deref(),
        Some(log(2, 3_000).as_bytes())
    );
    s.store_with_ttl("logs", "a", &json!({"brief": 1}), Duration::from_millis(5))
        .await?;
    s.advance_clock(Duration::from_secs(1));
    s.sweep_expired().await?;
    s.store_json("logs", "a", &log(1, 3_007)).await?;
    s.store_json("logs", "a", &log(1, 3_008)).await?;
    assert_eq!(
        s.retrieve_raw("logs", "a").await?.as_deref(),
        Some(log(1, 3_008).as_bytes())
    );
    let report = s.check_consistency_deep().await?;
    assert!(report.is_ok(), "{report:?}");
    s.close().await?;

    // Reopened: every version this process wrote is there.
    let mut config = f.config.clone();
    config.maintenance.background_tasks = false;
    let s = PersistentStorageManager::open(config).await?;
    assert_eq!(
        s.retrieve_raw("logs", "a").await?.as_deref(),
        Some(log(1, 3_008).as_bytes())
    );
    s.close().await?;
    Ok(())
}

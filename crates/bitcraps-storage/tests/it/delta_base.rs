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

/// `{"p":"aaa…"}` with `filler` bytes of filler: its first `6 + n` bytes are those of any
/// longer one, so a version of `filler = n` shares exactly `6 + n` bytes with the keyframe.
fn padded(filler: usize) -> String {
    format!("{{\"p\":\"{}\"}}", "a".repeat(filler))
}

/// The prefix a version shares with its keyframe is compared once and used by the JSON
/// check's marks, the splice and the resumed hash (`chunk::common_prefix`): versions that
/// share exactly a multiple of the 16 KiB stride (the marks' and the hash states'), one byte
/// more or less, all of the keyframe (identical text) or all of themselves (shorter than the
/// keyframe) are deltas that read back exactly, with deduplication and without.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deltas_sharing_a_prefix_up_to_a_stride_boundary_read_back_exactly() -> Result {
    const STRIDE: usize = 16 * 1024;
    for deduplication in [true, false] {
        let f = common::sqlite_fixture();
        let mut config = f.config.clone();
        config.maintenance.background_tasks = false;
        config.cache.size_mb = 0;
        config.compression.deduplication = deduplication;
        let s = PersistentStorageManager::open(config).await?;
        let base = padded(10 * STRIDE);
        s.store_json("logs", "p", &base).await?;
        // Refused like any malformed text, though all of it is the keyframe's (checked from
        // the keyframe's marks): a version cut inside the filler at a stride boundary.
        let cut = base.get(..8 * STRIDE).ok_or("short")?;
        assert!(s.store_json("logs", "p", cut).await.is_err());
        let mut versions = vec![base.clone()];
        let mut shorter = Vec::new();
        for boundary in [STRIDE, 2 * STRIDE, 5 * STRIDE, 8 * STRIDE] {
            for shared in [boundary - 1, boundary, boundary + 1] {
                // An edit at byte `shared`: the filler's byte there becomes a `b`.
                let mut edited = base.clone().into_bytes();
                if let Some(b) = edited.get_mut(shared) {
                    *b = b'b';
                }
                versions.push(String::from_utf8(edited)?);
                // Shorter than the keyframe, ending at byte `shared`.
                shorter.push(padded(shared - 6));
            }
        }
        // Longer than the keyframe by one byte, then the shorter ones, longest first (those
        // of 64 KiB or less are not chunked, and the next version would be a keyframe).
        versions.push(padded(10 * STRIDE + 1));
        versions.extend(shorter.into_iter().rev());
        for (i, text) in versions.iter().enumerate() {
            s.store_json("logs", "p", text).await?;
            let meta = s.metadata("logs", "p").await?.ok_or("missing")?;
            // The identical text (version 0) shares the keyframe's blob under deduplication;
            // a version of 64 KiB or less is not chunked.
            assert!(
                meta.is_delta || (i == 0 && deduplication) || text.len() <= 64 * 1024,
                "version {i} (dedup {deduplication}): {meta:?}"
            );
            let got = s.retrieve_raw("logs", "p").await?.ok_or("missing")?;
            assert!(
                &*got == text.as_bytes(),
                "version {i} (dedup {deduplication}) read back {} bytes, wrote {}",
                got.len(),
                text.len()
            );
        }
        let report = s.check_consistency_deep().await?;
        assert!(report.is_ok(), "{report:?}");
        s.close().await?;
    }
    Ok(())
}

/// A stale entry of `chunk/latest.rs`: node A wrote the keyframe, node B then replaced the
/// key with a small document (or deleted it), which dropped the keyframe's chunks. A's next
/// version is still made a delta of that keyframe without reading the record (the record
/// read would have made it a keyframe), so the write must store the keyframe's chunks again:
/// both nodes read the version back and the deep check finds every chunk and count exact.
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delta_of_a_keyframe_another_node_dropped_reads_back() -> Result {
    for deduplication in [true, false] {
        let Some(f) = common::pg_fixture() else {
            return Ok(());
        };
        let mut config = f.config.clone();
        config.maintenance.background_tasks = false;
        // No document cache: every read is the database's.
        config.cache.size_mb = 0;
        config.compression.deduplication = deduplication;
        let a = PersistentStorageManager::open(config.clone()).await?;
        let b = PersistentStorageManager::open(config).await?;
        for replace in ["small", "delete"] {
            let key = replace;
            a.store_json("logs", key, &log(1, 3_000)).await?;
            match replace {
                "small" => b.store_json("logs", key, "{\"small\":true}").await?,
                _ => {
                    b.delete("logs", key).await?;
                }
            }
            let stats = b.statistics().await?.database_stats;
            assert_eq!(
                stats.chunk_count, 0,
                "the keyframe's chunks are gone: {stats:?}"
            );
            let text = log(1, 3_001);
            a.store_json("logs", key, &text).await?;
            let meta = a.metadata("logs", key).await?.ok_or("missing")?;
            assert!(meta.is_delta, "{replace} (dedup {deduplication}): {meta:?}");
            for node in [&a, &b] {
                assert_eq!(
                    node.retrieve_raw("logs", key).await?.as_deref(),
                    Some(text.as_bytes()),
                    "{replace} (dedup {deduplication})"
                );
            }
            let report = b.check_consistency_deep().await?;
            assert!(
                report.is_ok(),
                "{replace} (dedup {deduplication}): {report:?}"
            );
            b.delete("logs", key).await?;
        }
        a.close().await?;
        b.close().await?;
    }
    Ok(())
}

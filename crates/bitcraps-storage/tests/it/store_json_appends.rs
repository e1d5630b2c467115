//! Text appends to a large document (`store_json`, issue #16): a delta of a keyframe this
//! process holds in memory is encoded on the caller's task (`store/inline_delta.rs`), and
//! every `keyframe_interval` versions a new keyframe is cut, hashed and checked from the
//! last one (`store/next_keyframe.rs`). Both must store what the whole path stores: every
//! version reads back byte for byte on every backend, encrypted too; text that is not JSON is
//! refused at a delta and at a keyframe alike, and nothing is written then.

use crate::common;

use std::time::Duration;

use bitcraps_storage::{PersistentStorageManager, StorageError};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// The JSON text of a game log of `rolls` rolls (~45 bytes each): version `rolls` of an
/// append-only log.
fn log(rolls: u64) -> String {
    let rolls: Vec<String> = (0..rolls)
        .map(|n| format!(r#"{{"n":{n},"dice":[{},{}]}}"#, n % 6 + 1, (n * 7) % 6 + 1))
        .collect();
    format!(r#"{{"game":1,"rolls":[{}]}}"#, rolls.join(","))
}

/// A fixture's configuration with a keyframe every `interval` versions.
fn config(f: &common::Fixture, interval: u32) -> bitcraps_storage::StorageConfig {
    let mut config = f.config.clone();
    config.maintenance.background_tasks = false;
    config.compression.keyframe_interval = interval;
    config
}

/// Before: every large text rewrite was handed to the blocking pool and back. An append
/// whose keyframe is in memory now needs no blocking thread: with the runtime's only one
/// held, it still completes (without the change it waits for that thread until the
/// deadline), and reads back exactly, also after a reopen.
#[test]
fn an_append_to_a_keyframe_in_memory_takes_no_blocking_thread() -> Result {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(1)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let f = common::sqlite_fixture();
        let s = PersistentStorageManager::open(config(&f, 64)).await?;
        // A keyframe, then a delta that reads its base and builds its hashing states.
        s.store_json("logs", "a", &log(20_000)).await?;
        s.store_json("logs", "a", &log(20_001)).await?;
        assert!(s.metadata("logs", "a").await?.ok_or("missing")?.is_delta);
        let (hold, held) = std::sync::mpsc::channel::<()>();
        let (started, running) = tokio::sync::oneshot::channel();
        let holder = tokio::task::spawn_blocking(move || {
            let _ = started.send(());
            let _ = held.recv();
        });
        running.await?;
        let appended = tokio::time::timeout(
            Duration::from_secs(60),
            s.store_json("logs", "a", &log(20_002)),
        )
        .await;
        drop(hold);
        holder.await?;
        appended.map_err(|_| "the append waited for the blocking pool")??;
        assert!(s.metadata("logs", "a").await?.ok_or("missing")?.is_delta);
        let got = s.retrieve_raw("logs", "a").await?.ok_or("missing")?;
        assert_eq!(&*got, log(20_002).as_bytes());
        s.close().await?;
        let s = PersistentStorageManager::open(config(&f, 64)).await?;
        let got = s.retrieve_raw("logs", "a").await?.ok_or("missing")?;
        assert_eq!(&*got, log(20_002).as_bytes());
        s.close().await?;
        Ok(())
    })
}

/// Versions across three keyframes, each read back exactly (also through a cold cache); the
/// keyframes cut from their predecessors hold the chunks a fresh store cuts; text that is
/// not JSON or nests too deep is refused at a delta and at a keyframe, keeping the version
/// before; the deep check passes.
async fn appends_across_keyframes(f: common::Fixture) -> Result {
    let interval = 4;
    let s = f.open(config(&f, interval)).await?;
    let mut rolls = 3_000;
    s.store_json("logs", "a", &log(rolls)).await?;
    for version in 1..=13u32 {
        rolls += 1;
        let text = log(rolls);
        // Broken versions of the text first: a trailing garbage byte after the shared
        // prefix, and a document nested too deep at its end.
        let garbage = format!("{}x", text.trim_end_matches('}'));
        let refused = s.store_json("logs", "a", &garbage).await;
        assert!(
            matches!(refused, Err(StorageError::InvalidJson { .. })),
            "{version}: {refused:?}"
        );
        let deep = format!(
            "{},{}{}]}}",
            text.strip_suffix("]}").unwrap_or(&text),
            "[".repeat(200),
            "]".repeat(200)
        );
        let refused = s.store_json("logs", "a", &deep).await;
        assert!(
            matches!(refused, Err(StorageError::JsonTooDeep { .. })),
            "{version}: {refused:?}"
        );
        let kept = s.retrieve_raw("logs", "a").await?.ok_or("missing")?;
        assert_eq!(&*kept, log(rolls - 1).as_bytes(), "{version}: kept");

        s.store_json("logs", "a", &text).await?;
        let meta = s.metadata("logs", "a").await?.ok_or("missing")?;
        assert_eq!(
            meta.is_delta,
            version % interval != 0,
            "{version}: {meta:?}"
        );
        let got = s.retrieve_raw("logs", "a").await?.ok_or("missing")?;
        assert_eq!(&*got, text.as_bytes(), "{version}");
        if !meta.is_delta {
            // The same text in a store of its own: the chunks a whole cut makes.
            let g = common::sqlite_fixture();
            let fresh = PersistentStorageManager::open(config(&g, interval)).await?;
            fresh.store_json("logs", "a", &text).await?;
            let whole = fresh.metadata("logs", "a").await?.ok_or("missing")?;
            assert_eq!(meta.chunk_count, whole.chunk_count, "{version}");
            assert_eq!(meta.size_bytes, whole.size_bytes, "{version}");
            fresh.close().await?;
        }
    }
    let report = s.check_consistency_deep().await?;
    assert!(report.is_ok(), "{report:?}");
    s.close().await?;
    let s = f.open(config(&f, interval)).await?;
    let got = s.retrieve_raw("logs", "a").await?.ok_or("missing")?;
    assert_eq!(&*got, log(rolls).as_bytes());
    s.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_across_keyframes_on_sqlite() -> Result {
    appends_across_keyframes(common::sqlite_fixture()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_across_keyframes_on_sqlite_encrypted() -> Result {
    appends_across_keyframes(common::sqlite_encrypted_fixture()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_across_keyframes_in_memory() -> Result {
    appends_across_keyframes(common::memory_fixture()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_across_keyframes_in_memory_encrypted() -> Result {
    appends_across_keyframes(common::memory_encrypted_fixture()).await
}

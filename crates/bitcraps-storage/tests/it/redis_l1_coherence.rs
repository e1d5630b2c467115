//! The in-process cache (L1) and the Redis tier (L2) around a commit.
//!
//! What broke: after a commit the writer installed the new value in L1 and only then
//! invalidated L2. A reader that missed L1 in between (the entry evicted, for example) read
//! the replaced value from L2 and filled L1 with it under the generation the commit had
//! left, so reads after the write returned served the old value until the next write of the
//! key. Now L2 is invalidated before L1 takes the new value.
#![cfg(feature = "redis")]

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bitcraps_storage::PersistentStorageManager;
use common::nodes::{TestResult, node_config, redis_url, remote_stats, unique_namespace};
use common::{Game, game};

/// A reader that misses L1 while a write is between its commit and its acknowledgement —
/// once the cache holds the write's effects — reads the written value, and no read after the
/// write returned serves the replaced one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miss_before_the_acknowledgement_never_caches_the_replaced_value() -> TestResult {
    let Some(url) = redis_url() else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let namespace = unique_namespace("l1_coherence");
    let _guard = common::nodes::NamespaceGuard {
        redis_url: url.clone(),
        namespace: namespace.clone(),
    };
    let s = PersistentStorageManager::open(node_config(dir.path(), &url, &namespace)).await?;
    s.store("games", "g", &game("g", 1)).await?;
    // L2 holds version 1: the write's own L1 entry is dropped, so the read goes to L2, misses
    // and fills it from the database.
    s.evict_cached("games", "g");
    assert_eq!(s.retrieve::<Game>("games", "g").await?, Some(game("g", 1)));
    assert_eq!(remote_stats(&s).await?.fills, 1, "the read filled L2");

    // During the next commit, once the cache holds its effects: L1 loses the key and a reader
    // loads it (on the writer thread, so the write waits for the read).
    let armed = Arc::new(AtomicBool::new(true));
    let seen: Arc<std::sync::Mutex<Option<Option<Game>>>> = Arc::default();
    let runtime = tokio::runtime::Handle::current();
    let (reader, armed_hook, seen_hook) = (s.clone(), Arc::clone(&armed), Arc::clone(&seen));
    s.before_acknowledging(Some(Arc::new(move || {
        if !armed_hook.swap(false, Ordering::AcqRel) {
            return;
        }
        reader.evict_cached("games", "g");
        let read = runtime.block_on(reader.retrieve::<Game>("games", "g"));
        *seen_hook.lock().expect("lock") = Some(read.ok().flatten());
    })));
    s.store("games", "g", &game("g", 2)).await?;
    s.before_acknowledging(None);

    assert!(!armed.load(Ordering::Acquire), "the hook ran");
    for _ in 0..3 {
        assert_eq!(
            s.retrieve::<Game>("games", "g").await?,
            Some(game("g", 2)),
            "a read after the write returned served the replaced value"
        );
    }
    assert_eq!(
        seen.lock().expect("lock").clone(),
        Some(Some(game("g", 2))),
        "the reader inside the window read the committed value"
    );
    s.close().await?;
    Ok(())
}

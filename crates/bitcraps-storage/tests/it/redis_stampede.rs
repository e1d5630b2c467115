//! Stampede protection: concurrent misses of one key share one load, with or without the
//! Redis tier (this test needs no Redis). A reader that arrives after a commit does not join
//! a load that started before it.

use crate::common;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bitcraps_storage::PersistentStorageManager;
use common::nodes::{Gated, TestResult, shared_backend, wait_until};
use common::{Game, game, sqlite_fixture};

const READERS: u64 = 8;

async fn gated_store() -> TestResult<(PersistentStorageManager, Arc<Gated>, common::Fixture)> {
    let fixture = sqlite_fixture();
    let mut config = fixture.config.clone();
    config.maintenance.background_tasks = false;
    // No L1: a written key would otherwise be cached by the write itself.
    config.cache.size_mb = 0;
    let gated = Arc::new(Gated::new(shared_backend(&config)?));
    gated.gate_before_read.store(true, Ordering::SeqCst);
    let store = PersistentStorageManager::with_backend(config, Arc::clone(&gated) as _)?;
    Ok((store, gated, fixture))
}

/// N concurrent reads of one uncached key cause one backend `get`. The gate opens only once
/// the statistics show N-1 coalesced waiters, so the outcome does not depend on timing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_share_one_load() -> TestResult {
    let (store, gated, _fixture) = gated_store().await?;
    store.store("games", "hot", &game("hot", 7)).await?;
    gated.arm();
    let mut readers = Vec::new();
    for _ in 0..READERS {
        let s = store.clone();
        readers.push(tokio::spawn(async move {
            s.retrieve::<Game>("games", "hot").await
        }));
    }
    wait_until("every other reader joined the first one's load", || async {
        Ok(store.statistics().await?.cache_stats.coalesced == READERS - 1)
    })
    .await?;
    gated.open();
    for reader in readers {
        assert_eq!(reader.await??, Some(game("hot", 7)));
    }
    assert_eq!(gated.gets.load(Ordering::SeqCst), 1, "one load for all");
    let stats = store.statistics().await?;
    assert_eq!(stats.total_reads, READERS);
    assert_eq!(stats.cache_stats.coalesced, READERS - 1);
    Ok(())
}

/// A reader that starts after a write committed must not receive the value a load that began
/// before the write is reading (read-your-writes): it starts its own load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_from_before_a_write_is_not_joined() -> TestResult {
    let (store, gated, _fixture) = gated_store().await?;
    store.store("games", "k", &game("k", 1)).await?;
    // Let the first load read the database (old value) and hold it there.
    gated.gate_before_read.store(false, Ordering::SeqCst);
    gated.arm();
    let s = store.clone();
    let early = tokio::spawn(async move { s.retrieve::<Game>("games", "k").await });
    gated
        .wait_for(
            "the early reader has read the database",
            |g| g.waiting.load(Ordering::SeqCst),
            1,
        )
        .await?;
    store.store("games", "k", &game("k", 2)).await?;
    // The gate is still closed for the early reader; this read loads on its own.
    gated.armed.store(false, Ordering::SeqCst);
    assert_eq!(
        store.retrieve::<Game>("games", "k").await?,
        Some(game("k", 2))
    );
    gated.open();
    assert_eq!(early.await??, Some(game("k", 1)));
    assert_eq!(store.statistics().await?.cache_stats.coalesced, 0);
    assert_eq!(
        store.retrieve::<Game>("games", "k").await?,
        Some(game("k", 2))
    );
    Ok(())
}

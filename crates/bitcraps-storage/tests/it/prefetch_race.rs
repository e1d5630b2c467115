//! Attack: a prefetch that read a document before a write (or delete) of it committed must not
//! install what it read. The prefetch is held at the backend after its read; the write commits;
//! then the prefetch goes on — and the next read returns the written value, not the prefetched
//! one.

use crate::common;

use std::time::Duration;

use bitcraps_storage::PersistentStorageManager;
use bitcraps_storage::testing::{FaultInjector, Method};
use common::faulty::faulty_sqlite;
use common::sqlite_fixture;

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// A store over a fault-injecting SQLite backend, where `games/g-1` has learned its partner
/// `players/p-1` (two sessions that missed both).
async fn trained() -> Result<(
    PersistentStorageManager,
    std::sync::Arc<FaultInjector>,
    common::Fixture,
)> {
    let f = sqlite_fixture();
    let mut config = f.config.clone();
    config.maintenance.background_tasks = false;
    let backend = faulty_sqlite(&config)?;
    let s = PersistentStorageManager::with_backend(config, backend.clone())?;
    s.store("games", "g-1", &1u64).await?;
    s.store("players", "p-1", &1u64).await?;
    for _ in 0..2 {
        s.prefetch_settled().await;
        s.evict_cached("games", "g-1");
        s.evict_cached("players", "p-1");
        s.retrieve::<u64>("games", "g-1").await?;
        s.retrieve::<u64>("players", "p-1").await?;
    }
    s.prefetch_settled().await;
    s.evict_cached("games", "g-1");
    s.evict_cached("players", "p-1");
    Ok((s, backend, f))
}

/// Reads the game (a miss: its partner is prefetched), holding the prefetch's read of the
/// partner until `write` has committed; returns the prefetch count before and after.
async fn race<F, Fut>(s: &PersistentStorageManager, backend: &FaultInjector, write: F) -> Result
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result>,
{
    let gate = backend.hold_next(Method::GetMany, true);
    let issued = s.statistics().await?.prefetch_issued;
    assert_eq!(s.retrieve::<u64>("games", "g-1").await?, Some(1));
    // The prefetch has read the partner's old value and waits before filling.
    assert!(
        gate.arrivals(1, Duration::from_secs(30)).await,
        "the partner was not prefetched"
    );
    write().await?;
    gate.open();
    s.prefetch_settled().await;
    let stats = s.statistics().await?;
    assert_eq!(stats.prefetch_issued, issued, "the raced fill was refused");
    assert!(stats.cache_stats.raced_fills >= 1, "{stats:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefetch_racing_a_write_never_installs_the_old_value() -> Result {
    let (s, backend, _f) = trained().await?;
    let writer = s.clone();
    race(&s, &backend, || async move {
        writer.store("players", "p-1", &2u64).await?;
        // The write installed its own value; drop it so the next read cannot be served by it
        // and would find a prefetched entry if one had been installed.
        writer.evict_cached("players", "p-1");
        Ok(())
    })
    .await?;
    assert_eq!(s.retrieve::<u64>("players", "p-1").await?, Some(2));
    s.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefetch_racing_a_delete_never_resurrects_the_record() -> Result {
    let (s, backend, _f) = trained().await?;
    let writer = s.clone();
    race(&s, &backend, || async move {
        assert!(writer.delete("players", "p-1").await?);
        Ok(())
    })
    .await?;
    assert_eq!(s.retrieve::<u64>("players", "p-1").await?, None);
    assert!(!s.exists("players", "p-1").await?);
    s.close().await?;
    Ok(())
}

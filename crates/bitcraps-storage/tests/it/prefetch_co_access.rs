//! Co-access prefetching: documents read together (a game, its players, its bets) are learned
//! as partners, and when the game misses again the partners are read ahead into the cache —
//! counted as issued, then used when read, or wasted when they leave the cache unread.

use crate::common;

use bitcraps_storage::PersistentStorageManager;
use common::{Game, game, sqlite_fixture};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

const PARTNERS: [(&str, &str); 5] = [
    ("players", "p-ada"),
    ("players", "p-bo"),
    ("players", "p-cy"),
    ("bets", "b-pass"),
    ("bets", "b-field"),
];

/// A session: the game, then its players and bets, each read after being dropped from the
/// cache (a miss), unless `cached` says the partners are expected in the cache.
async fn session(s: &PersistentStorageManager, evict: bool) -> Result {
    // Earlier prefetches are done (reads never wait for them; the test does).
    s.prefetch_settled().await;
    if evict {
        s.evict_cached("games", "g-1");
        for (c, k) in PARTNERS {
            s.evict_cached(c, k);
        }
    }
    assert!(s.retrieve::<Game>("games", "g-1").await?.is_some());
    for (c, k) in PARTNERS {
        assert!(s.retrieve::<Game>(c, k).await?.is_some(), "{c}/{k}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partners_learned_together_are_prefetched_used_and_wasted() -> Result {
    let f = sqlite_fixture();
    let mut config = f.config.clone();
    config.maintenance.background_tasks = false;
    let s = f.open(config).await?;
    s.store("games", "g-1", &game("g-1", 1)).await?;
    for (n, (c, k)) in PARTNERS.iter().enumerate() {
        s.store(c, k, &game(k, u32::try_from(n)?)).await?;
    }
    // Two sessions that miss everything teach the pairs; nothing is prefetched yet.
    session(&s, true).await?;
    session(&s, true).await?;
    s.prefetch_settled().await;
    let before = s.statistics().await?;
    assert_eq!(before.prefetch_issued, 0, "{before:?}");

    // The third: the game misses, its five partners are read ahead and then hit.
    s.prefetch_settled().await;
    for (c, k) in PARTNERS {
        s.evict_cached(c, k);
    }
    s.evict_cached("games", "g-1");
    assert!(s.retrieve::<Game>("games", "g-1").await?.is_some());
    s.prefetch_settled().await;
    let prefetched = s.statistics().await?;
    assert_eq!(prefetched.prefetch_issued, 5, "{prefetched:?}");
    for (c, k) in PARTNERS {
        assert_eq!(s.retrieve::<Game>(c, k).await?, Some(game(k, position(k))));
    }
    let used = s.statistics().await?;
    assert_eq!(used.cache_hits - prefetched.cache_hits, 5, "{used:?}");
    assert_eq!(used.prefetch_used, 5, "{used:?}");
    assert_eq!(used.prefetch_wasted, 0, "{used:?}");

    // Read again: plain hits, not counted used twice.
    for (c, k) in PARTNERS {
        s.retrieve::<Game>(c, k).await?;
    }
    assert_eq!(s.statistics().await?.prefetch_used, 5);

    // Prefetched and dropped unread (here by invalidation; eviction and writes count the
    // same): wasted.
    s.evict_cached("games", "g-1");
    for (c, k) in PARTNERS {
        s.evict_cached(c, k);
    }
    assert!(s.retrieve::<Game>("games", "g-1").await?.is_some());
    s.prefetch_settled().await;
    for (c, k) in PARTNERS {
        s.evict_cached(c, k);
    }
    let wasted = s.statistics().await?;
    assert_eq!(wasted.prefetch_issued, 10, "{wasted:?}");
    assert_eq!(wasted.prefetch_used, 5, "{wasted:?}");
    assert_eq!(wasted.prefetch_wasted, 5, "{wasted:?}");
    s.close().await?;
    Ok(())
}

fn position(key: &str) -> u32 {
    PARTNERS
        .iter()
        .position(|(_, k)| *k == key)
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(u32::MAX)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefetching_can_be_turned_off() -> Result {
    let f = sqlite_fixture();
    let mut config = f.config.clone();
    config.maintenance.background_tasks = false;
    config.cache.prefetch = false;
    let s = f.open(config).await?;
    s.store("games", "g-1", &game("g-1", 1)).await?;
    for (n, (c, k)) in PARTNERS.iter().enumerate() {
        s.store(c, k, &game(k, u32::try_from(n)?)).await?;
    }
    for _ in 0..4 {
        session(&s, true).await?;
    }
    s.prefetch_settled().await;
    let stats = s.statistics().await?;
    assert_eq!(stats.prefetch_issued, 0, "{stats:?}");
    assert_eq!(stats.cache_hits, 0, "{stats:?}");
    s.close().await?;
    Ok(())
}

//! Key templates: after a few games missed and were followed by reads of their players
//! (`games/g-N`, then `players/g-N-p0`, `players/g-N-p1`), a game never read before brings its
//! players with its own miss — read in the same trip to the database and in the cache before
//! the game's read returns, so the player reads right after are hits. A write racing that
//! fill never leaves the old value in the cache.

use crate::common;

use std::time::Duration;

use bitcraps_storage::PersistentStorageManager;
use bitcraps_storage::testing::Method;
use common::faulty::faulty_sqlite;
use common::sqlite_fixture;

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Games `g-1`..`g-8`, each with players `-p0` and `-p1` (`g-3` has only `-p0`).
async fn populate(s: &PersistentStorageManager) -> Result {
    for n in 1..=8u64 {
        let game = format!("g-{n}");
        s.store("games", &game, &n).await?;
        for p in 0..2u64 {
            if n == 3 && p == 1 {
                continue;
            }
            s.store("players", &format!("{game}-p{p}"), &(n * 10 + p))
                .await?;
        }
    }
    Ok(())
}

/// Sessions over `g-8`..`g-5` (in descending key order, so no run of ascending reads starts
/// a readahead) that miss everything: enough to trust the template `games → players -pK`.
async fn train(s: &PersistentStorageManager) -> Result {
    for n in (5..=8u64).rev() {
        let game = format!("g-{n}");
        s.prefetch_settled().await;
        s.evict_cached("games", &game);
        s.retrieve::<u64>("games", &game).await?;
        for p in 0..2u64 {
            let player = format!("{game}-p{p}");
            s.evict_cached("players", &player);
            assert_eq!(
                s.retrieve::<u64>("players", &player).await?,
                Some(n * 10 + p)
            );
        }
    }
    s.prefetch_settled().await;
    for n in 1..=4u64 {
        s.evict_cached("games", &format!("g-{n}"));
        for p in 0..2u64 {
            s.evict_cached("players", &format!("g-{n}-p{p}"));
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_games_players_are_in_the_cache_when_its_miss_returns() -> Result {
    let f = sqlite_fixture();
    let mut config = f.config.clone();
    config.maintenance.background_tasks = false;
    let s = f.open(config).await?;
    populate(&s).await?;
    train(&s).await?;
    let before = s.statistics().await?;

    // Never read before; no `prefetch_settled` between the game's read and its players'.
    assert_eq!(s.retrieve::<u64>("games", "g-2").await?, Some(2));
    let game = s.statistics().await?;
    assert_eq!(game.prefetch_issued - before.prefetch_issued, 2, "{game:?}");
    assert_eq!(game.cache_misses - before.cache_misses, 1, "{game:?}");
    for p in 0..2u64 {
        assert_eq!(
            s.retrieve::<u64>("players", &format!("g-2-p{p}")).await?,
            Some(20 + p)
        );
    }
    let players = s.statistics().await?;
    assert_eq!(players.cache_hits - game.cache_hits, 2, "{players:?}");
    assert_eq!(players.cache_misses, game.cache_misses, "{players:?}");
    assert_eq!(players.prefetch_used - game.prefetch_used, 2, "{players:?}");

    // A child the template names but that does not exist is not prefetched (nor counted).
    assert_eq!(s.retrieve::<u64>("games", "g-3").await?, Some(3));
    let absent = s.statistics().await?;
    assert_eq!(
        absent.prefetch_issued - players.prefetch_issued,
        1,
        "{absent:?}"
    );
    s.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_prefetch_nothing_when_prefetching_is_off() -> Result {
    let f = sqlite_fixture();
    let mut config = f.config.clone();
    config.maintenance.background_tasks = false;
    config.cache.prefetch = false;
    let s = f.open(config).await?;
    populate(&s).await?;
    train(&s).await?;
    s.retrieve::<u64>("games", "g-2").await?;
    s.retrieve::<u64>("players", "g-2-p0").await?;
    let stats = s.statistics().await?;
    assert_eq!(stats.prefetch_issued, 0, "{stats:?}");
    s.close().await?;
    Ok(())
}

/// Attack: the players' read with the game's miss is held after it read the old value, a
/// write of a player commits (and its cached value is dropped), then the read goes on. The
/// fill must be refused: the next read of the player returns the written value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_racing_the_fill_with_a_miss_never_leaves_the_old_value() -> Result {
    let f = sqlite_fixture();
    let mut config = f.config.clone();
    config.maintenance.background_tasks = false;
    let backend = faulty_sqlite(&config)?;
    let s = PersistentStorageManager::with_backend(config, backend.clone())?;
    populate(&s).await?;
    train(&s).await?;
    let issued = s.statistics().await?.prefetch_issued;

    let gate = backend.hold_next(Method::GetMany, true);
    let reader = s.clone();
    let read = tokio::spawn(async move { reader.retrieve::<u64>("games", "g-2").await });
    assert!(
        gate.arrivals(1, Duration::from_secs(30)).await,
        "the players were not read with the game"
    );
    s.store("players", "g-2-p0", &999u64).await?;
    s.evict_cached("players", "g-2-p0");
    gate.open();
    assert_eq!(read.await??, Some(2));
    let stats = s.statistics().await?;
    assert_eq!(stats.prefetch_issued - issued, 1, "only g-2-p1: {stats:?}");
    assert!(stats.cache_stats.raced_fills >= 1, "{stats:?}");
    assert_eq!(s.retrieve::<u64>("players", "g-2-p0").await?, Some(999));
    assert_eq!(s.retrieve::<u64>("players", "g-2-p1").await?, Some(21));
    s.close().await?;
    Ok(())
}

/// ~16 KiB of hex that compresses to about half: a child that takes a real share of a small
/// budget.
fn bulky(seed: u64) -> String {
    let mut x = seed | 1;
    (0..2048)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            format!("{:08x}", x & 0xffff_ffff)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn children_read_with_a_miss_stay_within_the_budget() -> Result {
    let f = sqlite_fixture();
    let mut config = f.config.clone();
    config.maintenance.background_tasks = false;
    config.cache.size_mb = 1;
    // ~10 KiB of unread prefetched entries: one or two of a game's four ~8 KiB children.
    config.cache.prefetch_budget_percent = 1;
    let s = f.open(config).await?;
    let children = |n: u64| (0..4u64).map(move |p| (format!("g-{n}-p{p}"), n * 10 + p));
    for n in 1..=8u64 {
        s.store("games", &format!("g-{n}"), &n).await?;
        for (key, seed) in children(n) {
            s.store("players", &key, &bulky(seed)).await?;
        }
    }
    for n in (5..=8u64).rev() {
        s.evict_cached("games", &format!("g-{n}"));
        s.retrieve::<u64>("games", &format!("g-{n}")).await?;
        for (key, _) in children(n) {
            s.evict_cached("players", &key);
            s.retrieve::<String>("players", &key).await?;
        }
        s.prefetch_settled().await;
    }
    let mut issued = s.statistics().await?.prefetch_issued;
    for n in [2u64, 1] {
        s.evict_cached("games", &format!("g-{n}"));
        for (key, _) in children(n) {
            s.evict_cached("players", &key);
        }
        s.retrieve::<u64>("games", &format!("g-{n}")).await?;
        let stats = s.statistics().await?;
        let read = stats.prefetch_issued - issued;
        assert!(
            (1..4).contains(&read),
            "g-{n}: {read} children read ahead: {stats:?}"
        );
        // Reading them gives the budget back for the next game.
        for (key, seed) in children(n) {
            assert_eq!(
                s.retrieve::<String>("players", &key).await?,
                Some(bulky(seed))
            );
        }
        s.prefetch_settled().await;
        issued = s.statistics().await?.prefetch_issued;
    }
    s.close().await?;
    Ok(())
}

//! The typed tier of `retrieve_shared` (issue #15), as the statistics show it: which typed
//! reads were answered by a held decoded value and which decoded the document, and that a
//! held value never outlives a write of its key.

use crate::common;

use std::sync::Arc;

use bitcraps_storage::PersistentStorageManager;
use common::Game;

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

async fn open(typed_percent: u32) -> Result<(common::Fixture, PersistentStorageManager)> {
    let f = common::sqlite_fixture();
    let mut config = f.config.clone();
    config.maintenance.background_tasks = false;
    config.cache.typed_percent = typed_percent;
    let s = PersistentStorageManager::open(config).await?;
    Ok((f, s))
}

/// Every typed read of a cached entry is counted once: a hit of a held decoded value, or a
/// decode. A read that missed the cache is neither.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_reads_are_counted_as_held_hits_or_decodes() -> Result {
    let (_f, s) = open(25).await?;
    let g = common::game("g", 1);
    s.store("games", "g", &g).await?;
    let before = s.statistics().await?.cache_stats;
    let mut seen = Vec::new();
    for _ in 0..5 {
        seen.push(
            s.retrieve_shared::<Game>("games", "g")
                .await?
                .ok_or("stored")?,
        );
    }
    assert!(seen.iter().all(|v| **v == g));
    let after = s.statistics().await?.cache_stats;
    let hits = after.typed_hits - before.typed_hits;
    let decodes = after.typed_decodes - before.typed_decodes;
    assert_eq!(hits + decodes, 5, "{after:?}");
    assert!(decodes >= 1 && hits >= 1, "{after:?}");
    // The reads after the first held value all return that very value.
    let held = seen.len() - usize::try_from(hits)?;
    assert!(seen[held..].iter().all(|v| Arc::ptr_eq(v, &seen[held])));

    // A write replaces the entry: the next read decodes the new document.
    let g2 = common::game("g", 2);
    s.store("games", "g", &g2).await?;
    let now = s
        .retrieve_shared::<Game>("games", "g")
        .await?
        .ok_or("stored")?;
    assert_eq!(*now, g2);
    assert!(!Arc::ptr_eq(&now, &seen[4]));
    let last = s.statistics().await?.cache_stats;
    assert_eq!(last.typed_decodes, after.typed_decodes + 1, "{last:?}");

    // Without a typed tier nothing is held: every typed read decodes.
    s.close().await?;
    let (_f, s) = open(0).await?;
    s.store("games", "g", &g).await?;
    for _ in 0..3 {
        s.retrieve_shared::<Game>("games", "g").await?;
    }
    let stats = s.statistics().await?.cache_stats;
    assert_eq!((stats.typed_hits, stats.typed_decodes), (0, 3), "{stats:?}");
    s.close().await?;
    Ok(())
}

/// A document is kept decoded from its second typed read of a cached entry on: the first
/// only decodes (a document read once would take a held value's place for nothing), the
/// second decodes and holds, and the third is a held hit of that very value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_is_held_from_its_second_read() -> Result {
    let (_f, s) = open(25).await?;
    let g = common::game("g", 1);
    s.store("games", "g", &g).await?;
    let read = || s.retrieve_shared::<Game>("games", "g");
    let first = read().await?.ok_or("stored")?;
    let stats = s.statistics().await?.cache_stats;
    assert_eq!(
        (stats.typed_entries, stats.typed_hits, stats.typed_decodes),
        (0, 0, 1),
        "held after one read: {stats:?}"
    );
    let second = read().await?.ok_or("stored")?;
    let third = read().await?.ok_or("stored")?;
    let stats = s.statistics().await?.cache_stats;
    assert_eq!(
        (stats.typed_entries, stats.typed_hits, stats.typed_decodes),
        (1, 1, 2),
        "{stats:?}"
    );
    assert!(!Arc::ptr_eq(&first, &second) && Arc::ptr_eq(&second, &third));
    assert!(*first == g && *third == g);
    s.close().await?;
    Ok(())
}

/// Regression: the read that missed and filled the cache counts as the entry's first read,
/// so the next read holds the value (not the one after it, as when a fill left the entry
/// unread).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_missed_once_is_held_from_its_next_read() -> Result {
    let (f, s) = open(25).await?;
    let g = common::game("g", 1);
    s.store("games", "g", &g).await?;
    s.close().await?;
    drop(s);
    let mut config = f.config.clone();
    config.maintenance.background_tasks = false;
    config.cache.typed_percent = 25;
    let s = PersistentStorageManager::open(config).await?;
    let read = || s.retrieve_shared::<Game>("games", "g");
    let missed = read().await?.ok_or("stored")?;
    let stats = s.statistics().await?.cache_stats;
    assert_eq!(
        (stats.misses, stats.typed_entries, stats.typed_decodes),
        (1, 0, 0),
        "the first read misses and fills: {stats:?}"
    );
    let second = read().await?.ok_or("stored")?;
    let third = read().await?.ok_or("stored")?;
    let stats = s.statistics().await?.cache_stats;
    assert_eq!(
        (stats.typed_entries, stats.typed_hits, stats.typed_decodes),
        (1, 1, 1),
        "held from the read after the miss: {stats:?}"
    );
    assert!(Arc::ptr_eq(&second, &third));
    assert!(*missed == g && *third == g);
    s.close().await?;
    Ok(())
}

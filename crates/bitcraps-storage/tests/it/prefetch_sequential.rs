//! Sequential readahead: reading a collection in key order reads the next keys ahead into the
//! cache; waste (read-ahead documents replaced before they were read) shrinks the window
//! until readahead stops.

use crate::common;

use bitcraps_storage::PersistentStorageManager;
use common::sqlite_fixture;

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn key(n: u64) -> String {
    format!("k-{n:03}")
}

async fn open(f: &common::Fixture) -> Result<PersistentStorageManager> {
    let mut config = f.config.clone();
    config.maintenance.background_tasks = false;
    Ok(f.open(config).await?)
}

async fn fill(s: &PersistentStorageManager, n: u64) -> Result {
    let items: Vec<(String, u64)> = (0..n).map(|i| (key(i), i)).collect();
    s.store_batch("ledger", &items).await?;
    for i in 0..n {
        s.evict_cached("ledger", &key(i));
    }
    Ok(())
}

/// Reads `from..to` in order, letting each read's prefetch finish before the next read (so
/// what is counted does not depend on timing).
async fn walk(s: &PersistentStorageManager, from: u64, to: u64) -> Result {
    for i in from..to {
        assert_eq!(s.retrieve::<u64>("ledger", &key(i)).await?, Some(i));
        s.prefetch_settled().await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_walk_in_key_order_is_read_ahead() -> Result {
    let f = sqlite_fixture();
    let s = open(&f).await?;
    fill(&s, 200).await?;
    let before = s.statistics().await?;
    walk(&s, 0, 200).await?;
    let after = s.statistics().await?;
    let misses = after.cache_misses - before.cache_misses;
    let hits = after.cache_hits - before.cache_hits;
    // The run is noticed after three misses; everything after that was read ahead.
    assert_eq!(misses, 3, "{after:?}");
    assert_eq!(hits, 197, "{after:?}");
    assert_eq!(after.prefetch_used, 197, "{after:?}");
    // Readahead stops at the end of the collection; what it read ahead was used.
    assert_eq!(after.prefetch_issued, 197, "{after:?}");
    assert_eq!(after.prefetch_wasted, 0, "{after:?}");
    s.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waste_shrinks_the_window_until_readahead_stops() -> Result {
    let f = sqlite_fixture();
    let s = open(&f).await?;
    fill(&s, 100).await?;
    // Three misses in order: the next four (the first window) are read ahead.
    walk(&s, 0, 3).await?;
    let first = s.statistics().await?;
    assert_eq!(first.prefetch_issued, 4, "{first:?}");
    // Rewritten before anyone read them: all four wasted.
    let items: Vec<(String, u64)> = (3..7).map(|i| (key(i), i)).collect();
    s.store_batch("ledger", &items).await?;
    let wasted = s.statistics().await?;
    assert_eq!(wasted.prefetch_wasted, 4, "{wasted:?}");
    // The reader goes on past them (misses): each waste halved the window, 4 → 0, so no
    // readahead starts however long the run (short of the re-arming run of 16).
    walk(&s, 7, 18).await?;
    let after = s.statistics().await?;
    assert_eq!(
        after.prefetch_issued, 4,
        "no readahead after the waste: {after:?}"
    );
    s.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_reads_ahead_what_it_listed() -> Result {
    let f = sqlite_fixture();
    let s = open(&f).await?;
    fill(&s, 50).await?;
    let page = s
        .list("ledger", bitcraps_storage::ListOptions::default().limit(20))
        .await?;
    s.prefetch_settled().await;
    let listed = s.statistics().await?;
    assert_eq!(listed.prefetch_issued, 4, "the first window: {listed:?}");
    for k in &page.keys {
        s.retrieve::<u64>("ledger", k).await?;
        s.prefetch_settled().await;
    }
    let read = s.statistics().await?;
    assert_eq!(
        read.cache_misses, 0,
        "every listed key was read ahead: {read:?}"
    );
    assert_eq!(read.prefetch_used, 20, "{read:?}");
    s.close().await?;
    Ok(())
}

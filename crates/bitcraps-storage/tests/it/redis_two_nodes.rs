//! Two nodes over one shared database with the Redis tier: a write or delete on one node
//! reaches the other node's caches, concurrent overwrites converge, and a reader's stale fill
//! that races a commit is refused. See `common/nodes.rs` for the fixture (one function to
//! swap for another backend).
#![cfg(feature = "redis")]

use crate::common;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use common::nodes::{
    Gated, Nodes, TestResult, redis_url, remote_stats, two_nodes, two_nodes_with, two_pg_nodes,
    wait_connected, wait_until,
};
use common::{Game, game};

/// B caches the old value; A overwrites, then deletes; B sees each change within the
/// deadline, through the invalidation message (not by luck of expiry).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_and_delete_on_a_reach_b() -> TestResult {
    let Some(url) = redis_url() else {
        return Ok(());
    };
    write_and_delete_reach_the_other_node(two_nodes(&url, "write_and_delete")?).await
}

/// The same on two real PostgreSQL nodes (each its own pool, writer and subscription).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_and_delete_on_a_reach_b_on_postgres() -> TestResult {
    let Some(url) = redis_url() else {
        return Ok(());
    };
    let Some(nodes) = two_pg_nodes(&url, "pg_write_and_delete", |_, _| {}).await? else {
        return Ok(());
    };
    write_and_delete_reach_the_other_node(nodes).await
}

async fn write_and_delete_reach_the_other_node(nodes: Nodes) -> TestResult {
    let (a, b) = (&nodes.a, &nodes.b);
    wait_connected(a).await?;
    wait_connected(b).await?;

    a.store("games", "g", &game("g", 1)).await?;
    // B's first fill may lose to the late invalidation message of A's own write; poll until
    // B serves the value from its L1.
    wait_until("B serves the old value from its L1", || async {
        let hits = b.statistics().await?.cache_hits;
        assert_eq!(b.retrieve::<Game>("games", "g").await?, Some(game("g", 1)));
        Ok(b.statistics().await?.cache_hits == hits + 1)
    })
    .await?;

    a.store("games", "g", &game("g", 2)).await?;
    wait_until("B reads A's new value", || async {
        Ok(b.retrieve::<Game>("games", "g").await? == Some(game("g", 2)))
    })
    .await?;
    assert!(remote_stats(b).await?.invalidations_received >= 1);
    assert!(remote_stats(a).await?.invalidations_sent >= 1);

    assert!(a.delete("games", "g").await?);
    wait_until("B sees the delete", || async {
        Ok(b.retrieve::<Game>("games", "g").await?.is_none())
    })
    .await?;
    assert!(!b.exists("games", "g").await?);
    for node in [a, b] {
        let stats = node.statistics().await?;
        assert_eq!(stats.errors, 0);
        assert_eq!(stats.remote_cache.map(|r| r.errors), Some(0));
    }
    Ok(())
}

/// B reads in a loop while A overwrites the key many times; at the end B converges to A's
/// last value (and never fails).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_overwrites_converge() -> TestResult {
    let Some(url) = redis_url() else {
        return Ok(());
    };
    overwrites_converge(two_nodes(&url, "converge")?).await
}

/// The same on two real PostgreSQL nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_overwrites_converge_on_postgres() -> TestResult {
    let Some(url) = redis_url() else {
        return Ok(());
    };
    let Some(nodes) = two_pg_nodes(&url, "pg_converge", |_, _| {}).await? else {
        return Ok(());
    };
    overwrites_converge(nodes).await
}

async fn overwrites_converge(nodes: Nodes) -> TestResult {
    let (a, b) = (nodes.a.clone(), nodes.b.clone());
    wait_connected(&a).await?;
    wait_connected(&b).await?;
    a.store("games", "hot", &game("hot", 0)).await?;
    const WRITES: u32 = 200;
    let writer = tokio::spawn(async move {
        for i in 1..=WRITES {
            a.store("games", "hot", &game("hot", i)).await?;
        }
        TestResult::Ok(())
    });
    let reader = tokio::spawn(async move {
        let mut reads = 0u32;
        while reads < 10_000 {
            let seen = b.retrieve::<Game>("games", "hot").await?;
            assert!(seen.is_some(), "the key always exists");
            reads += 1;
            if reads.is_multiple_of(50) {
                tokio::task::yield_now().await;
            }
            if seen == Some(game("hot", WRITES)) {
                break;
            }
        }
        TestResult::Ok(())
    });
    writer.await??;
    reader.await??;
    let b = &nodes.b;
    wait_until("B converges to A's last value", || async {
        Ok(b.retrieve::<Game>("games", "hot").await? == Some(game("hot", WRITES)))
    })
    .await?;
    // And stays there: a stale value cannot come back from either cache tier.
    for _ in 0..20 {
        assert_eq!(
            b.retrieve::<Game>("games", "hot").await?,
            Some(game("hot", WRITES))
        );
    }
    Ok(())
}

/// The stale-fill race, driven deterministically: B's reader reads the database (old value),
/// then A commits a new value, then B's reader tries to fill L2 — and is refused, so no node
/// can later read the old value from L2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fill_prepared_before_a_commit_is_refused() -> TestResult {
    let Some(url) = redis_url() else {
        return Ok(());
    };
    let mut gate = None;
    let nodes = two_nodes_with(
        &url,
        "stale_fill",
        |backend| {
            let gated = Arc::new(Gated::new(backend));
            gate = Some(Arc::clone(&gated));
            gated
        },
        // L1 off on both nodes: this test is about L2 alone.
        |config, _| config.cache.size_mb = 0,
    )?;
    let gate = gate.expect("wrapped");
    let (a, b) = (nodes.a.clone(), nodes.b.clone());
    a.store("games", "g", &game("g", 1)).await?;

    gate.arm();
    let reader = tokio::spawn(async move { b.retrieve::<Game>("games", "g").await });
    gate.wait_for(
        "B's reader has read the database",
        |g| g.waiting.load(Ordering::SeqCst),
        1,
    )
    .await?;
    // The commit lands between B's database read and B's fill.
    a.store("games", "g", &game("g", 2)).await?;
    gate.open();
    assert_eq!(
        reader.await??,
        Some(game("g", 1)),
        "the read began before the write"
    );

    let b = &nodes.b;
    let stats = remote_stats(b).await?;
    assert_eq!((stats.fills, stats.raced_fills), (0, 1), "{stats:?}");
    // Neither node can get the old value now: L2 holds nothing or the new value.
    assert_eq!(b.retrieve::<Game>("games", "g").await?, Some(game("g", 2)));
    assert_eq!(
        nodes.a.retrieve::<Game>("games", "g").await?,
        Some(game("g", 2))
    );
    assert_eq!(remote_stats(b).await?.fills, 1, "the fresh read filled L2");
    assert_eq!(
        nodes.a.retrieve::<Game>("games", "g").await?,
        Some(game("g", 2))
    );
    assert!(remote_stats(&nodes.a).await?.hits >= 1);
    Ok(())
}

/// Two writers of one key, their post-commit steps out of order: B commits first, A commits
/// after, and A's invalidation reaches B before B's writer updates its own cache. B must not
/// then install its (older) value in L1 — no message would ever remove it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_local_write_is_not_cached_over_a_newer_remote_one() -> TestResult {
    let Some(url) = redis_url() else {
        return Ok(());
    };
    let mut gate = None;
    let nodes = two_nodes_with(
        &url,
        "out_of_order_writers",
        |backend| {
            let gated = Arc::new(Gated::new(backend));
            gate = Some(Arc::clone(&gated));
            gated
        },
        |_, _| {},
    )?;
    let gate = gate.expect("wrapped");
    let (a, b) = (nodes.a.clone(), nodes.b.clone());
    gate.hold_next_apply();
    let b_writes = tokio::spawn(async move { b.store("games", "g", &game("g", 1)).await });
    gate.wait_for(
        "B's write committed and is held",
        |g| g.applies_held.load(Ordering::SeqCst),
        1,
    )
    .await?;
    a.store("games", "g", &game("g", 2)).await?;
    let b = &nodes.b;
    wait_until("A's invalidation reached B", || async {
        Ok(remote_stats(b).await?.invalidations_received >= 1)
    })
    .await?;
    gate.open();
    b_writes.await??;
    for node in [&nodes.a, b] {
        assert_eq!(
            node.retrieve::<Game>("games", "g").await?,
            Some(game("g", 2)),
            "the database holds A's later write"
        );
    }
    Ok(())
}

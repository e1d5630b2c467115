//! The lost-update race across nodes: two PostgreSQL nodes with the Redis tier (each with its
//! own pool, writer, L1 cache and subscription), tasks on both running `update` increments of
//! one counter, end at exactly the number of increments; and a stale `store_if` from one node
//! never succeeds after the other wrote. Needs `BITCRAPS_TEST_POSTGRES_URL` and
//! `BITCRAPS_TEST_REDIS_URL`; skipped (with a notice) without.
#![cfg(all(feature = "postgres", feature = "redis"))]

use crate::common;

use bitcraps_storage::{Expect, StorageError, WriteBatch};
use common::nodes::{redis_url, two_pg_nodes};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_from_two_nodes_are_never_lost() -> Result {
    const TASKS_PER_NODE: usize = 4;
    const EACH: u64 = 20;
    let Some(redis) = redis_url() else {
        return Ok(());
    };
    let Some(nodes) = two_pg_nodes(&redis, "pg_two_node_updates", |_, _| {}).await? else {
        return Ok(());
    };
    // Both nodes read the counter first, so each has it in L1 (the stale copy the other
    // node's writes must invalidate).
    nodes.a.store("counters", "bets", &0u64).await?;
    assert_eq!(nodes.b.retrieve::<u64>("counters", "bets").await?, Some(0));
    assert_eq!(nodes.a.retrieve::<u64>("counters", "bets").await?, Some(0));
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(2 * TASKS_PER_NODE));
    let mut tasks = Vec::new();
    for node in [&nodes.a, &nodes.b] {
        for _ in 0..TASKS_PER_NODE {
            let (node, barrier) = (node.clone(), barrier.clone());
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                for _ in 0..EACH {
                    node.update("counters", "bets", |n: Option<u64>| {
                        Some(n.unwrap_or(0) + 1)
                    })
                    .await?;
                }
                Ok::<_, StorageError>(())
            }));
        }
    }
    for t in tasks {
        t.await??;
    }
    let total = 2 * u64::try_from(TASKS_PER_NODE)? * EACH;
    let (a, va) = nodes
        .a
        .retrieve_versioned::<u64>("counters", "bets")
        .await?
        .ok_or("missing")?;
    let (b, vb) = nodes
        .b
        .retrieve_versioned::<u64>("counters", "bets")
        .await?
        .ok_or("missing")?;
    assert_eq!((a, b), (total, total));
    assert_eq!(va, vb, "both nodes see one version");

    // A version read on A, then a write on B: A's conditional write and batch must fail.
    nodes.b.store("counters", "bets", &0u64).await?;
    let stale = nodes
        .a
        .store_if("counters", "bets", &999u64, Expect::Version(va))
        .await;
    assert!(
        matches!(stale, Err(StorageError::Conflict { .. })),
        "{stale:?}"
    );
    let mut batch = WriteBatch::new();
    batch.store("counters", "bets", &999u64)?;
    batch.expect("counters", "bets", Expect::Version(va));
    assert!(matches!(
        nodes.a.apply(batch).await,
        Err(StorageError::Conflict { .. })
    ));
    // From the database: A's L1 learns of B's write only when the invalidation message
    // arrives (the documented bound), and this assertion is about what was written.
    let now = nodes
        .a
        .retrieve_versioned::<u64>("counters", "bets")
        .await?;
    assert_eq!(now.map(|(n, _)| n), Some(0), "the conflicts wrote nothing");
    nodes.a.close().await?;
    nodes.b.close().await?;
    Ok(())
}

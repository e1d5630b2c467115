//! Exact expiry across nodes: two PostgreSQL nodes with the Redis tier (each with its own
//! pool, writer, L1 cache and clock). A record written with a TTL on one node, read on both
//! (so it sits in L1 and in L2; node A runs without L1, so its reads are served by L2), is
//! invisible on both from its expiry on, through
//! every read call and every tier, before any sweep; a default TTL set on one node applies
//! to the other's writes; a sweep on one node frees the record for both. Needs
//! `BITCRAPS_TEST_POSTGRES_URL` and `BITCRAPS_TEST_REDIS_URL`; skipped (with a notice) without.
#![cfg(all(feature = "postgres", feature = "redis"))]

use crate::common;

use std::time::Duration;

use bitcraps_storage::Expect;
use common::lifecycle::{assert_invisible, assert_visible};
use common::nodes::{redis_url, remote_stats, two_pg_nodes, wait_connected};
use serde_json::{Value, json};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

const MINUTE: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_records_are_invisible_on_every_node_and_tier() -> Result {
    let Some(redis) = redis_url() else {
        return Ok(());
    };
    let Some(nodes) = two_pg_nodes(&redis, "pg_two_node_expiry", |config, is_a| {
        config.maintenance.expiry_sweep_interval = Duration::from_secs(3600);
        if is_a {
            // No L1 on A: its reads go to L2, then the database.
            config.cache.size_mb = 0;
        }
    })
    .await?
    else {
        return Ok(());
    };
    let (a, b) = (&nodes.a, &nodes.b);
    wait_connected(a).await?;
    wait_connected(b).await?;

    // Through L2: B's read fills Redis (and B's L1); A's read is an L2 hit.
    a.store_with_ttl("seats", "via-l2", &json!({"seat": 1}), MINUTE)
        .await?;
    assert!(b.retrieve::<Value>("seats", "via-l2").await?.is_some());
    let hits = remote_stats(a).await?.hits;
    assert!(a.retrieve::<Value>("seats", "via-l2").await?.is_some());
    assert_eq!(remote_stats(a).await?.hits, hits + 1, "served from L2");
    // Warm both nodes' L1 with a second record, through every read call.
    a.store_with_ttl("seats", "warm", &json!({"seat": 2}), MINUTE)
        .await?;
    assert_visible(a, "seats", "warm").await?;
    assert_visible(b, "seats", "warm").await?;

    a.advance_clock(2 * MINUTE);
    b.advance_clock(2 * MINUTE);
    for node in [a, b] {
        assert_invisible(node, "seats", "via-l2").await?;
        assert_invisible(node, "seats", "warm").await?;
    }
    // The L2 entry itself carries the expiry: A's read fills L2 (the clocks agree), then A's
    // clock passes the expiry and A's read finds the entry (a hit) yet answers absent.
    b.store_with_ttl("seats", "fresh", &json!({"seat": 3}), MINUTE)
        .await?;
    assert!(a.retrieve::<Value>("seats", "fresh").await?.is_some());
    a.advance_clock(2 * MINUTE);
    let hits = remote_stats(a).await?.hits;
    assert_eq!(a.retrieve::<Value>("seats", "fresh").await?, None);
    assert_eq!(
        remote_stats(a).await?.hits,
        hits + 1,
        "the L2 entry was found and its expiry honoured"
    );

    // Writes on either node treat the expired key as absent.
    b.store_if("seats", "warm", &json!({"seat": 9}), Expect::Absent)
        .await?;
    assert_eq!(
        a.retrieve::<Value>("seats", "warm").await?,
        Some(json!({"seat": 9}))
    );

    // A default set on one node applies to writes on the other.
    a.set_default_ttl("rolls", Some(MINUTE)).await?;
    b.store("rolls", "r-1", &json!([3, 4])).await?;
    assert!(
        b.metadata("rolls", "r-1")
            .await?
            .ok_or("missing")?
            .expires_at
            .is_some()
    );
    a.advance_clock(2 * MINUTE);
    b.advance_clock(2 * MINUTE);
    assert_invisible(a, "rolls", "r-1").await?;
    // One node's sweep removes them for both.
    assert_eq!(b.sweep_expired().await?, 3);
    let check = a.check_consistency().await?;
    assert!(check.is_ok(), "{}", check.problems());
    assert_eq!(a.statistics().await?.database_stats.record_count, 1);
    a.close().await?;
    b.close().await?;
    Ok(())
}

//! A crypto-shred on one PostgreSQL node and a write on another: node B still holds the
//! collection's data key in its keyring (keys are reloaded only when one is missing), so
//! only the database can tell it the key is gone. Its write must fail with `Shredded` and
//! leave nothing behind; before the check in the write transaction it committed a record
//! sealed under the destroyed key: acknowledged, unreadable, and never shredded. Needs
//! `BITCRAPS_TEST_POSTGRES_URL` and `BITCRAPS_TEST_REDIS_URL`; skipped (with a notice) without.
#![cfg(all(feature = "postgres", feature = "redis"))]

use crate::common;

use bitcraps_storage::{KeyConfig, ListOptions, StorageError};
use common::nodes::{TestResult, redis_url, two_pg_nodes};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_on_another_node_after_a_shred_is_refused() -> TestResult {
    let Some(url) = redis_url() else {
        return Ok(());
    };
    let (_key_dir, key) = common::key_file();
    let Some(nodes) = two_pg_nodes(&url, "shred_across_nodes", |config, _| {
        config.key = KeyConfig::default().file(&key);
    })
    .await?
    else {
        return Ok(());
    };
    // B writes first, so its keyring holds the collection's key.
    nodes
        .b
        .store("players", "p-1", &json!({"chips": 1}))
        .await?;
    nodes
        .b
        .store("tables", "t-1", &json!({"open": true}))
        .await?;
    assert_eq!(nodes.a.shred_collection("players").await?, 1);

    let late = nodes.b.store("players", "p-2", &json!({"chips": 2})).await;
    assert!(
        matches!(&late, Err(StorageError::Shredded { collection }) if collection == "players"),
        "a write after another node's shred: {late:?}"
    );
    // Nothing of it was committed: no node lists a record of the collection.
    for node in [&nodes.a, &nodes.b] {
        let page = node.list("players", ListOptions::default()).await?;
        assert!(page.keys.is_empty(), "records left behind: {:?}", page.keys);
    }
    // B has learned of the shred; other collections are untouched.
    let again = nodes.b.store("players", "p-3", &json!({"chips": 3})).await;
    assert!(
        matches!(again, Err(StorageError::Shredded { .. })),
        "{again:?}"
    );
    nodes
        .b
        .store("tables", "t-2", &json!({"open": false}))
        .await?;
    assert_eq!(
        nodes
            .a
            .retrieve::<serde_json::Value>("tables", "t-2")
            .await?,
        Some(json!({"open": false}))
    );
    nodes.a.close().await?;
    nodes.b.close().await?;
    Ok(())
}

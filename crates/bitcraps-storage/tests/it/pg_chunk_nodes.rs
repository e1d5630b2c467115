//! Nodes sharing chunks on one PostgreSQL schema (issue #16): three nodes write, overwrite and
//! delete large documents that share most of their chunks, concurrently; afterwards every
//! chunk's reference count is exact, no chunk is orphaned or missing, the deep check verifies
//! every chunk and each task's own keys hold what it wrote last. Needs
//! `BITCRAPS_TEST_POSTGRES_URL`; skipped without.

#![cfg(feature = "postgres")]

use crate::common;

use std::collections::BTreeMap;

use bitcraps_storage::{PersistentStorageManager, StorageError};
use serde_json::{Value, json};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

const NODES: usize = 3;
const TASKS_PER_NODE: usize = 2;
const OPS_PER_TASK: usize = 12;

/// A ~150 KiB log; variants share every chunk but the last few.
fn log(variant: usize) -> Value {
    let rolls: Vec<Value> = (0..2500usize)
        .map(|n| {
            let tail = if n > 2450 { variant } else { 0 };
            json!({"n": n, "dice": [n % 6 + 1, (n * 7) % 6 + 1], "tail": tail})
        })
        .collect();
    json!({"rolls": rolls})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_sharing_chunks_keep_chunk_references_exact() -> Result {
    let Some(fixture) = common::pg_fixture() else {
        return Ok(());
    };
    let mut config = fixture.config.clone();
    config.maintenance.background_tasks = false;
    let mut nodes = Vec::new();
    for _ in 0..NODES {
        nodes.push(PersistentStorageManager::open(config.clone()).await?);
    }
    let mut tasks = Vec::new();
    for (n, node) in nodes.iter().enumerate() {
        for t in 0..TASKS_PER_NODE {
            let node = node.clone();
            tasks.push(tokio::spawn(async move {
                let mut own: BTreeMap<String, Option<usize>> = BTreeMap::new();
                for i in 0..OPS_PER_TASK {
                    let v = (n * 5 + t * 3 + i) % 4;
                    let shared = format!("shared-{}", (n + t + i) % 3);
                    let mine = format!("own-{n}-{t}");
                    if i % 4 == 2 {
                        node.delete("logs", &shared).await?;
                        node.delete("logs", &mine).await?;
                        own.insert(mine, None);
                    } else {
                        node.store("logs", &shared, &log(v)).await?;
                        node.store("logs", &mine, &log(v + 1)).await?;
                        own.insert(mine, Some(v + 1));
                    }
                }
                Ok::<_, StorageError>(own)
            }));
        }
    }
    let mut expected = BTreeMap::new();
    for task in tasks {
        expected.extend(task.await??);
    }
    let s = &nodes[0];
    let report = s.check_consistency_deep().await?;
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(
        (
            report.dangling_chunks,
            report.orphaned_chunks,
            report.chunk_refcount_mismatches
        ),
        (0, 0, 0)
    );
    for (key, v) in &expected {
        let got: Option<Value> = s.retrieve("logs", key).await?;
        assert_eq!(got, v.map(log), "{key}");
    }
    let stats = s.statistics().await?.database_stats;
    assert!(stats.chunked_blobs > 0, "{stats:?}");
    for node in nodes {
        node.close().await?;
    }
    Ok(())
}

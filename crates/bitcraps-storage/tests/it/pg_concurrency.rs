//! Several nodes on one PostgreSQL schema: exact reference counts under concurrent writes,
//! concurrent migrations, dictionaries trained by another node, pool exhaustion as a timely
//! typed error, and read-replica routing. Needs `BITCRAPS_TEST_POSTGRES_URL`; skipped without.

#![cfg(feature = "postgres")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation
)]

use crate::common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bitcraps_storage::{ListOptions, PersistentStorageManager, StorageConfig, StorageError};
use common::{Game, PgSchema, game};
use serde_json::{Value, json};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

const NODES: usize = 3;
const TASKS_PER_NODE: usize = 4;
const OPS_PER_TASK: usize = 40;
const SHARED_KEYS: usize = 6;

/// A small content space, so nodes constantly share, release and re-create the same blobs.
fn content(v: usize) -> Value {
    match v % 4 {
        0 => json!({"lobby": "default", "min_bet": 10}),
        1 => json!({"bet": "pass", "amount": 25}),
        2 => json!([6, 8, "hard eight"]),
        _ => json!("x".repeat(300)),
    }
}

fn node_config(base: &StorageConfig) -> StorageConfig {
    let mut c = base.clone();
    c.maintenance.background_tasks = false;
    c
}

/// A node with the Redis tier when `BITCRAPS_TEST_REDIS_URL` is set (then each node has an
/// in-process cache kept coherent through Redis), in the namespace of `base` (the store's
/// own, derived from its id, unless set).
fn cached_node_config(base: &StorageConfig) -> StorageConfig {
    let mut c = node_config(base);
    match std::env::var("BITCRAPS_TEST_REDIS_URL") {
        Ok(url) if !url.is_empty() => c.redis.url = Some(url),
        _ => common::skip("BITCRAPS_TEST_REDIS_URL is not set (nodes ran without Redis)"),
    }
    c
}

/// [`common::pg_fixture`] with a Redis namespace of its own, deleted with the fixture (the
/// nodes of [`cached_node_config`] use it).
fn pg_fixture_with_namespace() -> Option<common::Fixture> {
    let fixture = common::pg_fixture()?;
    Some(match std::env::var("BITCRAPS_TEST_REDIS_URL") {
        Ok(url) if !url.is_empty() => {
            let mut f = common::nodes::with_redis(fixture, url, "pg_concurrency");
            // Each node sets the URL itself (or runs without Redis).
            f.config.redis.url = None;
            f
        }
        _ => fixture,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_writing_the_same_content_keep_references_exact() -> Result {
    let Some(fixture) = pg_fixture_with_namespace() else {
        return Ok(());
    };
    let mut nodes = Vec::new();
    for _ in 0..NODES {
        nodes.push(PersistentStorageManager::open(cached_node_config(&fixture.config)).await?);
    }
    let mut tasks = Vec::new();
    for (n, node) in nodes.iter().enumerate() {
        for t in 0..TASKS_PER_NODE {
            let node = node.clone();
            tasks.push(tokio::spawn(async move {
                // Keys only this task writes: their final value is known exactly.
                let mut own: BTreeMap<String, Option<usize>> = BTreeMap::new();
                for i in 0..OPS_PER_TASK {
                    let v = (n * 7 + t * 3 + i) % 4;
                    let shared = format!("shared-{}", (n + t + i) % SHARED_KEYS);
                    let mine = format!("own-{n}-{t}-{}", i % 3);
                    match i % 5 {
                        0 | 1 => {
                            node.store("c", &shared, &content(v)).await?;
                            node.store("c", &mine, &content(v + 1)).await?;
                            own.insert(mine, Some(v + 1));
                        }
                        2 => {
                            node.delete("c", &shared).await?;
                            node.delete("c", &mine).await?;
                            own.insert(mine, None);
                        }
                        3 => {
                            let other = format!("shared-{}", (n + t + i + 1) % SHARED_KEYS);
                            node.store_batch(
                                "c",
                                &[
                                    (shared, content(v)),
                                    (other, content(v + 2)),
                                    (mine.clone(), content(v + 3)),
                                ],
                            )
                            .await?;
                            own.insert(mine, Some(v + 3));
                        }
                        _ => {
                            // Overwrite with the same content: one reference taken, one dropped.
                            node.store("c", &shared, &content(v)).await?;
                            node.store("c", &shared, &content(v)).await?;
                        }
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
    let report = s.check_consistency().await?;
    assert!(report.is_ok(), "{report:?}");
    for (key, v) in &expected {
        let got: Option<Value> = s.retrieve("c", key).await?;
        assert_eq!(got, v.map(content), "{key}");
    }
    let allowed: Vec<Value> = (0..4).map(content).collect();
    for i in 0..SHARED_KEYS {
        if let Some(v) = s.retrieve::<Value>("c", &format!("shared-{i}")).await? {
            assert!(
                allowed.contains(&v),
                "shared-{i} holds {v}, which nobody wrote"
            );
        }
    }
    // Every distinct content is stored exactly once (dedup across nodes).
    let keys = s.list("c", ListOptions::default().limit(1000)).await?.keys;
    let mut distinct = std::collections::BTreeSet::new();
    for key in &keys {
        let v: Value = s.retrieve("c", key).await?.expect("listed");
        distinct.insert(v.to_string());
    }
    let stats = s.statistics().await?.database_stats;
    assert_eq!(stats.record_count, keys.len() as u64);
    assert_eq!(stats.blob_count, distinct.len() as u64);
    // Every node's caches converge to the database (read without any cache) within the
    // deadline: no node keeps serving a value another node overwrote or deleted.
    let truth = PersistentStorageManager::open(node_config(&fixture.config)).await?;
    let mut all_keys: Vec<String> = (0..SHARED_KEYS).map(|i| format!("shared-{i}")).collect();
    all_keys.extend(expected.keys().cloned());
    for key in &all_keys {
        let want: Option<Value> = truth.retrieve("c", key).await?;
        for node in &nodes {
            common::nodes::wait_until(&format!("a node serves the latest {key}"), || async {
                Ok(node.retrieve::<Value>("c", key).await? == want)
            })
            .await?;
        }
    }
    truth.close().await?;
    for node in &nodes {
        node.close().await?;
    }
    Ok(())
}

/// Regression: every write transaction took one advisory lock per key and per content hash,
/// and advisory locks live in the server's shared lock table (about 6,400 entries with the
/// default settings). A batch of 10,000 records failed with "out of shared memory". Large
/// groups now take the store's write lock exclusively instead — while another node keeps
/// writing small groups on the fine-grained path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_larger_than_the_lock_table_commit() -> Result {
    const ITEMS: usize = 10_000;
    let Some(fixture) = common::pg_fixture() else {
        return Ok(());
    };
    let mut config = node_config(&fixture.config);
    config.write.durability = bitcraps_storage::Durability::Normal;
    config.compression.dictionaries = false;
    let bulk = PersistentStorageManager::open(config.clone()).await?;
    let loader = tokio::spawn(async move {
        let items: Vec<(String, Value)> = (0..ITEMS)
            .map(|i| (format!("b-{i:05}"), content(i)))
            .collect();
        bulk.store_batch("bulk", &items).await?;
        bulk.close().await?;
        Result::Ok(())
    });
    let small = PersistentStorageManager::open(config.clone()).await?;
    for i in 0..50 {
        small.store("small", &format!("k{i}"), &content(i)).await?;
    }
    loader.await??;
    let stats = small.statistics().await?;
    assert_eq!(stats.database_stats.record_count, ITEMS as u64 + 50);
    // Four distinct contents in all, shared by every record.
    assert_eq!(stats.database_stats.blob_count, 4);
    let report = small.check_consistency().await?;
    assert!(report.is_ok(), "{report:?}");
    small.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_starting_together_migrate_once() -> Result {
    let Some(fixture) = common::pg_fixture() else {
        return Ok(());
    };
    let mut opening = Vec::new();
    for _ in 0..6 {
        let config = node_config(&fixture.config);
        opening.push(tokio::spawn(PersistentStorageManager::open(config)));
    }
    let mut nodes = Vec::new();
    for o in opening {
        nodes.push(o.await??);
    }
    for node in &nodes {
        assert_eq!(node.statistics().await?.database_stats.schema_version, 16);
        assert_eq!(node.statistics().await?.database_stats.backend, "postgres");
    }
    nodes[0].store("c", "k", &1).await?;
    assert_eq!(nodes[5].retrieve::<i32>("c", "k").await?, Some(1));
    for node in &nodes {
        node.close().await?;
    }
    let url = fixture.config.database.url.clone().expect("url");
    let rows = query_i64(&url, "SELECT count(*) FROM bitcraps_schema_version").await?;
    assert_eq!(rows, 1);

    // A schema from a newer build is refused.
    execute(&url, "UPDATE bitcraps_schema_version SET version = 99").await?;
    let err = PersistentStorageManager::open(node_config(&fixture.config))
        .await
        .expect_err("newer schema");
    assert!(
        matches!(
            err,
            StorageError::SchemaTooNew {
                found: 99,
                supported: 16
            }
        ),
        "{err:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dictionary_trained_by_another_node_is_loaded_on_demand() -> Result {
    let Some(fixture) = common::pg_fixture() else {
        return Ok(());
    };
    let mut config = node_config(&fixture.config);
    config.compression.dictionary_training_samples = 64;
    let trainer = PersistentStorageManager::open(config.clone()).await?;
    // Opened before any dictionary exists: it learns of it only through the database.
    let reader = PersistentStorageManager::open(config).await?;
    let mut i = 0u32;
    // Training runs in the background; keep writing until a record uses the dictionary.
    let deadline = Instant::now() + Duration::from_secs(30);
    let key = loop {
        let key = format!("g-{i:05}");
        trainer.store("games", &key, &game(&key, i)).await?;
        if trainer
            .metadata("games", &key)
            .await?
            .and_then(|m| m.dictionary_id)
            .is_some()
        {
            break key;
        }
        i += 1;
        assert!(
            Instant::now() < deadline,
            "no dictionary was trained after {i} writes"
        );
    };
    assert_eq!(
        reader.retrieve::<Game>("games", &key).await?,
        Some(game(&key, i))
    );
    trainer.close().await?;
    reader.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_pool_fails_in_bounded_time() -> Result {
    let Some(fixture) = common::pg_fixture() else {
        return Ok(());
    };
    let mut config = node_config(&fixture.config);
    config.database.max_connections = 1;
    config.database.connection_timeout = Duration::from_millis(500);
    let s = PersistentStorageManager::open(config).await?;
    s.store("c", "k", &1).await?;
    let url = fixture.config.database.url.clone().expect("url");
    let (locker, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
    let conn_task = tokio::spawn(conn);
    locker
        .batch_execute("BEGIN; LOCK TABLE records IN ACCESS EXCLUSIVE MODE")
        .await?;
    // This read takes the only pooled connection and waits on the table lock.
    let blocked = {
        let s = s.clone();
        tokio::spawn(async move { s.retrieve::<i32>("c", "k").await })
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let waiting: i64 = locker
            .query_one(
                "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
                 WHERE NOT l.granted AND c.relname = 'records'
                   AND c.relnamespace = current_schema()::regnamespace",
                &[],
            )
            .await?
            .get(0);
        if waiting > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the first read never reached the lock"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let second = tokio::time::timeout(Duration::from_secs(20), s.list("c", ListOptions::default()))
        .await
        .expect("an exhausted pool must fail, not hang");
    match second {
        Err(StorageError::PoolTimeout {
            waited_ms,
            pool_size,
        }) => {
            assert_eq!(waited_ms, 500);
            assert_eq!(pool_size, 1);
        }
        other => panic!("expected a pool timeout, got {other:?}"),
    }
    locker.batch_execute("ROLLBACK").await?;
    let first = tokio::time::timeout(Duration::from_secs(20), blocked).await???;
    assert_eq!(first, Some(1));
    drop(locker);
    let _ = conn_task.await;
    s.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_other_than_get_use_the_replica() -> Result {
    let Some(primary) = common::pg_fixture() else {
        return Ok(());
    };
    let replica = PgSchema::create(&std::env::var("BITCRAPS_TEST_POSTGRES_URL")?);
    // Different data in each schema, so each read shows which one it used.
    let p = PersistentStorageManager::open(node_config(&primary.config)).await?;
    p.store("c", "on-primary", &"primary").await?;
    p.close().await?;
    let mut rc = node_config(&primary.config);
    rc.database.url = Some(replica.url());
    let r = PersistentStorageManager::open(rc).await?;
    r.store("c", "on-replica", &"replica").await?;
    r.store("replica-only", "x", &1).await?;
    r.close().await?;

    let mut config = node_config(&primary.config);
    config.database.read_replica_url = Some(replica.url());
    let s = PersistentStorageManager::open(config).await?;
    assert_eq!(
        s.list("c", ListOptions::default()).await?.keys,
        ["on-replica"]
    );
    assert_eq!(s.collections().await?, ["c", "replica-only"]);
    assert!(s.metadata("c", "on-replica").await?.is_some());
    assert_eq!(s.statistics().await?.database_stats.record_count, 2);
    // `get` always reads the primary.
    assert_eq!(
        s.retrieve::<String>("c", "on-primary").await?.as_deref(),
        Some("primary")
    );
    assert_eq!(s.retrieve::<String>("c", "on-replica").await?, None);
    // Writes go to the primary.
    s.store("c", "written", &2).await?;
    s.close().await?;
    let p = PersistentStorageManager::open(node_config(&primary.config)).await?;
    assert_eq!(
        p.list("c", ListOptions::default()).await?.keys,
        ["on-primary", "written"]
    );
    p.close().await?;
    Ok(())
}

async fn execute(url: &str, sql: &str) -> Result {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    let task = tokio::spawn(conn);
    client.batch_execute(sql).await?;
    drop(client);
    let _ = task.await;
    Ok(())
}

async fn query_i64(url: &str, sql: &str) -> Result<i64> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    let task = tokio::spawn(conn);
    let v: i64 = client.query_one(sql, &[]).await?.get(0);
    drop(client);
    let _ = task.await;
    Ok(v)
}

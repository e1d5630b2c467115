//! Encryption at rest with many nodes: two real nodes on PostgreSQL with the Redis tier, one
//! master key. Node A writes sentinel documents (enough to train a dictionary); node B reads
//! them with the data keys it finds in the shared `data_keys` table, and reads them again
//! from Redis. The sentinel is then in no Redis key or value and in no row of any of the
//! schema's tables (as text, with `bytea` in hex, searched for both forms). The plaintext
//! control finds it in both places, so the scans can fail.
#![cfg(all(feature = "redis", feature = "postgres"))]

use crate::common;

use bitcraps_storage::{KeyConfig, PersistentStorageManager};
use common::nodes::{TestResult, redis_url, remote_stats, two_pg_nodes};
use common::sentinel::{SENTINEL, contains};
use serde_json::{Value, json};

/// Writes sentinel documents on A until a dictionary is used, reads them all on B twice.
async fn exercise(a: &PersistentStorageManager, b: &PersistentStorageManager) -> TestResult<u32> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut n = 0u32;
    loop {
        let key = format!("p-{n:04}");
        a.store("players", &key, &json!({"name": SENTINEL, "n": n}))
            .await?;
        n += 1;
        let trained = a
            .metadata("players", &key)
            .await?
            .and_then(|m| m.dictionary_id);
        if trained.is_some() && n >= 80 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no dictionary after {n} writes"
        );
    }
    for _ in 0..2 {
        for i in 0..n {
            let got: Value = b
                .retrieve("players", &format!("p-{i:04}"))
                .await?
                .ok_or("missing")?;
            assert_eq!(got["name"], SENTINEL);
        }
    }
    let remote = remote_stats(b).await?;
    assert!(
        remote.hits >= u64::from(n),
        "second reads came from Redis: {remote:?}"
    );
    Ok(n)
}

/// Every Redis key of the namespace and its value, concatenated.
fn redis_bytes(url: &str, namespace: &str) -> TestResult<Vec<u8>> {
    let client = redis::Client::open(url)?;
    let mut conn = client.get_connection_with_timeout(std::time::Duration::from_secs(2))?;
    let keys: Vec<Vec<u8>> = redis::cmd("KEYS")
        .arg(format!("{namespace}:*"))
        .query(&mut conn)?;
    assert!(!keys.is_empty());
    let mut all = Vec::new();
    for key in keys {
        let value: Option<Vec<u8>> = redis::cmd("GET").arg(&key).query(&mut conn)?;
        all.extend_from_slice(&key);
        all.extend(value.unwrap_or_default());
    }
    Ok(all)
}

/// Every row of every table of the store's schema, as text.
fn postgres_text(store: &PersistentStorageManager) -> TestResult<String> {
    let url = store.config().database.url.clone().ok_or("no url")?;
    let schema = url
        .rsplit("search_path%3D")
        .next()
        .ok_or("no schema")?
        .to_owned();
    let base = common::postgres_url().ok_or("no postgres")?;
    Ok(common::on_own_runtime(move || {
        Box::pin(async move {
            let (client, conn) = tokio_postgres::connect(&base, tokio_postgres::NoTls)
                .await
                .map_err(|e| e.to_string())?;
            let task = tokio::spawn(conn);
            let tables = client
                .query(
                    "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1",
                    &[&schema],
                )
                .await
                .map_err(|e| e.to_string())?;
            let mut text = String::new();
            for row in tables {
                let table: String = row.get(0);
                let rows = client
                    .query(&format!("SELECT t::text FROM {schema}.{table} t"), &[])
                    .await
                    .map_err(|e| e.to_string())?;
                for r in rows {
                    text.push_str(&r.get::<_, String>(0));
                    text.push('\n');
                }
            }
            drop(client);
            let _ = task.await;
            Ok::<_, String>(text)
        })
    })?)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn run(encrypted: bool) -> TestResult<Option<(bool, bool)>> {
    let Some(url) = redis_url() else {
        return Ok(None);
    };
    let (_key_dir, key) = common::key_file();
    let nodes = two_pg_nodes(&url, "encryption", |config, _| {
        config.cache.size_mb = 0; // every second read is an L2 read
        config.compression.dictionary_training_samples = 48;
        if encrypted {
            config.key = KeyConfig::default().file(&key);
        }
    })
    .await?;
    let Some(nodes) = nodes else {
        return Ok(None);
    };
    exercise(&nodes.a, &nodes.b).await?;
    let in_redis = contains(&redis_bytes(&url, &nodes.namespace)?, SENTINEL.as_bytes());
    let text = postgres_text(&nodes.a)?;
    assert!(text.contains("players"), "the scan reads the records");
    let in_postgres = text.contains(SENTINEL) || text.contains(&hex(SENTINEL.as_bytes()));
    nodes.a.close().await?;
    nodes.b.close().await?;
    Ok(Some((in_redis, in_postgres)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_plaintext_reaches_redis_or_postgres() -> TestResult {
    if let Some((in_redis, in_postgres)) = run(true).await? {
        assert!(!in_redis, "the sentinel is in Redis");
        assert!(!in_postgres, "the sentinel is in PostgreSQL");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scans_find_the_sentinel_in_a_plaintext_store() -> TestResult {
    if let Some((in_redis, in_postgres)) = run(false).await? {
        assert!(
            in_redis && in_postgres,
            "redis {in_redis}, postgres {in_postgres}"
        );
    }
    Ok(())
}

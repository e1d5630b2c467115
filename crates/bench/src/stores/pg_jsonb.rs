//! The PostgreSQL peer: what a team would write by hand instead of using the library on
//! PostgreSQL — one `key → JSONB` table, tokio-postgres with prepared statements, a pool of as
//! many connections as ours uses by default (4), a batch as one multi-row statement
//! (`unnest`), every write committed with the server's default `synchronous_commit = on`
//! (the same durability as ours). No compression, dedup, cache or versions. It reaches the
//! server over the same transport as ours from the same URL: the library's connector for the
//! URL's `sslmode` (`testing::postgres::transport`; TLS under `prefer` when the server offers
//! it, plain under `disable`).

use std::sync::Mutex;

use anyhow::{Context, Result, anyhow};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};

use super::schema::PgSchema;
use super::{Op, Store, Worker, prefix_end};
use crate::docs::Game;

/// Connections in the pool (ours: `database.max_connections`, default 4).
const CONNECTIONS: usize = 4;

const UPSERT: &str = "INSERT INTO docs (key, doc) VALUES ($1, $2::text::jsonb)
     ON CONFLICT (key) DO UPDATE SET doc = excluded.doc";
const UPSERT_MANY: &str = "INSERT INTO docs (key, doc)
     SELECT k, d::jsonb FROM unnest($1::text[], $2::text[]) AS t(k, d)
     ON CONFLICT (key) DO UPDATE SET doc = excluded.doc";
const GET: &str = "SELECT doc::text FROM docs WHERE key = $1";
const LIST: &str = "SELECT key FROM docs WHERE key >= $1 AND key < $2 AND key > $3
     ORDER BY key LIMIT $4";
const SCAN: &str = "SELECT key, doc::text FROM docs WHERE key >= $1 AND key < $2 AND key > $3
     ORDER BY key LIMIT $4";

pub struct PgJsonb {
    rt: tokio::runtime::Runtime,
    pool: Pool,
    schema: PgSchema,
    /// The table's size (with its index and TOAST) at settle.
    bytes: Mutex<Option<u64>>,
}

impl PgJsonb {
    pub fn open(server: &str) -> Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let schema = rt.block_on(PgSchema::create(server))?;
        let (config, tls) = bitcraps_storage::testing::postgres::transport(&schema.url())?;
        let manager = Manager::from_config(
            config,
            tls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(CONNECTIONS)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()?;
        let store = PgJsonb {
            rt,
            pool,
            schema,
            bytes: Mutex::new(None),
        };
        store.rt.block_on(async {
            let client = store.pool.get().await?;
            client
                .batch_execute(
                    "CREATE TABLE docs (key text COLLATE \"C\" PRIMARY KEY, doc jsonb NOT NULL)",
                )
                .await
                .context("creating the peer's table")
        })?;
        Ok(store)
    }

    async fn put_async(pool: &Pool, key: &str, doc: &Game) -> Result<()> {
        let json = serde_json::to_string(doc)?;
        let client = pool.get().await?;
        let stmt = client.prepare_cached(UPSERT).await?;
        client.execute(&stmt, &[&key, &json]).await?;
        Ok(())
    }

    async fn get_async(pool: &Pool, key: &str) -> Result<Option<Game>> {
        let client = pool.get().await?;
        let stmt = client.prepare_cached(GET).await?;
        let row = client.query_opt(&stmt, &[&key]).await?;
        row.map(|r| Ok(serde_json::from_str(r.try_get::<_, &str>(0)?)?))
            .transpose()
    }

    /// `(start, end, after)` of a prefix page.
    fn range(prefix: &str, after: Option<&str>) -> Result<(String, String, String)> {
        let end = prefix_end(prefix).ok_or_else(|| anyhow!("no end for prefix {prefix}"))?;
        Ok((prefix.to_owned(), end, after.unwrap_or_default().to_owned()))
    }
}

impl Store for PgJsonb {
    fn put(&self, key: &str, doc: &Game) -> Result<()> {
        self.rt.block_on(Self::put_async(&self.pool, key, doc))
    }

    fn put_batch(&self, items: &[(String, Game)]) -> Result<()> {
        let keys: Vec<&str> = items.iter().map(|(k, _)| k.as_str()).collect();
        let docs = items
            .iter()
            .map(|(_, d)| serde_json::to_string(d))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        self.rt.block_on(async {
            let client = self.pool.get().await?;
            let stmt = client.prepare_cached(UPSERT_MANY).await?;
            client.execute(&stmt, &[&keys, &docs]).await?;
            Ok(())
        })
    }

    fn get(&self, key: &str) -> Result<Option<Game>> {
        self.rt.block_on(Self::get_async(&self.pool, key))
    }

    fn list(&self, prefix: &str, after: Option<&str>, limit: usize) -> Result<Vec<String>> {
        let (start, end, after) = Self::range(prefix, after)?;
        let limit = i64::try_from(limit)?;
        self.rt.block_on(async {
            let client = self.pool.get().await?;
            let stmt = client.prepare_cached(LIST).await?;
            let rows = client.query(&stmt, &[&start, &end, &after, &limit]).await?;
            rows.iter()
                .map(|r| Ok(r.try_get::<_, String>(0)?))
                .collect()
        })
    }

    /// One query for the page and its documents (what this peer does best).
    fn scan(&self, prefix: &str, after: Option<&str>, limit: usize) -> Result<Vec<(String, Game)>> {
        let (start, end, after) = Self::range(prefix, after)?;
        let limit = i64::try_from(limit)?;
        self.rt.block_on(async {
            let client = self.pool.get().await?;
            let stmt = client.prepare_cached(SCAN).await?;
            let rows = client.query(&stmt, &[&start, &end, &after, &limit]).await?;
            rows.iter()
                .map(|r| {
                    Ok((
                        r.try_get::<_, String>(0)?,
                        serde_json::from_str(r.try_get::<_, &str>(1)?)?,
                    ))
                })
                .collect()
        })
    }

    fn settle(&self) -> Result<()> {
        let bytes = self.rt.block_on(async {
            let client = self.pool.get().await?;
            let row = client
                .query_one("SELECT pg_total_relation_size('docs')", &[])
                .await?;
            anyhow::Ok(u64::try_from(row.try_get::<_, i64>(0)?)?)
        })?;
        *self.bytes.lock().map_err(|_| anyhow!("poisoned"))? = Some(bytes);
        Ok(())
    }

    fn remote_footprint(&self) -> Option<u64> {
        self.bytes.lock().ok().and_then(|b| *b)
    }

    /// One task per worker on the runtime, as ours.
    fn run_workers(&self, workers: &[Worker]) -> Result<()> {
        self.rt.block_on(async {
            let mut tasks = tokio::task::JoinSet::new();
            for ops in workers {
                let ops = std::sync::Arc::clone(ops);
                let pool = self.pool.clone();
                tasks.spawn(async move {
                    for op in ops.iter() {
                        match op {
                            Op::Put(key, doc) => Self::put_async(&pool, key, doc).await?,
                            Op::Get(key) => {
                                let doc = Self::get_async(&pool, key).await?;
                                anyhow::ensure!(doc.is_some(), "missing {key}");
                                std::hint::black_box(doc);
                            }
                        }
                    }
                    anyhow::Ok(())
                });
            }
            while let Some(done) = tasks.join_next().await {
                done.map_err(|e| anyhow!("task failed: {e}"))??;
            }
            Ok(())
        })
    }
}

impl Drop for PgJsonb {
    fn drop(&mut self) {
        if let Err(e) = self.rt.block_on(self.schema.drop_schema()) {
            eprintln!("could not drop the benchmark's schema: {e:#}");
        }
    }
}

#[cfg(test)]
mod tests {
    use anyhow::Result;

    use super::PgJsonb;

    /// Whether the peer's pooled connection is encrypted, on the server at `url`.
    fn peer_encrypted(url: &str) -> Result<bool> {
        let peer = PgJsonb::open(url)?;
        peer.rt.block_on(async {
            let client = peer.pool.get().await?;
            let row = client
                .query_one(
                    "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                    &[],
                )
                .await?;
            anyhow::Ok(row.try_get::<_, bool>(0)?)
        })
    }

    /// Regression: the peer connected with `NoTls` whatever the URL's `sslmode`, while ours
    /// took its transport from the URL, so on a server with `ssl = on` the two ran over
    /// different transports under `prefer` (and the peer failed under `require`). Needs
    /// `BITCRAPS_TEST_POSTGRES_URL`, a server with `ssl = on` (as the shared one).
    #[test]
    fn the_peer_takes_its_transport_from_the_url_as_ours() -> Result<()> {
        let Some(server) = crate::stores::test_server()? else {
            return Ok(());
        };
        let joiner = if server.contains('?') { '&' } else { '?' };
        assert!(
            peer_encrypted(&format!("{server}{joiner}sslmode=require"))?,
            "require"
        );
        assert!(
            peer_encrypted(&format!("{server}{joiner}sslmode=prefer"))?,
            "prefer, on a server that offers TLS"
        );
        assert!(
            !peer_encrypted(&format!("{server}{joiner}sslmode=disable"))?,
            "disable"
        );
        Ok(())
    }
}

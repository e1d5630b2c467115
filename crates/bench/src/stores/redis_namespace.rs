//! A Redis key namespace of its own for one benchmark run: unused before the run (its name is
//! fresh), every key under it deleted after the store closes.

use anyhow::{Context, Result};

/// The namespace `name` on the server at `server`.
pub struct RedisNamespace {
    server: String,
    name: String,
}

impl RedisNamespace {
    /// A namespace named after the run (its PostgreSQL schema).
    pub fn new(server: &str, run: &str) -> Self {
        RedisNamespace {
            server: server.to_owned(),
            name: format!("bitcraps-bench:{run}"),
        }
    }

    /// The store's `redis_namespace`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Deletes every key of the namespace.
    pub async fn delete(&self) -> Result<()> {
        let client = redis::Client::open(self.server.as_str())
            .with_context(|| format!("Redis URL {}", self.server))?;
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .with_context(|| format!("connecting to {}", self.server))?;
        let pattern = format!("{}:*", self.name);
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .context("listing the namespace's keys")?;
            if !keys.is_empty() {
                let () = redis::cmd("DEL")
                    .arg(keys)
                    .query_async(&mut conn)
                    .await
                    .context("deleting the namespace's keys")?;
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }
}

//! The Redis client and the tier's private Tokio runtime.
//!
//! All Redis I/O runs on a small runtime owned by the tier (one worker thread), whatever
//! runtime the user has — or none, as on the writer thread. Async callers await the spawned
//! task's `JoinHandle`; the writer thread waits on a channel. Every operation carries its own
//! deadline (`redis.timeout`), so a dead Redis never blocks a caller longer than that.

use std::sync::Mutex;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisResult};

use crate::error::{Result, StorageError};

/// The tier's own runtime: the crate's one private-runtime bridge.
pub(crate) use crate::rt::PrivateRuntime;

/// A lazily (re)connected multiplexed connection for commands.
pub(crate) struct Connection {
    client: redis::Client,
    config: AsyncConnectionConfig,
    slot: Mutex<Option<MultiplexedConnection>>,
    timeout: Duration,
}

impl Connection {
    /// Checks the URL; does not connect.
    pub(crate) fn new(url: &str, timeout: Duration) -> Result<Self> {
        let client = redis::Client::open(url).map_err(|e| StorageError::UnsupportedUrl {
            url: url.to_owned(),
            reason: format!("not a usable Redis URL: {e}"),
        })?;
        Ok(Connection {
            client,
            config: AsyncConnectionConfig::new()
                .set_connection_timeout(Some(timeout))
                .set_response_timeout(Some(timeout)),
            slot: Mutex::new(None),
            timeout,
        })
    }

    fn with_slot<T>(&self, f: impl FnOnce(&mut Option<MultiplexedConnection>) -> T) -> T {
        match self.slot.lock() {
            Ok(mut g) => f(&mut g),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    /// The current connection, connecting first if there is none.
    pub(crate) async fn get(&self) -> RedisResult<MultiplexedConnection> {
        if let Some(conn) = self.with_slot(|s| s.clone()) {
            return Ok(conn);
        }
        let conn = self
            .client
            .get_multiplexed_async_connection_with_config(&self.config)
            .await?;
        self.with_slot(|s| *s = Some(conn.clone()));
        Ok(conn)
    }

    /// Forgets the connection after a failure; the next operation reconnects.
    pub(crate) fn reset(&self) {
        self.with_slot(|s| *s = None);
    }

    /// A dedicated pub/sub connection (not multiplexed), within the timeout.
    pub(crate) async fn pubsub(&self) -> RedisResult<redis::aio::PubSub> {
        match tokio::time::timeout(self.timeout, self.client.get_async_pubsub()).await {
            Ok(result) => result,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "connecting for pub/sub timed out",
            )
            .into()),
        }
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }
}

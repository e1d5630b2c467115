//! The Redis client and the tier's private Tokio runtime.
//!
//! All Redis I/O runs on a small runtime owned by the tier (one worker thread), whatever
//! runtime the user has — or none, as on the writer thread. Async callers await the spawned
//! task's `JoinHandle`; the writer thread waits on a channel. Every operation carries its own
//! deadline (`redis.timeout`), so a dead Redis never blocks a caller longer than that.
//! `rediss://` goes over TLS (`tls.rs`); the last connection failure is kept for the
//! statistics, and a TLS failure is logged as a warning when it first appears.

use std::path::Path;
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
    /// The URL, for naming the server in messages (always through `redact_url`).
    url: String,
    /// Why the last connection attempt failed; `None` after a success.
    last_error: Mutex<Option<String>>,
}

impl Connection {
    /// Checks the URL (and reads `ca_file`, the CA of a `rediss://` server); does not
    /// connect.
    pub(crate) fn new(url: &str, timeout: Duration, ca_file: Option<&Path>) -> Result<Self> {
        let client = super::tls::client(url, ca_file)?;
        Ok(Connection {
            client,
            config: AsyncConnectionConfig::new()
                .set_connection_timeout(Some(timeout))
                .set_response_timeout(Some(timeout)),
            slot: Mutex::new(None),
            timeout,
            url: url.to_owned(),
            last_error: Mutex::new(None),
        })
    }

    /// Why the last connection attempt failed, if it did (for the statistics).
    pub(crate) fn last_error(&self) -> Option<String> {
        match self.last_error.lock() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Records the outcome of a connection attempt. A TLS failure is logged as a warning
    /// when it differs from the previous failure (it will not go away by retrying).
    fn note<T>(&self, result: RedisResult<T>) -> RedisResult<T> {
        let server = || super::tls::server(&self.url);
        let (message, tls) = match &result {
            Ok(_) => (None, false),
            Err(e) => match super::tls::failure(e, &self.url) {
                Some(failure) => {
                    let error = StorageError::Tls {
                        server: server(),
                        failure,
                    };
                    (Some(error.to_string()), true)
                }
                None => (Some(format!("cannot connect to {}: {e}", server())), false),
            },
        };
        let mut slot = match self.last_error.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(text) = message.as_deref().filter(|_| tls && *slot != message) {
            tracing::warn!(error = %text, "redis connection failed");
        }
        *slot = message;
        result
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
        let conn = self.note(
            self.client
                .get_multiplexed_async_connection_with_config(&self.config)
                .await,
        )?;
        self.with_slot(|s| *s = Some(conn.clone()));
        Ok(conn)
    }

    /// Forgets the connection after a failure; the next operation reconnects.
    pub(crate) fn reset(&self) {
        self.with_slot(|s| *s = None);
    }

    /// A dedicated pub/sub connection (not multiplexed), within the timeout.
    pub(crate) async fn pubsub(&self) -> RedisResult<redis::aio::PubSub> {
        self.note(
            match tokio::time::timeout(self.timeout, self.client.get_async_pubsub()).await {
                Ok(result) => result,
                Err(_) => Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "connecting for pub/sub timed out",
                )
                .into()),
            },
        )
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }
}

//! The Redis client and the tier's private Tokio runtime.
//!
//! All Redis I/O runs on a small runtime owned by the tier (one worker thread), whatever
//! runtime the user has — or none, as on the writer thread. Async callers await the spawned
//! task's `JoinHandle`; the writer thread waits on a channel. Every operation carries its own
//! deadline (`redis.timeout`), so a dead Redis never blocks a caller longer than that.

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisResult};
use tokio::runtime::{Handle, Runtime};

use crate::error::{Result, StorageError};

/// The tier's own runtime. Dropping it shuts it down in the background (dropping a runtime
/// inside an async context would panic).
pub(crate) struct PrivateRuntime {
    runtime: Mutex<Option<Runtime>>,
    handle: Handle,
}

impl PrivateRuntime {
    pub(crate) fn new() -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("bitcraps-storage-redis")
            .enable_all()
            .build()
            .map_err(|e| StorageError::Task(format!("cannot start the Redis runtime: {e}")))?;
        Ok(PrivateRuntime {
            handle: runtime.handle().clone(),
            runtime: Mutex::new(Some(runtime)),
        })
    }

    pub(crate) fn spawn<F>(&self, future: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        drop(self.handle.spawn(future));
    }

    /// Runs `future` on the private runtime with a deadline; `None` when it timed out or the
    /// runtime is shutting down. For async callers on any runtime.
    pub(crate) async fn run<F, T>(&self, future: F, deadline: Duration) -> Option<T>
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let task = self
            .handle
            .spawn(async move { tokio::time::timeout(deadline, future).await.ok() });
        task.await.ok().flatten()
    }

    /// Like [`run`](Self::run), for a plain thread (the writer): blocks on a channel.
    pub(crate) fn run_blocking<F, T>(&self, future: F, deadline: Duration) -> Option<T>
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        drop(self.handle.spawn(async move {
            if let Ok(value) = tokio::time::timeout(deadline, future).await {
                let _ = tx.send(value);
            }
        }));
        // A little slack over the task's own deadline, which normally fires first.
        rx.recv_timeout(deadline + Duration::from_millis(50)).ok()
    }

    /// Stops the runtime's tasks without waiting for them. Idempotent.
    pub(crate) fn shutdown(&self) {
        let runtime = match self.runtime.lock() {
            Ok(mut r) => r.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(runtime) = runtime {
            runtime.shutdown_background();
        }
    }
}

impl Drop for PrivateRuntime {
    fn drop(&mut self) {
        self.shutdown();
    }
}

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

//! The bridge between the async edge and the blocking core: database work never runs on the
//! async runtime's threads.

use crate::error::{Result, StorageError};

/// Runs blocking work off the async runtime, inside the caller's tracing span (so what the
/// backend logs is attributed to the operation that asked for it).
pub(crate) async fn blocking<T, F>(f: F) -> Result<T>
where
    F: FnOnce() -> Result<T> + Send + 'static,
    T: Send + 'static,
{
    spawn_blocking(f).await
}

/// [`blocking`], started now rather than when first awaited: several can run at once while
/// the caller awaits them one by one.
pub(crate) fn spawn_blocking<T, F>(f: F) -> impl std::future::Future<Output = Result<T>>
where
    F: FnOnce() -> Result<T> + Send + 'static,
    T: Send + 'static,
{
    #[cfg(feature = "testing")]
    STARTED_HERE.with(|n| n.set(n.get().wrapping_add(1)));
    let span = tracing::Span::current();
    let task = tokio::task::spawn_blocking(move || span.in_scope(f));
    async move {
        task.await
            .map_err(|e| StorageError::Task(format!("blocking task failed: {e}")))?
    }
}

#[cfg(feature = "testing")]
thread_local! {
    /// Blocking tasks started from this thread ([`blocking_tasks_started_here`]).
    static STARTED_HERE: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// How many tasks this thread has handed to the blocking pool (`testing` feature).
#[cfg(feature = "testing")]
pub(crate) fn blocking_tasks_started_here() -> u64 {
    STARTED_HERE.with(std::cell::Cell::get)
}

/// The cores this process may use (`available_parallelism`, read once; 1 when unknown).
pub(crate) fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// A small Tokio runtime owned by a component (the PostgreSQL backend, the Redis tier), so
/// its I/O runs whatever runtime the caller has — or none, as on the writer thread. Blocking
/// callers wait on a channel (never `Handle::block_on`, which panics inside a runtime); async
/// callers await the spawned task. Dropping it shuts it down in the background (dropping a
/// runtime inside an async context would panic). Shutdown is idempotent.
#[cfg(any(feature = "postgres", feature = "redis"))]
pub(crate) struct PrivateRuntime {
    runtime: std::sync::Mutex<Option<tokio::runtime::Runtime>>,
    handle: tokio::runtime::Handle,
    /// For errors (`block_on`).
    #[cfg_attr(
        not(feature = "postgres"),
        expect(dead_code, reason = "only block_on names it")
    )]
    name: &'static str,
}

#[cfg(any(feature = "postgres", feature = "redis"))]
impl PrivateRuntime {
    /// A runtime of `workers` threads named `bitcraps-<name>`; `name` also appears in errors.
    pub(crate) fn new(name: &'static str, workers: usize) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers.max(1))
            .thread_name(format!("bitcraps-{name}"))
            .enable_all()
            .build()
            .map_err(|e| StorageError::Task(format!("cannot start the {name} runtime: {e}")))?;
        Ok(PrivateRuntime {
            handle: runtime.handle().clone(),
            runtime: std::sync::Mutex::new(Some(runtime)),
            name,
        })
    }

    /// The runtime's handle (to enter it while building pools that spawn on it).
    #[cfg(feature = "postgres")]
    pub(crate) fn handle(&self) -> &tokio::runtime::Handle {
        &self.handle
    }

    /// Runs `future` in the background.
    #[cfg(feature = "redis")]
    pub(crate) fn spawn<F>(&self, future: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        drop(self.handle.spawn(future));
    }

    /// Runs `future` and waits for it on this (non-async) thread.
    #[cfg(feature = "postgres")]
    pub(crate) fn block_on<T, F>(&self, future: F) -> Result<T>
    where
        F: std::future::Future<Output = Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        drop(self.handle.spawn(async move {
            // The receiver only goes away if the caller is gone; nothing to report then.
            let _ = tx.send(future.await);
        }));
        rx.recv().map_err(|_| {
            StorageError::Task(format!(
                "the {} runtime stopped before answering",
                self.name
            ))
        })?
    }

    /// Runs `future` with a deadline; `None` when it timed out or the runtime is shutting
    /// down. For async callers on any runtime.
    #[cfg(feature = "redis")]
    pub(crate) async fn run<F, T>(&self, future: F, deadline: std::time::Duration) -> Option<T>
    where
        F: std::future::Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let task = self
            .handle
            .spawn(async move { tokio::time::timeout(deadline, future).await.ok() });
        task.await.ok().flatten()
    }

    /// Like [`run`](Self::run), for a plain thread (the writer): blocks on a channel.
    #[cfg(feature = "redis")]
    pub(crate) fn run_blocking<F, T>(&self, future: F, deadline: std::time::Duration) -> Option<T>
    where
        F: std::future::Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        drop(self.handle.spawn(async move {
            if let Ok(value) = tokio::time::timeout(deadline, future).await {
                let _ = tx.send(value);
            }
        }));
        // A little slack over the task's own deadline, which normally fires first.
        rx.recv_timeout(deadline + std::time::Duration::from_millis(50))
            .ok()
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

#[cfg(any(feature = "postgres", feature = "redis"))]
impl Drop for PrivateRuntime {
    fn drop(&mut self) {
        self.shutdown();
    }
}

//! Group commit: one writer thread owns all writes. Requests that arrive while a transaction
//! is being committed queue up and go into the next transaction together, so concurrent
//! writers share one fsync. Each caller is acknowledged only after the commit that holds its
//! write, and only after the cache reflects it.
//!
//! `thread` is the loop, `group` one commit, `access_flush` when buffered access counts
//! ride along.

mod access_flush;
mod group;
mod thread;

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::backend::{OpOutcome, WriteUnit};
use crate::error::{Result, StorageError};
use crate::store::Shared;

/// What a caller waits for.
pub(crate) type Reply<T> = oneshot::Sender<Result<T>>;

enum Message {
    Write(WriteUnit, Reply<Vec<OpOutcome>>),
    FlushAccess(Reply<()>),
}

/// Group commit tuning.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WriterOptions {
    pub(crate) max_batch_requests: usize,
    pub(crate) access_flush_interval: Duration,
}

/// The handle to the writer thread.
pub(crate) struct Writer {
    sender: Mutex<Option<mpsc::Sender<Message>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Writer {
    pub(crate) fn start(shared: Arc<Shared>, options: WriterOptions) -> Result<Self> {
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("bitcraps-storage-writer".into())
            .spawn(move || thread::run(&shared, &rx, options))
            .map_err(|e| StorageError::Task(format!("cannot start the writer thread: {e}")))?;
        Ok(Writer {
            sender: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
        })
    }

    fn send(&self, message: Message) -> Result<()> {
        let guard = self.sender.lock().map_err(|_| StorageError::Closed)?;
        let sender = guard.as_ref().ok_or(StorageError::Closed)?;
        sender.send(message).map_err(|_| StorageError::Closed)
    }

    /// Queues a unit and waits until it is committed.
    pub(crate) async fn write(&self, unit: WriteUnit) -> Result<Vec<OpOutcome>> {
        let (reply, answer) = oneshot::channel();
        self.send(Message::Write(unit, reply))?;
        answer.await.map_err(|_| writer_gone())?
    }

    /// Flushes buffered access statistics now.
    pub(crate) async fn flush_access(&self) -> Result<()> {
        let (reply, answer) = oneshot::channel();
        self.send(Message::FlushAccess(reply))?;
        answer.await.map_err(|_| writer_gone())?
    }

    /// Stops accepting writes; the thread finishes what is queued, flushes access
    /// statistics and exits. Returns the thread to join, the first time only.
    pub(crate) fn shutdown(&self) -> Option<JoinHandle<()>> {
        if let Ok(mut s) = self.sender.lock() {
            s.take();
        }
        self.thread.lock().ok().and_then(|mut t| t.take())
    }
}

fn writer_gone() -> StorageError {
    StorageError::Task("the writer thread stopped before answering".into())
}

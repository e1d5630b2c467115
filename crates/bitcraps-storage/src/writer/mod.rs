//! Group commit: one writer thread owns all writes. Requests that arrive while a transaction
//! is being committed queue up and go into the next transaction together, so concurrent
//! writers share one fsync. Each caller is acknowledged only after the commit that holds its
//! write, and only after the cache reflects it.
//!
//! `thread` is the loop, `gather` what joins a group, `group` one commit, `access_flush` when buffered access counts
//! ride along, `poison` what happens when the thread panics.
//!
//! The queue is bounded by bytes ([`QUEUE_BYTES`]): a caller first takes queue space for its
//! unit's documents (waiting asynchronously when it is full — backpressure, not unbounded
//! memory), and the space is given back once its group has been answered.

mod access_flush;
mod gather;
mod group;
mod poison;
mod thread;

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use crate::backend::{OpOutcome, WriteOp, WriteUnit};
use crate::error::{Result, StorageError};
use crate::store::Shared;
use poison::Poison;

/// Bytes of queued writes (documents and their stored forms) before writers wait.
#[cfg(test)]
pub(crate) const QUEUE_BYTES: usize = QUEUE_PERMITS * PERMIT_BYTES;

/// Queue space is counted in units of this many bytes.
const PERMIT_BYTES: usize = 1024;

/// Queue space in permits: 64 MiB.
const QUEUE_PERMITS: usize = 64 * 1024;

/// What a caller waits for.
pub(crate) type Reply<T> = oneshot::Sender<Result<T>>;

enum Message {
    Write(WriteUnit, Reply<Vec<OpOutcome>>, OwnedSemaphorePermit),
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
    queue: Arc<Semaphore>,
    poison: Arc<Poison>,
}

impl Writer {
    pub(crate) fn start(shared: Arc<Shared>, options: WriterOptions) -> Result<Self> {
        let (tx, rx) = mpsc::channel();
        let poison = Arc::new(Poison::default());
        let watch = Arc::clone(&poison);
        let thread = std::thread::Builder::new()
            .name("bitcraps-storage-writer".into())
            .spawn(move || watch.run(&shared, move |shared| thread::run(shared, &rx, options)))
            .map_err(|e| StorageError::Task(format!("cannot start the writer thread: {e}")))?;
        Ok(Writer {
            sender: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
            queue: Arc::new(Semaphore::new(QUEUE_PERMITS)),
            poison,
        })
    }

    fn send(&self, message: Message) -> Result<()> {
        self.poison.check()?;
        let guard = self.sender.lock().map_err(|_| StorageError::Closed)?;
        let sender = guard.as_ref().ok_or(StorageError::Closed)?;
        sender
            .send(message)
            .map_err(|_| self.poison.check().err().unwrap_or(StorageError::Closed))
    }

    /// Queues a unit and waits until it is committed. Waits first for queue space when the
    /// queue is full.
    pub(crate) async fn write(&self, unit: WriteUnit) -> Result<Vec<OpOutcome>> {
        self.poison.check()?;
        let permits = permits_for(&unit);
        let permit = tokio::select! {
            permit = Arc::clone(&self.queue).acquire_many_owned(permits) => {
                permit.map_err(|_| StorageError::Closed)?
            }
            e = self.poison.wait() => return Err(e),
        };
        let (reply, answer) = oneshot::channel();
        self.send(Message::Write(unit, reply, permit))?;
        match answer.await {
            Ok(result) => result,
            Err(_) => Err(self.poison.wait().await),
        }
    }

    /// Flushes buffered access statistics now.
    pub(crate) async fn flush_access(&self) -> Result<()> {
        let (reply, answer) = oneshot::channel();
        self.send(Message::FlushAccess(reply))?;
        match answer.await {
            Ok(result) => result,
            Err(_) => Err(self.poison.wait().await),
        }
    }

    /// Bytes of writes queued or being committed now (at most [`QUEUE_BYTES`], or one unit
    /// larger than that on its own).
    pub(crate) fn queued_bytes(&self) -> u64 {
        let free = self.queue.available_permits();
        let used = QUEUE_PERMITS.saturating_sub(free);
        u64::try_from(used.saturating_mul(PERMIT_BYTES)).unwrap_or(u64::MAX)
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

/// Queue space for a unit: its documents and stored forms, in permits, at least one. A unit
/// larger than the whole queue takes all of it and so waits until it is alone.
fn permits_for(unit: &WriteUnit) -> u32 {
    let bytes: usize = unit
        .iter()
        .map(|op| match op {
            WriteOp::Put { value, .. } => value.raw_len().saturating_add(value.stored_len()),
            WriteOp::PutDictionary { data, .. } => data.len(),
            _ => 0,
        })
        .fold(0usize, usize::saturating_add);
    let permits = (bytes / PERMIT_BYTES).saturating_add(1).min(QUEUE_PERMITS);
    u32::try_from(permits).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Pipeline;

    fn put(bytes: usize) -> Result<WriteOp> {
        let pipeline = Pipeline {
            codec: crate::Codec::None,
            level: 0,
            max_value_size: usize::MAX,
            chunk_threshold: 0,
            keyframe_interval: 0,
        };
        let raw = vec![b'7'; bytes];
        Ok(WriteOp::Put {
            collection: "c".into(),
            key: "k".into(),
            value: pipeline.encode_raw("c", "k", raw)?,
            now_ms: 0,
            keep_version: None,
            expires_ms: None,
        })
    }

    #[test]
    fn queue_space_is_charged_by_bytes_and_capped_at_the_whole_queue() -> Result<()> {
        assert_eq!(permits_for(&vec![]), 1, "an empty unit still takes a slot");
        // Uncompressed: the JSON and the stored form are the same 10 KiB, charged twice
        // (both are held), plus one.
        assert_eq!(permits_for(&vec![put(10 * 1024)?]), 21);
        let huge = permits_for(&vec![put(QUEUE_BYTES)?]);
        assert_eq!(
            huge as usize, QUEUE_PERMITS,
            "a unit over the bound waits alone"
        );
        Ok(())
    }
}

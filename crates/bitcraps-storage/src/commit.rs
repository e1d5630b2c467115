//! Group commit: one writer thread owns all writes. Requests that arrive while a transaction
//! is being committed queue up and go into the next transaction together, so concurrent
//! writers share one fsync. Each caller is acknowledged only after the commit that holds its
//! write, and only after the cache reflects it.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{self, RecvTimeoutError, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::access::AccessTracker;
use crate::backend::{Backend, OpOutcome, WriteOp, WriteUnit};
use crate::cache::{ValueCache, cache_key};
use crate::cached::CachedValue;
use crate::error::{Result, StorageError};
use crate::stats::Counters;

/// Buffered access counts are flushed early once this many records have some (about
/// 80 bytes of memory each), down to half of it.
const FLUSH_AT_PENDING_KEYS: usize = 50_000;

/// Most access counts written by one group commit. A flush of many keys rewrites many
/// pages; in chunks, the writes queued meanwhile commit between them instead of waiting for
/// the whole flush.
const TOUCHES_PER_GROUP: usize = 5_000;

/// State shared by the handle and the writer thread.
pub(crate) struct Shared {
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) cache: Arc<ValueCache>,
    pub(crate) access: AccessTracker,
    pub(crate) counters: Counters,
    pub(crate) dictionaries: crate::dictionary::Dictionaries,
    /// The Redis tier (L2 and cross-node invalidation), when configured.
    pub(crate) remote: Option<crate::remote::RemoteTier>,
}

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
            .spawn(move || run(&shared, &rx, options))
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

fn run(shared: &Shared, rx: &mpsc::Receiver<Message>, options: WriterOptions) {
    let tick = options
        .access_flush_interval
        .clamp(Duration::from_millis(10), Duration::from_secs(1));
    let mut last_flush = Instant::now();
    // Access counts still to write in chunks, from a flush that was due.
    let mut to_drain = 0usize;
    loop {
        let first = if to_drain > 0 {
            // Mid-flush: take what is queued, but do not wait for it.
            match rx.try_recv() {
                Ok(m) => Some(m),
                Err(TryRecvError::Empty) => None,
                Err(TryRecvError::Disconnected) => break,
            }
        } else {
            match rx.recv_timeout(tick) {
                Ok(m) => Some(m),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            }
        };
        let mut writes = Vec::new();
        let mut flush_waiters = Vec::new();
        let mut next = first;
        loop {
            match next {
                Some(Message::Write(unit, reply)) => writes.push((unit, reply)),
                Some(Message::FlushAccess(reply)) => flush_waiters.push(reply),
                None => {}
            }
            // Everything that queued up during the previous commit joins this one.
            if writes.len() >= options.max_batch_requests {
                break;
            }
            match rx.try_recv() {
                Ok(m) => next = Some(m),
                Err(_) => break,
            }
        }
        let pending = shared.access.pending_keys();
        // The interval bounds how long any count waits: when it is up, or when someone asks,
        // every buffered count is written, in one group. Between, too many pending records
        // start an early flush down to half the threshold, a chunk per group (the tracker
        // drains its shards round-robin, so no shard waits behind busier ones).
        let timer_due = pending > 0 && last_flush.elapsed() >= options.access_flush_interval;
        if to_drain == 0 && pending >= FLUSH_AT_PENDING_KEYS {
            to_drain = pending - FLUSH_AT_PENDING_KEYS / 2;
        }
        let limit = if !flush_waiters.is_empty() || timer_due {
            usize::MAX
        } else {
            to_drain.min(TOUCHES_PER_GROUP)
        };
        if writes.is_empty() && limit == 0 {
            if pending == 0 {
                last_flush = Instant::now();
            }
            continue;
        }
        let flushed = commit_group(shared, writes, limit);
        if limit == usize::MAX {
            to_drain = 0;
            last_flush = Instant::now();
        } else if limit > 0 {
            to_drain = match &flushed {
                Ok(drained) if *drained > 0 => to_drain.saturating_sub(*drained),
                // Failed (the counts were put back; the timer retries) or nothing left.
                _ => 0,
            };
        }
        for waiter in flush_waiters {
            let _ = waiter.send(flushed.as_ref().map(|_| ()).map_err(copy_error));
        }
    }
    if shared.access.pending_keys() > 0
        && let Err(e) = commit_group(shared, Vec::new(), usize::MAX)
    {
        tracing::warn!(error = %e, "could not flush access statistics on shutdown");
    }
}

/// A stand-in for an error that several callers must each receive.
fn copy_error(e: &StorageError) -> StorageError {
    StorageError::database("committing a group of writes", e.to_string())
}

/// Commits one group, with up to `touch_limit` buffered access counts; returns how many
/// counts it wrote, or the error that failed the whole transaction.
fn commit_group(
    shared: &Shared,
    writes: Vec<(WriteUnit, Reply<Vec<OpOutcome>>)>,
    touch_limit: usize,
) -> Result<usize, StorageError> {
    let (mut units, replies): (Vec<WriteUnit>, Vec<_>) = writes.into_iter().unzip();
    let touches = shared.access.drain(touch_limit);
    let touched = touches.len();
    let has_touches = touched > 0;
    if has_touches {
        units.push(touches);
    }
    let mark = shared.cache.remote_mark();
    let applied = std::panic::catch_unwind(AssertUnwindSafe(|| shared.backend.apply(&units)))
        .unwrap_or_else(|_| {
            Err(StorageError::Task(
                "the backend panicked while writing".into(),
            ))
        });
    let results = match applied {
        Ok(results) => results,
        Err(e) => {
            if has_touches && let Some(t) = units.last() {
                shared.access.restore(t);
            }
            Counters::add(
                &shared.counters.errors,
                u64::try_from(replies.len()).unwrap_or(0),
            );
            tracing::warn!(error = %e, requests = replies.len(), "group commit failed");
            let mut replies = replies.into_iter();
            if let Some(first) = replies.next() {
                for r in replies {
                    let _ = r.send(Err(copy_error(&e)));
                }
                let copy = copy_error(&e);
                let _ = first.send(Err(e));
                return Err(copy);
            }
            return Err(e);
        }
    };
    let counters = &shared.counters;
    Counters::add(&counters.group_commits, 1);
    Counters::add(
        &counters.grouped_requests,
        u64::try_from(replies.len()).unwrap_or(0),
    );
    let mut results = results.into_iter();
    let mut answers = Vec::with_capacity(replies.len());
    let mut written = Vec::new();
    for (unit, reply) in units.iter().zip(replies) {
        let result = results
            .next()
            .unwrap_or_else(|| Err(StorageError::Task("the backend skipped a write".into())));
        if let Ok(outcomes) = &result {
            for (op, outcome) in unit.iter().zip(outcomes) {
                record_effect(shared, op, *outcome, mark);
                if shared.remote.is_some()
                    && let WriteOp::Put {
                        collection, key, ..
                    }
                    | WriteOp::Delete { collection, key } = op
                {
                    written.push(cache_key(collection, key));
                }
            }
        } else {
            Counters::add(&counters.errors, 1);
        }
        answers.push((reply, result));
    }
    // Other nodes: invalidate L2 and announce the keys before anyone is acknowledged, so once
    // a write returns no node can read the old value from L2 (bounded by `redis_timeout`).
    if let Some(remote) = &shared.remote {
        remote.invalidate_after_commit(written);
    }
    for (reply, result) in answers {
        let _ = reply.send(result);
    }
    if has_touches && let (Some(Err(e)), Some(t)) = (results.next(), units.last()) {
        tracing::warn!(error = %e, "flushing access statistics failed; will retry");
        shared.access.restore(t);
        // The writes of the group were answered above; a flush() waiter must hear that its
        // counts are not on disk.
        return Err(StorageError::database(
            "flushing access statistics",
            e.to_string(),
        ));
    }
    Ok(touched)
}

/// Applies a committed operation to the cache and the counters. `mark` was taken before the
/// commit (see `ValueCache::committed_since`).
fn record_effect(shared: &Shared, op: &WriteOp, outcome: OpOutcome, mark: u64) {
    let counters = &shared.counters;
    match (op, outcome) {
        (
            WriteOp::Put {
                collection,
                key,
                value,
                ..
            },
            OpOutcome::Put { deduplicated, .. },
        ) => {
            let dict = value
                .dict_id
                .and_then(|id| shared.dictionaries.decoder(id, "").ok());
            let k = cache_key(collection, key);
            let cached = CachedValue::from_encoded(&k, value, dict);
            shared.cache.committed_since(&k, Some(cached), mark);
            Counters::add(&counters.writes, 1);
            let raw = u64::try_from(value.raw_len()).unwrap_or(u64::MAX);
            Counters::add(&counters.logical_bytes_written, raw);
            if deduplicated {
                Counters::add(&counters.deduplicated, 1);
            } else {
                let stored = u64::try_from(value.stored.len()).unwrap_or(u64::MAX);
                Counters::add(&counters.bytes_written, stored);
            }
        }
        (WriteOp::Delete { collection, key }, OpOutcome::Delete { existed }) => {
            let k = cache_key(collection, key);
            shared.access.forget(&k);
            shared.cache.committed(&k, None);
            if existed {
                Counters::add(&counters.deletes, 1);
            }
        }
        _ => {}
    }
}

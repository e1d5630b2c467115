//! Committing on the caller's thread when the writer is idle.
//!
//! A write that goes through the writer thread pays two hand-offs besides its commit: the
//! caller's task wakes the writer thread, and the writer wakes the caller's Tokio worker with
//! the answer, each waiting for a core. When nothing is queued and no commit is running, the
//! caller commits its unit itself instead, the same [`commit_group`] in the same order (one
//! transaction, the Redis tier's invalidations, the cache and counters, then the answer),
//! inside [`tokio::task::block_in_place`] so the worker's other tasks move to another thread
//! meanwhile. LevelDB's and RocksDB's writers do the same: the first writer to arrive commits
//! for the group; here only on the idle path, so groups still form under load.
//!
//! One commit runs at a time: the writer thread and an inline caller take [`CommitLock`]
//! around a commit. A caller only tries it (never waits for it), and goes to the queue when
//! it is taken, when the queue holds anything (the writer's gathered requests go first),
//! when the writer thread waits for the lock, on a current-thread runtime (which cannot
//! block in place), outside a runtime, and for units over [`INLINE_MAX_PERMITS`]. A panic
//! during an inline commit poisons the writer as one on the writer thread does.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::sync::oneshot;

use super::group::commit_group;
use super::poison::Poison;
use crate::backend::{OpOutcome, WriteUnit};
use crate::error::{Result, StorageError};
use crate::stats::Counters;
use crate::store::Shared;

/// Most queue space (in 1 KiB permits) of a unit committed on the caller's thread; larger
/// units go to the writer thread, so a caller's worker is never held for long.
pub(super) const INLINE_MAX_PERMITS: u32 = 256;

/// The lock one commit holds, on the writer thread or on a caller's.
#[derive(Default)]
pub(super) struct CommitLock {
    lock: Mutex<()>,
    /// The writer thread waits for the lock: callers leave it to the writer.
    writer_waiting: AtomicBool,
}

impl CommitLock {
    /// The writer thread's way in: waits for a running inline commit to end.
    pub(super) fn lock(&self) -> MutexGuard<'_, ()> {
        self.writer_waiting.store(true, Ordering::SeqCst);
        let guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        self.writer_waiting.store(false, Ordering::SeqCst);
        guard
    }

    /// A caller's way in: the lock if it is free and the writer thread does not want it.
    fn try_lock(&self) -> Option<MutexGuard<'_, ()>> {
        if self.writer_waiting.load(Ordering::SeqCst) {
            return None;
        }
        self.lock.try_lock().ok()
    }
}

/// Whether the calling thread may block in place: a worker (or `block_on`) of a
/// multi-thread Tokio runtime.
pub(super) fn may_block_in_place() -> bool {
    Handle::try_current().is_ok_and(|h| h.runtime_flavor() == RuntimeFlavor::MultiThread)
}

/// Tries to take the commit for the caller: the lock, if it is free and `idle()` still
/// holds once it is taken.
pub(super) fn begin<'a>(
    lock: &'a CommitLock,
    idle: impl FnOnce() -> bool,
) -> Option<MutexGuard<'a, ()>> {
    let guard = lock.try_lock()?;
    idle().then_some(guard)
}

/// Commits `unit` alone, here, under the commit lock the caller holds; a panic poisons the
/// writer.
pub(super) fn commit(shared: &Shared, poison: &Poison, unit: WriteUnit) -> Result<Vec<OpOutcome>> {
    let (reply, mut answer) = oneshot::channel();
    tokio::task::block_in_place(|| {
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
            commit_group(shared, vec![(unit, reply)], 0, 0)
        }));
        match outcome {
            Ok(committed) => {
                if committed.is_ok() {
                    Counters::add(&shared.counters.inline_commits, 1);
                }
                answer
                    .try_recv()
                    .unwrap_or_else(|_| Err(StorageError::Task("a commit left no answer".into())))
            }
            Err(panic) => {
                Err(poison.record(shared, panic.as_ref(), "a commit on a caller's thread"))
            }
        }
    })
}

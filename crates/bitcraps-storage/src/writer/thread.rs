//! The writer thread's loop: take every request that queued up during the previous commit
//! (and the callers coming back, `gather`), add the access counts that are due, commit them
//! as one group.

use std::sync::mpsc::{self, RecvTimeoutError, TryRecvError};
use std::time::Instant;

use super::access_flush::{ALL, AccessFlush};
use super::gather::{Gathered, LastGroup, gather};
use super::group::commit_group;
use super::{Message, WriterOptions};
use crate::store::Shared;

pub(super) fn run(shared: &Shared, rx: &mpsc::Receiver<Message>, options: WriterOptions) {
    let mut policy = AccessFlush::new(options.access_flush_interval);
    let mut last = LastGroup::default();
    loop {
        let first = if policy.draining() {
            match rx.try_recv() {
                Ok(m) => Some(m),
                Err(TryRecvError::Empty) => None,
                Err(TryRecvError::Disconnected) => break,
            }
        } else {
            match rx.recv_timeout(policy.tick()) {
                Ok(m) => Some(m),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            }
        };
        let mut group = Gathered::default();
        if let Some(m) = first {
            group.take(m);
        }
        gather(rx, &mut group, options.max_batch_requests, last, || {});
        let Gathered {
            writes,
            permits,
            flush_waiters,
        } = group;
        let pending = shared.access.pending_keys();
        let limit = policy.limit(pending, !flush_waiters.is_empty());
        if writes.is_empty() && limit == 0 {
            policy.idle(pending);
            continue;
        }
        let size = writes.len();
        let started = Instant::now();
        let mut flushed = commit_group(shared, writes, limit, policy.batch());
        if size > 0 {
            last = LastGroup {
                size,
                commit: started.elapsed(),
            };
        }
        drop(permits);
        policy.done(limit, &flushed);
        for waiter in flush_waiters {
            let answer = match &mut flushed {
                Ok(_) => Ok(()),
                Err(e) => Err(e.duplicate()),
            };
            let _ = waiter.send(answer);
        }
    }
    if shared.access.pending_keys() > 0
        && let Err(e) = commit_group(shared, Vec::new(), ALL, ALL)
    {
        tracing::warn!(error = %e, "could not flush access statistics on shutdown");
    }
}

//! The writer thread's loop: take every request that queued up during the previous commit,
//! add the access counts that are due, commit them as one group.

use std::sync::mpsc::{self, RecvTimeoutError, TryRecvError};

use super::access_flush::{ALL, AccessFlush};
use super::group::commit_group;
use super::{Message, WriterOptions};
use crate::store::Shared;

pub(super) fn run(shared: &Shared, rx: &mpsc::Receiver<Message>, options: WriterOptions) {
    let mut policy = AccessFlush::new(options.access_flush_interval);
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
        let mut writes = Vec::new();
        // Queue space, given back once the group is answered.
        let mut permits = Vec::new();
        let mut flush_waiters = Vec::new();
        let mut next = first;
        loop {
            match next {
                Some(Message::Write(unit, reply, permit)) => {
                    writes.push((unit, reply));
                    permits.push(permit);
                }
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
        let limit = policy.limit(pending, !flush_waiters.is_empty());
        if writes.is_empty() && limit == 0 {
            policy.idle(pending);
            continue;
        }
        let mut flushed = commit_group(shared, writes, limit, policy.batch());
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

//! Gathering one group: every request queued during the previous commit, and — when the
//! previous group was bigger — the callers it answered, for a moment.
//!
//! A caller that waits for its write to be durable before sending its next (a game table
//! waiting for its last move) comes back right after its group is answered. A writer that
//! commits whatever is queued at once then splits such callers into two halves that
//! alternate: each group holds the half that queued during the previous commit, and the
//! other half, answered a moment later, waits for a whole commit. Where a commit is slow —
//! PostgreSQL's flush, a busy disk — that halves what the callers get. So while a group is
//! smaller than the last one, the writer waits for more, at most half as long as the last
//! commit took and never more than [`MAX_GATHER`]; it does not wait when the group is as big
//! as the last (a lone caller never waits) or the last commit was instant. PostgreSQL's
//! `commit_delay` is the same idea with a fixed delay; here the wait ends as soon as the
//! group is as big as the last.

use std::sync::mpsc::{self, TryRecvError};
use std::time::{Duration, Instant};

use tokio::sync::OwnedSemaphorePermit;

use super::{Message, Reply};
use crate::backend::{OpOutcome, WriteUnit};

/// The longest a group waits for callers to come back.
pub(super) const MAX_GATHER: Duration = Duration::from_millis(1);

/// The requests one group commit answers, and the queue space they hold until then.
#[derive(Default)]
pub(super) struct Gathered {
    pub(super) writes: Vec<(WriteUnit, Reply<Vec<OpOutcome>>)>,
    pub(super) permits: Vec<OwnedSemaphorePermit>,
    pub(super) flush_waiters: Vec<Reply<()>>,
}

impl Gathered {
    pub(super) fn take(&mut self, message: Message) {
        match message {
            Message::Write(unit, reply, permit) => {
                self.writes.push((unit, reply));
                self.permits.push(permit);
            }
            Message::FlushAccess(reply) => self.flush_waiters.push(reply),
        }
    }
}

/// What the last group with writes was: how many it held and how long its commit took.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct LastGroup {
    pub(super) size: usize,
    pub(super) commit: Duration,
}

impl LastGroup {
    /// How long a group may wait for callers to come back.
    pub(super) fn patience(self) -> Duration {
        (self.commit / 2).min(MAX_GATHER)
    }
}

/// Adds to `group` every request queued now (up to `max` writes), then, while it holds
/// fewer writes than `last`, waits for more within `last`'s patience. `before_wait` runs
/// before each wait (a test's hook).
pub(super) fn gather(
    rx: &mpsc::Receiver<Message>,
    group: &mut Gathered,
    max: usize,
    last: LastGroup,
    mut before_wait: impl FnMut(),
) {
    let mut until = None;
    while group.writes.len() < max {
        match rx.try_recv() {
            Ok(m) => {
                group.take(m);
                continue;
            }
            Err(TryRecvError::Disconnected) => return,
            Err(TryRecvError::Empty) => {}
        }
        let n = group.writes.len();
        if n == 0 || n >= last.size {
            return;
        }
        let until = *until.get_or_insert_with(|| Instant::now() + last.patience());
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        before_wait();
        match rx.recv_timeout(left) {
            Ok(m) => group.take(m),
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::sync::{Semaphore, oneshot};

    use super::*;

    fn write() -> Message {
        let permit = Arc::new(Semaphore::new(1)).try_acquire_owned();
        let (reply, _) = oneshot::channel();
        Message::Write(Vec::new(), reply, permit.expect("a free permit"))
    }

    fn last(size: usize, commit_ms: u64) -> LastGroup {
        LastGroup {
            size,
            commit: Duration::from_millis(commit_ms),
        }
    }

    #[test]
    fn a_group_smaller_than_the_last_waits_for_the_callers_coming_back() {
        let (tx, rx) = mpsc::channel();
        tx.send(write()).unwrap();
        let mut group = Gathered::default();
        let mut waits = 0;
        // The second caller sends only once the writer waits: without the wait, the group
        // would be committed with one write.
        gather(&rx, &mut group, 64, last(2, 2), || {
            waits += 1;
            tx.send(write()).unwrap();
        });
        assert_eq!(group.writes.len(), 2);
        assert_eq!(waits, 1);
    }

    #[test]
    fn a_group_as_big_as_the_last_does_not_wait() {
        let (tx, rx) = mpsc::channel();
        tx.send(write()).unwrap();
        tx.send(write()).unwrap();
        let mut group = Gathered::default();
        let mut waits = 0;
        gather(&rx, &mut group, 64, last(2, 2), || waits += 1);
        assert_eq!((group.writes.len(), waits), (2, 0));
        // A lone caller never waits either.
        tx.send(write()).unwrap();
        let mut group = Gathered::default();
        gather(&rx, &mut group, 64, last(1, 2), || waits += 1);
        assert_eq!((group.writes.len(), waits), (1, 0));
    }

    #[test]
    fn no_wait_after_an_instant_commit_or_for_an_empty_group_or_past_the_cap() {
        let (tx, rx) = mpsc::channel();
        let mut waits = 0;
        let mut group = Gathered::default();
        gather(&rx, &mut group, 64, last(8, 2), || waits += 1);
        assert_eq!((group.writes.len(), waits), (0, 0));
        tx.send(write()).unwrap();
        gather(&rx, &mut group, 64, last(8, 0), || waits += 1);
        assert_eq!((group.writes.len(), waits), (1, 0));
        // The group stops at `max` requests, however big the last one was.
        tx.send(write()).unwrap();
        gather(&rx, &mut group, 2, last(8, 2), || waits += 1);
        assert_eq!((group.writes.len(), waits), (2, 0));
    }

    #[test]
    fn patience_is_half_the_last_commit_and_capped() {
        assert_eq!(last(2, 0).patience(), Duration::ZERO);
        assert_eq!(
            LastGroup {
                size: 2,
                commit: Duration::from_micros(300)
            }
            .patience(),
            Duration::from_micros(150)
        );
        assert_eq!(last(2, 60_000).patience(), MAX_GATHER);
    }
}

//! Which of this process's group commits its cache has installed, so a watch delivers a
//! change only once a read of the record returns it.
//!
//! The writer commits a group to the database first and installs its values in this
//! process's cache after (`writer/group.rs`). A watch that reads the log in between (woken
//! by an earlier commit, by its poll interval, or catching up) sees the new change while the
//! cache still serves the version it replaced; a consumer that reads the record it was told
//! of would get the older one. So the writer counts the groups it began and the groups it
//! finished (installed, or failed), and a watch that read a page of the log waits until
//! every group begun by then has finished before it hands the page out. It waits for at most
//! the one group in flight, never for later ones, so a busy writer cannot starve it.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::store::Shared;

/// The writer's counts of groups begun and finished.
#[derive(Debug, Default)]
pub(crate) struct InstallGate {
    begun: AtomicU64,
    finished: AtomicU64,
}

impl InstallGate {
    /// Marks a group begun, before its transaction; dropping the returned guard marks it
    /// finished and wakes the watches.
    pub(crate) fn begin<'a>(&'a self, shared: &'a Shared) -> Installing<'a> {
        self.begun.fetch_add(1, Ordering::SeqCst);
        Installing { gate: self, shared }
    }

    /// The groups begun so far: a watch reads it right after it read the log.
    pub(crate) fn begun(&self) -> u64 {
        self.begun.load(Ordering::SeqCst)
    }

    /// Whether the first `begun` groups have finished.
    pub(crate) fn finished_through(&self, begun: u64) -> bool {
        self.finished.load(Ordering::SeqCst) >= begun
    }
}

/// A group between its transaction and its cache install (see [`InstallGate::begin`]).
pub(crate) struct Installing<'a> {
    gate: &'a InstallGate,
    shared: &'a Shared,
}

impl Drop for Installing<'_> {
    fn drop(&mut self) {
        // Also on a failed commit and on unwinding: a watch waiting for this group must
        // not wait for ever.
        self.gate.finished.fetch_add(1, Ordering::SeqCst);
        Shared::wake_watches(&self.shared.feed_signal);
    }
}

//! The change log of the in-memory backend (`feed/`), as SQLite's `changes` and
//! `change_clock` tables: numbered when a unit commits (every unit of an `apply` runs under
//! the database's one lock, so that is commit order).

use std::collections::VecDeque;

use crate::error::Result;
use crate::feed::{Change, NewChange, prunable_prefix};

/// The `changes` table and its clock.
#[derive(Debug, Clone, Default)]
pub(super) struct ChangeLog {
    rows: VecDeque<Change>,
    last: u64,
    pruned: u64,
}

impl ChangeLog {
    /// Numbers and appends the changes of a unit that committed.
    pub(super) fn append(&mut self, changes: Vec<NewChange>) -> Result<()> {
        for change in changes {
            self.last = self.last.saturating_add(1);
            self.rows.push_back(change.numbered(self.last)?);
        }
        Ok(())
    }

    /// Removes up to `limit` of the oldest changes written before `before_ms`.
    pub(super) fn prune(&mut self, before_ms: i64, limit: usize) -> (u64, u64) {
        let rows: Vec<(i64, i64)> = self
            .rows
            .iter()
            .take(limit)
            .map(|c| {
                (
                    i64::try_from(c.seq).unwrap_or(i64::MAX),
                    crate::backup::millis(c.at),
                )
            })
            .collect();
        let mut removed = 0u64;
        if let Some(through) = prunable_prefix(&rows, before_ms) {
            let through = u64::try_from(through).unwrap_or(0);
            while self.rows.front().is_some_and(|c| c.seq <= through) {
                self.rows.pop_front();
                removed += 1;
            }
            self.pruned = self.pruned.max(through);
        }
        (removed, self.pruned)
    }

    /// Up to `limit` changes above `after`.
    pub(super) fn since(&self, after: u64, limit: usize) -> Result<Vec<Change>> {
        crate::feed::check_retained(after, i64::try_from(self.pruned).unwrap_or(i64::MAX))?;
        Ok(self
            .rows
            .iter()
            .filter(|c| c.seq > after)
            .take(limit)
            .cloned()
            .collect())
    }

    /// The last seq handed out.
    pub(super) fn head(&self) -> u64 {
        self.last
    }
}

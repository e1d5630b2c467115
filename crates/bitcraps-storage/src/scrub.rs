//! The scrub: the deep check in budgeted steps. Each run reads, decodes and hashes blobs in
//! id order from where the previous run stopped, and after the last blob the deltas kept in
//! record rows (SQLite schema 13) in key order, each decoded over its keyframe, until
//! `maintenance.scrub_bytes_per_run` stored bytes were read; when a run reaches the last
//! record holding such a delta, the pass is complete and is
//! recorded as [`StorageStatistics::last_scrub`](crate::StorageStatistics::last_scrub), and
//! the next run starts over. The background task `Scrub` runs it every
//! `maintenance.scrub_interval`; [`PersistentStorageManager::scrub`] runs one step now.
//!
//! The position is kept in memory: a reopened store starts a new pass. Blobs written behind
//! the position during a pass are verified by the next pass (they were verified on the way
//! in, as every write is hashed before it is stored).

use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;

use crate::PersistentStorageManager;
use crate::backend::{DamagedDocument, RecordCursor, now_ms};
use crate::error::Result;
use crate::rt::blocking;
use crate::store::Shared;
use crate::verify::{Decoders, merge_damage, name_damage, verify_blobs, verify_inline_deltas};

/// A complete pass of the scrub over every blob of the store.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ScrubPass {
    /// When the pass started, milliseconds since the Unix epoch.
    pub started_at_ms: i64,
    /// When it finished.
    pub finished_at_ms: i64,
    /// Blobs read, decoded and hashed.
    pub blobs_checked: u64,
    /// Deltas kept in their record's row, decoded over their keyframe and hashed.
    pub inline_deltas_checked: u64,
    /// Stored bytes of those blobs and deltas (a delta's with its keyframe's chunks).
    pub bytes_checked: u64,
    /// Records in the store when the pass finished (every record names one blob).
    pub records_checked: u64,
    /// Blobs that failed verification.
    pub damaged_blobs: u64,
    /// The records whose document failed verification, by collection and key.
    pub damaged: Vec<DamagedDocument>,
}

impl ScrubPass {
    /// True when nothing damaged was found.
    pub fn is_clean(&self) -> bool {
        self.damaged_blobs == 0 && self.damaged.is_empty()
    }
}

/// What one scrub step did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ScrubStep {
    /// Blobs read in this step.
    pub blobs_checked: u64,
    /// Deltas kept in their record's row read in this step.
    pub inline_deltas_checked: u64,
    /// Stored bytes read in this step.
    pub bytes_checked: u64,
    /// Damaged documents found in this step.
    pub damaged: Vec<DamagedDocument>,
    /// The pass this step completed, if it reached the last blob.
    pub completed: Option<ScrubPass>,
}

/// Where the pass in progress is.
#[derive(Debug, Default)]
enum Position {
    /// The next run starts a pass.
    #[default]
    Start,
    /// Reading blobs; the last blob id verified.
    Blobs(i64),
    /// Every blob was read; reading the deltas kept in record rows after this record.
    Inline(Option<RecordCursor>),
}

/// The pass in progress.
#[derive(Debug, Default)]
struct Progress {
    position: Position,
    pass: ScrubPass,
}

/// The scrub's state: the pass in progress (held for the length of a step, so two steps
/// never interleave) and the last complete pass (held only to copy it).
#[derive(Debug, Default)]
pub(crate) struct ScrubState {
    progress: Mutex<Progress>,
    last: Mutex<Option<ScrubPass>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl ScrubState {
    /// The last complete pass.
    pub(crate) fn last(&self) -> Option<ScrubPass> {
        lock(&self.last).clone()
    }
}

/// One step on a blocking thread.
fn step(shared: &Shared, budget: u64) -> Result<ScrubStep> {
    let state = &shared.counters.scrub;
    let mut progress = lock(&state.progress);
    if matches!(progress.position, Position::Start) {
        progress.pass = ScrubPass {
            started_at_ms: now_ms(),
            ..ScrubPass::default()
        };
        progress.position = Position::Blobs(i64::MIN);
    }
    let backend = &shared.backend;
    let m = backend.maintenance();
    let decoders = Decoders::new(&backend.dictionaries()?, shared.keyring.clone());
    let mut result = ScrubStep::default();
    let mut budget = budget.max(1);
    if let Position::Blobs(after) = progress.position {
        let stretch = verify_blobs(&decoders, after, Some(budget), |a, l| m.blobs_after(a, l))?;
        let damaged = name_damage(&stretch.damaged, |ids| m.records_naming(ids))?;
        result.blobs_checked = stretch.blobs;
        result.bytes_checked = stretch.bytes;
        let pass = &mut progress.pass;
        pass.blobs_checked += stretch.blobs;
        pass.bytes_checked = pass.bytes_checked.saturating_add(stretch.bytes);
        pass.damaged_blobs += u64::try_from(stretch.damaged.len()).unwrap_or(u64::MAX);
        merge_damage(&mut pass.damaged, damaged.clone());
        result.damaged = damaged;
        progress.position = if stretch.finished {
            Position::Inline(None)
        } else {
            Position::Blobs(stretch.last_id)
        };
        // A finished blob pass stopped under the budget (it checks before each page).
        budget = budget.saturating_sub(stretch.bytes);
    }
    let mut finished = false;
    if let Position::Inline(after) = &progress.position
        && budget > 0
    {
        let stretch = verify_inline_deltas(&decoders, after.clone(), Some(budget), |a, l| {
            m.inline_deltas_after(a, l)
        })?;
        result.inline_deltas_checked = stretch.deltas;
        result.bytes_checked = result.bytes_checked.saturating_add(stretch.bytes);
        let pass = &mut progress.pass;
        pass.inline_deltas_checked += stretch.deltas;
        pass.bytes_checked = pass.bytes_checked.saturating_add(stretch.bytes);
        merge_damage(&mut pass.damaged, stretch.damaged.clone());
        merge_damage(&mut result.damaged, stretch.damaged);
        finished = stretch.finished;
        progress.position = Position::Inline(stretch.last);
    }
    for d in &result.damaged {
        tracing::error!(
            collection = %d.collection,
            key = %d.key,
            detail = %d.detail,
            "scrub: a stored document is damaged"
        );
    }
    if finished {
        let mut done = std::mem::take(&mut progress.pass);
        done.finished_at_ms = now_ms();
        done.records_checked = backend.statistics()?.record_count;
        progress.position = Position::Start;
        tracing::info!(
            blobs = done.blobs_checked,
            inline_deltas = done.inline_deltas_checked,
            bytes = done.bytes_checked,
            damaged = done.damaged.len(),
            "scrub pass complete"
        );
        *lock(&state.last) = Some(done.clone());
        result.completed = Some(done);
    }
    Ok(result)
}

impl PersistentStorageManager {
    /// Runs one step of the scrub now: verifies stored blobs (decoded with their dictionary,
    /// checked against their content hash) from where the last step stopped, until
    /// `maintenance.scrub_bytes_per_run` bytes were read or the pass is complete. Damaged
    /// documents are reported by collection and key, in the step and in
    /// [`StorageStatistics::last_scrub`](crate::StorageStatistics::last_scrub) when the pass
    /// completes. The background task calls this every `maintenance.scrub_interval`.
    pub async fn scrub(&self) -> Result<ScrubStep> {
        self.check_open()?;
        let shared = Arc::clone(self.shared());
        let budget = self.config().maintenance.scrub_bytes_per_run;
        let work = blocking(move || step(&shared, budget));
        let observer = self.observer();
        observer
            .observed(crate::observe::Operation::Scrub, "", None, work)
            .await
    }
}

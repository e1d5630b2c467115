//! WAL checkpoints off the writer thread.
//!
//! SQLite's automatic checkpoint runs on the connection whose commit crossed the threshold:
//! the writer thread, which then copies up to 16 MiB of pages back into the database file
//! and syncs it while every queued write waits (in the mixed 95/5 benchmark a few times a
//! phase, with every task that has a put in flight stalled behind it). Here the
//! writer's connection reports the WAL's frame count after each commit (SQLite's WAL hook,
//! which also turns the automatic checkpoint off) and, past [`WalPolicy::checkpoint_at`],
//! wakes a thread with a connection of its own that runs `wal_checkpoint(PASSIVE)`: it
//! copies what no reader still needs, never blocks the writer (who keeps appending), and
//! syncs the database file before it lets the next writer restart the log. Should that
//! thread fall behind (or be gone), the writer checkpoints itself at
//! [`WalPolicy::backstop`] frames, as SQLite would have. Durability is unchanged: the
//! thread's connection has the writer's `synchronous` setting, and a commit is in the WAL
//! (synced there with `Durability::Full`) whoever copies it into the database file later.

use std::cell::Cell;
use std::os::raw::c_int;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;

use rusqlite::Connection;
use rusqlite::hooks::Wal;

use super::{BUSY_TIMEOUT, db_err};
use crate::error::{Result, StorageError};

/// WAL frames after which a commit wakes the checkpointer (SQLite's default is 1,000: 4 MiB).
/// A bulk load's commit of 1,000 documents dirties most pages of the content-hash index (its
/// keys are random) besides the new rows: hundreds of frames, so at the default every second
/// or third commit copied the index back into the database file again. At 4,000 frames (16
/// MiB of WAL, plus one commit) a page rewritten by several commits is copied once: ~10 %
/// fewer bytes written and ~10 % less CPU per bulk-loaded document (BENCHMARKS.md, "Bulk
/// load: held statements, runs of records, fewer checkpoints").
pub(super) const CHECKPOINT_AT_FRAMES: u32 = 4000;

/// WAL frames at which the writer checkpoints itself: the checkpointer is four thresholds
/// behind (64 MiB of WAL), busy or gone.
pub(super) const BACKSTOP_FRAMES: u32 = 4 * CHECKPOINT_AT_FRAMES;

/// When the WAL is copied back into the database file, and by whom.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WalPolicy {
    /// Frames in the WAL after a commit at which the checkpointer is woken.
    pub(crate) checkpoint_at: u32,
    /// Frames at which the writer checkpoints itself.
    pub(crate) backstop: u32,
}

impl Default for WalPolicy {
    fn default() -> Self {
        WalPolicy {
            checkpoint_at: CHECKPOINT_AT_FRAMES,
            backstop: BACKSTOP_FRAMES,
        }
    }
}

thread_local! {
    /// The WAL's frame count after the last commit made on this thread through a connection
    /// with [`report_frames`] installed; taken by [`take_frames`] right after the commit.
    static FRAMES: Cell<Option<u32>> = const { Cell::new(None) };
}

/// SQLite's WAL hook: called on the committing thread after a commit that wrote frames. It
/// must answer `Ok`: an error would make the statement that committed report a failure
/// although the transaction is durable.
fn note_frames(_wal: &Wal, frames: c_int) -> rusqlite::Result<()> {
    FRAMES.set(u32::try_from(frames).ok());
    Ok(())
}

/// Makes `conn`'s commits report the WAL's frame count to [`take_frames`] instead of
/// checkpointing on their own (the hook replaces SQLite's automatic checkpoint).
pub(super) fn report_frames(conn: &Connection) {
    conn.wal_hook(Some(note_frames));
}

/// The WAL's frame count after the commit this thread made since the last call, if any.
pub(super) fn take_frames() -> Option<u32> {
    FRAMES.take()
}

/// What the writer does after a commit that left `frames` in the WAL: nothing, wake the
/// checkpointer, or checkpoint itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AfterCommit {
    Nothing,
    Wake,
    Checkpoint,
}

impl WalPolicy {
    pub(super) fn after_commit(&self, frames: u32) -> AfterCommit {
        if frames >= self.backstop {
            AfterCommit::Checkpoint
        } else if frames >= self.checkpoint_at {
            AfterCommit::Wake
        } else {
            AfterCommit::Nothing
        }
    }
}

/// A passive checkpoint on `conn`: copies every frame no reader still needs.
pub(super) fn passive(conn: &Connection) -> Result<()> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
        .map_err(db_err("checkpointing the write-ahead log"))
}

#[derive(Default)]
struct Signal {
    due: bool,
    stop: bool,
    /// Checkpoints the thread ran (each a `wal_checkpoint(PASSIVE)`, failed ones included).
    runs: u64,
}

#[derive(Default)]
struct State {
    signal: Mutex<Signal>,
    /// The thread waits on it for `due` or `stop`.
    wake: Condvar,
    /// Notified after each checkpoint (tests wait on it).
    ran: Condvar,
}

/// The checkpointing thread and its connection; stopped and joined by [`Checkpointer::stop`]
/// (the backend's `close`) or on drop.
pub(super) struct Checkpointer {
    state: Arc<State>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Checkpointer {
    /// Opens the thread's connection to `path` (same `synchronous` setting as the writer's,
    /// which decides when a checkpoint syncs) and starts it.
    pub(super) fn start(path: &Path, synchronous: &str) -> Result<Self> {
        let conn = Connection::open(path).map_err(db_err("opening the checkpointer"))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(db_err("configuring the checkpointer"))?;
        // A checkpoint reads frames straight from the WAL, not through the page cache.
        conn.execute_batch(&format!(
            "PRAGMA synchronous = {synchronous}; PRAGMA cache_size = -64;"
        ))
        .map_err(db_err("configuring the checkpointer"))?;
        let state = Arc::new(State::default());
        let theirs = Arc::clone(&state);
        let thread = std::thread::Builder::new()
            .name("bitcraps-checkpoint".into())
            .spawn(move || run(&conn, &theirs))
            .map_err(|e| StorageError::Task(format!("starting the checkpointer: {e}")))?;
        Ok(Checkpointer {
            state,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Asks for a checkpoint; returns at once.
    pub(super) fn wake(&self) {
        let mut signal = self
            .state
            .signal
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        signal.due = true;
        self.state.wake.notify_one();
    }

    /// Waits until the thread has run `n` checkpoints, or `deadline` passed; returns how
    /// many it ran.
    #[cfg(test)]
    pub(super) fn wait_runs(&self, n: u64, deadline: std::time::Duration) -> u64 {
        let signal = self
            .state
            .signal
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (signal, _) = self
            .state
            .ran
            .wait_timeout_while(signal, deadline, |s| s.runs < n)
            .unwrap_or_else(PoisonError::into_inner);
        signal.runs
    }

    /// Stops the thread after the checkpoint it may be running, and joins it.
    pub(super) fn stop(&self) {
        {
            let mut signal = self
                .state
                .signal
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            signal.stop = true;
            self.state.wake.notify_one();
        }
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(thread) = thread
            && thread.join().is_err()
        {
            tracing::warn!("the checkpointer thread panicked");
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(conn: &Connection, state: &State) {
    loop {
        {
            let mut signal = state.signal.lock().unwrap_or_else(PoisonError::into_inner);
            while !signal.due && !signal.stop {
                signal = state
                    .wake
                    .wait(signal)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            if signal.stop {
                return;
            }
            signal.due = false;
        }
        // A failure (the disk, a lock held past the busy timeout) leaves the frames in the
        // WAL, durable; the next commit past the threshold asks again, and the writer's
        // backstop bounds the WAL meanwhile.
        if let Err(e) = passive(conn) {
            tracing::warn!(error = %e, "background checkpoint failed");
        }
        let mut signal = state.signal.lock().unwrap_or_else(PoisonError::into_inner);
        signal.runs = signal.runs.saturating_add(1);
        state.ran.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::backend::sqlite::{SqliteBackend, SqliteOptions};
    use crate::backend::{Backend, WriteOp};
    use crate::config::Durability;

    type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

    /// Long enough for any machine; the wait ends as soon as the checkpoint ran.
    const DEADLINE: Duration = Duration::from_secs(60);

    #[test]
    fn the_writer_wakes_the_checkpointer_then_checkpoints_itself() {
        let policy = WalPolicy {
            checkpoint_at: 10,
            backstop: 40,
        };
        assert_eq!(policy.after_commit(9), AfterCommit::Nothing);
        assert_eq!(policy.after_commit(10), AfterCommit::Wake);
        assert_eq!(policy.after_commit(39), AfterCommit::Wake);
        assert_eq!(policy.after_commit(40), AfterCommit::Checkpoint);
        assert_eq!(WalPolicy::default().checkpoint_at, CHECKPOINT_AT_FRAMES);
    }

    fn open(dir: &Path, checkpoint_at: u32, backstop: u32) -> Result<SqliteBackend> {
        let options = SqliteOptions {
            path: dir.join("test.db"),
            readers: 1,
            durability: Durability::Full,
            deduplicate: true,
            connection_timeout: Duration::from_secs(5),
            page_cache_bytes: 4 << 20,
        };
        SqliteBackend::open_with(
            &options,
            WalPolicy {
                checkpoint_at,
                backstop,
            },
        )
    }

    /// One group of one put of `len` incompressible-looking bytes at `key`.
    fn put(backend: &SqliteBackend, key: &str, len: usize) -> TestResult {
        let pipeline = crate::value::Pipeline {
            codec: crate::Codec::None,
            level: 0,
            max_value_size: usize::MAX,
            chunk_threshold: 0,
            keyframe_interval: 0,
        };
        let body: String = (0..len)
            .map(|i| char::from(b'a' + u8::try_from((i * 7 + key.len()) % 26).unwrap_or(0)))
            .collect();
        let value = pipeline.encode_raw("c", key, format!("\"{body}\"").into_bytes())?;
        let unit = vec![WriteOp::Put {
            collection: "c".into(),
            key: key.into(),
            value,
            now_ms: 1,
            keep_version: None,
            expires_ms: None,
        }];
        for outcome in backend.apply(&[unit])? {
            outcome?;
        }
        Ok(())
    }

    /// Whether every page of the database is in its file, i.e. the WAL was checkpointed
    /// since the last commit that grew it (before, the new pages exist only in the WAL).
    fn checkpointed(
        backend: &SqliteBackend,
    ) -> std::result::Result<bool, Box<dyn std::error::Error>> {
        let guard = backend.writer()?;
        let conn = guard.as_ref().ok_or("closed")?;
        let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
        let size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        let expected = u64::try_from(pages * size)?;
        Ok(std::fs::metadata(&backend.path)?.len() == expected)
    }

    #[test]
    fn a_commit_past_the_threshold_is_checkpointed_by_the_thread() -> TestResult {
        let dir = tempfile::tempdir()?;
        let backend = open(dir.path(), 1, u32::MAX)?;
        put(&backend, "k", 100_000)?;
        let checkpointer = backend.checkpointer.as_ref().ok_or("no checkpointer")?;
        // Woken after the commit, so its run copied every frame of it.
        assert!(checkpointer.wait_runs(1, DEADLINE) >= 1);
        assert!(checkpointed(&backend)?);
        backend.close()?;
        Ok(())
    }

    /// Regression: SQLite's automatic checkpoint (1,000 frames by default) would run on the
    /// writer thread if anything set `wal_autocheckpoint` after the hook was installed, or
    /// the hook were missing. Here neither the thread (stopped) nor the backstop copies the
    /// WAL, so a commit of ~1,300 frames stays in it.
    #[test]
    fn the_writer_does_not_checkpoint_below_the_backstop() -> TestResult {
        let dir = tempfile::tempdir()?;
        let backend = open(dir.path(), u32::MAX, u32::MAX)?;
        backend
            .checkpointer
            .as_ref()
            .ok_or("no checkpointer")?
            .stop();
        put(&backend, "k", 5 << 20)?;
        assert!(!checkpointed(&backend)?);
        backend.close()?;
        Ok(())
    }

    #[test]
    fn the_writer_checkpoints_itself_when_the_thread_is_behind() -> TestResult {
        let dir = tempfile::tempdir()?;
        let backend = open(dir.path(), 1, 2)?;
        backend
            .checkpointer
            .as_ref()
            .ok_or("no checkpointer")?
            .stop();
        put(&backend, "k", 100_000)?;
        assert!(checkpointed(&backend)?);
        backend.close()?;
        Ok(())
    }
}

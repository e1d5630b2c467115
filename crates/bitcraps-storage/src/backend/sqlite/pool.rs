//! The read connections of a SQLite store: at most `readers` read-only connections, opened
//! on the caller's thread when none is idle, lent for one read at a time, and all closed by
//! [`ReadPool::close`] before it returns.
//!
//! Not a general pool (r2d2, which this replaced, was one): it opens and closes connections
//! on its own threads — one to keep `min_idle`, one to close after the pool's last handle —
//! so a store closed (or dropped) could still hold a shared lock on its file for a moment
//! afterwards, or take one again, and another process that at once opened it, changed its
//! journal mode or replaced it failed with "database is locked". Here nothing runs in the
//! background: a connection exists only while the pool holds it idle or a read has it.

use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};

use super::{BUSY_TIMEOUT, db_err, sqlite_error};
use crate::error::{Result, StorageError};

/// The read-only connections of one store.
pub(super) struct ReadPool {
    path: PathBuf,
    /// Each connection's page cache, in KiB.
    cache_kib: u64,
    /// Most connections open at once (at least 1).
    max: usize,
    /// How long a read waits for a connection, and `close` for the lent ones to come back.
    timeout: Duration,
    state: Mutex<State>,
    /// A connection came back or a slot became free, or the pool closed.
    freed: Condvar,
    /// After `close`: the last connection was closed.
    drained: Condvar,
}

struct State {
    idle: Vec<Connection>,
    /// Connections that exist or are being opened: idle, lent, opening. At most `max`.
    open: usize,
    /// Reads waiting on `freed` (a return without waiters signals nothing).
    waiting: usize,
    closed: bool,
}

/// A connection lent to a read. Dropping it (a panic in the read included) gives the
/// connection back, or closes it if the pool was closed meanwhile.
struct Lent<'p> {
    pool: &'p ReadPool,
    conn: Option<Connection>,
}

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.pool.give_back(conn);
        }
    }
}

impl ReadPool {
    /// A pool of up to `readers` connections to `path`, with one opened now: a database that
    /// cannot be read fails the open, and the first read in place finds an idle connection.
    pub(super) fn open(
        path: &Path,
        readers: usize,
        timeout: Duration,
        cache_kib: u64,
    ) -> Result<Self> {
        let pool = ReadPool {
            path: path.to_path_buf(),
            cache_kib,
            max: readers.max(1),
            timeout,
            state: Mutex::new(State {
                idle: Vec::new(),
                open: 0,
                waiting: 0,
                closed: false,
            }),
            freed: Condvar::new(),
            drained: Condvar::new(),
        };
        pool.with(|_| ())?;
        Ok(pool)
    }

    /// Runs `read` on a connection: an idle one, a new one while fewer than `readers` are
    /// open, or the first one given back within the timeout
    /// ([`StorageError::PoolTimeout`] after it). [`StorageError::Closed`] after `close`.
    pub(super) fn with<T>(&self, read: impl FnOnce(&Connection) -> T) -> Result<T> {
        let started = Instant::now();
        let conn = self.take(started);
        let outcome = match &conn {
            Ok(_) => "ok",
            Err(StorageError::PoolTimeout { .. }) => "timeout",
            Err(_) => "error",
        };
        // Lent before anything else runs: a panic in the metrics recorder gives the
        // connection back instead of losing its slot for good.
        let lent = conn.map(|conn| Lent {
            pool: self,
            conn: Some(conn),
        });
        crate::observe::pool_wait("sqlite_read", started.elapsed(), outcome);
        lent?.conn.as_ref().map(read).ok_or(StorageError::Closed)
    }

    /// Runs `read` on an idle connection, if there is one: never opens one, never waits.
    pub(super) fn try_with<T>(&self, read: impl FnOnce(&Connection) -> T) -> Option<T> {
        let conn = {
            let mut state = self.lock();
            if state.closed {
                return None;
            }
            state.idle.pop()?
        };
        let lent = Lent {
            pool: self,
            conn: Some(conn),
        };
        lent.conn.as_ref().map(read)
    }

    /// Closes every connection: the idle ones now, each lent one when its read gives it
    /// back; returns when all are closed, or with [`StorageError::PoolTimeout`] if reads
    /// still hold some after the timeout. Reads waiting for a connection, and every read
    /// after, fail with [`StorageError::Closed`]. Closing again waits again.
    pub(super) fn close(&self) -> Result<()> {
        let idle = {
            let mut state = self.lock();
            state.closed = true;
            if state.waiting > 0 {
                self.freed.notify_all();
            }
            std::mem::take(&mut state.idle)
        };
        let closed = idle.len();
        let mut first_error = None;
        for conn in idle {
            if let Err(e) = close_connection(conn) {
                first_error.get_or_insert(e);
            }
        }
        let deadline = Instant::now().checked_add(self.timeout);
        let mut state = self.lock();
        state.open -= closed;
        if state.open == 0 {
            // Another `close` may be waiting for the connections this one closed.
            self.drained.notify_all();
        }
        while state.open > 0 {
            let Some(left) = remaining(deadline) else {
                return Err(self.timed_out(self.timeout));
            };
            state = self
                .drained
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        first_error.map_or(Ok(()), Err)
    }

    /// The pool's timeout error, after a wait of `waited`.
    fn timed_out(&self, waited: Duration) -> StorageError {
        StorageError::PoolTimeout {
            waited_ms: u64::try_from(waited.as_millis()).unwrap_or(u64::MAX),
            pool_size: self.max,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding it; a poisoned state is still consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A connection for a read started at `started` (see [`ReadPool::with`]).
    fn take(&self, started: Instant) -> Result<Connection> {
        let deadline = started.checked_add(self.timeout);
        let mut state = self.lock();
        loop {
            if state.closed {
                return Err(StorageError::Closed);
            }
            if let Some(conn) = state.idle.pop() {
                return Ok(conn);
            }
            if state.open < self.max {
                state.open += 1;
                break;
            }
            let Some(left) = remaining(deadline) else {
                return Err(self.timed_out(started.elapsed()));
            };
            state.waiting += 1;
            state = self
                .freed
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
            state.waiting -= 1;
        }
        drop(state);
        // A slot is ours: the connection opens on this thread, outside the lock.
        match self.connect() {
            Ok(conn) => {
                let state = self.lock();
                if !state.closed {
                    return Ok(conn);
                }
                drop(state);
                // Closed while this connection opened: it closes as any lent one does.
                self.give_back(conn);
                Err(StorageError::Closed)
            }
            Err(e) => {
                self.release_slot();
                Err(e)
            }
        }
    }

    /// A new read-only connection with its busy timeout and page cache.
    fn connect(&self) -> Result<Connection> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
                | OpenFlags::SQLITE_OPEN_URI,
        )
        .map_err(db_err("opening a read connection"))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .and_then(|()| conn.execute_batch(&format!("PRAGMA cache_size = -{};", self.cache_kib)))
            .map_err(db_err("configuring a read connection"))?;
        conn.set_prepared_statement_cache_capacity(32);
        Ok(conn)
    }

    /// A lent connection comes back: idle again, or closed if the pool was closed.
    fn give_back(&self, conn: Connection) {
        let mut state = self.lock();
        // A read that panicked inside a transaction it began leaves the connection outside
        // autocommit: it is closed (its transaction rolls back), not lent again.
        if !state.closed && conn.is_autocommit() {
            state.idle.push(conn);
            if state.waiting > 0 {
                self.freed.notify_one();
            }
            return;
        }
        drop(state);
        if let Err(e) = close_connection(conn) {
            tracing::warn!(error = %e, "closing a read connection failed");
        }
        self.release_slot();
    }

    /// One connection fewer (closed, or never opened): a waiting read may open one, and
    /// `close` may be waiting for the last.
    fn release_slot(&self) {
        let mut state = self.lock();
        state.open -= 1;
        if state.closed {
            if state.open == 0 {
                self.drained.notify_all();
            }
        } else if state.waiting > 0 {
            self.freed.notify_one();
        }
    }
}

/// What is left of a wait until `deadline` (unbounded without one), or `None` once it passed.
fn remaining(deadline: Option<Instant>) -> Option<Duration> {
    let left = deadline.map_or(Duration::MAX, |d| {
        d.saturating_duration_since(Instant::now())
    });
    (!left.is_zero()).then_some(left)
}

/// Closes `conn` now (its cached statements first), reporting SQLite's error.
fn close_connection(conn: Connection) -> Result<()> {
    conn.close()
        .map_err(|(_, e)| sqlite_error("closing a read connection", e))
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Barrier};

    use super::*;
    use crate::backend::Backend;
    use crate::backend::sqlite::{SqliteBackend, SqliteOptions};
    use crate::config::Durability;

    fn options(path: PathBuf, readers: usize, timeout: Duration) -> SqliteOptions {
        SqliteOptions {
            path,
            readers,
            durability: Durability::Normal,
            deduplicate: true,
            connection_timeout: timeout,
            page_cache_bytes: 4 << 20,
        }
    }

    /// A pool of `readers` over a new store's file `name`.db in a fresh directory (kept alive
    /// by the returned guard).
    fn made_pool(
        name: &str,
        readers: usize,
        timeout: Duration,
    ) -> Result<(tempfile::TempDir, PathBuf, ReadPool)> {
        let dir = tempfile::tempdir().map_err(|e| StorageError::io(Path::new("tmp"), e))?;
        let path = dir.path().join(format!("{name}.db"));
        drop(SqliteBackend::open(&options(
            path.clone(),
            readers,
            Duration::from_secs(5),
        ))?);
        let pool = ReadPool::open(&path, readers, timeout, 512)?;
        Ok((dir, path, pool))
    }

    /// The thread of [`hold_a_connection`]'s read: its `SELECT 1`, or the pool's error.
    type HeldRead = std::thread::JoinHandle<Result<rusqlite::Result<i64>>>;

    /// A read on another thread that holds its connection until the returned sender sends
    /// (or is dropped), then reads `SELECT 1` on it; returns once the connection is lent.
    fn hold_a_connection(pool: &Arc<ReadPool>) -> Result<(HeldRead, std::sync::mpsc::Sender<()>)> {
        let (lent_tx, lent_rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let reader = {
            let pool = Arc::clone(pool);
            std::thread::spawn(move || {
                pool.with(|conn| {
                    let _ = lent_tx.send(());
                    let _ = done_rx.recv();
                    conn.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))
                })
            })
        };
        lent_rx
            .recv()
            .map_err(|_| StorageError::Task("the reader ended".into()))?;
        Ok((reader, done_tx))
    }

    /// Takes `path` from a connection of another "process": out of WAL mode, which needs
    /// every other connection to the file closed. Waits for no lock: a connection the store
    /// left open fails it at once with "database is locked".
    fn leave_wal_mode(path: &Path) -> Result<()> {
        let raw = Connection::open(path).map_err(db_err("a raw connection"))?;
        raw.busy_timeout(Duration::ZERO)
            .map_err(db_err("no busy wait"))?;
        let mode: String = raw
            .query_row("PRAGMA journal_mode = DELETE", [], |r| r.get(0))
            .map_err(db_err("leaving WAL mode"))?;
        assert_eq!(mode, "delete");
        raw.close().map_err(|(_, e)| sqlite_error("closing", e))
    }

    /// Regression: a closed store kept its read connections until it was dropped, and r2d2
    /// closed (or opened) them on its own thread even after that, so another connection
    /// that at once left WAL mode failed with "database is locked".
    #[test]
    fn a_closed_store_leaves_no_connection_open() -> Result<()> {
        // The closed backend is kept (not dropped) until WAL mode is left.
        ended_stores_leave_no_connection_open(|backend| backend.close().map(|()| Some(backend)))
    }

    /// Dropping a store without closing it closes its connections before the drop returns.
    #[test]
    fn a_dropped_store_leaves_no_connection_open() -> Result<()> {
        ended_stores_leave_no_connection_open(|backend| {
            drop(backend);
            Ok(None)
        })
    }

    /// 50 times: a store reads on two connections at once (one lent, the other opened for
    /// the second read), `end` closes or drops it, and another connection at once leaves
    /// WAL mode, which fails while any connection of the store is still open. A backend
    /// `end` hands back is dropped only after that.
    fn ended_stores_leave_no_connection_open(
        end: impl Fn(SqliteBackend) -> Result<Option<SqliteBackend>>,
    ) -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| StorageError::io(Path::new("tmp"), e))?;
        let path = dir.path().join("end.db");
        for _ in 0..50 {
            let backend = SqliteBackend::open(&options(path.clone(), 4, Duration::from_secs(5)))?;
            backend.readers.with(|_| backend.get("games", "g-1"))??;
            let kept = end(backend)?;
            leave_wal_mode(&path)?;
            drop(kept);
        }
        Ok(())
    }

    /// The writer closes last, on close and on drop, so SQLite removes the WAL: a store
    /// refused after its backend opened (a wrong key) leaves the files as it found them.
    /// (Dropped with the read connections last, the WAL stayed.)
    #[test]
    fn the_writer_closes_last_and_the_wal_goes() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| StorageError::io(Path::new("tmp"), e))?;
        let path = dir.path().join("wal.db");
        let wal = dir.path().join("wal.db-wal");
        let backend = SqliteBackend::open(&options(path.clone(), 2, Duration::from_secs(5)))?;
        backend.get("games", "g-1")?;
        assert!(wal.exists());
        backend.close()?;
        assert!(!wal.exists(), "closed");
        let backend = SqliteBackend::open(&options(path, 2, Duration::from_secs(5)))?;
        backend.get("games", "g-1")?;
        assert!(wal.exists());
        drop(backend);
        assert!(!wal.exists(), "dropped");
        Ok(())
    }

    /// Reads after close fail with `Closed` (they used to go on, on the pool's connections);
    /// a read in place finds no connection.
    #[test]
    fn reads_after_close_are_closed() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| StorageError::io(Path::new("tmp"), e))?;
        let backend = SqliteBackend::open(&options(
            dir.path().join("after.db"),
            2,
            Duration::from_secs(5),
        ))?;
        assert!(backend.get("games", "g-1")?.is_none());
        backend.close()?;
        assert!(matches!(
            backend.get("games", "g-1"),
            Err(StorageError::Closed)
        ));
        assert!(matches!(backend.statistics(), Err(StorageError::Closed)));
        assert!(backend.get_at_once("games", "g-1").is_none());
        // Closing again is harmless.
        backend.close()
    }

    /// Reads on four threads while the store closes: each read either finishes or fails
    /// with `Closed`, every thread ends, and no connection is left open.
    #[test]
    fn a_close_racing_reads_neither_hangs_nor_panics() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| StorageError::io(Path::new("tmp"), e))?;
        let path = dir.path().join("race.db");
        for _ in 0..10 {
            let backend = Arc::new(SqliteBackend::open(&options(
                path.clone(),
                2,
                Duration::from_secs(30),
            ))?);
            let reading = Arc::new(Barrier::new(5));
            let threads: Vec<_> = (0..4)
                .map(|_| {
                    let backend = Arc::clone(&backend);
                    let reading = Arc::clone(&reading);
                    std::thread::spawn(move || -> Result<usize> {
                        backend.get("games", "g-1")?;
                        reading.wait();
                        let mut reads = 1;
                        loop {
                            match backend.get("games", "g-1") {
                                Ok(_) => reads += 1,
                                Err(StorageError::Closed) => return Ok(reads),
                                Err(e) => return Err(e),
                            }
                        }
                    })
                })
                .collect();
            reading.wait();
            backend.close()?;
            for thread in threads {
                let reads = thread
                    .join()
                    .map_err(|_| StorageError::Task("a reader panicked".into()))??;
                assert!(reads >= 1);
            }
            leave_wal_mode(&path)?;
        }
        Ok(())
    }

    /// A connection lent when the pool closes is closed when its read gives it back, and
    /// `close` returns only after that.
    #[test]
    fn close_waits_for_a_lent_connection() -> Result<()> {
        let (_dir, path, pool) = made_pool("lent", 2, Duration::from_secs(30))?;
        let pool = Arc::new(pool);
        let (reader, done_tx) = hold_a_connection(&pool)?;
        let closer = {
            let pool = Arc::clone(&pool);
            std::thread::spawn(move || pool.close())
        };
        // Until the pool is closed (its idle connection too), the read holds its connection.
        let deadline = Instant::now() + Duration::from_secs(60);
        while !pool.lock().closed {
            assert!(Instant::now() < deadline, "the pool never closed");
            std::thread::yield_now();
        }
        assert_eq!(pool.lock().open, 1, "only the lent connection is open");
        let _ = done_tx.send(());
        let read = reader
            .join()
            .map_err(|_| StorageError::Task("the reader panicked".into()))?;
        assert_eq!(read?.map_err(db_err("reading"))?, 1);
        closer
            .join()
            .map_err(|_| StorageError::Task("the closer panicked".into()))??;
        assert_eq!(pool.lock().open, 0);
        leave_wal_mode(&path)
    }

    /// A read that finds every connection lent waits the timeout, then fails with
    /// `PoolTimeout` (r2d2's timeout was a `Database` error); so does a close whose lent
    /// connection does not come back.
    #[test]
    fn an_exhausted_pool_times_out() -> Result<()> {
        let (_dir, _, pool) = made_pool("busy", 1, Duration::from_millis(20))?;
        let inner = pool.with(|_| pool.with(|_| ()))?;
        assert!(matches!(
            inner,
            Err(StorageError::PoolTimeout { pool_size: 1, .. })
        ));
        let closing = pool.with(|_| pool.close())?;
        assert!(matches!(
            closing,
            Err(StorageError::PoolTimeout { pool_size: 1, .. })
        ));
        // The lent connection closed when it came back.
        assert_eq!(pool.lock().open, 0);
        assert!(matches!(pool.with(|_| ()), Err(StorageError::Closed)));
        Ok(())
    }

    /// A connection that fails to open gives its slot back: with one connection lent and the
    /// file gone, every further read fails at once with the open's error, never by waiting
    /// for a slot a failed open kept.
    #[test]
    fn a_failed_open_frees_its_slot() -> Result<()> {
        let (_dir, path, pool) = made_pool("gone", 2, Duration::from_millis(200))?;
        let outcomes = pool.with(|_| {
            std::fs::remove_file(&path).map_err(|e| StorageError::io(&path, e))?;
            Ok::<_, StorageError>([pool.with(|_| ()), pool.with(|_| ())])
        })??;
        for outcome in outcomes {
            assert!(
                matches!(outcome, Err(StorageError::Database { .. })),
                "{outcome:?}"
            );
        }
        assert_eq!(pool.lock().open, 1, "only the lent connection counts");
        Ok(())
    }

    /// A connection given back wakes a read waiting for one, long before its timeout.
    #[test]
    fn a_returned_connection_wakes_a_waiting_read() -> Result<()> {
        let (_dir, _, pool) = made_pool("wake", 1, Duration::from_secs(600))?;
        let pool = Arc::new(pool);
        let (holder, back_tx) = hold_a_connection(&pool)?;
        let (read_tx, read_rx) = std::sync::mpsc::channel();
        let waiter = {
            let pool = Arc::clone(&pool);
            std::thread::spawn(move || {
                let _ = read_tx.send(pool.with(|_| ()));
            })
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while pool.lock().waiting == 0 {
            assert!(Instant::now() < deadline, "the second read never waited");
            std::thread::yield_now();
        }
        let _ = back_tx.send(());
        // Without the wake-up the waiter would sleep out its 600 s timeout.
        let read = read_rx
            .recv_timeout(Duration::from_secs(120))
            .map_err(|_| StorageError::Task("the waiting read was never woken".into()))?;
        assert!(read.is_ok(), "{read:?}");
        for thread in [holder.join().map(drop), waiter.join()] {
            thread.map_err(|_| StorageError::Task("a reader panicked".into()))?;
        }
        Ok(())
    }

    /// A read that panicked inside a transaction it began does not lend its connection,
    /// still in that transaction, to the next read: it is closed instead.
    #[test]
    fn a_connection_left_in_a_transaction_is_not_lent_again() -> Result<()> {
        let (_dir, _, pool) = made_pool("txn", 1, Duration::from_secs(5))?;
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            pool.with(|conn| {
                conn.execute_batch("BEGIN; SELECT count(*) FROM records;")
                    .map_err(db_err("beginning"))?;
                panic!("a read that fails inside its transaction");
                #[allow(unreachable_code)]
                Ok::<_, StorageError>(())
            })
        }));
        assert!(panicked.is_err());
        assert!(pool.with(Connection::is_autocommit)?);
        assert_eq!(pool.lock().open, 1);
        Ok(())
    }
}

//! Embedded SQLite: WAL mode, exactly one writer connection, a pool of read-only connections.

mod chunks;
mod delta;
mod feed;
mod group;
mod held;
mod immediate;
pub(crate) mod inline;
mod maintain;
mod pool;
mod prefix;
pub(crate) mod read;
mod read_only;
mod run;
pub(crate) mod schema;
mod settings;
mod write;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::Connection;

use crate::backend::{
    Backend, BlobEntry, BlobReference, CollectionSetting, ConsistencyReport, DatabaseStatistics,
    KeyChange, Maintenance, OpOutcome, RecordMetadata, RecordPage, RepairOutcome, SnapshotInfo,
    StoreIdentity, StoredDictionary, StoredRecord, WrappedKey, WriteUnit,
};
use crate::config::Durability;
use crate::error::{Result, StorageError};
use crate::list::{ListOptions, ListPage};

/// Smallest page cache of any connection, in KiB.
const MIN_CONNECTION_CACHE_KIB: u64 = 512;
/// How long a connection waits on SQLite's own locks (checkpoints, other processes).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// WAL frames after which a commit checkpoints (SQLite's default is 1,000: 4 MiB). A bulk
/// load's commit of 1,000 documents dirties most pages of the content-hash index (its keys
/// are random) besides the new rows: hundreds of frames, so at the default every second or
/// third commit copied the index back into the database file again. At 4,000 frames (16 MiB
/// of WAL at most, plus one commit) a page rewritten by several commits is copied once:
/// ~10 % fewer bytes written and ~10 % less CPU per bulk-loaded document (BENCHMARKS.md,
/// "Bulk load: held statements, runs of records, fewer checkpoints").
const WAL_AUTOCHECKPOINT_PAGES: u32 = 4000;

/// Settings of the SQLite backend.
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// The database file.
    pub path: PathBuf,
    /// Read-only connections in the pool.
    pub readers: usize,
    /// fsync policy.
    pub durability: Durability,
    /// Share identical content between records.
    pub deduplicate: bool,
    /// How long a read waits for a pooled connection.
    pub connection_timeout: Duration,
    /// Memory for SQLite's own page caches, all connections together: half for the writer,
    /// half shared by the readers (each at least 512 KiB). See
    /// [`SqliteOptions::page_cache_for`].
    pub page_cache_bytes: u64,
}

impl SqliteOptions {
    /// The page-cache budget that goes with an in-memory value cache of `cache_bytes`: a
    /// quarter of it, at least 4 MiB and at most 32 MiB (each connection still gets at least
    /// 512 KiB, so very many readers can add a little more). Reads are mostly answered by the
    /// value cache (and misses by the OS page cache), so SQLite's caches mainly serve the
    /// writer's index pages.
    pub fn page_cache_for(cache_bytes: u64) -> u64 {
        (cache_bytes / 4).clamp(4 << 20, 32 << 20)
    }

    /// (writer, each reader) page cache sizes in KiB.
    fn page_cache_kib(&self) -> (u64, u64) {
        let total_kib = self.page_cache_bytes / 1024;
        let readers = u64::try_from(self.readers.max(1)).unwrap_or(u64::MAX);
        (
            (total_kib / 2).max(MIN_CONNECTION_CACHE_KIB),
            (total_kib / 2 / readers).max(MIN_CONNECTION_CACHE_KIB),
        )
    }
}

/// The SQLite backend.
pub struct SqliteBackend {
    path: PathBuf,
    // Dropped before the writer (fields drop in this order), as `close` closes them: the
    // writer is the last connection, so SQLite folds the WAL in and removes it.
    readers: pool::ReadPool,
    writer: Mutex<Option<Connection>>,
    deduplicate: bool,
    schema_version: i64,
    // Held until close: one process owns the database at a time, because the in-memory cache
    // of that process must see every write.
    lock: Mutex<Option<File>>,
}

impl std::fmt::Debug for SqliteBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteBackend")
            .field("path", &self.path)
            .field("schema_version", &self.schema_version)
            .finish_non_exhaustive()
    }
}

/// The error of a failed SQLite call while doing `context`: SQLite's corruption codes
/// (`SQLITE_CORRUPT`, `SQLITE_NOTADB`, "database disk image is malformed") are
/// [`StorageError::Corruption`], everything else [`StorageError::Database`].
pub(crate) fn db_err(context: &'static str) -> impl Fn(rusqlite::Error) -> StorageError {
    move |e| sqlite_error(context, e)
}

/// Whether `e` is SQLite's "database is busy/locked": another connection held a lock longer
/// than the connection's busy timeout.
fn is_busy(e: &StorageError) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(code) = err
            .downcast_ref::<rusqlite::Error>()
            .and_then(rusqlite::Error::sqlite_error_code)
        {
            return matches!(
                code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            );
        }
        source = err.source();
    }
    false
}

/// A pool connection's busy timeout set to zero for one read in place, and put back when
/// this is dropped (a panic included), before the connection returns to the pool: every
/// other read on it waits the [`BUSY_TIMEOUT`] again.
struct NoBusyWait<'c>(&'c Connection);

impl<'c> NoBusyWait<'c> {
    /// `None` when the timeout cannot be changed (never expected: SQLite refuses it only on
    /// a closed connection); the caller then reads on the blocking pool.
    fn on(conn: &'c Connection) -> Option<Self> {
        conn.busy_timeout(Duration::ZERO).ok()?;
        Some(NoBusyWait(conn))
    }
}

impl Drop for NoBusyWait<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.0.busy_timeout(BUSY_TIMEOUT) {
            tracing::error!(error = %e, "restoring a read connection's busy timeout failed");
        }
    }
}

/// See [`db_err`].
pub(crate) fn sqlite_error(context: &str, e: rusqlite::Error) -> StorageError {
    if is_corruption(&e) {
        return StorageError::corruption("the SQLite database", format!("{e} (while {context})"));
    }
    StorageError::database(context, e)
}

/// The `VALUES` list of a multi-row insert: `rows` tuples `(?a,?b,…)`, comma-separated, where
/// row `i` names parameter `i * width + n` for each `n` of `columns` (1-based; a parameter
/// may appear twice in a row).
fn value_rows(rows: usize, width: usize, columns: &[usize]) -> String {
    let tuples: Vec<String> = (0..rows)
        .map(|i| {
            let params: Vec<String> = columns
                .iter()
                .map(|n| format!("?{}", i * width + n))
                .collect();
            format!("({})", params.join(","))
        })
        .collect();
    tuples.join(",")
}

fn is_corruption(e: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode;
    match e {
        rusqlite::Error::SqliteFailure(f, _) => {
            matches!(f.code, ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase)
        }
        _ => false,
    }
}

/// Takes the store's lock file and writes who holds it (pid, host, start time), so that
/// an "in use" error can name the holder.
fn lock_file(db: &Path) -> Result<File> {
    let path = sibling(db, ".lock");
    let mut file = crate::fs::private_file()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| StorageError::io(&path, e))?;
    crate::fs::tighten(&path, crate::fs::PRIVATE_FILE)?;
    match file.try_lock() {
        Ok(()) => {
            let started = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let who = format!(
                "pid {} on host {}, since unix time {started}\n",
                std::process::id(),
                host_name()
            );
            // Best effort: on a full disk the store must still open (to be read, exported or
            // backed up); the holder is then just not named.
            if let Err(e) = file
                .set_len(0)
                .and_then(|()| std::io::Write::write_all(&mut file, who.as_bytes()))
            {
                tracing::warn!(path = %path.display(), error = %e, "cannot record the lock holder");
            }
            Ok(file)
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let holder = std::fs::read_to_string(&path)
                .ok()
                .map(|s| s.trim().chars().take(200).collect::<String>())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "a process that did not say who it is".to_owned());
            Err(StorageError::Locked { path, holder })
        }
        Err(std::fs::TryLockError::Error(e)) => Err(StorageError::io(&path, e)),
    }
}

/// `db` with `suffix` appended to its file name (`bitcraps.db-wal`, `bitcraps.db.lock`).
fn sibling(db: &Path, suffix: &str) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// This machine's name, for the lock file (Linux; elsewhere "unknown").
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Makes the database files private: a new database file is created `0600` before SQLite
/// opens it (SQLite gives its WAL and shm files the database file's mode), and existing ones
/// are tightened.
fn private_database_files(db: &Path) -> Result<()> {
    if !db.exists() {
        crate::fs::private_file()
            .create(true)
            .truncate(false)
            .write(true)
            .open(db)
            .map_err(|e| StorageError::io(db, e))?;
    }
    for path in [db.to_path_buf(), sibling(db, "-wal"), sibling(db, "-shm")] {
        crate::fs::tighten(&path, crate::fs::PRIVATE_FILE)?;
    }
    Ok(())
}

impl SqliteBackend {
    /// Opens (creating if needed) the database and migrates it to the latest schema.
    pub fn open(options: &SqliteOptions) -> Result<Self> {
        let path = options.path.clone();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
            && !dir.exists()
        {
            // A directory the store creates is its own: 0700. One that exists (it may be the
            // working directory of a `sqlite://` URL) is left as it is; the files are private.
            crate::fs::create_private_dir_all(dir)?;
        }
        let lock = lock_file(&path)?;
        private_database_files(&path)?;
        let (writer_cache_kib, reader_cache_kib) = options.page_cache_kib();
        let mut writer = Connection::open(&path).map_err(db_err("opening the database"))?;
        let synchronous = match options.durability {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        };
        writer
            .busy_timeout(BUSY_TIMEOUT)
            .map_err(db_err("configuring the writer"))?;
        let mode: String = writer
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(db_err("switching to WAL mode"))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StorageError::Config(format!(
                "SQLite refused WAL mode (journal_mode is {mode}); is the file on a network file system?"
            )));
        }
        writer
            .execute_batch(&format!(
                "PRAGMA synchronous = {synchronous};
                 PRAGMA cache_size = -{writer_cache_kib};
                 PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES};
                 PRAGMA temp_store = MEMORY;
                 PRAGMA foreign_keys = OFF;"
            ))
            .map_err(db_err("configuring the writer"))?;
        writer.set_prepared_statement_cache_capacity(64);
        let schema_version = schema::migrate(&mut writer)?;

        let readers = pool::ReadPool::open(
            &path,
            options.readers,
            options.connection_timeout,
            reader_cache_kib,
        )?;

        Ok(SqliteBackend {
            path,
            writer: Mutex::new(Some(writer)),
            readers,
            deduplicate: options.deduplicate,
            schema_version,
            lock: Mutex::new(Some(lock)),
        })
    }

    /// The database file.
    #[cfg(feature = "testing")]
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn writer(&self) -> Result<MutexGuard<'_, Option<Connection>>> {
        self.writer
            .lock()
            .map_err(|_| StorageError::Task("the writer connection was poisoned by a panic".into()))
    }

    /// Runs `read` on a read connection (see [`pool::ReadPool::with`]).
    fn on_reader<T>(&self, read: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        self.readers.with(read)?
    }

    fn file_size(path: &Path) -> u64 {
        std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
    }

    fn sibling(&self, suffix: &str) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    }
}

impl Backend for SqliteBackend {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    fn apply(&self, units: &[WriteUnit]) -> Result<Vec<Result<Vec<OpOutcome>>>> {
        let mut guard = self.writer()?;
        let conn = guard.as_mut().ok_or(StorageError::Closed)?;
        group::apply(conn, units, self.deduplicate)
    }

    fn get(&self, collection: &str, key: &str) -> Result<Option<StoredRecord>> {
        self.on_reader(|c| read::get(c, collection, key))
    }

    fn get_at_once(&self, collection: &str, key: &str) -> Option<Result<Option<StoredRecord>>> {
        // `try_get`: an idle connection or none, never a wait for one. Nor a wait for a busy
        // database (another connection's lock, WAL recovery): this is the async caller's
        // thread, so the read does not wait the busy timeout but answers `None`, and the
        // caller's fallback (`get`, on the blocking pool) waits as every read does.
        let found = self.readers.try_with(|conn| {
            let no_wait = NoBusyWait::on(conn)?;
            let found = read::get_one_row(no_wait.0, collection, key);
            drop(no_wait);
            found
        })??;
        match found {
            Err(e) if is_busy(&e) => None,
            found => Some(found),
        }
    }

    fn get_many(&self, collection: &str, keys: &[String]) -> Result<Vec<Option<StoredRecord>>> {
        self.on_reader(|c| read::get_many(c, collection, keys))
    }

    fn scan(&self, collection: &str, options: &ListOptions) -> Result<RecordPage> {
        self.on_reader(|c| read::scan(c, collection, options))
    }

    fn metadata(&self, collection: &str, key: &str) -> Result<Option<RecordMetadata>> {
        self.on_reader(|c| read::metadata(c, collection, key))
    }

    fn dictionaries(&self) -> Result<Vec<StoredDictionary>> {
        self.on_reader(read::dictionaries)
    }

    fn list(&self, collection: &str, options: &ListOptions) -> Result<ListPage> {
        self.on_reader(|c| read::list(c, collection, options))
    }

    fn collections(&self) -> Result<Vec<String>> {
        self.on_reader(read::collections)
    }

    fn settings(&self) -> Result<Vec<CollectionSetting>> {
        self.on_reader(settings::settings)
    }

    fn usage(&self, collection: &str, now_ms: i64) -> Result<crate::CollectionUsage> {
        self.on_reader(|c| settings::usage(c, collection, now_ms))
    }

    fn statistics(&self) -> Result<DatabaseStatistics> {
        let mut stats = self.on_reader(read::statistics)?;
        stats.schema_version = self.schema_version;
        stats.wal_bytes = Self::file_size(&self.sibling("-wal"));
        stats.file_bytes = Self::file_size(&self.path) + stats.wal_bytes;
        Ok(stats)
    }

    /// Closes the read connections (waiting for reads that hold one), then the writer (the
    /// last connection, so SQLite folds the WAL in and removes it), then releases the lock
    /// file: when this returns, no connection of the store is open, and none opens later.
    fn close(&self) -> Result<()> {
        let readers = self.readers.close();
        let writer = self.writer().and_then(|mut writer| match writer.take() {
            Some(conn) => {
                // Fold the WAL into the database so the file stands alone; failure is
                // harmless (the WAL is replayed on the next open).
                if let Err(e) = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)") {
                    tracing::warn!(error = %e, "checkpoint on close failed");
                }
                conn.close()
                    .map_err(|(_, e)| sqlite_error("closing the database", e))
            }
            None => Ok(()),
        });
        if let Ok(mut lock) = self.lock.lock() {
            lock.take();
        }
        readers.and(writer)
    }

    fn maintenance(&self) -> &dyn Maintenance {
        self
    }

    fn identity(&self) -> Result<StoreIdentity> {
        self.on_reader(schema::read_identity)
    }

    fn record_redis_tier(&self) -> Result<()> {
        let guard = self.writer()?;
        schema::record_redis_tier(guard.as_ref().ok_or(StorageError::Closed)?)
    }

    fn data_keys(&self) -> Result<Vec<WrappedKey>> {
        self.on_reader(schema::read_data_keys)
    }

    fn write_keys(&self, change: &KeyChange) -> Result<()> {
        let mut guard = self.writer()?;
        schema::write_keys(guard.as_mut().ok_or(StorageError::Closed)?, change)
    }

    fn changes_since(&self, after: u64, limit: usize) -> Result<Vec<crate::Change>> {
        self.on_reader(|c| feed::since(c, after, limit))
    }

    fn change_head(&self) -> Result<u64> {
        self.on_reader(feed::head)
    }

    /// SQLite cannot notify another process: a watch polls the log.
    fn notify_changes(&self, _wake: std::sync::Arc<dyn Fn() + Send + Sync>) -> Result<()> {
        Ok(())
    }
}

impl Maintenance for SqliteBackend {
    fn check(&self) -> Result<ConsistencyReport> {
        self.on_reader(read::check)
    }

    fn quick_check(&self) -> Result<ConsistencyReport> {
        self.on_reader(read::quick_check)
    }

    fn blobs_after(&self, after: i64, limit: usize) -> Result<Vec<BlobEntry>> {
        self.on_reader(|c| read::blobs_after(c, after, limit))
    }

    fn records_naming(&self, blob_ids: &[i64]) -> Result<Vec<BlobReference>> {
        self.on_reader(|c| read::records_naming(c, blob_ids))
    }

    fn inline_deltas_after(
        &self,
        after: Option<&crate::backend::RecordCursor>,
        limit: usize,
    ) -> Result<Vec<crate::backend::InlineDeltaEntry>> {
        self.on_reader(|c| inline::after(c, after, limit))
    }

    fn snapshot(&self, dest: &Path) -> Result<SnapshotInfo> {
        self.on_reader(|c| maintain::snapshot(c, dest))
    }

    /// Attaches the snapshot to the writer connection and copies its three tables in one
    /// immediate transaction.
    fn restore(&self, snapshot: &Path) -> Result<SnapshotInfo> {
        let info = crate::backend::snapshot::require_current(snapshot)?;
        let mut guard = self.writer()?;
        maintain::restore(guard.as_mut().ok_or(StorageError::Closed)?, snapshot)?;
        Ok(info)
    }

    fn checkpoint(&self) -> Result<()> {
        let guard = self.writer()?;
        maintain::checkpoint(guard.as_ref().ok_or(StorageError::Closed)?)
    }

    fn optimize(&self) -> Result<()> {
        let guard = self.writer()?;
        let conn = guard.as_ref().ok_or(StorageError::Closed)?;
        conn.execute_batch("PRAGMA optimize")
            .map_err(db_err("optimizing"))
    }

    fn vacuum(&self) -> Result<()> {
        let guard = self.writer()?;
        let conn = guard.as_ref().ok_or(StorageError::Closed)?;
        conn.execute_batch("VACUUM").map_err(db_err("vacuuming"))
    }

    fn repair_references(&self) -> Result<RepairOutcome> {
        let mut guard = self.writer()?;
        maintain::repair(guard.as_mut().ok_or(StorageError::Closed)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_rows_number_each_rows_parameters_after_the_last() {
        assert_eq!(
            value_rows(2, 6, &[1, 2, 3, 4, 4, 5, 6]),
            "(?1,?2,?3,?4,?4,?5,?6),(?7,?8,?9,?10,?10,?11,?12)"
        );
        assert_eq!(value_rows(1, 6, &[1, 2, 3, 4, 5, 6]), "(?1,?2,?3,?4,?5,?6)");
    }

    fn options(page_cache_bytes: u64, readers: usize) -> SqliteOptions {
        SqliteOptions {
            path: PathBuf::from("unused.db"),
            readers,
            durability: Durability::Full,
            deduplicate: true,
            connection_timeout: Duration::from_secs(1),
            page_cache_bytes,
        }
    }

    /// The busy timeout of the one pooled read connection, in ms.
    fn reader_busy_timeout_ms(backend: &SqliteBackend) -> i64 {
        backend
            .readers
            .try_with(|conn| conn.query_row("PRAGMA busy_timeout", [], |r| r.get(0)))
            .expect("the idle read connection")
            .expect("reading the busy timeout")
    }

    /// A read in place on a busy database answers `None` at once, and its connection goes
    /// back to the pool with the [`BUSY_TIMEOUT`] put back, so the fallback `get` waits.
    /// (Our connections hold a WAL database's shared lock once they have read it, so the
    /// database is a rollback-journal file, opened read-only, that another connection
    /// holds in an EXCLUSIVE transaction.)
    #[test]
    fn a_busy_read_in_place_puts_the_busy_timeout_back() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("busy.db");
        let mut opts = options(4 << 20, 1);
        opts.path = path.clone();
        drop(SqliteBackend::open(&opts).expect("creating the database"));
        let raw = Connection::open(&path).expect("a raw connection");
        let mode: String = raw
            .query_row("PRAGMA journal_mode = DELETE", [], |r| r.get(0))
            .expect("leaving WAL mode");
        assert_eq!(mode, "delete");
        let backend = SqliteBackend::open_read_only(&opts).expect("opening read-only");
        let full_ms = i64::try_from(BUSY_TIMEOUT.as_millis()).expect("5 s in ms");
        assert!(matches!(
            backend.get_at_once("games", "g-1"),
            Some(Ok(None))
        ));
        assert_eq!(reader_busy_timeout_ms(&backend), full_ms);

        raw.execute_batch("BEGIN EXCLUSIVE;")
            .expect("locking the database");
        assert!(
            backend.get_at_once("games", "g-1").is_none(),
            "a busy database is not waited for in place"
        );
        assert_eq!(reader_busy_timeout_ms(&backend), full_ms);
        raw.execute_batch("COMMIT;").expect("unlocking");
    }

    #[test]
    fn page_caches_follow_the_value_cache() {
        let mib = 1 << 20;
        assert_eq!(SqliteOptions::page_cache_for(64 * mib), 16 * mib);
        assert_eq!(SqliteOptions::page_cache_for(0), 4 * mib);
        assert_eq!(SqliteOptions::page_cache_for(1024 * mib), 32 * mib);
        // Half for the writer, half shared by the readers, never under 512 KiB each.
        assert_eq!(options(16 * mib, 4).page_cache_kib(), (8 * 1024, 2 * 1024));
        assert_eq!(options(4 * mib, 16).page_cache_kib(), (2 * 1024, 512));
        assert_eq!(options(16 * mib, 0).page_cache_kib(), (8 * 1024, 8 * 1024));
    }
}

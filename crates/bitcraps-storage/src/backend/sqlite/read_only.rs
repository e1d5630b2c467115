//! Read connections, and the read-only backend (`database.read_only`): only the pool of
//! read-only connections, no writer connection and no lock file, so another process can own
//! and write the database meanwhile (WAL mode lets readers see each committed transaction).
//! Every write reaches no connection and fails.

use std::path::Path;
use std::sync::Mutex;

use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::OpenFlags;

use super::{BUSY_TIMEOUT, SqliteBackend, SqliteOptions, schema};
use crate::error::{Result, StorageError};

/// The pool of read-only connections to `path`.
pub(super) fn reader_pool(
    path: &Path,
    options: &SqliteOptions,
    reader_cache_kib: u64,
) -> Result<r2d2::Pool<SqliteConnectionManager>> {
    let manager = SqliteConnectionManager::file(path)
        .with_flags(
            OpenFlags::SQLITE_OPEN_READ_ONLY
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
                | OpenFlags::SQLITE_OPEN_URI,
        )
        .with_init(move |c| {
            c.busy_timeout(BUSY_TIMEOUT)?;
            c.execute_batch(&format!("PRAGMA cache_size = -{reader_cache_kib};"))?;
            c.set_prepared_statement_cache_capacity(32);
            Ok(())
        });
    r2d2::Pool::builder()
        .max_size(u32::try_from(options.readers.max(1)).unwrap_or(u32::MAX))
        .min_idle(Some(1))
        .connection_timeout(options.connection_timeout)
        .build(manager)
        .map_err(|e| StorageError::database("opening read connections", e))
}

impl SqliteBackend {
    /// Opens an existing database for reading only, without its lock (see the module docs).
    /// The schema must be current: upgrading it would be a write.
    pub fn open_read_only(options: &SqliteOptions) -> Result<Self> {
        let path = options.path.clone();
        if !path.is_file() {
            return Err(StorageError::io(
                &path,
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no database to open read-only",
                ),
            ));
        }
        let (_, reader_cache_kib) = options.page_cache_kib();
        let readers = reader_pool(&path, options, reader_cache_kib)?;
        let conn = readers
            .get()
            .map_err(|e| StorageError::database("opening a read connection", e))?;
        if !schema::is_current(&conn)? {
            return Err(StorageError::ReadOnly {
                operation: "upgrading the schema (open the store read-write once)",
            });
        }
        drop(conn);
        Ok(SqliteBackend {
            path,
            writer: Mutex::new(None),
            readers,
            deduplicate: options.deduplicate,
            schema_version: schema::latest_version(),
            lock: Mutex::new(None),
        })
    }
}

//! The read-only backend (`database.read_only`): only the pool of read-only connections
//! (`pool.rs`), no writer connection and no lock file, so another process can own
//! and write the database meanwhile (WAL mode lets readers see each committed transaction).
//! Every write reaches no connection and fails.

use std::sync::Mutex;

use super::pool::ReadPool;
use super::{SqliteBackend, SqliteOptions, schema};
use crate::error::{Result, StorageError};

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
        let readers = ReadPool::open(
            &path,
            options.readers,
            options.connection_timeout,
            reader_cache_kib,
        )?;
        if !readers.with(schema::is_current)?? {
            return Err(StorageError::ReadOnly {
                operation: "upgrading the schema (open the store read-write once)",
            });
        }
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

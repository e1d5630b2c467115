//! A read in place (`Backend::get_at_once`, on the async caller's thread) never waits for a
//! busy SQLite database: it used a pool connection whose busy timeout is 5 s, so a database
//! locked by another connection (WAL recovery, a checkpoint, another process in exclusive
//! locking mode) held a Tokio worker for up to 5 s. It now answers `None` at once, and the
//! caller's fallback, `get` on the blocking pool, waits as before.
//!
//! Once our connections have read a WAL database they hold its shared lock, so no other
//! connection can lock them out of it; the test makes the read busy the way another process
//! writing a rollback-journal database would: the database is switched out of WAL mode, opened
//! read-only (which keeps the file's journal mode), and another connection holds an
//! EXCLUSIVE transaction.

use std::path::Path;

use bitcraps_storage::testing::Backend;
use bitcraps_storage::testing::sqlite::SqliteBackend;
use bitcraps_storage::{PersistentStorageManager, StorageConfig};

use crate::common::game;

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn read_only(path: &Path) -> bitcraps_storage::Result<SqliteBackend> {
    SqliteBackend::open_read_only(&crate::common::sqlite_options(path.to_owned(), 1))
}

#[tokio::test]
async fn a_busy_database_sends_a_read_in_place_to_the_pool_instead_of_waiting() -> Result {
    let dir = tempfile::tempdir()?;
    let mut config = StorageConfig::with_data_path(dir.path());
    config.maintenance.background_tasks = false;
    let s = PersistentStorageManager::open(config).await?;
    s.store("games", "g-1", &game("g-1", 3)).await?;
    s.close().await?;
    drop(s);

    let path = dir.path().join("bitcraps.db");
    rusqlite::Connection::open(&path)?.query_row("PRAGMA journal_mode = DELETE", [], |_| Ok(()))?;
    let backend = read_only(&path)?;
    assert!(
        matches!(backend.get_at_once("games", "g-1"), Some(Ok(Some(_)))),
        "an idle database is read in place"
    );

    // Another connection takes the database for itself: every other reader is busy.
    let locker = rusqlite::Connection::open(&path)?;
    locker.execute_batch("BEGIN EXCLUSIVE;")?;
    let in_place = backend.get_at_once("games", "g-1");
    assert!(
        in_place.is_none(),
        "a busy database must not be waited for in place: {in_place:?}"
    );

    // Released: the fallback (the blocking pool's `get`) answers. That the read in place
    // put the connection's busy timeout back, so `get` would have waited for the lock, is
    // `backend::sqlite::tests::a_busy_read_in_place_puts_the_busy_timeout_back`.
    locker.execute_batch("COMMIT;")?;
    assert!(backend.get("games", "g-1")?.is_some(), "g-1 is gone");

    // Released: the read in place answers again.
    assert!(matches!(
        backend.get_at_once("games", "g-1"),
        Some(Ok(Some(_)))
    ));
    Ok(())
}

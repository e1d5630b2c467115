//! Versioned schema migrations, recorded in `PRAGMA user_version`.
//!
//! Each entry of [`MIGRATIONS`] moves the schema one version up and runs in the same
//! transaction as the version bump. A database newer than this build is refused.

use rusqlite::Connection;

use crate::error::{Result, StorageError};

/// `PRAGMA application_id` of bitcraps-storage databases ("BCRS").
pub const APPLICATION_ID: i64 = 0x4243_5253;

/// The migrations, oldest first; the schema version is the number applied.
pub const MIGRATIONS: &[&str] = &[
    // Version 1: content-addressed blobs with reference counts, and records pointing at them.
    r"
    CREATE TABLE blobs (
        id         INTEGER PRIMARY KEY,
        hash       BLOB    NOT NULL CHECK (length(hash) = 32),
        codec      INTEGER NOT NULL,
        raw_len    INTEGER NOT NULL CHECK (raw_len >= 0),
        stored_len INTEGER NOT NULL CHECK (stored_len >= 0),
        refcount   INTEGER NOT NULL CHECK (refcount >= 0),
        data       BLOB    NOT NULL
    );
    CREATE INDEX blobs_by_hash ON blobs(hash);
    CREATE TABLE records (
        collection    TEXT    NOT NULL,
        key           TEXT    NOT NULL,
        blob_id       INTEGER NOT NULL,
        created_at    INTEGER NOT NULL,
        updated_at    INTEGER NOT NULL,
        access_count  INTEGER NOT NULL DEFAULT 0,
        last_accessed INTEGER,
        PRIMARY KEY (collection, key)
    ) WITHOUT ROWID;
    CREATE INDEX records_by_blob ON records(blob_id);
    ",
    // Version 2: per-collection zstd dictionaries; a blob names the one it needs.
    r"
    CREATE TABLE dictionaries (
        id         INTEGER PRIMARY KEY,
        collection TEXT    NOT NULL,
        created_at INTEGER NOT NULL,
        data       BLOB    NOT NULL
    );
    ALTER TABLE blobs ADD COLUMN dict_id INTEGER;
    ",
];

/// The schema version this build writes.
pub fn latest_version() -> i64 {
    i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX)
}

fn db_err(context: &'static str) -> impl Fn(rusqlite::Error) -> StorageError {
    move |e| StorageError::database(context, e)
}

/// Brings the database to the latest version; returns the version it is at.
pub fn migrate(conn: &mut Connection) -> Result<i64> {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(db_err("starting the schema migration"))?;
    let version: i64 = tx
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(db_err("reading the schema version"))?;
    let app_id: i64 = tx
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .map_err(db_err("reading the application id"))?;
    if version == 0 {
        let tables: i64 = tx
            .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
            .map_err(db_err("inspecting the database"))?;
        if tables > 0 && app_id != APPLICATION_ID {
            return Err(StorageError::Config(
                "the database file holds tables that bitcraps-storage did not create".into(),
            ));
        }
    } else if app_id != APPLICATION_ID {
        return Err(StorageError::Config(format!(
            "the database file is not a bitcraps-storage database (application_id {app_id:#x})"
        )));
    }
    let latest = latest_version();
    if version > latest {
        return Err(StorageError::SchemaTooNew {
            found: version,
            supported: latest,
        });
    }
    let start = usize::try_from(version).unwrap_or(0);
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(start) {
        tx.execute_batch(sql)
            .map_err(db_err("applying a schema migration"))?;
        tracing::info!(version = index + 1, "applied schema migration");
    }
    tx.execute_batch(&format!(
        "PRAGMA user_version = {latest}; PRAGMA application_id = {APPLICATION_ID};"
    ))
    .map_err(db_err("recording the schema version"))?;
    tx.commit()
        .map_err(db_err("committing the schema migration"))?;
    Ok(latest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_once_and_refuses_newer() -> Result<()> {
        let mut conn = Connection::open_in_memory().map_err(db_err("open"))?;
        assert_eq!(migrate(&mut conn)?, latest_version());
        assert_eq!(migrate(&mut conn)?, latest_version());
        conn.execute_batch("PRAGMA user_version = 99")
            .map_err(db_err("bump"))?;
        assert!(matches!(
            migrate(&mut conn),
            Err(StorageError::SchemaTooNew { found: 99, .. })
        ));
        Ok(())
    }

    #[test]
    fn refuses_foreign_database() -> Result<()> {
        let mut conn = Connection::open_in_memory().map_err(db_err("open"))?;
        conn.execute_batch("CREATE TABLE other(x)")
            .map_err(db_err("create"))?;
        let err = migrate(&mut conn).err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some(
                "invalid configuration: the database file holds tables that bitcraps-storage did not create"
            )
        );
        Ok(())
    }
}

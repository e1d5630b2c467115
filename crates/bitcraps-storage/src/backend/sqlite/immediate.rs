//! The writer's transaction around a group: `BEGIN IMMEDIATE` and `COMMIT` as held
//! statements.
//!
//! rusqlite's `Transaction` runs `BEGIN` and `COMMIT` through `execute_batch`, which parses
//! the SQL every time — two statements compiled per group commit, ~5 k instructions of
//! the writer thread each group for nothing it did not know already. Here each is prepared
//! once per connection (the statement cache keeps them) and only stepped.
//!
//! Dropped without a commit (an error, a group that runs again), the transaction is rolled
//! back, as rusqlite's is: SQLite leaves a failed `COMMIT`'s transaction open, and that
//! rollback ends it too.

use rusqlite::Connection;

use super::db_err;
use crate::error::Result;

/// An open `BEGIN IMMEDIATE` transaction on the writer connection.
pub(super) struct Immediate<'c> {
    conn: &'c Connection,
}

impl<'c> Immediate<'c> {
    /// Takes the write lock and opens the transaction.
    pub(super) fn begin(conn: &'c Connection) -> Result<Self> {
        step(conn, "BEGIN IMMEDIATE").map_err(db_err("starting a write transaction"))?;
        Ok(Immediate { conn })
    }

    /// The connection, for the transaction's statements.
    pub(super) fn conn(&self) -> &'c Connection {
        self.conn
    }

    /// Commits; on failure the transaction is rolled back when this is dropped.
    pub(super) fn commit(self) -> Result<()> {
        step(self.conn, "COMMIT").map_err(db_err("committing a write transaction"))
    }
}

impl Drop for Immediate<'_> {
    fn drop(&mut self) {
        if self.conn.is_autocommit() {
            return;
        }
        if let Err(e) = step(self.conn, "ROLLBACK") {
            tracing::warn!(error = %e, "could not roll back a write transaction");
        }
    }
}

/// Runs one of the transaction's statements, prepared once per connection.
fn step(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)
        .and_then(|mut s| s.execute([]))
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

    fn count(conn: &Connection) -> rusqlite::Result<i64> {
        conn.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
    }

    #[test]
    fn commits_keep_and_drops_roll_back() -> TestResult {
        let conn = Connection::open_in_memory()?;
        conn.execute_batch("CREATE TABLE t (x INTEGER)")?;
        let tx = Immediate::begin(&conn)?;
        tx.conn().execute("INSERT INTO t VALUES (1)", [])?;
        tx.commit()?;
        assert!(conn.is_autocommit());
        {
            let tx = Immediate::begin(&conn)?;
            tx.conn().execute("INSERT INTO t VALUES (2)", [])?;
            assert!(!conn.is_autocommit());
        }
        assert!(conn.is_autocommit(), "a dropped transaction is closed");
        assert_eq!(count(&conn)?, 1, "and its insert undone");
        // The held statements run again, many times over.
        for x in 3..6 {
            let tx = Immediate::begin(&conn)?;
            tx.conn().execute("INSERT INTO t VALUES (?1)", [x])?;
            tx.commit()?;
        }
        assert_eq!(count(&conn)?, 4);
        Ok(())
    }

    #[test]
    fn a_second_begin_inside_fails_and_leaves_the_first_open() -> TestResult {
        let conn = Connection::open_in_memory()?;
        let tx = Immediate::begin(&conn)?;
        assert!(Immediate::begin(&conn).is_err());
        assert!(
            !conn.is_autocommit(),
            "the failed begin's drop did not end the first"
        );
        tx.commit()?;
        Ok(())
    }
}

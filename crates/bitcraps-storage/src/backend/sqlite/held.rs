//! The statements every put of new content runs, held for a whole write transaction.
//!
//! `prepare_cached` takes a statement out of the connection's cache and puts it back when it
//! is dropped: the SQL is trimmed and hashed on the way out, copied into a new `Arc<str>` and
//! hashed again on the way back, and the bindings are cleared — ~1.4 k instructions per
//! statement, three statements per new document (the content lookup, the content insert, the
//! record insert), ~10 % of the writer thread's work in a bulk load. Held here, each is
//! looked up once per transaction. A held statement is reset after every use (rusqlite
//! resets on `execute` and when a query's rows are dropped), so holding it keeps no read
//! open; it goes back to the cache when the transaction's `Held` is dropped.

use rusqlite::{CachedStatement, Connection};

/// The held statements of one write transaction, each prepared on first use.
pub(super) struct Held<'c> {
    conn: &'c Connection,
    find_blob: Option<CachedStatement<'c>>,
    insert_blob: Option<CachedStatement<'c>>,
    insert_record: Option<CachedStatement<'c>>,
    insert_records: Option<CachedStatement<'c>>,
    find_blobs: Option<CachedStatement<'c>>,
    insert_counted: Option<CachedStatement<'c>>,
}

/// Which held statement.
#[derive(Clone, Copy)]
pub(super) enum Which {
    /// [`FIND_BLOB_BY_HASH`](super::write::FIND_BLOB_BY_HASH).
    FindBlob,
    /// [`INSERT_BLOB`](super::write::INSERT_BLOB).
    InsertBlob,
    /// [`INSERT_RECORD`](super::write::INSERT_RECORD).
    InsertRecord,
    /// The records of a run ([`insert_sql`](super::run::insert_sql)).
    InsertRecords,
    /// The contents of a run, looked up ([`find_sql`](super::run::find_sql)).
    FindBlobs,
    /// A content of a run, new ([`INSERT_COUNTED`](super::run::INSERT_COUNTED)).
    InsertCounted,
}

impl<'c> Held<'c> {
    pub(super) fn new(conn: &'c Connection) -> Self {
        Held {
            conn,
            find_blob: None,
            insert_blob: None,
            insert_record: None,
            insert_records: None,
            find_blobs: None,
            insert_counted: None,
        }
    }

    /// The connection the statements belong to, for everything else the transaction runs.
    pub(super) fn conn(&self) -> &'c Connection {
        self.conn
    }

    /// The statement `which`, prepared (through the cache) on its first use.
    pub(super) fn get(&mut self, which: Which) -> rusqlite::Result<&mut CachedStatement<'c>> {
        let (slot, sql) = match which {
            Which::FindBlob => (&mut self.find_blob, super::write::FIND_BLOB_BY_HASH),
            Which::InsertBlob => (&mut self.insert_blob, super::write::INSERT_BLOB),
            Which::InsertRecord => (&mut self.insert_record, super::write::INSERT_RECORD),
            Which::InsertRecords => (&mut self.insert_records, super::run::insert_sql()),
            Which::FindBlobs => (&mut self.find_blobs, super::run::find_sql()),
            Which::InsertCounted => (&mut self.insert_counted, super::run::INSERT_COUNTED),
        };
        let statement = match slot.take() {
            Some(statement) => statement,
            None => self.conn.prepare_cached(sql)?,
        };
        Ok(slot.insert(statement))
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::{OptionalExtension, params};

    use super::*;
    use crate::backend::sqlite::write::FIND_BLOB_BY_HASH;

    type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

    #[test]
    fn held_statements_run_again_beside_the_cache() -> TestResult {
        let mut conn = Connection::open_in_memory()?;
        super::super::schema::migrate(&mut conn)?;
        let mut held = Held::new(&conn);
        for byte in [1u8, 2] {
            held.get(Which::InsertBlob)?.execute(params![
                &[byte; 32][..],
                0,
                1,
                1,
                &b"x"[..],
                None::<i64>
            ])?;
        }
        let find = |held: &mut Held<'_>, byte: u8| -> rusqlite::Result<Option<i64>> {
            held.get(Which::FindBlob)?
                .query_row(params![&[byte; 32][..]], |r| r.get(0))
                .optional()
        };
        let (first, second) = (find(&mut held, 1)?, find(&mut held, 2)?);
        assert!(first.is_some() && second.is_some() && first != second);
        assert_eq!(find(&mut held, 3)?, None);
        // While the held statement is out of the cache, the same SQL still prepares.
        let beside: Option<i64> = conn
            .prepare_cached(FIND_BLOB_BY_HASH)?
            .query_row(params![&[2u8; 32][..]], |r| r.get(0))
            .optional()?;
        assert_eq!(beside, second);
        drop(held);
        Ok(())
    }
}

//! The change log on SQLite (`feed/`): numbering and appending a transaction's changes,
//! reading them back, and retention. One writer commits at a time, so numbering after the
//! log's head inside the write transaction is numbering in commit order.
//!
//! Since schema version 12 both clocks are derived from the log's newest row, so a commit
//! that logs its changes writes no clock page (issue #16): the head ('last') is
//! `max(change_clock 'last', max(changes.seq))`, and the version clock is
//! `max(change_clock 'version', the version of the newest change)`. The rows are floors,
//! written only when the log alone would not tell: a commit whose newest change does not
//! carry the clock's value ([`append`]), a shred, and retention before it removes rows.

use rusqlite::{Connection, OptionalExtension, params};

use super::db_err;
use crate::error::{Result, StorageError};
use crate::feed::{Change, NewChange, prunable_prefix};

/// The value of a `change_clock` row as stored (for 'last' and 'version' a floor: see
/// [`head_seq`] and [`version_clock`]).
fn clock(conn: &Connection, name: &str) -> Result<i64> {
    conn.prepare_cached("SELECT value FROM change_clock WHERE name = ?1")
        .and_then(|mut s| s.query_row([name], |r| r.get::<_, i64>(0)).optional())
        .map_err(db_err("reading the change clock"))?
        .ok_or_else(|| StorageError::corruption("the change clock", format!("no '{name}' row")))
}

fn set_clock(conn: &Connection, name: &str, value: i64) -> Result<()> {
    conn.prepare_cached("UPDATE change_clock SET value = ?2 WHERE name = ?1")
        .and_then(|mut s| s.execute(params![name, value]))
        .map_err(db_err("advancing the change clock"))?;
    Ok(())
}

/// The last seq handed out: the newest row's, or the 'last' row when that is higher (the
/// log was pruned to nothing, or a shred numbered past it).
fn head_seq(conn: &Connection) -> Result<i64> {
    conn.prepare_cached(
        "SELECT max(value, coalesce((SELECT max(seq) FROM changes), 0))
         FROM change_clock WHERE name = 'last'",
    )
    .and_then(|mut s| s.query_row([], |r| r.get::<_, i64>(0)).optional())
    .map_err(db_err("reading the change clock"))?
    .ok_or_else(|| StorageError::corruption("the change clock", "no 'last' row"))
}

/// The last version handed out: the newest change's, or the 'version' row when that is
/// higher.
pub(super) fn version_clock(conn: &Connection) -> Result<i64> {
    conn.prepare_cached(
        "SELECT max(value, coalesce((SELECT version FROM changes ORDER BY seq DESC LIMIT 1), 0))
         FROM change_clock WHERE name = 'version'",
    )
    .and_then(|mut s| s.query_row([], |r| r.get::<_, i64>(0)).optional())
    .map_err(db_err("reading the version clock"))?
    .ok_or_else(|| StorageError::corruption("the version clock", "no 'version' row"))
}

/// Records `clock` as the version clock's floor.
pub(super) fn set_version_clock(conn: &Connection, clock: i64) -> Result<()> {
    conn.prepare_cached("UPDATE change_clock SET value = ?1 WHERE name = 'version'")
        .and_then(|mut s| s.execute(params![clock]))
        .map_err(db_err("advancing the version clock"))?;
    Ok(())
}

/// Rows per multi-row insert of the change log: one statement per 64 changes instead of one
/// per change (a bulk load appends a thousand at once), 384 parameters.
const ROWS_PER_INSERT: usize = 64;

/// One change (a durable single put appends one per group commit).
const ONE_ROW: &str = "INSERT INTO changes (seq, collection, key, kind, version, at)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

/// [`ROWS_PER_INSERT`] changes, built once.
fn many_rows() -> &'static str {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SQL.get_or_init(|| insert_sql(ROWS_PER_INSERT))
}

/// `INSERT INTO changes … VALUES` with `rows` rows of six parameters each.
fn insert_sql(rows: usize) -> String {
    format!(
        "INSERT INTO changes (seq, collection, key, kind, version, at) VALUES {}",
        super::value_rows(rows, 6, &[1, 2, 3, 4, 5, 6])
    )
}

/// Numbers `changes` after the last seq and appends them (inside the write transaction,
/// after every unit ran, for the units that committed): full runs of [`ROWS_PER_INSERT`]
/// in one statement each, the rest one by one. `clock` is the version clock at the end of
/// the transaction and `moved` whether the transaction advanced it. The 'version' row is
/// written only when the newest appended change does not carry `clock` (a unit rolled back
/// after taking versions, a put keeping an older version, a delete, or nothing logged while
/// the clock moved): otherwise the log itself holds the clock.
pub(super) fn append(
    conn: &Connection,
    changes: &[NewChange],
    clock: i64,
    moved: bool,
) -> Result<()> {
    let newest = changes.last().map(|c| c.version);
    if newest != Some(clock) && (moved || newest.is_some()) {
        set_version_clock(conn, clock)?;
    }
    if changes.is_empty() {
        return Ok(());
    }
    let err = || db_err("appending to the change log");
    let mut seq = head_seq(conn)?;
    let mut next_seq = || {
        seq = seq.checked_add(1).ok_or_else(|| {
            StorageError::corruption("the change clock", "the clock is at its maximum")
        })?;
        Ok::<i64, StorageError>(seq)
    };
    let mut runs = changes.chunks_exact(ROWS_PER_INSERT);
    if runs.len() > 0 {
        let mut many = conn.prepare_cached(many_rows()).map_err(err())?;
        for run in runs.by_ref() {
            let mut at = 1;
            for c in run {
                many.raw_bind_parameter(at, next_seq()?).map_err(err())?;
                many.raw_bind_parameter(at + 1, &c.collection)
                    .map_err(err())?;
                many.raw_bind_parameter(at + 2, &c.key).map_err(err())?;
                many.raw_bind_parameter(at + 3, c.kind.code())
                    .map_err(err())?;
                many.raw_bind_parameter(at + 4, c.version).map_err(err())?;
                many.raw_bind_parameter(at + 5, c.at_ms).map_err(err())?;
                at += 6;
            }
            many.raw_execute().map_err(err())?;
        }
    }
    let rest = runs.remainder();
    if !rest.is_empty() {
        let mut one = conn.prepare_cached(ONE_ROW).map_err(err())?;
        for c in rest {
            one.execute(params![
                next_seq()?,
                c.collection,
                c.key,
                c.kind.code(),
                c.version,
                c.at_ms
            ])
            .map_err(err())?;
        }
    }
    Ok(())
}

/// Logs a crypto-shred of `collection` (before its records are deleted, in the same
/// transaction): a delete for every record, an expire for one that had expired by `now_ms`,
/// numbered in key order.
pub(super) fn log_shred(conn: &Connection, collection: &str, now_ms: i64) -> Result<()> {
    let err = db_err("logging a shred");
    let last = head_seq(conn)?;
    // The logged changes carry the records' versions, older than the clock: keep it.
    let versions = version_clock(conn)?;
    set_version_clock(conn, versions)?;
    let n = conn
        .execute(
            "INSERT INTO changes (seq, collection, key, kind, version, at)
             SELECT ?3 + row_number() OVER (ORDER BY key), collection, key,
                    CASE WHEN expires_at IS NOT NULL AND expires_at <= ?2 THEN 3 ELSE 2 END,
                    version, ?2
             FROM records WHERE collection = ?1",
            params![collection, now_ms, last],
        )
        .map_err(err)?;
    let n = i64::try_from(n).unwrap_or(i64::MAX);
    set_clock(conn, "last", last.saturating_add(n))
}

/// Removes up to `limit` of the oldest changes written before `before_ms` (a prefix of the
/// log); returns how many and the highest seq removed so far.
pub(super) fn prune(conn: &Connection, before_ms: i64, limit: usize) -> Result<(u64, u64)> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows: Vec<(i64, i64)> = conn
        .prepare_cached("SELECT seq, at FROM changes ORDER BY seq LIMIT ?1")
        .and_then(|mut s| {
            s.query_map([limit], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(db_err("reading the oldest changes"))?;
    let mut pruned = clock(conn, "pruned")?;
    let mut removed = 0usize;
    if let Some(through) = prunable_prefix(&rows, before_ms) {
        // The newest row may go: both clocks become rows first.
        let (last, versions) = (head_seq(conn)?, version_clock(conn)?);
        set_clock(conn, "last", last)?;
        set_version_clock(conn, versions)?;
        removed = conn
            .prepare_cached("DELETE FROM changes WHERE seq <= ?1")
            .and_then(|mut s| s.execute([through]))
            .map_err(db_err("removing old changes"))?;
        pruned = pruned.max(through);
        set_clock(conn, "pruned", pruned)?;
    }
    Ok((
        u64::try_from(removed).unwrap_or(u64::MAX),
        u64::try_from(pruned).unwrap_or(0),
    ))
}

/// Up to `limit` changes above `after`, then the retention check (see
/// [`Backend::changes_since`](crate::backend::Backend::changes_since)).
pub(super) fn since(conn: &Connection, after: u64, limit: usize) -> Result<Vec<Change>> {
    let from = i64::try_from(after).unwrap_or(i64::MAX);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = conn
        .prepare_cached(
            "SELECT seq, collection, key, kind, version, at FROM changes
             WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        )
        .and_then(|mut s| {
            s.query_map(params![from, limit], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    (r.get(3)?, r.get(4)?, r.get(5)?),
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(db_err("reading the change log"))?;
    crate::feed::check_retained(after, clock(conn, "pruned")?)?;
    rows.into_iter()
        .map(|(seq, c, k, rest)| Change::from_row(seq, c, k, rest))
        .collect()
}

/// The last seq handed out.
pub(super) fn head(conn: &Connection) -> Result<u64> {
    let last = head_seq(conn)?;
    u64::try_from(last)
        .map_err(|_| StorageError::corruption("the change clock", format!("invalid seq {last}")))
}

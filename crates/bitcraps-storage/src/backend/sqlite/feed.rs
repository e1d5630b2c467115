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
//!
//! Since schema version 15 a row is stored small (issue #15, footprint): the collection as
//! its id in `collection_ids` ([`collection_id`]), the version as `version_offset` from the
//! seq, and the time `at` as NULL when it equals the previous row's. The first row of every
//! append and every [`ROWS_PER_INSERT`]th row of it keep their time, and retention gives the
//! new first row its time ([`prune`]), so a NULL resolves from at most 63 rows back and the
//! log's first row always has one.
//!
//! Since schema version 16 the kind and the version offset are one integer, `kind_offset` =
//! (version − seq − 1) · 4 + kind code − 1 ([`kind_offset`]): 0 — no byte, and one header
//! byte fewer than two columns — for a put that took the next version, as every change of
//! a bulk load does. SQL reads the kind as `(kind_offset & 3) + 1` and the version as
//! `seq + (kind_offset >> 2) + 1` (both exact for negative values: two's complement).

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
        "SELECT max(value, coalesce(
             (SELECT seq + (kind_offset >> 2) + 1 FROM changes ORDER BY seq DESC LIMIT 1), 0))
         FROM change_clock WHERE name = 'version'",
    )
    .and_then(|mut s| s.query_row([], |r| r.get::<_, i64>(0)).optional())
    .map_err(db_err("reading the version clock"))?
    .ok_or_else(|| StorageError::corruption("the version clock", "no 'version' row"))
}

/// The log's tail as a write transaction finds it: the last seq and the last version handed
/// out, what [`head_seq`] and [`version_clock`] read, in one statement with one look at the
/// newest row (two statements per group commit before). Read once per transaction: nothing a
/// unit does moves the head — only [`append`] numbers changes, and retention writes the head
/// as the 'last' floor before it removes rows ([`prune`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Tail {
    /// The last seq handed out.
    pub(super) seq: i64,
    /// The last version handed out.
    pub(super) version: i64,
}

/// See [`Tail`]: the same expressions as [`head_seq`] and [`version_clock`].
const TAIL: &str = "SELECT max(l.value, coalesce(c.seq, 0)),
            max(v.value, coalesce(c.seq + (c.kind_offset >> 2) + 1, 0))
     FROM change_clock l JOIN change_clock v ON v.name = 'version'
     LEFT JOIN changes c ON c.seq = (SELECT max(seq) FROM changes)
     WHERE l.name = 'last'";

/// The log's [`Tail`].
pub(super) fn tail(conn: &Connection) -> Result<Tail> {
    conn.prepare_cached(TAIL)
        .and_then(|mut s| {
            s.query_row([], |r| {
                Ok(Tail {
                    seq: r.get(0)?,
                    version: r.get(1)?,
                })
            })
            .optional()
        })
        .map_err(db_err("reading the change clock"))?
        .ok_or_else(|| {
            StorageError::corruption("the change clock", "no 'last' or no 'version' row")
        })
}

/// Records `clock` as the version clock's floor.
pub(super) fn set_version_clock(conn: &Connection, clock: i64) -> Result<()> {
    conn.prepare_cached("UPDATE change_clock SET value = ?1 WHERE name = 'version'")
        .and_then(|mut s| s.execute(params![clock]))
        .map_err(db_err("advancing the version clock"))?;
    Ok(())
}

/// Rows per multi-row insert of the change log: one statement per 64 changes instead of one
/// per change (a bulk load appends a thousand at once), 384 parameters. The first row of
/// each such run keeps its time (see the module's documentation).
const ROWS_PER_INSERT: usize = 64;

/// The sizes of the statements an append runs, largest first: full runs of
/// [`ROWS_PER_INSERT`], then what is left in statements of 16, 4 and 1 rows. A group of
/// durable single puts appends a handful of changes, one of 64 writers some forty: one
/// statement per row cost ~5 k instructions of the writer thread each, most of it the
/// statement's own (stepping it, opening and closing its cursor), ~3.5 k in these. Four
/// sizes make at most nine statements of any remainder and four entries in the cache.
const STATEMENT_ROWS: [usize; 4] = [ROWS_PER_INSERT, 16, 4, 1];

/// The SQL of each of [`STATEMENT_ROWS`], built on first use.
static ROWS_SQL: [std::sync::OnceLock<String>; 4] = [const { std::sync::OnceLock::new() }; 4];

/// The statements of an append of `rows` changes: how many of each of [`STATEMENT_ROWS`].
fn statements_for(rows: usize) -> [(usize, usize); 4] {
    let mut left = rows;
    STATEMENT_ROWS.map(|size| {
        let count = left / size;
        left %= size;
        (size, count)
    })
}

/// The stored `kind_offset` of a change with kind `code` (1 to 3) and `version` at `seq`;
/// `None` when it does not fit 64 bits (a version offset outside −2^61 < offset ≤ 2^61).
fn kind_offset(seq: i64, version: i64, code: i64) -> Option<i64> {
    version
        .checked_sub(seq)?
        .checked_sub(1)?
        .checked_mul(4)?
        .checked_add(code.checked_sub(1)?)
}

/// The id of `collection` in `collection_ids`, handed out on its first change.
fn collection_id(conn: &Connection, collection: &str) -> Result<i64> {
    let err = || db_err("numbering a collection in the change log");
    let found = conn
        .prepare_cached("SELECT id FROM collection_ids WHERE name = ?1")
        .and_then(|mut s| s.query_row([collection], |r| r.get::<_, i64>(0)).optional())
        .map_err(err())?;
    if let Some(id) = found {
        return Ok(id);
    }
    conn.prepare_cached("INSERT INTO collection_ids (name) VALUES (?1)")
        .and_then(|mut s| s.execute([collection]))
        .map_err(err())?;
    Ok(conn.last_insert_rowid())
}

/// One row of the change log as stored (schema version 16), from a [`NewChange`].
struct Row {
    seq: i64,
    collection_id: i64,
    kind_offset: i64,
    /// NULL when the previous row of the log has the same time.
    at: Option<i64>,
}

/// Numbers `changes` from `after` + 1 and encodes them: the collections' ids (looked up
/// once per run of the same collection), kinds and versions as [`kind_offset`], and the
/// time only where it differs from the previous change's or opens a run of
/// [`ROWS_PER_INSERT`].
fn encode(conn: &Connection, changes: &[NewChange], after: i64) -> Result<Vec<Row>> {
    let full = || StorageError::corruption("the change clock", "the clock is at its maximum");
    let mut rows = Vec::with_capacity(changes.len());
    let mut seq = after;
    let mut named: Option<(&str, i64)> = None;
    let mut previous_at = None;
    for (i, c) in changes.iter().enumerate() {
        seq = seq.checked_add(1).ok_or_else(full)?;
        let collection_id = match named {
            Some((name, id)) if name == c.collection => id,
            _ => {
                let id = collection_id(conn, &c.collection)?;
                named = Some((&c.collection, id));
                id
            }
        };
        let kind_offset = kind_offset(seq, c.version, c.kind.code()).ok_or_else(|| {
            StorageError::corruption("the change log", format!("seq {seq}: version out of range"))
        })?;
        let at = (i % ROWS_PER_INSERT == 0 || previous_at != Some(c.at_ms)).then_some(c.at_ms);
        previous_at = Some(c.at_ms);
        rows.push(Row {
            seq,
            collection_id,
            kind_offset,
            at,
        });
    }
    Ok(rows)
}

/// `INSERT INTO changes … VALUES` with `rows` rows of five parameters each.
fn insert_sql(rows: usize) -> String {
    format!(
        "INSERT INTO changes (seq, collection_id, key, kind_offset, at) VALUES {}",
        super::value_rows(rows, 5, &[1, 2, 3, 4, 5])
    )
}

/// Numbers `changes` after `head`, the last seq handed out ([`Tail::seq`]), and appends them
/// (inside the write transaction, after every unit ran, for the units that committed) in
/// statements of [`STATEMENT_ROWS`] rows. `clock` is the version clock at the end of the
/// transaction and `moved` whether the transaction advanced it. The 'version' row is
/// written only when the newest appended change does not carry `clock` (a unit rolled back
/// after taking versions, a put keeping an older version, a delete, or nothing logged while
/// the clock moved): otherwise the log itself holds the clock.
pub(super) fn append(
    conn: &Connection,
    changes: &[NewChange],
    head: i64,
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
    let rows = encode(conn, changes, head)?;
    let mut pairs = changes.iter().zip(&rows);
    for ((size, count), sql) in statements_for(changes.len()).into_iter().zip(&ROWS_SQL) {
        if count == 0 {
            continue;
        }
        let sql = sql.get_or_init(|| insert_sql(size));
        let mut statement = conn.prepare_cached(sql).map_err(err())?;
        for _ in 0..count {
            let mut at = 1;
            for (c, row) in pairs.by_ref().take(size) {
                statement.raw_bind_parameter(at, row.seq).map_err(err())?;
                statement
                    .raw_bind_parameter(at + 1, row.collection_id)
                    .map_err(err())?;
                statement
                    .raw_bind_parameter(at + 2, &c.key)
                    .map_err(err())?;
                statement
                    .raw_bind_parameter(at + 3, row.kind_offset)
                    .map_err(err())?;
                statement
                    .raw_bind_parameter(at + 4, row.at)
                    .map_err(err())?;
                at += 5;
            }
            statement.raw_execute().map_err(err())?;
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
    let id = collection_id(conn, collection)?;
    // Every row keeps its time: a shred is rare, and its first row opens an append.
    let n = conn
        .execute(
            "INSERT INTO changes (seq, collection_id, key, kind_offset, at)
             SELECT seq, ?4, key, (version - seq - 1) * 4 + kind - 1, ?2
             FROM (SELECT ?3 + row_number() OVER (ORDER BY key) AS seq, key,
                          CASE WHEN expires_at IS NOT NULL AND expires_at <= ?2 THEN 3 ELSE 2 END
                              AS kind,
                          version
                   FROM records WHERE collection = ?1)",
            params![collection, now_ms, last, id],
        )
        .map_err(err)?;
    let n = i64::try_from(n).unwrap_or(i64::MAX);
    set_clock(conn, "last", last.saturating_add(n))
}

/// Removes up to `limit` of the oldest changes written before `before_ms` (a prefix of the
/// log); returns how many and the highest seq removed so far.
pub(super) fn prune(conn: &Connection, before_ms: i64, limit: usize) -> Result<(u64, u64)> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let stored: Vec<(i64, Option<i64>)> = conn
        .prepare_cached("SELECT seq, at FROM changes ORDER BY seq LIMIT ?1")
        .and_then(|mut s| {
            s.query_map([limit], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(db_err("reading the oldest changes"))?;
    // The log's first row has its time.
    let rows = resolve_times(stored, None)?;
    let mut pruned = clock(conn, "pruned")?;
    let mut removed = 0usize;
    if let Some(through) = prunable_prefix(&rows, before_ms) {
        // The newest row may go: both clocks become rows first.
        let (last, versions) = (head_seq(conn)?, version_clock(conn)?);
        set_clock(conn, "last", last)?;
        set_version_clock(conn, versions)?;
        // The row after the removed ones becomes the first: it gets its time if it had
        // none (then it had the removed last row's).
        let through_at = rows
            .iter()
            .find(|(seq, _)| *seq == through)
            .map(|(_, at)| *at)
            .ok_or_else(|| {
                StorageError::corruption("the change log", format!("seq {through}: not read"))
            })?;
        conn.prepare_cached(
            "UPDATE changes SET at = ?2
             WHERE seq = (SELECT min(seq) FROM changes WHERE seq > ?1) AND at IS NULL",
        )
        .and_then(|mut s| s.execute(params![through, through_at]))
        .map_err(db_err("keeping the first change's time"))?;
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
///
/// Its statements run in one read transaction, so they see one state of the log: a first row
/// without a time finds the time before it even while retention removes the rows below.
pub(super) fn since(conn: &Connection, after: u64, limit: usize) -> Result<Vec<Change>> {
    // Dropped at the end: a read transaction has nothing to commit.
    let _snapshot = conn
        .unchecked_transaction()
        .map_err(db_err("reading the change log"))?;
    let from = i64::try_from(after).unwrap_or(i64::MAX);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    type Stored = (i64, Option<String>, String, i64, i64, Option<i64>);
    let rows: Vec<Stored> = conn
        .prepare_cached(
            "SELECT seq, (SELECT name FROM collection_ids WHERE id = collection_id), key,
                    (kind_offset & 3) + 1, seq + (kind_offset >> 2) + 1, at
             FROM changes WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        )
        .and_then(|mut s| {
            s.query_map(params![from, limit], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(db_err("reading the change log"))?;
    crate::feed::check_retained(after, clock(conn, "pruned")?)?;
    // A first row without a time has the newest time before it.
    let before = match rows.first() {
        Some((seq, .., None)) => Some(time_before(conn, *seq)?),
        _ => None,
    };
    let times = resolve_times(rows.iter().map(|r| (r.0, r.5)).collect(), before)?;
    rows.into_iter()
        .zip(times)
        .map(|((seq, c, k, kind, version, _), (_, at))| {
            let c = c.ok_or_else(|| {
                StorageError::corruption(
                    "the change log",
                    format!("seq {seq}: the collection's id has no name"),
                )
            })?;
            Change::from_row(seq, c, k, (kind, version, at))
        })
        .collect()
}

/// The time of the newest row below `seq` that has one.
fn time_before(conn: &Connection, seq: i64) -> Result<i64> {
    conn.prepare_cached(
        "SELECT at FROM changes WHERE seq < ?1 AND at IS NOT NULL ORDER BY seq DESC LIMIT 1",
    )
    .and_then(|mut s| s.query_row([seq], |r| r.get::<_, i64>(0)).optional())
    .map_err(db_err("reading the change log"))?
    .ok_or_else(|| {
        StorageError::corruption("the change log", format!("seq {seq}: no time before it"))
    })
}

/// Each row's time: its own, or the previous row's (`before` for the first).
fn resolve_times(rows: Vec<(i64, Option<i64>)>, before: Option<i64>) -> Result<Vec<(i64, i64)>> {
    let mut previous = before;
    rows.into_iter()
        .map(|(seq, at)| {
            let at = at.or(previous).ok_or_else(|| {
                StorageError::corruption("the change log", format!("seq {seq}: no time"))
            })?;
            previous = Some(at);
            Ok((seq, at))
        })
        .collect()
}

/// The last seq handed out.
pub(super) fn head(conn: &Connection) -> Result<u64> {
    let last = head_seq(conn)?;
    u64::try_from(last)
        .map_err(|_| StorageError::corruption("the change clock", format!("invalid seq {last}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::sqlite::schema;
    use crate::feed::ChangeKind;

    fn store() -> Result<Connection> {
        let mut conn = Connection::open_in_memory().map_err(db_err("open"))?;
        schema::migrate(&mut conn)?;
        Ok(conn)
    }

    /// `(seq, collection, key, kind, version, at ms)`.
    type Read = (u64, String, String, i64, u64, i64);

    /// Every change after `after`, through [`since`].
    fn read_all(conn: &Connection, after: u64) -> Result<Vec<Read>> {
        Ok(since(conn, after, 100_000)?
            .into_iter()
            .map(|c| {
                let at =
                    c.at.duration_since(std::time::UNIX_EPOCH)
                        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
                        .unwrap_or(-1);
                (
                    c.seq,
                    c.collection,
                    c.key,
                    c.kind.code(),
                    c.version.get(),
                    at,
                )
            })
            .collect())
    }

    fn stored_times(conn: &Connection) -> Result<Vec<Option<i64>>> {
        conn.prepare("SELECT at FROM changes ORDER BY seq")
            .and_then(|mut s| {
                s.query_map([], |r| r.get(0))?
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(db_err("times"))
    }

    /// A batch of 130 changes at one time (a bulk load) stores the time in rows 1, 65 and
    /// 129 only, the collection as its id and the version as an offset; a read from any
    /// seq, also one in the middle of a run without times, returns every change as
    /// appended; a second collection gets the next id.
    #[test]
    fn a_batch_stores_its_time_once_per_run_and_reads_back() -> Result<()> {
        let conn = store()?;
        let mut batch: Vec<NewChange> = (0..130)
            .map(|i| NewChange::new("games", &format!("k{i:03}"), ChangeKind::Put, i + 1, 5_000))
            .collect();
        batch.push(NewChange::new("rolls", "r", ChangeKind::Delete, 7, 5_001));
        batch.push(NewChange::new(
            "games",
            "k000",
            ChangeKind::Expire,
            1,
            5_001,
        ));
        append(&conn, &batch, tail(&conn)?.seq, 131, true)?;
        let times = stored_times(&conn)?;
        let kept: Vec<usize> = (0..times.len()).filter(|i| times[*i].is_some()).collect();
        assert_eq!(kept, [0, 64, 128, 130]);
        let ids: Vec<(i64, String)> = conn
            .prepare("SELECT id, name FROM collection_ids ORDER BY id")
            .and_then(|mut s| {
                s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(db_err("ids"))?;
        assert_eq!(ids, [(1, "games".to_owned()), (2, "rolls".to_owned())]);
        let expected: Vec<_> = batch
            .iter()
            .zip(1u64..)
            .map(|(c, seq)| {
                (
                    seq,
                    c.collection.clone(),
                    c.key.clone(),
                    c.kind.code(),
                    u64::try_from(c.version).unwrap_or(0),
                    c.at_ms,
                )
            })
            .collect();
        for after in [0, 1, 63, 64, 100, 129, 130, 131] {
            let from = usize::try_from(after).unwrap_or(0);
            assert_eq!(read_all(&conn, after)?, expected[from..], "after {after}");
        }
        assert_eq!(version_clock(&conn)?, 131);
        assert_eq!(head(&conn)?, 132);
        // The next append opens with its time even when it is the same.
        append(
            &conn,
            &[NewChange::new("games", "z", ChangeKind::Put, 132, 5_001)],
            tail(&conn)?.seq,
            132,
            true,
        )?;
        assert_eq!(stored_times(&conn)?.last().copied().flatten(), Some(5_001));
        assert_eq!(version_clock(&conn)?, 132);
        Ok(())
    }

    /// Retention that removes a prefix ending inside a run without times gives the new first
    /// row its time, so the log still reads from its start (the regression this guards:
    /// the first row read as "no time" after a prune).
    #[test]
    fn pruning_inside_a_run_keeps_the_first_rows_time() -> Result<()> {
        let conn = store()?;
        let first: Vec<NewChange> = (0..10)
            .map(|i| NewChange::new("games", &format!("a{i}"), ChangeKind::Put, i + 1, 1_000))
            .collect();
        append(&conn, &first, tail(&conn)?.seq, 10, true)?;
        // Rows 1..=4 are older than 1_001 and go, up to the limit of 4 read.
        let (removed, pruned) = prune(&conn, 1_001, 4)?;
        assert_eq!((removed, pruned), (4, 4));
        assert_eq!(stored_times(&conn)?.first().copied().flatten(), Some(1_000));
        let read = read_all(&conn, 4)?;
        assert_eq!(read.len(), 6);
        assert!(read.iter().all(|c| c.5 == 1_000), "{read:?}");
        assert!(matches!(
            since(&conn, 0, 10),
            Err(StorageError::ChangesPruned { .. })
        ));
        let (removed, pruned) = prune(&conn, 1_001, 100)?;
        assert_eq!((removed, pruned), (6, 10));
        assert_eq!(head(&conn)?, 10);
        assert_eq!(version_clock(&conn)?, 10);
        Ok(())
    }

    /// An append's statements: full runs of 64, then 16, 4 and 1 rows — a group of five
    /// changes is two statements, not five; of 42, six.
    #[test]
    fn an_append_runs_few_statements() {
        let statements = |n| -> usize { statements_for(n).iter().map(|(_, c)| c).sum() };
        assert_eq!(statements_for(5), [(64, 0), (16, 0), (4, 1), (1, 1)]);
        assert_eq!(statements(1), 1);
        assert_eq!(statements(42), 6);
        assert_eq!(statements_for(1_000), [(64, 15), (16, 2), (4, 2), (1, 0)]);
        for n in 0..300 {
            let rows: usize = statements_for(n).iter().map(|(s, c)| s * c).sum();
            assert_eq!(rows, n);
            assert!(statements(n) <= n / 64 + 9);
        }
    }

    /// Appends of every size in a row number densely after the head, and the tail read once
    /// says what the two clocks say, also after retention removed every row and when the
    /// 'version' floor is above the log.
    #[test]
    fn appends_of_every_size_number_densely_after_the_tail() -> Result<()> {
        let conn = store()?;
        let mut version = 0;
        for n in [1usize, 3, 4, 5, 16, 21, 64, 85] {
            let t = tail(&conn)?;
            let read_apart = Tail {
                seq: head_seq(&conn)?,
                version: version_clock(&conn)?,
            };
            assert_eq!(t, read_apart);
            let batch: Vec<NewChange> = (0..n)
                .map(|i| {
                    version += 1;
                    NewChange::new("g", &format!("n{n}-{i}"), ChangeKind::Put, version, 7)
                })
                .collect();
            append(&conn, &batch, t.seq, version, true)?;
        }
        let all = read_all(&conn, 0)?;
        let seqs: Vec<u64> = all.iter().map(|c| c.0).collect();
        assert_eq!(seqs, (1..=199).collect::<Vec<u64>>());
        assert!(
            all.iter().all(|c| c.0 == c.4),
            "each put took the next version"
        );
        assert_eq!(
            tail(&conn)?,
            Tail {
                seq: 199,
                version: 199
            }
        );
        prune(&conn, 8, 1_000)?;
        assert_eq!(read_all(&conn, 199)?, []);
        assert_eq!(
            tail(&conn)?,
            Tail {
                seq: 199,
                version: 199
            }
        );
        // A delete of an older version: the clock stays in its row.
        append(
            &conn,
            &[NewChange::new("g", "n1-0", ChangeKind::Delete, 1, 9)],
            199,
            201,
            true,
        )?;
        assert_eq!(
            tail(&conn)?,
            Tail {
                seq: 200,
                version: 201
            }
        );
        Ok(())
    }

    /// A shred logs its deletes with the collection's id and the records' versions.
    #[test]
    fn a_shred_logs_with_ids_and_offsets() -> Result<()> {
        let conn = store()?;
        conn.execute_batch(
            "INSERT INTO records (collection, key, blob_id, created_at, version, expires_at)
             VALUES ('s', 'a', 1, 0, 3, NULL), ('s', 'b', 1, 0, 9, 10)",
        )
        .map_err(db_err("records"))?;
        log_shred(&conn, "s", 50)?;
        assert_eq!(
            read_all(&conn, 0)?,
            [
                (1, "s".to_owned(), "a".to_owned(), 2, 3, 50),
                (2, "s".to_owned(), "b".to_owned(), 3, 9, 50)
            ]
        );
        Ok(())
    }
}

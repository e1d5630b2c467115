//! A run of puts into keys that are usually absent (a bulk load's batch): their records
//! inserted [`ROWS`] to one statement instead of one statement each.
//!
//! Every statement SQLite runs costs a fixed ~2.5 k instructions (opening and closing its
//! cursors, halting, resetting, clearing bindings) before any B-tree work; the record insert
//! was one of three statements per new document. A run keeps the per-document semantics of
//! `put_new_first`: each put takes its version and acquires its content in unit order, the
//! records are inserted with `ON CONFLICT DO NOTHING`, and when fewer rows went in than the
//! run holds, each row whose record does not carry the put's version (versions are never
//! handed out twice) met a present key and is settled like `put_new_first` settles one:
//! an expired record is removed with an `Expire` change, a live one replaced. The changes
//! are logged in unit order. Only one thing differs from putting one by one: every content of
//! the run is acquired before any replaced record releases its old content, so a put whose
//! content equals what another put of the run replaced shares it instead of storing it
//! again (the stored state is the same, the blob is not deleted and inserted anew).

mod contents;

use rusqlite::{OptionalExtension, params};

use super::db_err;
use super::held::{Held, Which};
use super::settings::SettingsCache;
use super::write::{Clock, Placed, settle_conflict};
use crate::backend::{OpOutcome, WriteOp};
use crate::error::{Result, StorageError};
use crate::feed::{ChangeKind, NewChange};

/// Puts per run, and rows per statement: 192 parameters (99 when the puts share collection,
/// time and expiry).
pub(super) const ROWS: usize = 32;

/// The multi-row record insert, built once.
pub(super) fn insert_sql() -> &'static str {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SQL.get_or_init(|| {
        // updated_at stays NULL: it equals created_at (schema version 15).
        format!(
            "INSERT INTO records
                 (collection, key, blob_id, created_at, version, expires_at) VALUES {}
             ON CONFLICT (collection, key) DO NOTHING",
            super::value_rows(ROWS, 6, &[1, 2, 3, 4, 5, 6])
        )
    })
}

/// The record insert of a run whose puts share their collection, write time and expiry (a
/// `store_batch`'s): those three bound once (`?1`–`?3`), each row binding its key, content
/// and version — 99 parameters instead of 192, each text one a copy SQLite makes.
fn uniform_insert_sql() -> &'static str {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SQL.get_or_init(|| {
        let rows: Vec<String> = (0..ROWS)
            .map(|i| {
                let at = 4 + 3 * i;
                format!("(?1,?{},?{},?2,?{},?3)", at, at + 1, at + 2)
            })
            .collect();
        format!(
            "INSERT INTO records
                 (collection, key, blob_id, created_at, version, expires_at) VALUES {}
             ON CONFLICT (collection, key) DO NOTHING",
            rows.join(",")
        )
    })
}

/// Whether `ops` opens with a run: [`ROWS`] puts with no version to keep, none a delta,
/// into distinct keys.
pub(super) fn opens_run(ops: &[WriteOp]) -> bool {
    let Some(run) = ops.get(..ROWS) else {
        return false;
    };
    let mut keys = Vec::with_capacity(ROWS);
    for op in run {
        match op {
            WriteOp::Put {
                collection,
                key,
                value,
                keep_version: None,
                ..
            } if !value.delta => keys.push((key.as_str(), collection.as_str())),
            _ => return false,
        }
    }
    // Distinct keys: sorted, no two neighbours equal (a batch's keys usually come sorted,
    // which the sort finds in one pass; cheaper than hashing each key).
    keys.sort_unstable();
    keys.windows(2).all(|w| w.first() != w.get(1))
}

pub(super) use contents::{INSERT_COUNTED, find_sql};

/// One put of a run, acquired and numbered.
struct Row<'a> {
    placed: Placed<'a>,
    blob_id: i64,
    stored_version: i64,
    version: crate::version::Version,
    deduplicated: bool,
}

/// Applies a run (`opens_run` said so of these ops), appending one outcome per put.
pub(super) fn apply(
    held: &mut Held<'_>,
    run: &[WriteOp],
    deduplicate: bool,
    clock: &mut Clock,
    changes: &mut Vec<NewChange>,
    settings: &mut SettingsCache,
    outcomes: &mut Vec<OpOutcome>,
) -> Result<()> {
    let conn = held.conn();
    let mut rows = Vec::with_capacity(run.len());
    let mut values = Vec::with_capacity(run.len());
    for op in run {
        let WriteOp::Put {
            collection,
            key,
            value,
            now_ms,
            expires_ms,
            ..
        } = op
        else {
            return Err(StorageError::Task("a run holds only puts".into()));
        };
        let expires_ms = match expires_ms {
            Some(at) => Some(*at),
            None => settings
                .default_ttl(conn, collection)?
                .map(|ttl| now_ms.saturating_add(ttl)),
        };
        let (stored_version, version) = clock.next()?;
        values.push(value);
        rows.push(Row {
            placed: Placed {
                collection,
                key,
                now_ms: *now_ms,
                expires_ms,
            },
            blob_id: 0,
            stored_version,
            version,
            deduplicated: false,
        });
    }
    // The run's contents, in unit order, together (`run/contents.rs`).
    for (row, (blob_id, deduplicated)) in
        rows.iter_mut()
            .zip(contents::acquire(held, &values, deduplicate)?)
    {
        row.blob_id = blob_id;
        row.deduplicated = deduplicated;
    }
    let inserted = insert(held, &rows)?;
    for row in &rows {
        let p = &row.placed;
        let replaced = if inserted == rows.len() || carries(held, row)? {
            false
        } else {
            settle_conflict(held, p, row.blob_id, row.stored_version, changes)?
        };
        changes.push(NewChange::new(
            p.collection,
            p.key,
            ChangeKind::Put,
            row.stored_version,
            p.now_ms,
        ));
        outcomes.push(OpOutcome::Put {
            deduplicated: row.deduplicated,
            replaced,
            version: row.version,
            expires_ms: p.expires_ms,
            quota_warning: None,
        });
    }
    Ok(())
}

/// Inserts the rows' records where their keys are absent; returns how many went in.
fn insert(held: &mut Held<'_>, rows: &[Row<'_>]) -> Result<usize> {
    let err = || db_err("writing records");
    if let Some((first, rest)) = rows.split_first() {
        let p = &first.placed;
        let uniform = rest.iter().all(|r| {
            let q = &r.placed;
            q.collection == p.collection && q.now_ms == p.now_ms && q.expires_ms == p.expires_ms
        });
        if uniform && rows.len() == ROWS {
            let mut statement = held
                .conn()
                .prepare_cached(uniform_insert_sql())
                .map_err(err())?;
            statement
                .raw_bind_parameter(1, p.collection)
                .map_err(err())?;
            statement.raw_bind_parameter(2, p.now_ms).map_err(err())?;
            statement
                .raw_bind_parameter(3, p.expires_ms)
                .map_err(err())?;
            let mut at = 4;
            for row in rows {
                statement
                    .raw_bind_parameter(at, row.placed.key)
                    .map_err(err())?;
                statement
                    .raw_bind_parameter(at + 1, row.blob_id)
                    .map_err(err())?;
                statement
                    .raw_bind_parameter(at + 2, row.stored_version)
                    .map_err(err())?;
                at += 3;
            }
            return statement.raw_execute().map_err(err());
        }
    }
    let statement = held.get(Which::InsertRecords).map_err(err())?;
    let mut at = 1;
    for row in rows {
        let p = &row.placed;
        statement
            .raw_bind_parameter(at, p.collection)
            .map_err(err())?;
        statement.raw_bind_parameter(at + 1, p.key).map_err(err())?;
        statement
            .raw_bind_parameter(at + 2, row.blob_id)
            .map_err(err())?;
        statement
            .raw_bind_parameter(at + 3, p.now_ms)
            .map_err(err())?;
        statement
            .raw_bind_parameter(at + 4, row.stored_version)
            .map_err(err())?;
        statement
            .raw_bind_parameter(at + 5, p.expires_ms)
            .map_err(err())?;
        at += 6;
    }
    statement.raw_execute().map_err(err())
}

/// Whether the record of `row`'s key carries `row`'s version: it is the one the run
/// inserted.
fn carries(held: &Held<'_>, row: &Row<'_>) -> Result<bool> {
    let p = &row.placed;
    let version: Option<i64> = held
        .conn()
        .prepare_cached("SELECT version FROM records WHERE collection = ?1 AND key = ?2")
        .and_then(|mut s| {
            s.query_row(params![p.collection, p.key], |r| r.get(0))
                .optional()
        })
        .map_err(db_err("looking up a record"))?;
    Ok(version == Some(row.stored_version))
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    use super::*;
    use crate::backend::sqlite::{group, schema};

    type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

    pub(super) fn put(
        key: &str,
        body: &str,
        now_ms: i64,
        expires_ms: Option<i64>,
    ) -> Result<WriteOp> {
        let pipeline = crate::value::Pipeline {
            codec: crate::Codec::None,
            level: 0,
            max_value_size: usize::MAX,
            chunk_threshold: 0,
            keyframe_interval: 0,
        };
        Ok(WriteOp::Put {
            collection: "c".into(),
            key: key.into(),
            value: pipeline.encode_raw("c", key, format!("\"{body}\"").into_bytes())?,
            now_ms,
            keep_version: None,
            expires_ms,
        })
    }

    /// Two batches: 32 new keys (one expiring at 5), then at 10 half of them again (the
    /// expired one among them) and 16 new keys, one of which holds content another put of
    /// the batch replaces.
    fn batches() -> Result<[Vec<WriteOp>; 2]> {
        let first = (0..ROWS)
            .map(|i| {
                put(
                    &format!("k{i:02}"),
                    &format!("v{i}"),
                    1,
                    (i == 3).then_some(5),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let mut second = (0..ROWS / 2)
            .map(|i| put(&format!("k{i:02}"), &format!("w{i}"), 10, None))
            .collect::<Result<Vec<_>>>()?;
        for i in 0..ROWS / 2 {
            let body = if i == 0 {
                "v1".to_owned()
            } else {
                format!("n{i}")
            };
            second.push(put(&format!("n{i:02}"), &body, 10, None)?);
        }
        Ok([first, second])
    }

    type State = (
        Vec<(String, String, i64, Option<i64>, i64)>,
        Vec<(i64, String, i64, i64)>,
    );

    /// Every record (key, content, version, expiry, created) and every change.
    fn state(conn: &Connection) -> rusqlite::Result<State> {
        let records = conn
            .prepare(
                "SELECT r.key, CAST(b.data AS TEXT), r.version, r.expires_at, r.created_at
                 FROM records r JOIN blobs b ON b.id = r.blob_id ORDER BY r.key",
            )?
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let changes = conn
            .prepare(
                "SELECT seq, key, (kind_offset & 3) + 1, seq + (kind_offset >> 2) + 1
                 FROM changes ORDER BY seq",
            )?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok((records, changes))
    }

    fn miscounted(conn: &Connection) -> rusqlite::Result<i64> {
        conn.query_row(
            "SELECT count(*) FROM blobs b
             WHERE refcount <> (SELECT count(*) FROM records r WHERE r.blob_id = b.id)",
            [],
            |r| r.get(0),
        )
    }

    #[test]
    fn a_run_leaves_what_its_puts_one_by_one_leave() -> TestResult {
        let mut run = Connection::open_in_memory()?;
        let mut single = Connection::open_in_memory()?;
        schema::migrate(&mut run)?;
        schema::migrate(&mut single)?;
        let mut second_outcomes = Vec::new();
        for batch in batches()? {
            assert!(opens_run(&batch));
            let outcomes = group::apply(&mut run, std::slice::from_ref(&batch), true)?;
            second_outcomes = outcomes.into_iter().next().ok_or("no outcome")??;
            // The same puts as units of one: the one-by-one path.
            let units: Vec<Vec<WriteOp>> = batch.into_iter().map(|op| vec![op]).collect();
            for outcome in group::apply(&mut single, &units, true)? {
                outcome?;
            }
        }
        assert_eq!(state(&run)?, state(&single)?);
        assert_eq!(miscounted(&run)?, 0, "reference counts");
        let replaced: Vec<bool> = second_outcomes
            .iter()
            .map(|o| matches!(o, OpOutcome::Put { replaced: true, .. }))
            .collect();
        // Live keys replaced; the expired k03 and the new keys not.
        let expected: Vec<bool> = (0..ROWS).map(|i| i < ROWS / 2 && i != 3).collect();
        assert_eq!(replaced, expected);
        // n00 shares the content k01 held before this batch replaced it.
        assert!(matches!(
            second_outcomes.get(ROWS / 2),
            Some(OpOutcome::Put {
                deduplicated: true,
                ..
            })
        ));
        // k03's expiry is logged before its put, in unit order.
        let (_, changes) = state(&run)?;
        let kinds: Vec<(&str, i64)> = changes
            .iter()
            .skip(ROWS)
            .take(6)
            .map(|(_, k, kind, _)| (k.as_str(), *kind))
            .collect();
        assert_eq!(
            kinds,
            [
                ("k00", 1),
                ("k01", 1),
                ("k02", 1),
                ("k03", 3),
                ("k03", 1),
                ("k04", 1)
            ]
        );
        Ok(())
    }

    #[test]
    fn only_full_runs_of_distinct_keyed_puts_open_a_run() -> Result<()> {
        let [first, _] = batches()?;
        assert!(opens_run(&first));
        assert!(!opens_run(first.get(1..).unwrap_or_default()), "too short");
        let mut repeated = first.clone();
        if let Some(last) = repeated.last_mut() {
            *last = put("k00", "again", 1, None)?;
        }
        assert!(!opens_run(&repeated), "a key twice");
        let mut kept = first;
        if let Some(WriteOp::Put { keep_version, .. }) = kept.first_mut() {
            *keep_version = crate::version::Version::from_db(7);
        }
        assert!(!opens_run(&kept), "a version to keep");
        Ok(())
    }

    #[test]
    fn the_same_key_in_two_collections_is_two_keys() -> Result<()> {
        let [mut first, _] = batches()?;
        if let Some(WriteOp::Put {
            collection, key, ..
        }) = first.last_mut()
        {
            *collection = "d".into();
            *key = "k00".into();
        }
        assert!(opens_run(&first));
        Ok(())
    }

    /// Runs whose puts share collection, time and expiry bind those once
    /// (`uniform_insert_sql`); each row must still get its own key, content and version,
    /// and the shared three.
    #[test]
    fn a_uniform_run_leaves_what_its_puts_one_by_one_leave() -> TestResult {
        let mut run = Connection::open_in_memory()?;
        let mut single = Connection::open_in_memory()?;
        schema::migrate(&mut run)?;
        schema::migrate(&mut single)?;
        let batch = |now: i64, expires: Option<i64>, tag: &str| -> Result<Vec<WriteOp>> {
            (0..ROWS)
                .map(|i| {
                    put(
                        &format!("u{i:02}"),
                        &format!("{tag}{}", i % 7),
                        now,
                        expires,
                    )
                })
                .collect()
        };
        // New keys expiring at 90; then the same keys again, never expiring.
        for ops in [batch(3, Some(90), "a")?, batch(4, None, "b")?] {
            let outcomes = group::apply(&mut run, std::slice::from_ref(&ops), true)?;
            for outcome in outcomes {
                outcome?;
            }
            let units: Vec<Vec<WriteOp>> = ops.into_iter().map(|op| vec![op]).collect();
            for outcome in group::apply(&mut single, &units, true)? {
                outcome?;
            }
            assert_eq!(state(&run)?, state(&single)?);
        }
        assert_eq!(miscounted(&run)?, 0, "reference counts");
        let (records, _) = state(&run)?;
        assert_eq!(records.len(), ROWS);
        assert!(
            records
                .iter()
                .all(|(_, _, _, expires, created)| { expires.is_none() && *created == 3 })
        );
        Ok(())
    }
}

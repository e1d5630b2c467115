//! A run's contents acquired together: one lookup by hash for the whole run instead of one
//! per put.
//!
//! Per put, `acquire_blob` looks its content up by hash (a statement of its own, with
//! SQLite's fixed ~2.5 k instructions before any B-tree work) and then inserts it when it is
//! new. Here the run's [`ROWS`](super::ROWS) hashes are looked up in one statement (their
//! 4-byte prefixes in one `IN` list over the prefix index; the full hash is compared here),
//! and only the inserts go put by put. (Inserting the new contents in one multi-row statement
//! too was measured and dropped: SQLite then keeps a statement journal for it, a copy of
//! every page it is first to change, which cost more than the statements it saved.)
//!
//! The stored state is the one `acquire_blob` leaves put by put, in unit order:
//! - a content already stored is shared: the lowest id with that hash (the one the lookup's
//!   `LIMIT 1` takes from the index, ordered by prefix, then id), its length checked, its
//!   count raised once per put that shares it;
//! - a content new to the store is inserted when its first put comes (so ids follow the
//!   same order), with a reference count of one plus the later puts of the run that share
//!   it (which the lookup one by one would have found);
//! - without deduplication every put stores its own content.
//!
//! A run with a chunked document goes put by put.

use rusqlite::params;

use super::super::db_err;
use super::super::held::{Held, Which};
use super::super::write::acquire_blob;
use super::ROWS;
use crate::error::{Result, StorageError};
use crate::value::EncodedValue;

/// Bytes of the hash the prefix index holds (schema version 14).
const PREFIX: usize = 4;

/// The lookup of [`ROWS`] hashes by their prefixes, built once.
pub(in super::super) fn find_sql() -> &'static str {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SQL.get_or_init(|| {
        let params: Vec<String> = (1..=ROWS).map(|i| format!("?{i}")).collect();
        format!(
            "SELECT id, raw_len, hash FROM blobs
             WHERE substr(hash, 1, 4) IN ({}) AND codec <> 17",
            params.join(",")
        )
    })
}

/// A new content with its reference count; `stored_len` stays NULL: it is the bytes' length
/// (schema version 16).
pub(in super::super) const INSERT_COUNTED: &str =
    "INSERT INTO blobs (hash, codec, raw_len, refcount, data, dict_id)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

/// Where a put's content is.
#[derive(Clone, Copy)]
enum Source {
    /// Stored before the run: that row's id.
    Stored(i64),
    /// The run's `n`th new content; `first`: this put brings it.
    New { n: usize, first: bool },
}

/// Takes a reference to a content for each of `values` (a run's, in unit order); returns
/// each one's blob id and whether its content was already stored.
pub(in super::super) fn acquire(
    held: &mut Held<'_>,
    values: &[&EncodedValue],
    deduplicate: bool,
) -> Result<Vec<(i64, bool)>> {
    if values.len() != ROWS || values.iter().any(|v| v.is_chunked() || v.delta) {
        return values
            .iter()
            .map(|v| acquire_blob(held, v, deduplicate))
            .collect();
    }
    let stored = if deduplicate {
        find(held, values)?
    } else {
        Vec::new()
    };
    // Each put's source; the new contents in order of first appearance with their counts;
    // the stored ones shared, with how often.
    let mut sources = Vec::with_capacity(values.len());
    let mut new: Vec<(&EncodedValue, i64)> = Vec::with_capacity(values.len());
    let mut shared: Vec<(i64, i64)> = Vec::new();
    for value in values {
        let raw_len = i64::try_from(value.raw_len()).unwrap_or(i64::MAX);
        let found = stored
            .iter()
            .filter(|(_, _, hash)| hash.as_slice() == value.hash.as_slice())
            .min_by_key(|(id, ..)| *id);
        if let Some(&(id, len, _)) = found {
            if len != raw_len {
                return Err(StorageError::corruption(
                    format!("blob {id}"),
                    format!("same content hash but length {len}, expected {raw_len}"),
                ));
            }
            match shared.iter_mut().find(|(i, _)| *i == id) {
                Some((_, count)) => *count += 1,
                None => shared.push((id, 1)),
            }
            sources.push(Source::Stored(id));
            continue;
        }
        let earlier = new
            .iter_mut()
            .enumerate()
            .find(|(_, (v, _))| deduplicate && v.hash == value.hash);
        match earlier {
            Some((n, (_, count))) => {
                *count += 1;
                sources.push(Source::New { n, first: false });
            }
            None => {
                sources.push(Source::New {
                    n: new.len(),
                    first: true,
                });
                new.push((value, 1));
            }
        }
    }
    let ids = insert(held, &new)?;
    for (id, count) in shared {
        held.conn()
            .prepare_cached("UPDATE blobs SET refcount = refcount + ?2 WHERE id = ?1")
            .and_then(|mut s| s.execute(params![id, count]))
            .map_err(db_err("adding a content reference"))?;
    }
    sources
        .into_iter()
        .map(|source| match source {
            Source::Stored(id) => Ok((id, true)),
            Source::New { n, first } => ids
                .get(n)
                .map(|id| (*id, !first))
                .ok_or_else(|| StorageError::Task("a run's content went missing".into())),
        })
        .collect()
}

/// The stored contents (id, length, hash) whose hash prefix is one of `values`'.
fn find(held: &mut Held<'_>, values: &[&EncodedValue]) -> Result<Vec<(i64, i64, Vec<u8>)>> {
    let err = || db_err("looking up content by hash");
    let statement = held.get(Which::FindBlobs).map_err(err())?;
    for (i, value) in values.iter().enumerate() {
        let prefix = value.hash.get(..PREFIX).unwrap_or_default();
        statement.raw_bind_parameter(i + 1, prefix).map_err(err())?;
    }
    let mut rows = statement.raw_query();
    let mut found = Vec::new();
    while let Some(row) = rows.next().map_err(err())? {
        let hash: Vec<u8> = row.get(2).map_err(err())?;
        found.push((row.get(0).map_err(err())?, row.get(1).map_err(err())?, hash));
    }
    Ok(found)
}

/// Inserts the run's new contents in order; returns their ids.
fn insert(held: &mut Held<'_>, new: &[(&EncodedValue, i64)]) -> Result<Vec<i64>> {
    let err = || db_err("storing content");
    let conn = held.conn();
    let statement = held.get(Which::InsertCounted).map_err(err())?;
    let mut ids = Vec::with_capacity(new.len());
    for (value, refcount) in new {
        let raw_len = i64::try_from(value.raw_len()).unwrap_or(i64::MAX);
        statement
            .execute(params![
                &value.hash[..],
                value.codec_id(),
                raw_len,
                refcount,
                &value.stored[..],
                value.dict_id
            ])
            .map_err(err())?;
        ids.push(conn.last_insert_rowid());
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    use super::*;
    use crate::backend::sqlite::{group, schema};
    use crate::backend::{OpOutcome, WriteOp};

    type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

    fn put(key: &str, body: &str) -> Result<WriteOp> {
        super::super::tests::put(key, body, 1, None)
    }

    /// Three runs: contents shared within the first (every fifth put the same, two pairs
    /// alike), then contents the store holds already, new ones and shared ones mixed, over
    /// keys of the first run and new keys, then a run of contents all new.
    fn runs() -> Result<Vec<Vec<WriteOp>>> {
        let first = (0..ROWS)
            .map(|i| {
                let body = match i {
                    _ if i % 5 == 0 => "lobby".to_owned(),
                    7 | 9 => "pair".to_owned(),
                    _ => format!("a{i}"),
                };
                put(&format!("k{i:02}"), &body)
            })
            .collect::<Result<Vec<_>>>()?;
        let second = (0..ROWS)
            .map(|i| {
                let body = match i {
                    _ if i % 4 == 0 => "lobby".to_owned(),
                    _ if i % 4 == 1 => format!("a{}", i + 1),
                    _ if i % 6 == 2 => "new pair".to_owned(),
                    _ => format!("b{i}"),
                };
                let key = if i < 8 {
                    format!("k{i:02}")
                } else {
                    format!("n{i:02}")
                };
                put(&key, &body)
            })
            .collect::<Result<Vec<_>>>()?;
        let third = (0..ROWS)
            .map(|i| put(&format!("m{i:02}"), &format!("c{i}")))
            .collect::<Result<Vec<_>>>()?;
        Ok(vec![first, second, third])
    }

    /// Content rows, and records as (key, content id).
    type Stored = (Vec<String>, Vec<(String, i64)>);

    /// Every content row (all its columns), and every record's key and content id.
    fn stored(conn: &Connection) -> rusqlite::Result<Stored> {
        let blobs = conn
            .prepare(
                "SELECT concat_ws(',', id, hex(hash), codec, raw_len, ifnull(stored_len, '-'),
                                  refcount, hex(data), ifnull(dict_id, '-'))
                 FROM blobs ORDER BY id",
            )?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let records = conn
            .prepare("SELECT key, blob_id FROM records ORDER BY key")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok((blobs, records))
    }

    fn deduplicated(outcomes: &[OpOutcome]) -> Vec<bool> {
        outcomes
            .iter()
            .map(|o| {
                matches!(
                    o,
                    OpOutcome::Put {
                        deduplicated: true,
                        ..
                    }
                )
            })
            .collect()
    }

    /// The content rows (ids, counts, bytes) and each put's `deduplicated` that runs leave
    /// are the ones their puts leave one by one, with deduplication and without.
    #[test]
    fn a_runs_contents_are_those_its_puts_one_by_one_acquire() -> TestResult {
        for deduplicate in [true, false] {
            let mut run = Connection::open_in_memory()?;
            let mut single = Connection::open_in_memory()?;
            schema::migrate(&mut run)?;
            schema::migrate(&mut single)?;
            for (i, batch) in runs()?.into_iter().enumerate() {
                assert!(super::super::opens_run(&batch));
                let outcomes = group::apply(&mut run, std::slice::from_ref(&batch), deduplicate)?;
                let ran = outcomes.into_iter().next().ok_or("no outcome")??;
                let units: Vec<Vec<WriteOp>> = batch.into_iter().map(|op| vec![op]).collect();
                let mut one_by_one = Vec::new();
                for outcome in group::apply(&mut single, &units, deduplicate)? {
                    one_by_one.extend(outcome?);
                }
                assert_eq!(deduplicated(&ran), deduplicated(&one_by_one));
                // The first two runs share contents (with deduplication), the third not.
                let shares = deduplicated(&ran).iter().filter(|d| **d).count();
                assert_eq!(shares > 0, deduplicate && i < 2, "run {i}: {shares} shared");
                assert_eq!(
                    stored(&run)?,
                    stored(&single)?,
                    "deduplicate: {deduplicate}"
                );
            }
        }
        Ok(())
    }

    /// A stored content whose length differs from the put's under the same hash is
    /// corruption, as it is for a single put.
    #[test]
    fn a_stored_content_of_another_length_is_corruption() -> TestResult {
        let mut conn = Connection::open_in_memory()?;
        schema::migrate(&mut conn)?;
        let batch = runs()?.remove(2);
        let Some(WriteOp::Put { value, .. }) = batch.get(5) else {
            return Err("no put".into());
        };
        conn.execute(
            "INSERT INTO blobs (hash, codec, raw_len, refcount, data) VALUES (?1, 0, 999, 1, x'00')",
            [&value.hash[..]],
        )?;
        let outcomes = group::apply(&mut conn, std::slice::from_ref(&batch), true)?;
        let err = outcomes.into_iter().next().ok_or("no outcome")?.err();
        assert!(
            matches!(err, Some(StorageError::Corruption { .. })),
            "{err:?}"
        );
        Ok(())
    }
}

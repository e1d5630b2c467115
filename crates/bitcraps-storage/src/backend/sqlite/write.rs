//! The write path: the operations of group-committed units (`group.rs` runs the
//! transaction and the savepoints), with exact blob reference counts maintained in the same transaction as the records. Versions come from the
//! version clock (`feed.rs`: since schema version 12 the newest change's version, or the
//! 'version' row of `change_clock` when higher), read once at the start of the transaction;
//! at its end the row is written only when the logged changes do not carry the clock.

use rusqlite::{Connection, OptionalExtension, params};

use super::db_err;
use super::feed;
use super::held::{Held, Which};
use super::prefix::delete_prefix;
use super::settings::{SettingsCache, set_setting, usage};
use crate::backend::{OpOutcome, WriteOp};
use crate::error::{Result, StorageError};
use crate::feed::{ChangeKind, NewChange};
use crate::quota;
use crate::value::EncodedValue;
use crate::version::{Expect, Version};

/// The version clock of one transaction: the last version handed out (read with the log's
/// head at the start of the transaction: `feed::tail`).
pub(super) struct Clock(pub(super) i64);

impl Clock {
    pub(super) fn next(&mut self) -> Result<(i64, Version)> {
        let next = self.0.checked_add(1).ok_or_else(|| {
            StorageError::corruption("the version clock", "the clock is at its maximum")
        })?;
        let version = Version::from_db(next).ok_or_else(|| {
            StorageError::corruption("the version clock", format!("invalid clock {next}"))
        })?;
        self.0 = next;
        Ok((next, version))
    }

    /// The version a put gives its record: `keep` when it is newer than the key's `current`
    /// one (the clock then moves past it), else the next one.
    fn for_put(&mut self, keep: Option<Version>, current: Option<i64>) -> Result<(i64, Version)> {
        if let Some(v) = keep
            && let Ok(n) = i64::try_from(v.get())
            && current.is_none_or(|c| n > c)
        {
            self.0 = self.0.max(n);
            return Ok((n, v));
        }
        self.next()
    }
}

/// One unit's operations, then its quotas: the usage of every collection it puts into that
/// has a quota, measured before and after (`quota.rs`). An error rolls the unit back.
pub(super) fn apply_unit(
    held: &mut Held<'_>,
    unit: &[WriteOp],
    deduplicate: bool,
    clock: &mut Clock,
    changes: &mut Vec<NewChange>,
    settings: &mut SettingsCache,
) -> Result<Vec<OpOutcome>> {
    let conn = held.conn();
    let now = quota::unit_now(unit);
    let mut guarded = Vec::new();
    for collection in quota::put_collections(unit) {
        if let Some(q) = settings.quota(conn, collection)? {
            guarded.push((collection, q, usage(conn, collection, now)?));
        }
    }
    // A run of puts into distinct keys (a batch's) inserts its records in one statement
    // (`run.rs`); the rest goes one operation at a time.
    let mut outcomes = Vec::with_capacity(unit.len());
    let mut rest = unit;
    while let Some(op) = rest.first() {
        let run = if super::run::opens_run(rest) {
            super::run::ROWS
        } else {
            0
        };
        match rest.split_at_checked(run) {
            Some((ops, later)) if run > 0 => {
                super::run::apply(
                    held,
                    ops,
                    deduplicate,
                    clock,
                    changes,
                    settings,
                    &mut outcomes,
                )?;
                rest = later;
            }
            _ => {
                outcomes.push(apply_op(held, op, deduplicate, clock, changes, settings)?);
                rest = rest.get(1..).unwrap_or_default();
            }
        }
    }
    for (collection, q, before) in guarded {
        let after = usage(conn, collection, now)?;
        if let Some(warning) = q.check(collection, before, after)? {
            quota::mark_warning(unit, &mut outcomes, collection, warning);
        }
    }
    Ok(outcomes)
}

fn apply_op(
    held: &mut Held<'_>,
    op: &WriteOp,
    deduplicate: bool,
    clock: &mut Clock,
    changes: &mut Vec<NewChange>,
    settings: &mut SettingsCache,
) -> Result<OpOutcome> {
    let conn = held.conn();
    match op {
        WriteOp::Put {
            collection,
            key,
            value,
            now_ms,
            keep_version,
            expires_ms,
        } => {
            let placed = |expires_ms| Placed {
                collection,
                key,
                now_ms: *now_ms,
                expires_ms,
            };
            if keep_version.is_none() && !value.delta {
                let expires_ms = match expires_ms {
                    Some(at) => Some(*at),
                    None => settings
                        .default_ttl(conn, collection)?
                        .map(|ttl| now_ms.saturating_add(ttl)),
                };
                let version = clock.next()?;
                return put_new_first(
                    held,
                    placed(expires_ms),
                    value,
                    deduplicate,
                    version,
                    changes,
                );
            }
            // A record that expired is gone: the put is the write of an absent key.
            purge_expired(conn, collection, key, *now_ms, changes)?;
            let expires_ms = match expires_ms {
                Some(at) => Some(*at),
                None => settings
                    .default_ttl(conn, collection)?
                    .map(|ttl| now_ms.saturating_add(ttl)),
            };
            let (stored, version) = match keep_version {
                None => clock.next()?,
                Some(_) => {
                    let current = current_version(conn, collection, key, *now_ms)?;
                    clock.for_put(*keep_version, current)?
                }
            };
            changes.push(NewChange::new(
                collection,
                key,
                ChangeKind::Put,
                stored,
                *now_ms,
            ));
            put(
                held,
                placed(expires_ms),
                value,
                deduplicate,
                (stored, version),
            )
        }
        WriteOp::Delete {
            collection,
            key,
            now_ms,
        } => {
            purge_expired(conn, collection, key, *now_ms, changes)?;
            let removed = delete(conn, collection, key)?;
            if let Some(version) = removed {
                changes.push(NewChange::new(
                    collection,
                    key,
                    ChangeKind::Delete,
                    version,
                    *now_ms,
                ));
            }
            Ok(OpOutcome::Delete {
                existed: removed.is_some(),
            })
        }
        WriteOp::Check {
            collection,
            key,
            expect,
            now_ms,
        } => {
            check(conn, collection, key, *expect, *now_ms)?;
            Ok(OpOutcome::Check)
        }
        WriteOp::SweepExpired { now_ms, limit } => {
            let removed = sweep_expired(conn, *now_ms, *limit, changes)?;
            Ok(OpOutcome::Swept { removed })
        }
        WriteOp::PruneChanges { before_ms, limit } => {
            let (removed, pruned_through) = feed::prune(conn, *before_ms, *limit)?;
            Ok(OpOutcome::Pruned {
                removed,
                pruned_through,
            })
        }
        WriteOp::Setting {
            collection,
            name,
            value,
        } => {
            set_setting(conn, collection, name, *value)?;
            settings.forget();
            Ok(OpOutcome::Setting)
        }
        WriteOp::DeletePrefix {
            collection,
            prefix,
            now_ms,
        } => {
            let deleted = delete_prefix(conn, collection, prefix, *now_ms, changes)?;
            Ok(OpOutcome::DeletePrefix { deleted })
        }
        WriteOp::PutDictionary {
            collection,
            data,
            now_ms,
        } => {
            conn.prepare_cached(
                "INSERT INTO dictionaries (collection, created_at, data) VALUES (?1, ?2, ?3)",
            )
            .and_then(|mut s| s.execute(params![collection, now_ms, &data[..]]))
            .map_err(db_err("storing a dictionary"))?;
            Ok(OpOutcome::Dictionary {
                id: conn.last_insert_rowid(),
            })
        }
        WriteOp::Touch {
            collection,
            key,
            count,
            last_ms,
        } => {
            let count = i64::try_from(*count).unwrap_or(i64::MAX);
            conn.prepare_cached(
                "UPDATE records SET access_count = access_count + ?3,
                        last_accessed = max(coalesce(last_accessed, 0), ?4)
                 WHERE collection = ?1 AND key = ?2",
            )
            .and_then(|mut s| s.execute(params![collection, key, count, last_ms]))
            .map_err(db_err("recording access statistics"))?;
            Ok(OpOutcome::Touch)
        }
    }
}

/// The version of the record at `collection/key` unless it is absent or expired at `now_ms`.
fn current_version(
    conn: &Connection,
    collection: &str,
    key: &str,
    now_ms: i64,
) -> Result<Option<i64>> {
    conn.prepare_cached(
        "SELECT version FROM records WHERE collection = ?1 AND key = ?2
           AND (expires_at IS NULL OR expires_at > ?3)",
    )
    .and_then(|mut s| {
        s.query_row(params![collection, key, now_ms], |r| r.get(0))
            .optional()
    })
    .map_err(db_err("reading a record's version"))
}

/// Fails with [`StorageError::Conflict`] unless the record's state satisfies `expect` (a
/// record expired at `now_ms` is absent).
fn check(
    conn: &Connection,
    collection: &str,
    key: &str,
    expect: Expect,
    now_ms: i64,
) -> Result<()> {
    if expect == Expect::Any {
        return Ok(());
    }
    let actual = current_version(conn, collection, key, now_ms)?
        .map(|v| Version::stored(collection, key, v))
        .transpose()?;
    expect.check(collection, key, actual)
}

fn current_blob(conn: &Connection, collection: &str, key: &str) -> Result<Option<i64>> {
    conn.prepare_cached("SELECT blob_id FROM records WHERE collection = ?1 AND key = ?2")
        .and_then(|mut s| {
            s.query_row(params![collection, key], |r| r.get(0))
                .optional()
        })
        .map_err(db_err("looking up a record"))
}

/// The blob holding content with hash `?1`. The index holds the hash's first 4 bytes
/// (schema version 14; 8 from version 3); the full hash is compared in the row, so blobs
/// that merely share a prefix never match. Deltas are not in the index (schema version 11) and never shared:
/// a delta is its key's own, written over by the next version (`delta.rs`).
pub(super) const FIND_BLOB_BY_HASH: &str = "SELECT id, raw_len FROM blobs
     WHERE substr(hash, 1, 4) = substr(?1, 1, 4) AND hash = ?1 AND codec <> 17 LIMIT 1";

/// A new blob with one reference; `?4`, its `stored_len`, is NULL when it is the bytes'
/// length (schema version 16: readers coalesce).
pub(super) const INSERT_BLOB: &str =
    "INSERT INTO blobs (hash, codec, raw_len, stored_len, refcount, data, dict_id)
     VALUES (?1, ?2, ?3, ?4, 1, ?5, ?6)";

/// Takes a reference to a blob with `value`'s content, inserting it if needed.
/// Returns the blob id and whether the content was already stored.
pub(super) fn acquire_blob(
    held: &mut Held<'_>,
    value: &EncodedValue,
    deduplicate: bool,
) -> Result<(i64, bool)> {
    let conn = held.conn();
    let raw_len = i64::try_from(value.raw_len()).unwrap_or(i64::MAX);
    if deduplicate {
        let existing: Option<(i64, i64)> = held
            .get(Which::FindBlob)
            .and_then(|s| {
                s.query_row(params![&value.hash[..]], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()
            })
            .map_err(db_err("looking up content by hash"))?;
        if let Some((id, stored_len)) = existing {
            if stored_len != raw_len {
                return Err(StorageError::corruption(
                    format!("blob {id}"),
                    format!("same content hash but length {stored_len}, expected {raw_len}"),
                ));
            }
            conn.prepare_cached("UPDATE blobs SET refcount = refcount + 1 WHERE id = ?1")
                .and_then(|mut s| s.execute(params![id]))
                .map_err(db_err("adding a content reference"))?;
            return Ok((id, true));
        }
    }
    // The stored bytes are `value.stored`: their length goes without saying (NULL).
    let stored_len: Option<i64> = None;
    held.get(Which::InsertBlob)
        .and_then(|s| {
            s.execute(params![
                &value.hash[..],
                value.codec_id(),
                raw_len,
                stored_len,
                &value.stored[..],
                value.dict_id
            ])
        })
        .map_err(db_err("storing content"))?;
    let id = conn.last_insert_rowid();
    if value.is_chunked() {
        super::chunks::acquire(conn, id, value, deduplicate)?;
    }
    Ok((id, false))
}

/// Drops one reference to a blob, deleting the blob when none remain. The blob of a
/// replaced document is usually that record's alone: deleting it when it holds the last
/// reference is then the one statement (the decrement follows only when it does not).
pub(super) fn release_blob(conn: &Connection, id: i64) -> Result<()> {
    let deleted: Option<i64> = conn
        .prepare_cached("DELETE FROM blobs WHERE id = ?1 AND refcount <= 1 RETURNING codec")
        .and_then(|mut s| s.query_row(params![id], |r| r.get(0)).optional())
        .map_err(db_err("deleting unreferenced content"))?;
    if deleted.is_none() {
        conn.prepare_cached("UPDATE blobs SET refcount = refcount - 1 WHERE id = ?1")
            .and_then(|mut s| s.execute(params![id]))
            .map_err(db_err("dropping a content reference"))?;
    }
    match deleted {
        Some(codec) if crate::chunk::is_chunked(codec) => super::chunks::release(conn, id),
        _ => Ok(()),
    }
}

/// Where and when a put writes.
pub(super) struct Placed<'a> {
    pub(super) collection: &'a str,
    pub(super) key: &'a str,
    pub(super) now_ms: i64,
    pub(super) expires_ms: Option<i64>,
}

/// A new record, unless its key is present. `updated_at` stays NULL: it equals `created_at`
/// (schema version 15).
pub(super) const INSERT_RECORD: &str = "INSERT INTO records
         (collection, key, blob_id, created_at, version, expires_at)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
     ON CONFLICT (collection, key) DO NOTHING";

/// Inserts the record unless its key is present; returns whether it did.
fn insert_record(held: &mut Held<'_>, p: &Placed<'_>, blob_id: i64, version: i64) -> Result<bool> {
    let inserted = held
        .get(Which::InsertRecord)
        .and_then(|s| {
            s.execute(params![
                p.collection,
                p.key,
                blob_id,
                p.now_ms,
                version,
                p.expires_ms
            ])
        })
        .map_err(db_err("writing a record"))?;
    Ok(inserted == 1)
}

/// Points the present record at `blob_id` with a new version (and no inline delta).
fn update_record(conn: &Connection, p: &Placed<'_>, blob_id: i64, version: i64) -> Result<()> {
    conn.prepare_cached(
        "UPDATE records SET blob_id = ?3, updated_at = nullif(?4, created_at), version = ?5,
                expires_at = ?6, delta = NULL
         WHERE collection = ?1 AND key = ?2",
    )
    .and_then(|mut s| {
        s.execute(params![
            p.collection,
            p.key,
            blob_id,
            p.now_ms,
            version,
            p.expires_ms
        ])
    })
    .map_err(db_err("writing a record"))?;
    Ok(())
}

fn neither(p: &Placed<'_>) -> StorageError {
    StorageError::database(
        "writing a record",
        format!("{}/{} neither inserted nor present", p.collection, p.key),
    )
}

/// A put of a whole value with no version to keep, insert first. The common bulk case, a new
/// key, costs the blob's statements and the insert, nothing else: an insert that succeeds
/// proves there was no record, so none had expired (the general path looks for an expired
/// record before every put). Only when the key is present is its row read: expired, it is
/// removed (an `Expire` change) and the put is the insert of an absent key; live, it is
/// replaced. Either way its old blob is released after the new one was acquired, so content
/// the two share is counted, never freed and stored again.
fn put_new_first(
    held: &mut Held<'_>,
    p: Placed<'_>,
    value: &EncodedValue,
    deduplicate: bool,
    (stored_version, version): (i64, Version),
    changes: &mut Vec<NewChange>,
) -> Result<OpOutcome> {
    let (blob_id, deduplicated) = acquire_blob(held, value, deduplicate)?;
    let replaced = if insert_record(held, &p, blob_id, stored_version)? {
        false
    } else {
        settle_conflict(held, &p, blob_id, stored_version, changes)?
    };
    changes.push(NewChange::new(
        p.collection,
        p.key,
        ChangeKind::Put,
        stored_version,
        p.now_ms,
    ));
    Ok(OpOutcome::Put {
        deduplicated,
        replaced,
        version,
        expires_ms: p.expires_ms,
        quota_warning: None,
    })
}

/// The insert of a put's record met a present key: its row is read once. Expired, it is
/// removed (an `Expire` change) and the put's record inserted; live, it is pointed at
/// `blob_id`. Either way its old content is released, after the new one was acquired, so
/// content the two share is counted, never freed and stored again. Returns whether a live
/// record was replaced.
pub(super) fn settle_conflict(
    held: &mut Held<'_>,
    p: &Placed<'_>,
    blob_id: i64,
    stored_version: i64,
    changes: &mut Vec<NewChange>,
) -> Result<bool> {
    let conn = held.conn();
    let (old_blob, old_version, expired): (i64, i64, bool) = conn
        .prepare_cached(
            "SELECT blob_id, version, expires_at IS NOT NULL AND expires_at <= ?3
             FROM records WHERE collection = ?1 AND key = ?2",
        )
        .and_then(|mut s| {
            s.query_row(params![p.collection, p.key, p.now_ms], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()
        })
        .map_err(db_err("looking up a record"))?
        .ok_or_else(|| neither(p))?;
    let replaced = if expired {
        conn.prepare_cached("DELETE FROM records WHERE collection = ?1 AND key = ?2")
            .and_then(|mut s| s.execute(params![p.collection, p.key]))
            .map_err(db_err("removing an expired record"))?;
        changes.push(NewChange::new(
            p.collection,
            p.key,
            ChangeKind::Expire,
            old_version,
            p.now_ms,
        ));
        if !insert_record(held, p, blob_id, stored_version)? {
            return Err(neither(p));
        }
        false
    } else {
        update_record(conn, p, blob_id, stored_version)?;
        true
    };
    release_blob(conn, old_blob)?;
    Ok(replaced)
}

/// Writes a record after the general path's look for an expired one: a delta kept in the
/// record's row or written over its predecessor, or a new blob; when the key exists, its old
/// blob is read and released.
fn put(
    held: &mut Held<'_>,
    p: Placed<'_>,
    value: &EncodedValue,
    deduplicate: bool,
    (stored_version, version): (i64, Version),
) -> Result<OpOutcome> {
    let conn = held.conn();
    let stamp = super::inline::Stamp {
        now_ms: p.now_ms,
        version: stored_version,
        expires_ms: p.expires_ms,
    };
    // A delta (kept in the record's row or as a blob of its own) replaces the record.
    let delta_written = || {
        Ok(OpOutcome::Put {
            deduplicated: false,
            replaced: true,
            version,
            expires_ms: p.expires_ms,
            quota_warning: None,
        })
    };
    if super::inline::write(held, p.collection, p.key, value, deduplicate, &stamp)? {
        return delta_written();
    }
    if super::delta::write_over(held, p.collection, p.key, value, deduplicate)?.is_some() {
        conn.prepare_cached(
            "UPDATE records SET updated_at = nullif(?3, created_at), version = ?4,
                    expires_at = ?5
             WHERE collection = ?1 AND key = ?2",
        )
        .and_then(|mut s| {
            s.execute(params![
                p.collection,
                p.key,
                p.now_ms,
                stored_version,
                p.expires_ms
            ])
        })
        .map_err(db_err("writing a record"))?;
        return delta_written();
    }
    let (blob_id, deduplicated) = acquire_blob(held, value, deduplicate)?;
    let inserted = insert_record(held, &p, blob_id, stored_version)?;
    if !inserted {
        let old = current_blob(conn, p.collection, p.key)?.ok_or_else(|| neither(&p))?;
        update_record(conn, &p, blob_id, stored_version)?;
        release_blob(conn, old)?;
    }
    Ok(OpOutcome::Put {
        deduplicated,
        replaced: !inserted,
        version,
        expires_ms: p.expires_ms,
        quota_warning: None,
    })
}

/// Removes the record at `collection/key` if it expired by `now_ms`, releasing its blob, so
/// the write that follows sees an absent key.
///
/// Every delete and every put on the general path (a kept version, a delta) runs this, and
/// almost never finds an expired record: a point `SELECT` first, and the `DELETE` only for a
/// record found expired (other puts insert first: `put_new_first`). (A `DELETE …
/// RETURNING` that matches nothing still opens a write cursor and an ephemeral table for
/// its results: ~19 k instructions per write, against ~4 k for the read.)
fn purge_expired(
    conn: &Connection,
    collection: &str,
    key: &str,
    now_ms: i64,
    changes: &mut Vec<NewChange>,
) -> Result<()> {
    let old: Option<(i64, i64)> = conn
        .prepare_cached(
            "SELECT blob_id, version FROM records WHERE collection = ?1 AND key = ?2
               AND expires_at IS NOT NULL AND expires_at <= ?3",
        )
        .and_then(|mut s| {
            s.query_row(params![collection, key, now_ms], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()
        })
        .map_err(db_err("looking for an expired record"))?;
    match old {
        Some((id, version)) => {
            // The writer holds the write transaction: the row read above is still there.
            conn.prepare_cached("DELETE FROM records WHERE collection = ?1 AND key = ?2")
                .and_then(|mut s| s.execute(params![collection, key]))
                .map_err(db_err("removing an expired record"))?;
            changes.push(NewChange::new(
                collection,
                key,
                ChangeKind::Expire,
                version,
                now_ms,
            ));
            release_blob(conn, id)
        }
        None => Ok(()),
    }
}

/// Removes up to `limit` records expired by `now_ms`, earliest expiry first, releasing their
/// blobs; returns them in collection and key order.
fn sweep_expired(
    conn: &Connection,
    now_ms: i64,
    limit: usize,
    changes: &mut Vec<NewChange>,
) -> Result<Vec<(String, String)>> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut rows: Vec<(String, String, (i64, i64))> = conn
        .prepare_cached(
            "DELETE FROM records WHERE (collection, key) IN (
                 SELECT collection, key FROM records
                 WHERE expires_at IS NOT NULL AND expires_at <= ?1
                 ORDER BY expires_at LIMIT ?2)
             RETURNING collection, key, blob_id, version",
        )
        .and_then(|mut s| {
            s.query_map(params![now_ms, limit], |r| {
                Ok((r.get(0)?, r.get(1)?, (r.get(2)?, r.get(3)?)))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(db_err("sweeping expired records"))?;
    rows.sort();
    let mut removed = Vec::with_capacity(rows.len());
    for (collection, key, (blob_id, version)) in rows {
        release_blob(conn, blob_id)?;
        changes.push(NewChange::new(
            &collection,
            &key,
            ChangeKind::Expire,
            version,
            now_ms,
        ));
        removed.push((collection, key));
    }
    Ok(removed)
}

/// Deletes a record; returns the version it had, if it existed.
fn delete(conn: &Connection, collection: &str, key: &str) -> Result<Option<i64>> {
    let old: Option<(i64, i64)> = conn
        .prepare_cached(
            "DELETE FROM records WHERE collection = ?1 AND key = ?2 RETURNING blob_id, version",
        )
        .and_then(|mut s| {
            s.query_row(params![collection, key], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
        })
        .map_err(db_err("deleting a record"))?;
    match old {
        Some((id, version)) => {
            release_blob(conn, id)?;
            Ok(Some(version))
        }
        None => Ok(None),
    }
}

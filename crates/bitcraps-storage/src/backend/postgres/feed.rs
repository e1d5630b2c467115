//! The change log on PostgreSQL (`feed/`), written by many nodes at once.
//!
//! # Numbering in commit order
//!
//! A transaction numbers its changes as its last statement before `COMMIT`:
//! `UPDATE change_clock SET value = value + n WHERE name = 'last' RETURNING value`. The
//! update's row lock is held until the transaction ends, and PostgreSQL makes a commit
//! visible before it releases the commit's locks; so a second transaction numbering its
//! changes waits on the first's lock, reads the first's committed value, and commits after
//! it. Seq order is therefore commit order on every node, and a reader that sees seq `n`
//! sees every seq below it: following the log by seq never skips a change that commits
//! later, and never needs a visibility horizon. A transaction that fails rolls its numbers
//! back with it, so the log is dense.
//!
//! The cost: the numbering and the commit's WAL flush of concurrent write transactions are
//! serialized across nodes (each node's group commit still puts many writes in one
//! transaction). Nothing is locked after the clock, so it adds no deadlock.
//!
//! Retention keeps the highest seq it removed in its own row ('pruned'), so it never waits
//! on, nor blocks, the numbering.

use deadpool_postgres::{Client, Transaction};

use super::db_err;
use super::plan::Logged;
use super::write::{Fail, cached, db};
use crate::error::{Result, StorageError};
use crate::feed::{Change, ChangeKind, NewChange, prunable_prefix};

/// Numbers the changes and appends them, and notifies every node listening (`listen.rs`;
/// delivered at the commit), in one statement: the clock's update, whose row lock is held
/// to the commit, an insert numbered from it, and the notification of the last seq.
pub(super) const APPEND: &str = "WITH clock AS (
         UPDATE change_clock SET value = value + $1 WHERE name = 'last' RETURNING value),
     logged AS (
         INSERT INTO changes (seq, collection, key, kind, version, at)
         SELECT clock.value - $1 + t.n, t.c, t.k, t.kind, t.v, t.at
         FROM clock, unnest($2::text[], $3::text[], $4::smallint[], $5::bigint[],
                            $6::bigint[]) WITH ORDINALITY AS t(c, k, kind, v, at, n))
     SELECT pg_notify($7, value::text) FROM clock";

/// The parameters of [`APPEND`] for a transaction's changes, in order.
pub(super) struct Log<'a> {
    n: i64,
    collections: Vec<&'a str>,
    keys: Vec<&'a str>,
    kinds: Vec<i16>,
    versions: Vec<i64>,
    ats: Vec<i64>,
    channel: String,
}

impl<'a> Log<'a> {
    /// `None` when there is nothing to log (the transaction leaves the clock alone).
    pub(super) fn new(scope: &str, changes: &'a [NewChange]) -> Option<Self> {
        Self::of(
            scope,
            changes.iter().map(|c| {
                (
                    (c.collection.as_str(), c.key.as_str()),
                    c.kind,
                    c.version,
                    c.at_ms,
                )
            }),
        )
    }

    /// [`Log::new`] of a group's changes (`plan.rs`), whose keys the units hold.
    pub(super) fn of_plan(scope: &str, changes: &[Logged<'a>]) -> Option<Self> {
        Self::of(
            scope,
            changes.iter().map(|c| (c.key, c.kind, c.version, c.at_ms)),
        )
    }

    fn of<I>(scope: &str, changes: I) -> Option<Self>
    where
        I: ExactSizeIterator<Item = ((&'a str, &'a str), ChangeKind, i64, i64)>,
    {
        let n = changes.len();
        if n == 0 {
            return None;
        }
        let mut log = Log {
            n: i64::try_from(n).unwrap_or(i64::MAX),
            collections: Vec::with_capacity(n),
            keys: Vec::with_capacity(n),
            kinds: Vec::with_capacity(n),
            versions: Vec::with_capacity(n),
            ats: Vec::with_capacity(n),
            channel: super::listen::channel(scope),
        };
        for ((collection, key), kind, version, at_ms) in changes {
            log.collections.push(collection);
            log.keys.push(key);
            log.kinds.push(i16::try_from(kind.code()).unwrap_or(0));
            log.versions.push(version);
            log.ats.push(at_ms);
        }
        Some(log)
    }

    pub(super) fn params(&self) -> Vec<&(dyn tokio_postgres::types::ToSql + Sync)> {
        vec![
            &self.n,
            &self.collections,
            &self.keys,
            &self.kinds,
            &self.versions,
            &self.ats,
            &self.channel,
        ]
    }
}

/// Numbers `changes` and appends them (the transaction's last statement).
pub(super) async fn append(
    tx: &Transaction<'_>,
    scope: &str,
    changes: &[NewChange],
) -> Result<(), Fail> {
    let Some(log) = Log::new(scope, changes) else {
        return Ok(());
    };
    tx.execute(&cached(tx, APPEND).await?, &log.params())
        .await
        .map_err(db("appending to the change log"))?;
    Ok(())
}

/// Logs a crypto-shred of `collection` (before its records are deleted, in the same
/// transaction, which holds the store's write lock exclusively): a delete for every record,
/// an expire for one that had expired by `now_ms`, numbered in key order from the clock.
pub(super) async fn log_shred(tx: &Transaction<'_>, collection: &str, now_ms: i64) -> Result<()> {
    let err = db_err("logging a shred");
    let last: i64 = tx
        .query_one(
            "UPDATE change_clock SET value = value +
                 (SELECT count(*) FROM records WHERE collection = $1)
             WHERE name = 'last' RETURNING value",
            &[&collection],
        )
        .await
        .and_then(|r| r.try_get(0))
        .map_err(&err)?;
    tx.execute(
        "INSERT INTO changes (seq, collection, key, kind, version, at)
         SELECT $3 - count(*) OVER () + row_number() OVER (ORDER BY key), collection, key,
                CASE WHEN expires_at IS NOT NULL AND expires_at <= $2 THEN 3 ELSE 2 END,
                version, $2
         FROM records WHERE collection = $1",
        &[&collection, &now_ms, &last],
    )
    .await
    .map_err(&err)?;
    Ok(())
}

/// Removes up to `limit` of the oldest changes written before `before_ms` (a prefix of the
/// log); returns how many and the highest seq removed so far.
pub(super) async fn prune(
    tx: &Transaction<'_>,
    before_ms: i64,
    limit: usize,
) -> Result<(u64, u64), Fail> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows: Vec<(i64, i64)> = tx
        .query(
            &cached(tx, "SELECT seq, at FROM changes ORDER BY seq LIMIT $1").await?,
            &[&limit],
        )
        .await
        .and_then(|rows| {
            rows.iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .collect()
        })
        .map_err(db("reading the oldest changes"))?;
    let mut removed = 0u64;
    if let Some(through) = prunable_prefix(&rows, before_ms) {
        removed = tx
            .execute(
                &cached(tx, "DELETE FROM changes WHERE seq <= $1").await?,
                &[&through],
            )
            .await
            .map_err(db("removing old changes"))?;
        tx.execute(
            &cached(
                tx,
                "UPDATE change_clock SET value = greatest(value, $1) WHERE name = 'pruned'",
            )
            .await?,
            &[&through],
        )
        .await
        .map_err(db("recording the retention sweep"))?;
    }
    let pruned: i64 = tx
        .query_one(
            &cached(tx, "SELECT value FROM change_clock WHERE name = 'pruned'").await?,
            &[],
        )
        .await
        .and_then(|r| r.try_get(0))
        .map_err(db("reading the retention sweep"))?;
    Ok((removed, u64::try_from(pruned).unwrap_or(0)))
}

/// Up to `limit` changes above `after`, then the retention check (read after the rows: the
/// mark only grows, so a mark at or below `after` then was at or below it when the rows were
/// read, and no change above `after` was missing).
pub(super) async fn since(client: &Client, after: u64, limit: usize) -> Result<Vec<Change>> {
    let from = i64::try_from(after).unwrap_or(i64::MAX);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = client
        .query(
            "SELECT seq, collection, key, kind::bigint, version, at FROM changes
             WHERE seq > $1 ORDER BY seq LIMIT $2",
            &[&from, &limit],
        )
        .await
        .map_err(db_err("reading the change log"))?;
    let pruned = clock(client, "pruned").await?;
    crate::feed::check_retained(after, pruned)?;
    rows.iter()
        .map(|r| {
            let err = db_err("reading the change log");
            Change::from_row(
                r.try_get(0).map_err(&err)?,
                r.try_get(1).map_err(&err)?,
                r.try_get(2).map_err(&err)?,
                (
                    r.try_get(3).map_err(&err)?,
                    r.try_get(4).map_err(&err)?,
                    r.try_get(5).map_err(&err)?,
                ),
            )
        })
        .collect()
}

/// The last seq handed out (committed: the clock's row is only ever updated by the
/// transaction that commits those changes).
pub(super) async fn head(client: &Client) -> Result<u64> {
    let last = clock(client, "last").await?;
    u64::try_from(last)
        .map_err(|_| StorageError::corruption("the change clock", format!("invalid seq {last}")))
}

async fn clock(client: &Client, name: &str) -> Result<i64> {
    client
        .query_opt("SELECT value FROM change_clock WHERE name = $1", &[&name])
        .await
        .map_err(db_err("reading the change clock"))?
        .map(|r| r.try_get(0))
        .transpose()
        .map_err(db_err("reading the change clock"))?
        .ok_or_else(|| StorageError::corruption("the change clock", format!("no '{name}' row")))
}

//! The write path: exact reference counts while many nodes write at once.
//!
//! Each `apply` transaction first takes transaction-scoped advisory locks on every
//! (collection, key) its batch touches, deduplicated and sorted; then reads the current blobs of
//! those keys; then locks every content hash involved (new values' and current blobs'), sorted,
//! in a second lock space. Only then does it run the units. With every key and hash locked,
//! find-or-insert of a blob by hash and the decrement/delete at zero cannot race with another
//! node. Every transaction takes keys before hashes and each set in ascending order, so the
//! locks cannot deadlock; a deadlock or serialization failure from anywhere else (a concurrent
//! repair's table locks) retries the whole transaction a bounded number of times.
//!
//! Before any of those, every transaction takes the store's write lock: shared when it will
//! take fine-grained locks, exclusive (and then no others) when it would need more than
//! `MAX_FINE_LOCKS` (in `locks.rs`) of them — advisory locks live in the server's shared lock table, which
//! a group of bulk batches would otherwise exhaust. Everyone takes it first, so it cannot
//! deadlock either.

use std::collections::BTreeSet;
use std::time::Duration;

use deadpool_postgres::{Client, Pool, Transaction};

use super::feed;
use super::group;
use super::lifecycle::{default_ttl, purge_expired, set_setting, sweep_expired};
use super::locks::{MAX_FINE_LOCKS, STORE_LOCK_SPACE, lock_fine, store_lock, touched_key};
use super::prefix::delete_prefix;
use super::quota as pg_quota;
use super::shredded;
use super::{connect, is_retryable};
use crate::backend::{OpOutcome, WriteOp, WriteUnit};
use crate::error::{Result, StorageError};
use crate::feed::{ChangeKind, NewChange};
use crate::quota;
use crate::value::EncodedValue;
use crate::version::{Expect, Version};

/// Attempts of one `apply` transaction before a deadlock/serialization failure is reported.
const MAX_ATTEMPTS: u32 = 8;
/// Backoff after the first failed attempt; doubles each time.
const FIRST_BACKOFF: Duration = Duration::from_millis(5);

/// A failure inside the transaction: a driver error (maybe worth retrying) or a final one.
pub(super) enum Fail {
    Db(&'static str, tokio_postgres::Error),
    Final(StorageError),
}

impl Fail {
    pub(super) fn retryable(&self) -> bool {
        matches!(self, Fail::Db(_, e) if is_retryable(e))
    }

    fn lock_table_full(&self) -> bool {
        matches!(self, Fail::Db(_, e)
            if e.code() == Some(&tokio_postgres::error::SqlState::OUT_OF_MEMORY))
    }

    pub(super) fn into_error(self) -> StorageError {
        match self {
            Fail::Db(context, e) => StorageError::database(context, e),
            Fail::Final(e) => e,
        }
    }
}

impl From<StorageError> for Fail {
    fn from(e: StorageError) -> Self {
        Fail::Final(e)
    }
}

pub(super) fn db(context: &'static str) -> impl Fn(tokio_postgres::Error) -> Fail {
    move |e| Fail::Db(context, e)
}

type UnitResults = Vec<Result<Vec<OpOutcome>>>;

/// How a store writes.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The store's schema, folded into every advisory lock id.
    pub scope: String,
    /// Share identical content between records.
    pub deduplicate: bool,
    /// Wait for the server's WAL flush on commit (`synchronous_commit` as configured); when
    /// false, `synchronous_commit = off` for write transactions.
    pub synchronous: bool,
}

/// Applies `units` in one transaction; see [`Backend::apply`](crate::backend::Backend::apply).
pub async fn apply(pool: &Pool, settings: &Settings, units: &[WriteUnit]) -> Result<UnitResults> {
    let mut retry = Retry::default();
    let mut force_exclusive = false;
    // The set-based path (`group.rs`) cannot say which unit a failed statement belonged to;
    // after such a failure the group runs again one statement per operation, where the
    // failing unit rolls back alone.
    let mut one_by_one = !group::eligible(units);
    loop {
        let client = connect(pool).await?;
        // The connection goes back to the pool (or, after a failed set-based attempt, is
        // closed: `group.rs`) before any wait.
        let fail = match attempt(client, settings, units, force_exclusive, one_by_one).await {
            Ok(results) => return Ok(results),
            Err(fail) => fail,
        };
        // The server's lock table is full (other sessions hold many locks): retry holding
        // the store's write lock exclusively, which needs no fine-grained locks.
        if fail.lock_table_full() && !force_exclusive {
            tracing::warn!(
                "PostgreSQL's lock table is full; retrying with the store's exclusive \
                 write lock (consider raising max_locks_per_transaction)"
            );
            force_exclusive = true;
            continue;
        }
        if !one_by_one && matches!(fail, Fail::Db(..)) && !fail.retryable() {
            tracing::debug!("a set-based group write failed; retrying one operation at a time");
            one_by_one = true;
            continue;
        }
        if !retry.again(&fail).await {
            return Err(fail.into_error());
        }
        tracing::debug!("write transaction deadlocked or conflicted; retrying");
    }
}

/// Bounded, doubling waits between the attempts of a transaction that deadlocked or hit a
/// serialization failure (writes here, reference repair in `maintain.rs`).
pub(super) struct Retry {
    attempt: u32,
    backoff: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            attempt: 1,
            backoff: FIRST_BACKOFF,
        }
    }
}

impl Retry {
    /// Waits before another attempt when `fail` is worth retrying and attempts remain;
    /// `false` means give up.
    pub(super) async fn again(&mut self, fail: &Fail) -> bool {
        if !fail.retryable() || self.attempt >= MAX_ATTEMPTS {
            return false;
        }
        tokio::time::sleep(self.backoff).await;
        self.backoff = self.backoff.saturating_mul(2);
        self.attempt += 1;
        true
    }
}

/// The statement for `sql`, prepared once per connection (deadpool keeps a cache per client), so
/// each execution is one round trip instead of a parse and an execute.
pub(super) async fn cached(
    tx: &Transaction<'_>,
    sql: &str,
) -> Result<tokio_postgres::Statement, Fail> {
    tx.prepare_cached(sql)
        .await
        .map_err(db("preparing a statement"))
}

/// Whether `units` take the store's write lock exclusively (and no fine-grained locks).
pub(super) fn exclusive(units: &[WriteUnit], force_exclusive: bool) -> bool {
    // A prefix delete names no keys in advance, so it needs the exclusive lock.
    // Nor can a put that keeps a version move the clock while others draw from it.
    let prefix_delete = units.iter().flatten().any(|op| {
        matches!(
            op,
            WriteOp::DeletePrefix { .. }
                | WriteOp::SweepExpired { .. }
                | WriteOp::Put {
                    keep_version: Some(_),
                    ..
                }
        )
    });
    if force_exclusive || prefix_delete {
        return true;
    }
    // Fine locks needed at most: the keys, the new contents, the keys' current contents.
    // The puts alone may pass the limit, and the distinct keys are at most the operations
    // that name one: the set of keys is built only when those bounds leave the answer open
    // (a bulk batch's thousand puts decide it, as do a durable group's few).
    let (mut puts, mut named) = (0usize, 0usize);
    for op in units.iter().flatten() {
        if matches!(op, WriteOp::Put { .. }) {
            puts += 1;
        }
        if touched_key(op).is_some() {
            named += 1;
        }
    }
    if puts > MAX_FINE_LOCKS {
        return true;
    }
    if named.saturating_mul(2).saturating_add(puts) <= MAX_FINE_LOCKS {
        return false;
    }
    let keys: BTreeSet<(&str, &str)> = units.iter().flatten().filter_map(touched_key).collect();
    keys.len().saturating_mul(2).saturating_add(puts) > MAX_FINE_LOCKS
}

/// One attempt: the set-based path (`group.rs`) unless `one_by_one`, else (or when that path
/// declines the group) one statement per operation.
async fn attempt(
    client: Client,
    settings: &Settings,
    units: &[WriteUnit],
    force_exclusive: bool,
    one_by_one: bool,
) -> Result<UnitResults, Fail> {
    let exclusive = exclusive(units, force_exclusive);
    let mut client = client;
    if !one_by_one {
        match group::run(client, settings, units, exclusive).await? {
            group::Ran::Done(results) => return Ok(results),
            group::Ran::Declined(back) => client = *back,
        }
    }
    apply_once(&mut client, settings, units, exclusive).await
}

async fn apply_once(
    client: &mut Client,
    settings: &Settings,
    units: &[WriteUnit],
    exclusive: bool,
) -> Result<UnitResults, Fail> {
    let (scope, deduplicate) = (settings.scope.as_str(), settings.deduplicate);
    let tx = client
        .transaction()
        .await
        .map_err(db("starting a write transaction"))?;
    if !settings.synchronous {
        tx.batch_execute("SET LOCAL synchronous_commit = off")
            .await
            .map_err(db("relaxing commit durability"))?;
    }
    let keys: BTreeSet<(&str, &str)> = units.iter().flatten().filter_map(touched_key).collect();
    let store = if exclusive {
        "SELECT pg_advisory_xact_lock($1, $2)"
    } else {
        "SELECT pg_advisory_xact_lock_shared($1, $2)"
    };
    tx.execute(store, &[&STORE_LOCK_SPACE, &store_lock(scope)])
        .await
        .map_err(db("taking the store's write lock"))?;
    // Collections with a quota: their locks come after the store's and before the keys'.
    let put_into: BTreeSet<&str> = units
        .iter()
        .flat_map(|u| quota::put_collections(u))
        .collect();
    // After the store's lock: a shred committed by another node is seen whole (`shredded.rs`).
    let sealed_into: BTreeSet<&str> = units
        .iter()
        .flat_map(|u| shredded::sealed_into(u))
        .collect();
    let read = shredded::read(&tx, &put_into, &sealed_into).await?;
    let quotas = pg_quota::quotas(&put_into, &read);
    let shredded = read.shredded;
    if !exclusive {
        pg_quota::lock(&tx, scope, quotas.keys()).await?;
        lock_fine(&tx, scope, units, &keys).await?;
    }

    let mut results = Vec::with_capacity(units.len());
    // The changes of the units that committed, numbered last (`feed.rs`).
    let mut committed = Vec::new();
    for unit in units {
        if let Some(refused) = shredded::refusal(unit, &shredded) {
            results.push(Err(refused));
            continue;
        }
        let mut changes = Vec::new();
        tx.batch_execute("SAVEPOINT unit")
            .await
            .map_err(db("opening a savepoint"))?;
        let mut outcomes = Vec::with_capacity(unit.len());
        let now = quota::unit_now(unit);
        let mut guarded = Vec::new();
        for collection in quota::put_collections(unit) {
            if let Some(q) = quotas.get(collection) {
                guarded.push((collection, *q, pg_quota::usage(&tx, collection, now).await?));
            }
        }
        let mut failed = None;
        for op in unit {
            match apply_op(&tx, op, deduplicate, &mut changes).await {
                Ok(outcome) => outcomes.push(outcome),
                Err(fail) => {
                    failed = Some(fail);
                    break;
                }
            }
        }
        if failed.is_none() {
            for (collection, q, before) in guarded {
                let after = pg_quota::usage(&tx, collection, now).await?;
                match q.check(collection, before, after) {
                    Ok(Some(warning)) => {
                        quota::mark_warning(unit, &mut outcomes, collection, warning);
                    }
                    Ok(None) => {}
                    Err(e) => {
                        failed = Some(Fail::Final(e));
                        break;
                    }
                }
            }
        }
        match failed {
            None => {
                tx.batch_execute("RELEASE SAVEPOINT unit")
                    .await
                    .map_err(db("releasing a savepoint"))?;
                committed.append(&mut changes);
                results.push(Ok(outcomes));
            }
            // A deadlock anywhere dooms the whole attempt: retry it all.
            // So does a full lock table: retried with the exclusive lock.
            Some(fail) if fail.retryable() || fail.lock_table_full() => return Err(fail),
            // Roll this unit back; the others are unaffected.
            Some(fail) => {
                tx.batch_execute("ROLLBACK TO SAVEPOINT unit; RELEASE SAVEPOINT unit")
                    .await
                    .map_err(db("rolling back a savepoint"))?;
                results.push(Err(fail.into_error()));
            }
        }
    }
    // Last: the clock's row lock is held from here to the commit (`feed.rs`).
    feed::append(&tx, scope, &committed).await?;
    tx.commit()
        .await
        .map_err(db("committing a write transaction"))?;
    Ok(results)
}

async fn apply_op(
    tx: &Transaction<'_>,
    op: &WriteOp,
    deduplicate: bool,
    changes: &mut Vec<NewChange>,
) -> Result<OpOutcome, Fail> {
    match op {
        WriteOp::Put {
            collection,
            key,
            value,
            now_ms,
            keep_version,
            expires_ms,
        } => {
            // A record that expired is gone: the put is the write of an absent key.
            purge_expired(tx, collection, key, *now_ms, changes).await?;
            let expires_ms = match expires_ms {
                Some(at) => Some(*at),
                None => default_ttl(tx, collection)
                    .await?
                    .map(|ttl| now_ms.saturating_add(ttl)),
            };
            let outcome = put(
                tx,
                collection,
                key,
                value,
                (*now_ms, *keep_version, expires_ms),
                deduplicate,
            )
            .await?;
            if let OpOutcome::Put { version, .. } = &outcome {
                let stored = i64::try_from(version.get()).unwrap_or(i64::MAX);
                changes.push(NewChange::new(
                    collection,
                    key,
                    ChangeKind::Put,
                    stored,
                    *now_ms,
                ));
            }
            Ok(outcome)
        }
        WriteOp::Delete {
            collection,
            key,
            now_ms,
        } => {
            purge_expired(tx, collection, key, *now_ms, changes).await?;
            let old: Option<(i64, i64)> = tx
                .query_opt(
                    &cached(
                        tx,
                        "DELETE FROM records WHERE collection = $1 AND key = $2
                         RETURNING blob_id, version",
                    )
                    .await?,
                    &[collection, key],
                )
                .await
                .and_then(|r| r.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose())
                .map_err(db("deleting a record"))?;
            if let Some((id, version)) = old {
                release_blob(tx, id).await?;
                changes.push(NewChange::new(
                    collection,
                    key,
                    ChangeKind::Delete,
                    version,
                    *now_ms,
                ));
            }
            Ok(OpOutcome::Delete {
                existed: old.is_some(),
            })
        }
        WriteOp::Check {
            collection,
            key,
            expect,
            now_ms,
        } => {
            check(tx, collection, key, *expect, *now_ms).await?;
            Ok(OpOutcome::Check)
        }
        WriteOp::SweepExpired { now_ms, limit } => {
            let removed = sweep_expired(tx, *now_ms, *limit, changes).await?;
            Ok(OpOutcome::Swept { removed })
        }
        WriteOp::PruneChanges { before_ms, limit } => {
            let (removed, pruned_through) = feed::prune(tx, *before_ms, *limit).await?;
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
            set_setting(tx, collection, name, *value).await?;
            Ok(OpOutcome::Setting)
        }
        WriteOp::DeletePrefix {
            collection,
            prefix,
            now_ms,
        } => {
            let deleted = delete_prefix(tx, collection, prefix, *now_ms, changes).await?;
            Ok(OpOutcome::DeletePrefix { deleted })
        }
        WriteOp::PutDictionary {
            collection,
            data,
            now_ms,
        } => {
            let id: i64 = tx.query_one(&cached(tx, "INSERT INTO dictionaries (collection, created_at, data) VALUES ($1, $2, $3)
                     RETURNING id").await?,
                    &[collection, now_ms, &&data[..]],
                )
                .await
                .and_then(|r| r.try_get(0))
                .map_err(db("storing a dictionary"))?;
            Ok(OpOutcome::Dictionary { id })
        }
        WriteOp::Touch {
            collection,
            key,
            count,
            last_ms,
        } => {
            let count = i64::try_from(*count).unwrap_or(i64::MAX);
            tx.execute(
                &cached(
                    tx,
                    "UPDATE records SET access_count = access_count + $3,
                        last_accessed = greatest(coalesce(last_accessed, 0), $4)
                 WHERE collection = $1 AND key = $2",
                )
                .await?,
                &[collection, key, &count, last_ms],
            )
            .await
            .map_err(db("recording access statistics"))?;
            Ok(OpOutcome::Touch)
        }
    }
}

/// Fails with [`StorageError::Conflict`] unless the record's state satisfies `expect`. The key
/// is locked (`locks.rs`), so the answer holds until the transaction commits.
async fn check(
    tx: &Transaction<'_>,
    collection: &str,
    key: &str,
    expect: Expect,
    now_ms: i64,
) -> Result<(), Fail> {
    if expect == Expect::Any {
        return Ok(());
    }
    let actual: Option<i64> = tx
        .query_opt(
            &cached(
                tx,
                "SELECT version FROM records WHERE collection = $1 AND key = $2
                   AND (expires_at IS NULL OR expires_at > $3)",
            )
            .await?,
            &[&collection, &key, &now_ms],
        )
        .await
        .and_then(|r| r.map(|r| r.try_get(0)).transpose())
        .map_err(db("checking a record's version"))?;
    let actual = actual
        .map(|v| Version::stored(collection, key, v))
        .transpose()?;
    Ok(expect.check(collection, key, actual)?)
}

/// Takes a reference to a blob with `value`'s content, inserting it if needed.
async fn acquire_blob(
    tx: &Transaction<'_>,
    value: &EncodedValue,
    deduplicate: bool,
) -> Result<(i64, bool), Fail> {
    let raw_len = i64::try_from(value.raw_len()).unwrap_or(i64::MAX);
    let hash = &value.hash[..];
    if deduplicate {
        let existing = tx
            .query_opt(
                &cached(tx, "SELECT id, raw_len FROM blobs WHERE hash = $1 LIMIT 1").await?,
                &[&hash],
            )
            .await
            .map_err(db("looking up content by hash"))?;
        if let Some(row) = existing {
            let id: i64 = row.try_get(0).map_err(db("looking up content by hash"))?;
            let stored_len: i64 = row.try_get(1).map_err(db("looking up content by hash"))?;
            if stored_len != raw_len {
                return Err(Fail::Final(StorageError::corruption(
                    format!("blob {id}"),
                    format!("same content hash but length {stored_len}, expected {raw_len}"),
                )));
            }
            tx.execute(
                &cached(tx, "UPDATE blobs SET refcount = refcount + 1 WHERE id = $1").await?,
                &[&id],
            )
            .await
            .map_err(db("adding a content reference"))?;
            return Ok((id, true));
        }
    }
    let stored_len = i64::try_from(value.stored.len()).unwrap_or(i64::MAX);
    let codec = value.codec_id();
    let id: i64 = tx
        .query_one(
            &cached(
                tx,
                "INSERT INTO blobs (hash, codec, raw_len, stored_len, refcount, data, dict_id)
             VALUES ($1, $2, $3, $4, 1, $5, $6) RETURNING id",
            )
            .await?,
            &[
                &hash,
                &codec,
                &raw_len,
                &stored_len,
                &&value.stored[..],
                &value.dict_id,
            ],
        )
        .await
        .and_then(|r| r.try_get(0))
        .map_err(db("storing content"))?;
    if value.is_chunked() {
        super::chunks::acquire(tx, id, value, deduplicate).await?;
    }
    Ok((id, false))
}

/// Drops one reference to a blob, deleting the blob when none remain.
pub(super) async fn release_blob(tx: &Transaction<'_>, id: i64) -> Result<(), Fail> {
    tx.execute(
        &cached(tx, "UPDATE blobs SET refcount = refcount - 1 WHERE id = $1").await?,
        &[&id],
    )
    .await
    .map_err(db("dropping a content reference"))?;
    let deleted = tx
        .query_opt(
            &cached(
                tx,
                "DELETE FROM blobs WHERE id = $1 AND refcount <= 0 RETURNING codec",
            )
            .await?,
            &[&id],
        )
        .await
        .map_err(db("deleting unreferenced content"))?;
    if let Some(row) = deleted {
        let codec: i64 = row
            .try_get(0)
            .map_err(db("deleting unreferenced content"))?;
        if crate::chunk::is_chunked(codec) {
            super::chunks::release(tx, id).await?;
        }
    }
    Ok(())
}

async fn put(
    tx: &Transaction<'_>,
    collection: &str,
    key: &str,
    value: &EncodedValue,
    (now_ms, keep, expires_ms): (i64, Option<Version>, Option<i64>),
    deduplicate: bool,
) -> Result<OpOutcome, Fail> {
    let current: Option<(i64, i64)> = tx
        .query_opt(
            &cached(
                tx,
                "SELECT blob_id, version FROM records WHERE collection = $1 AND key = $2",
            )
            .await?,
            &[&collection, &key],
        )
        .await
        .and_then(|r| r.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose())
        .map_err(db("looking up a record"))?;
    let old = current.map(|(blob, _)| blob);
    let (blob_id, deduplicated) = acquire_blob(tx, value, deduplicate).await?;
    // A kept version when it is newer than the key's; the transaction holds the store's write
    // lock exclusively (see `apply_once`), so no other transaction draws from the clock while
    // it moves past the kept version.
    let kept = keep
        .and_then(|v| i64::try_from(v.get()).ok())
        .filter(|n| current.is_none_or(|(_, c)| *n > c));
    let version: i64 = match kept {
        None => tx
            .query_one(
                &cached(
                    tx,
                    "INSERT INTO records
                 (collection, key, blob_id, created_at, updated_at, version, expires_at)
             VALUES ($1, $2, $3, $4, $4, nextval('version_clock'), $5)
             ON CONFLICT (collection, key) DO UPDATE
             SET blob_id = excluded.blob_id, updated_at = excluded.updated_at,
                 version = excluded.version, expires_at = excluded.expires_at
             RETURNING version",
                )
                .await?,
                &[&collection, &key, &blob_id, &now_ms, &expires_ms],
            )
            .await
            .and_then(|r| r.try_get(0))
            .map_err(db("writing a record"))?,
        Some(n) => {
            tx.execute(
                &cached(
                    tx,
                    "SELECT setval('version_clock', greatest($1, last_value)) FROM version_clock",
                )
                .await?,
                &[&n],
            )
            .await
            .map_err(db("advancing the version clock"))?;
            tx.query_one(
                &cached(
                    tx,
                    "INSERT INTO records
                 (collection, key, blob_id, created_at, updated_at, version, expires_at)
             VALUES ($1, $2, $3, $4, $4, $5, $6)
             ON CONFLICT (collection, key) DO UPDATE
             SET blob_id = excluded.blob_id, updated_at = excluded.updated_at,
                 version = excluded.version, expires_at = excluded.expires_at
             RETURNING version",
                )
                .await?,
                &[&collection, &key, &blob_id, &now_ms, &n, &expires_ms],
            )
            .await
            .and_then(|r| r.try_get(0))
            .map_err(db("writing a record"))?
        }
    };
    if let Some(old) = old {
        release_blob(tx, old).await?;
    }
    Ok(OpOutcome::Put {
        deduplicated,
        replaced: old.is_some(),
        version: Version::stored(collection, key, version)?,
        expires_ms,
        quota_warning: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delete(key: &str) -> WriteOp {
        WriteOp::Delete {
            collection: "c".into(),
            key: key.into(),
            now_ms: 0,
        }
    }

    /// The lock mode counts distinct keys (each key's lock and its current content's),
    /// whether or not the count is short-cut by the operations' bounds.
    #[test]
    fn the_lock_mode_counts_distinct_keys() {
        let limit = MAX_FINE_LOCKS / 2;
        let distinct = |n: usize| -> Vec<WriteUnit> {
            vec![(0..n).map(|i| delete(&format!("k{i}"))).collect()]
        };
        assert!(!exclusive(&distinct(limit), false));
        assert!(exclusive(&distinct(limit + 1), false));
        // Many operations on few keys: past the operations' bound, under the keys'.
        let repeated: Vec<WriteUnit> = vec![
            (0..4 * limit)
                .map(|i| delete(&format!("k{}", i % 3)))
                .collect(),
        ];
        assert!(!exclusive(&repeated, false));
        assert!(exclusive(&repeated, true));
        assert!(exclusive(
            &[vec![WriteOp::DeletePrefix {
                collection: "c".into(),
                prefix: "k".into(),
                now_ms: 0,
            }]],
            false
        ));
    }
}

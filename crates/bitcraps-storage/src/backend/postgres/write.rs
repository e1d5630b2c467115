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
//! [`MAX_FINE_LOCKS`] of them — advisory locks live in the server's shared lock table, which
//! a group of bulk batches would otherwise exhaust. Everyone takes it first, so it cannot
//! deadlock either.

use std::collections::BTreeSet;
use std::time::Duration;

use deadpool_postgres::{Client, Pool, Transaction};

use super::{connect, is_retryable};
use crate::backend::{OpOutcome, WriteOp, WriteUnit};
use crate::error::{Result, StorageError};
use crate::value::EncodedValue;

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
    loop {
        let mut client = connect(pool).await?;
        let fail = match apply_once(&mut client, settings, units, force_exclusive).await {
            Ok(results) => return Ok(results),
            Err(fail) => fail,
        };
        // The connection goes back to the pool while this waits.
        drop(client);
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
async fn cached(tx: &Transaction<'_>, sql: &str) -> Result<tokio_postgres::Statement, Fail> {
    tx.prepare_cached(sql)
        .await
        .map_err(db("preparing a statement"))
}

/// Most fine-grained (key and hash) locks one transaction takes; a larger one takes the
/// store's write lock exclusively instead. PostgreSQL's shared lock table holds about
/// `max_locks_per_transaction` × `max_connections` entries for the whole server (6,400 with
/// the defaults), and running out fails the transaction with "out of shared memory" — which
/// `apply` answers by retrying with the exclusive lock.
/// Several nodes writing at once each hold up to this many, so it is kept well below that.
pub const MAX_FINE_LOCKS: usize = 256;

/// First key of the two-int advisory lock that is the store's write lock (the two-int key
/// space does not overlap the bigint one of key and hash locks). "BCRW".
const STORE_LOCK_SPACE: i32 = 0x4243_5257;

/// Second key of the store's write lock: 31 bits of blake3 of the scope.
fn store_lock(scope: &str) -> i32 {
    let id = lock_id(blake3::hash(scope.as_bytes()).as_bytes()) & i64::from(i32::MAX);
    i32::try_from(id).unwrap_or(0)
}

/// The advisory lock id of a (collection, key) in store `scope` (the schema; advisory locks
/// are database-wide, and stores in other schemas need not wait for each other): 63 bits of
/// blake3, non-negative.
fn key_lock(scope: &str, collection: &str, key: &str) -> i64 {
    let mut hasher = blake3::Hasher::new();
    hasher.update(scope.as_bytes());
    hasher.update(&[0]);
    hasher.update(collection.as_bytes());
    hasher.update(&[0]);
    hasher.update(key.as_bytes());
    lock_id(hasher.finalize().as_bytes()) & i64::MAX
}

/// The advisory lock id of a content hash in store `scope`: 63 bits of blake3, negative (the
/// second space).
fn hash_lock(scope: &str, hash: &[u8]) -> i64 {
    let mut hasher = blake3::Hasher::new();
    hasher.update(scope.as_bytes());
    hasher.update(&[0]);
    hasher.update(hash);
    lock_id(hasher.finalize().as_bytes()) | i64::MIN
}

fn lock_id(bytes: &[u8]) -> i64 {
    let mut id = [0u8; 8];
    for (slot, b) in id.iter_mut().zip(bytes) {
        *slot = *b;
    }
    i64::from_le_bytes(id)
}

/// Takes `ids` (sorted, distinct) one after another in ascending order. `unnest` of an array
/// is a function scan that yields its elements in array order and each row's lock is taken
/// as the row is produced, so one round trip keeps the order.
async fn lock_all(tx: &Transaction<'_>, ids: &BTreeSet<i64>) -> Result<(), Fail> {
    if ids.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = ids.iter().copied().collect();
    tx.execute(
        &cached(
            tx,
            "SELECT pg_advisory_xact_lock(id) FROM unnest($1::bigint[]) AS t(id)",
        )
        .await?,
        &[&ids],
    )
    .await
    .map_err(db("taking write locks"))?;
    Ok(())
}

fn touched_key(op: &WriteOp) -> Option<(&str, &str)> {
    match op {
        WriteOp::Put {
            collection, key, ..
        }
        | WriteOp::Delete { collection, key }
        | WriteOp::Touch {
            collection, key, ..
        } => Some((collection, key)),
        WriteOp::PutDictionary { .. } => None,
    }
}

/// Takes the fine-grained locks: every key, sorted; then every content hash involved (the new
/// values' and the keys' current blobs'), sorted.
async fn lock_fine(
    tx: &Transaction<'_>,
    scope: &str,
    units: &[WriteUnit],
    keys: &BTreeSet<(&str, &str)>,
) -> Result<(), Fail> {
    lock_all(
        tx,
        &keys.iter().map(|(c, k)| key_lock(scope, c, k)).collect(),
    )
    .await?;
    let mut hashes: BTreeSet<i64> = units
        .iter()
        .flatten()
        .filter_map(|op| match op {
            WriteOp::Put { value, .. } => Some(hash_lock(scope, &value.hash[..])),
            _ => None,
        })
        .collect();
    if !keys.is_empty() {
        let (collections, names): (Vec<&str>, Vec<&str>) = keys.iter().copied().unzip();
        let rows = tx
            .query(
                &cached(
                    tx,
                    "SELECT b.hash FROM records r JOIN blobs b ON b.id = r.blob_id
                 JOIN unnest($1::text[], $2::text[]) AS t(c, k)
                   ON r.collection = t.c AND r.key = t.k",
                )
                .await?,
                &[&collections, &names],
            )
            .await
            .map_err(db("reading the current content of written keys"))?;
        for row in rows {
            let hash: Vec<u8> = row.try_get(0).map_err(db("reading a content hash"))?;
            hashes.insert(hash_lock(scope, &hash));
        }
    }
    lock_all(tx, &hashes).await?;
    Ok(())
}

async fn apply_once(
    client: &mut Client,
    settings: &Settings,
    units: &[WriteUnit],
    force_exclusive: bool,
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
    let puts = units
        .iter()
        .flatten()
        .filter(|op| matches!(op, WriteOp::Put { .. }))
        .count();
    // Fine locks needed at most: the keys, the new contents, the keys' current contents.
    let exclusive =
        force_exclusive || keys.len().saturating_mul(2).saturating_add(puts) > MAX_FINE_LOCKS;
    let store = if exclusive {
        "SELECT pg_advisory_xact_lock($1, $2)"
    } else {
        "SELECT pg_advisory_xact_lock_shared($1, $2)"
    };
    tx.execute(store, &[&STORE_LOCK_SPACE, &store_lock(scope)])
        .await
        .map_err(db("taking the store's write lock"))?;
    if !exclusive {
        lock_fine(&tx, scope, units, &keys).await?;
    }

    let mut results = Vec::with_capacity(units.len());
    for unit in units {
        tx.batch_execute("SAVEPOINT unit")
            .await
            .map_err(db("opening a savepoint"))?;
        let mut outcomes = Vec::with_capacity(unit.len());
        let mut failed = None;
        for op in unit {
            match apply_op(&tx, op, deduplicate).await {
                Ok(outcome) => outcomes.push(outcome),
                Err(fail) => {
                    failed = Some(fail);
                    break;
                }
            }
        }
        match failed {
            None => {
                tx.batch_execute("RELEASE SAVEPOINT unit")
                    .await
                    .map_err(db("releasing a savepoint"))?;
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
    tx.commit()
        .await
        .map_err(db("committing a write transaction"))?;
    Ok(results)
}

async fn apply_op(
    tx: &Transaction<'_>,
    op: &WriteOp,
    deduplicate: bool,
) -> Result<OpOutcome, Fail> {
    match op {
        WriteOp::Put {
            collection,
            key,
            value,
            now_ms,
        } => put(tx, collection, key, value, *now_ms, deduplicate).await,
        WriteOp::Delete { collection, key } => {
            let old: Option<i64> = tx
                .query_opt(
                    &cached(
                        tx,
                        "DELETE FROM records WHERE collection = $1 AND key = $2 RETURNING blob_id",
                    )
                    .await?,
                    &[collection, key],
                )
                .await
                .and_then(|r| r.map(|r| r.try_get(0)).transpose())
                .map_err(db("deleting a record"))?;
            if let Some(id) = old {
                release_blob(tx, id).await?;
            }
            Ok(OpOutcome::Delete {
                existed: old.is_some(),
            })
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
    let codec = i64::from(value.codec.id());
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
    Ok((id, false))
}

/// Drops one reference to a blob, deleting the blob when none remain.
async fn release_blob(tx: &Transaction<'_>, id: i64) -> Result<(), Fail> {
    tx.execute(
        &cached(tx, "UPDATE blobs SET refcount = refcount - 1 WHERE id = $1").await?,
        &[&id],
    )
    .await
    .map_err(db("dropping a content reference"))?;
    tx.execute(
        &cached(tx, "DELETE FROM blobs WHERE id = $1 AND refcount <= 0").await?,
        &[&id],
    )
    .await
    .map_err(db("deleting unreferenced content"))?;
    Ok(())
}

async fn put(
    tx: &Transaction<'_>,
    collection: &str,
    key: &str,
    value: &EncodedValue,
    now_ms: i64,
    deduplicate: bool,
) -> Result<OpOutcome, Fail> {
    let old: Option<i64> = tx
        .query_opt(
            &cached(
                tx,
                "SELECT blob_id FROM records WHERE collection = $1 AND key = $2",
            )
            .await?,
            &[&collection, &key],
        )
        .await
        .and_then(|r| r.map(|r| r.try_get(0)).transpose())
        .map_err(db("looking up a record"))?;
    let (blob_id, deduplicated) = acquire_blob(tx, value, deduplicate).await?;
    tx.execute(
        &cached(
            tx,
            "INSERT INTO records (collection, key, blob_id, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $4)
         ON CONFLICT (collection, key) DO UPDATE
         SET blob_id = excluded.blob_id, updated_at = excluded.updated_at",
        )
        .await?,
        &[&collection, &key, &blob_id, &now_ms],
    )
    .await
    .map_err(db("writing a record"))?;
    if let Some(old) = old {
        release_blob(tx, old).await?;
    }
    Ok(OpOutcome::Put {
        deduplicated,
        replaced: old.is_some(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_spaces_do_not_overlap() {
        for key in ["a", "b", "games/g-1", ""] {
            assert!(key_lock("s", "c", key) >= 0);
        }
        assert!(hash_lock("s", &[0u8; 32]) < 0);
        assert!(hash_lock("s", &[0xffu8; 32]) < 0);
        assert_ne!(key_lock("s", "a", "bc"), key_lock("s", "ab", "c"));
        assert_ne!(key_lock("s1", "a", "b"), key_lock("s2", "a", "b"));
        assert_ne!(hash_lock("s1", &[7; 32]), hash_lock("s2", &[7; 32]));
        assert_eq!(lock_id(&[1]), 1);
    }
}

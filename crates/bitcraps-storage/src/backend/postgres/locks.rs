//! The write path's advisory locks (see `write.rs` for the protocol): the store's write lock,
//! then every (collection, key), then every content hash, each set sorted, in lock spaces
//! that cannot overlap.

use std::collections::BTreeSet;

use deadpool_postgres::Transaction;

use super::write::{Fail, cached, db};
use crate::backend::{WriteOp, WriteUnit};

/// Most fine-grained (key and hash) locks one transaction takes; a larger one takes the
/// store's write lock exclusively instead. PostgreSQL's shared lock table holds about
/// `max_locks_per_transaction` × `max_connections` entries for the whole server (6,400 with
/// the defaults), and running out fails the transaction with "out of shared memory" — which
/// `apply` answers by retrying with the exclusive lock.
/// Several nodes writing at once each hold up to this many, so it is kept well below that.
pub(super) const MAX_FINE_LOCKS: usize = 256;

/// First key of the two-int advisory lock that is the store's write lock (the two-int key
/// space does not overlap the bigint one of key and hash locks). "BCRW".
pub(super) const STORE_LOCK_SPACE: i32 = 0x4243_5257;

/// Second key of the store's write lock: 31 bits of blake3 of the scope.
pub(super) fn store_lock(scope: &str) -> i32 {
    let id = lock_id(blake3::hash(scope.as_bytes()).as_bytes()) & i64::from(i32::MAX);
    i32::try_from(id).unwrap_or(0)
}

/// The advisory lock id of a (collection, key) in store `scope` (the schema; advisory locks
/// are database-wide, and stores in other schemas need not wait for each other): 63 bits of
/// blake3, non-negative.
pub(super) fn key_lock(scope: &str, collection: &str, key: &str) -> i64 {
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
pub(super) fn hash_lock(scope: &str, hash: &[u8]) -> i64 {
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

/// Takes the advisory locks `$1` (sorted, distinct) one after another, in array order (see
/// [`lock_all`]).
pub(super) const LOCK_ALL: &str =
    "SELECT pg_advisory_xact_lock(id) FROM unnest($1::bigint[]) AS t(id)";

/// Takes `ids` (sorted, distinct) one after another in ascending order. `unnest` of an array
/// is a function scan that yields its elements in array order and each row's lock is taken
/// as the row is produced, so one round trip keeps the order.
async fn lock_all(tx: &Transaction<'_>, ids: &BTreeSet<i64>) -> Result<(), Fail> {
    if ids.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = ids.iter().copied().collect();
    tx.execute(&cached(tx, LOCK_ALL).await?, &[&ids])
        .await
        .map_err(db("taking write locks"))?;
    Ok(())
}

pub(super) fn touched_key(op: &WriteOp) -> Option<(&str, &str)> {
    match op {
        WriteOp::Put {
            collection, key, ..
        }
        | WriteOp::Delete {
            collection, key, ..
        }
        | WriteOp::Check {
            collection, key, ..
        }
        | WriteOp::Touch {
            collection, key, ..
        } => Some((collection, key)),
        // A prefix delete's and a sweep's keys are not known before they run: a transaction
        // holding one takes the store's write lock exclusively (`write.rs`). A setting is one
        // row that no blob depends on.
        WriteOp::PutDictionary { .. }
        | WriteOp::DeletePrefix { .. }
        | WriteOp::SweepExpired { .. }
        | WriteOp::PruneChanges { .. }
        | WriteOp::Setting { .. } => None,
    }
}

/// Takes the fine-grained locks: every key, sorted; then every content hash involved (the new
/// values' and the keys' current blobs'), sorted.
pub(super) async fn lock_fine(
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

//! Writes into a crypto-shredded collection, refused inside the write transaction.
//!
//! A node's keyring may still hold a collection's data key after another node shredded it
//! (each node reloads keys only when it misses one). A shred takes the store's write lock
//! exclusively and empties the collection's key rows in the same transaction, and every
//! write transaction takes that lock (shared or exclusive) first. So a write that reads the
//! key rows after its store lock sees either no shred (and then the shred, waiting for the
//! lock, deletes what the write committed) or the whole shred (and is refused here). Without
//! this, a write checked against a stale keyring would commit a record sealed under a
//! destroyed key after the shred: acknowledged, unreadable, and never shredded.

use std::collections::BTreeSet;

use deadpool_postgres::Transaction;

use super::write::{Fail, cached, db};
use crate::backend::WriteOp;
use crate::error::StorageError;

/// The shredded collections among `$1`: a shred empties every key row of its collection.
pub(super) const SHREDDED: &str = "SELECT DISTINCT collection FROM data_keys
     WHERE collection = ANY($1) AND octet_length(wrapped) = 0";

/// The collections `unit` writes sealed data into (documents and dictionaries).
pub(super) fn sealed_into(unit: &[WriteOp]) -> impl Iterator<Item = &str> {
    unit.iter().filter_map(|op| match op {
        WriteOp::Put { collection, .. } | WriteOp::PutDictionary { collection, .. } => {
            Some(collection.as_str())
        }
        _ => None,
    })
}

/// Which of `collections` are shredded (call it with the store's write lock held).
pub(super) async fn among(
    tx: &Transaction<'_>,
    collections: &BTreeSet<&str>,
) -> Result<BTreeSet<String>, Fail> {
    if collections.is_empty() {
        return Ok(BTreeSet::new());
    }
    let names: Vec<&str> = collections.iter().copied().collect();
    let rows = tx
        .query(&cached(tx, SHREDDED).await?, &[&names])
        .await
        .map_err(db("checking for shredded collections"))?;
    rows.iter()
        .map(|r| {
            r.try_get(0)
                .map_err(db("checking for shredded collections"))
        })
        .collect()
}

/// The error of a unit that writes into a shredded collection, if it does.
pub(super) fn refusal(unit: &[WriteOp], shredded: &BTreeSet<String>) -> Option<StorageError> {
    sealed_into(unit)
        .find(|c| shredded.contains(*c))
        .map(|c| StorageError::Shredded {
            collection: c.to_owned(),
        })
}

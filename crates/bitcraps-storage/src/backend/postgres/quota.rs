//! Quotas on PostgreSQL (`crate::quota` says what counts): the quotas of the collections a
//! transaction puts into, the per-collection lock that makes their check exact across nodes,
//! and the usage measured under it.
//!
//! Every transaction that puts into a collection with a quota takes that collection's
//! advisory lock exclusively — after the store's write lock and before any key lock, in
//! ascending order, so the lock order stays deadlock-free — and holds it to commit. Under
//! `READ COMMITTED` each statement sees every committed row, and no other writer of the
//! collection can commit in between, so the usage it measures is the collection's exact usage.
//! (A quota set by a transaction that commits while another has already read the settings
//! applies from that other's next write.)

use std::collections::{BTreeMap, BTreeSet};

use deadpool_postgres::Transaction;

use super::shredded::Read;
use super::write::{Fail, cached, db};
use crate::quota::{CollectionQuota, CollectionUsage};

/// First key of the two-int advisory locks of collections with a quota. "BCRQ".
const QUOTA_LOCK_SPACE: i32 = 0x4243_5251;

/// Records of a collection unexpired at `$2`, and their logical JSON bytes.
pub(super) const USAGE: &str = "SELECT count(*), coalesce(sum(b.raw_len), 0)::bigint
     FROM records r JOIN blobs b ON b.id = r.blob_id
     WHERE r.collection = $1 AND (r.expires_at IS NULL OR r.expires_at > $2)";

/// The quotas of `collections` (those that have one) among the settings `read`.
pub(super) fn quotas(
    collections: &BTreeSet<&str>,
    read: &Read,
) -> BTreeMap<String, CollectionQuota> {
    collections
        .iter()
        .filter_map(|c| Some(((*c).to_owned(), CollectionQuota::of(c, read.triples())?)))
        .collect()
}

/// Takes the locks of `collections` of store `scope`, in ascending order of their ids.
pub(super) async fn lock(
    tx: &Transaction<'_>,
    scope: &str,
    collections: impl Iterator<Item = &String>,
) -> Result<(), Fail> {
    let ids: BTreeSet<i32> = collections.map(|c| lock_id(scope, c)).collect();
    if ids.is_empty() {
        return Ok(());
    }
    let ids: Vec<i32> = ids.into_iter().collect();
    tx.execute(
        &cached(
            tx,
            "SELECT pg_advisory_xact_lock($1, id) FROM unnest($2::int[]) AS t(id)",
        )
        .await?,
        &[&QUOTA_LOCK_SPACE, &ids],
    )
    .await
    .map_err(db("taking quota locks"))?;
    Ok(())
}

/// 31 bits of blake3 of the scope and the collection.
fn lock_id(scope: &str, collection: &str) -> i32 {
    let mut hasher = blake3::Hasher::new();
    hasher.update(scope.as_bytes());
    hasher.update(&[0]);
    hasher.update(collection.as_bytes());
    let bytes = hasher.finalize();
    let mut id = [0u8; 4];
    for (slot, b) in id.iter_mut().zip(bytes.as_bytes()) {
        *slot = *b;
    }
    i32::from_le_bytes(id) & i32::MAX
}

/// The usage of `collection` at `now_ms`, inside the transaction.
pub(super) async fn usage(
    tx: &Transaction<'_>,
    collection: &str,
    now_ms: i64,
) -> Result<CollectionUsage, Fail> {
    let row = tx
        .query_one(&cached(tx, USAGE).await?, &[&collection, &now_ms])
        .await
        .map_err(db("measuring a collection's usage"))?;
    let err = db("measuring a collection's usage");
    Ok(CollectionUsage::from_db(
        row.try_get(0).map_err(&err)?,
        row.try_get(1).map_err(err)?,
    ))
}

//! Prefix deletes: every record of a collection whose key starts with a prefix, their
//! blobs released, a change logged per record (the transaction holds the store's write lock
//! exclusively, see `write.rs`).

use deadpool_postgres::Transaction;

use super::write::{Fail, cached, db, release_blob};
use crate::feed::{ChangeKind, NewChange};

/// Deletes every record of `collection` whose key starts with `prefix` (the transaction holds
/// the store's write lock exclusively), releasing their blobs; returns the keys in order.
pub(super) async fn delete_prefix(
    tx: &Transaction<'_>,
    collection: &str,
    prefix: &str,
    now_ms: i64,
    changes: &mut Vec<NewChange>,
) -> Result<Vec<String>, Fail> {
    let options = crate::list::ListOptions::default().prefix(prefix);
    let rows = match options.prefix_upper_bound() {
        Some(upper) => {
            tx.query(
                &cached(
                    tx,
                    "DELETE FROM records WHERE collection = $1 AND key >= $2 AND key < $3
                     RETURNING key, blob_id, expires_at, version",
                )
                .await?,
                &[&collection, &prefix, &upper],
            )
            .await
        }
        None => {
            tx.query(
                &cached(
                    tx,
                    "DELETE FROM records WHERE collection = $1 AND key >= $2
                     RETURNING key, blob_id, expires_at, version",
                )
                .await?,
                &[&collection, &prefix],
            )
            .await
        }
    }
    .map_err(db("deleting records by prefix"))?;
    let mut doomed = Vec::with_capacity(rows.len());
    for row in &rows {
        let err = db("deleting records by prefix");
        let key: String = row.try_get(0).map_err(&err)?;
        let blob_id: i64 = row.try_get(1).map_err(&err)?;
        let expires: Option<i64> = row.try_get(2).map_err(&err)?;
        let version: i64 = row.try_get(3).map_err(&err)?;
        doomed.push((key, blob_id, expires, version));
    }
    // RETURNING has no order; the change log gets the keys in order.
    doomed.sort();
    let mut deleted = Vec::with_capacity(doomed.len());
    for (key, blob_id, expires, version) in doomed {
        release_blob(tx, blob_id).await?;
        let expired = crate::backend::is_expired(expires, now_ms);
        let kind = if expired {
            ChangeKind::Expire
        } else {
            ChangeKind::Delete
        };
        changes.push(NewChange::new(collection, &key, kind, version, now_ms));
        if !expired {
            deleted.push(key);
        }
    }
    Ok(deleted)
}

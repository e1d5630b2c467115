//! The write path's lifecycle steps: removing an expired record before a write of its key,
//! the sweep of expired records (its transaction holds the store's write lock exclusively,
//! see `write.rs`), the collection's default TTL, and writing collection settings.

use deadpool_postgres::Transaction;

use super::write::{Fail, cached, db, release_blob};
use crate::feed::{ChangeKind, NewChange};

/// Removes the record at `collection/key` if it expired by `now_ms`, releasing its blob (the
/// key and the blob's hash are locked: `locks.rs` locks every touched key's current content).
pub(super) async fn purge_expired(
    tx: &Transaction<'_>,
    collection: &str,
    key: &str,
    now_ms: i64,
    changes: &mut Vec<NewChange>,
) -> Result<(), Fail> {
    let old: Option<(i64, i64)> = tx
        .query_opt(
            &cached(
                tx,
                "DELETE FROM records WHERE collection = $1 AND key = $2
                   AND expires_at IS NOT NULL AND expires_at <= $3
                 RETURNING blob_id, version",
            )
            .await?,
            &[&collection, &key, &now_ms],
        )
        .await
        .and_then(|r| r.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose())
        .map_err(db("removing an expired record"))?;
    if let Some((id, version)) = old {
        changes.push(NewChange::new(
            collection,
            key,
            ChangeKind::Expire,
            version,
            now_ms,
        ));
        release_blob(tx, id).await?;
    }
    Ok(())
}

/// Removes up to `limit` records expired by `now_ms`, earliest expiry first (the transaction
/// holds the store's write lock exclusively), releasing their blobs.
pub(super) async fn sweep_expired(
    tx: &Transaction<'_>,
    now_ms: i64,
    limit: usize,
    changes: &mut Vec<NewChange>,
) -> Result<Vec<(String, String)>, Fail> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = tx
        .query(
            &cached(
                tx,
                "DELETE FROM records WHERE (collection, key) IN (
                     SELECT collection, key FROM records
                     WHERE expires_at IS NOT NULL AND expires_at <= $1
                     ORDER BY expires_at LIMIT $2)
                 RETURNING collection, key, blob_id, version",
            )
            .await?,
            &[&now_ms, &limit],
        )
        .await
        .map_err(db("sweeping expired records"))?;
    let mut doomed = Vec::with_capacity(rows.len());
    for row in &rows {
        let err = db("sweeping expired records");
        let collection: String = row.try_get(0).map_err(&err)?;
        let key: String = row.try_get(1).map_err(&err)?;
        let blob_id: i64 = row.try_get(2).map_err(&err)?;
        let version: i64 = row.try_get(3).map_err(&err)?;
        doomed.push((collection, key, blob_id, version));
    }
    // RETURNING has no order; the change log gets them in collection and key order.
    doomed.sort();
    let mut removed = Vec::with_capacity(doomed.len());
    for (collection, key, blob_id, version) in doomed {
        release_blob(tx, blob_id).await?;
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

/// The collection's default TTL in milliseconds, if it has one.
pub(super) async fn default_ttl(
    tx: &Transaction<'_>,
    collection: &str,
) -> Result<Option<i64>, Fail> {
    tx.query_opt(
        &cached(
            tx,
            "SELECT value FROM collection_settings WHERE collection = $1 AND name = $2",
        )
        .await?,
        &[&collection, &crate::settings::DEFAULT_TTL_MS],
    )
    .await
    .and_then(|r| r.map(|r| r.try_get(0)).transpose())
    .map_err(db("reading a collection's default TTL"))
}

pub(super) async fn set_setting(
    tx: &Transaction<'_>,
    collection: &str,
    name: &str,
    value: Option<i64>,
) -> Result<(), Fail> {
    match value {
        Some(value) => {
            tx.execute(
                &cached(
                    tx,
                    "INSERT INTO collection_settings (collection, name, value) VALUES ($1, $2, $3)
                     ON CONFLICT (collection, name) DO UPDATE SET value = excluded.value",
                )
                .await?,
                &[&collection, &name, &value],
            )
            .await
        }
        None => {
            tx.execute(
                &cached(
                    tx,
                    "DELETE FROM collection_settings WHERE collection = $1 AND name = $2",
                )
                .await?,
                &[&collection, &name],
            )
            .await
        }
    }
    .map_err(db("writing a collection setting"))?;
    Ok(())
}

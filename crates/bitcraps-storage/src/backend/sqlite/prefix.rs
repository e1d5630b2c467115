//! Prefix deletes: every record of a collection whose key starts with a prefix, their
//! blobs released, a change logged per record.

use rusqlite::{Connection, params};

use super::db_err;
use super::write::release_blob;
use crate::error::Result;
use crate::feed::{ChangeKind, NewChange};
use crate::list::ListOptions;

/// Deletes every record of `collection` whose key starts with `prefix`, releasing their
/// blobs; returns the keys in order.
pub(super) fn delete_prefix(
    conn: &Connection,
    collection: &str,
    prefix: &str,
    now_ms: i64,
    changes: &mut Vec<NewChange>,
) -> Result<Vec<String>> {
    let err = db_err("deleting records by prefix");
    let upper = ListOptions::default().prefix(prefix).prefix_upper_bound();
    let row = |r: &rusqlite::Row<'_>| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            (r.get::<_, Option<i64>>(2)?, r.get::<_, i64>(3)?),
        ))
    };
    let mut rows: Vec<(String, i64, (Option<i64>, i64))> = match &upper {
        Some(upper) => conn
            .prepare_cached(
                "DELETE FROM records WHERE collection = ?1 AND key >= ?2 AND key < ?3
                 RETURNING key, blob_id, expires_at, version",
            )
            .and_then(|mut s| {
                s.query_map(params![collection, prefix, upper], row)?
                    .collect::<rusqlite::Result<Vec<_>>>()
            }),
        None => conn
            .prepare_cached(
                "DELETE FROM records WHERE collection = ?1 AND key >= ?2 RETURNING key, blob_id, expires_at, version",
            )
            .and_then(|mut s| {
                s.query_map(params![collection, prefix], row)?
                    .collect::<rusqlite::Result<Vec<_>>>()
            }),
    }
    .map_err(err)?;
    // RETURNING has no order; the change log gets the keys in order.
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    let mut keys = Vec::with_capacity(rows.len());
    for (key, blob_id, (expires, version)) in rows {
        release_blob(conn, blob_id)?;
        let expired = crate::backend::is_expired(expires, now_ms);
        let kind = if expired {
            ChangeKind::Expire
        } else {
            ChangeKind::Delete
        };
        changes.push(NewChange::new(collection, &key, kind, version, now_ms));
        if !expired {
            keys.push(key);
        }
    }
    Ok(keys)
}

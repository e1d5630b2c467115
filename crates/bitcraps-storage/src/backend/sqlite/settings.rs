//! Collection settings (`collection_settings`: the default TTL, quotas) and the usage quotas
//! count, read inside the write transaction.

use rusqlite::{Connection, OptionalExtension, params};

use super::db_err;
use crate::backend::CollectionSetting;
use crate::error::Result;
use crate::quota::{CollectionQuota, CollectionUsage};

/// The collection's default TTL in milliseconds, if it has one.
pub(super) fn default_ttl(conn: &Connection, collection: &str) -> Result<Option<i64>> {
    conn.prepare_cached("SELECT value FROM collection_settings WHERE collection = ?1 AND name = ?2")
        .and_then(|mut s| {
            s.query_row(params![collection, crate::settings::DEFAULT_TTL_MS], |r| {
                r.get(0)
            })
            .optional()
        })
        .map_err(db_err("reading a collection's default TTL"))
}

pub(super) fn set_setting(
    conn: &Connection,
    collection: &str,
    name: &str,
    value: Option<i64>,
) -> Result<()> {
    let err = db_err("writing a collection setting");
    match value {
        Some(value) => conn
            .prepare_cached(
                "INSERT INTO collection_settings (collection, name, value) VALUES (?1, ?2, ?3)
                 ON CONFLICT (collection, name) DO UPDATE SET value = excluded.value",
            )
            .and_then(|mut s| s.execute(params![collection, name, value])),
        None => conn
            .prepare_cached("DELETE FROM collection_settings WHERE collection = ?1 AND name = ?2")
            .and_then(|mut s| s.execute(params![collection, name])),
    }
    .map_err(err)?;
    Ok(())
}

/// Every collection setting, in collection and name order.
pub fn settings(conn: &Connection) -> Result<Vec<CollectionSetting>> {
    conn.prepare_cached(
        "SELECT collection, name, value FROM collection_settings ORDER BY collection, name",
    )
    .and_then(|mut s| {
        s.query_map([], |r| {
            Ok(CollectionSetting {
                collection: r.get(0)?,
                name: r.get(1)?,
                value: r.get(2)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()
    })
    .map_err(db_err("reading collection settings"))
}

/// The quota of `collection`, if it has one.
pub(super) fn quota_of(conn: &Connection, collection: &str) -> Result<Option<CollectionQuota>> {
    let rows: Vec<(String, i64)> = conn
        .prepare_cached("SELECT name, value FROM collection_settings WHERE collection = ?1")
        .and_then(|mut s| {
            s.query_map(params![collection], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(db_err("reading a collection's quota"))?;
    Ok(CollectionQuota::of(
        collection,
        rows.iter().map(|(n, v)| (collection, n.as_str(), *v)),
    ))
}

/// Records of `collection` unexpired at `now_ms` and their logical JSON bytes.
pub fn usage(conn: &Connection, collection: &str, now_ms: i64) -> Result<CollectionUsage> {
    conn.prepare_cached(
        "SELECT count(*), coalesce(sum(coalesce(r.delta_raw_len, b.raw_len)), 0)
         FROM records r JOIN blobs b ON b.id = r.blob_id
         WHERE r.collection = ?1 AND (r.expires_at IS NULL OR r.expires_at > ?2)",
    )
    .and_then(|mut s| {
        s.query_row(params![collection, now_ms], |r| {
            Ok(CollectionUsage::from_db(r.get(0)?, r.get(1)?))
        })
    })
    .map_err(db_err("measuring a collection's usage"))
}

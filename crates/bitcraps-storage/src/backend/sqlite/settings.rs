//! Collection settings (`collection_settings`: the default TTL, quotas) and the usage quotas
//! count, read inside the write transaction.

use rusqlite::{Connection, params};

use super::db_err;
use super::inline::inline_delta_len;
use crate::backend::CollectionSetting;
use crate::error::Result;
use crate::quota::{CollectionQuota, CollectionUsage};

/// The collections' settings as one write transaction reads them: one query per collection
/// it writes to, where reading the default TTL and the quota for each unit took two per
/// single put. A `Setting` op, and a unit rolled back, [forget](Self::forget) what was read.
#[derive(Default)]
pub(super) struct SettingsCache(Vec<Settings>);

/// One collection's settings that the write path needs.
struct Settings {
    collection: String,
    default_ttl: Option<i64>,
    quota: Option<CollectionQuota>,
}

impl SettingsCache {
    /// The default TTL and the quota of `collection`, read on first use.
    fn get(
        &mut self,
        conn: &Connection,
        collection: &str,
    ) -> Result<(Option<i64>, Option<CollectionQuota>)> {
        if let Some(s) = self.0.iter().find(|s| s.collection == collection) {
            return Ok((s.default_ttl, s.quota));
        }
        let s = read_settings(conn, collection)?;
        let found = (s.default_ttl, s.quota);
        self.0.push(s);
        Ok(found)
    }

    /// The collection's default TTL in milliseconds, if it has one.
    pub(super) fn default_ttl(
        &mut self,
        conn: &Connection,
        collection: &str,
    ) -> Result<Option<i64>> {
        Ok(self.get(conn, collection)?.0)
    }

    /// The collection's quota, if it has one.
    pub(super) fn quota(
        &mut self,
        conn: &Connection,
        collection: &str,
    ) -> Result<Option<CollectionQuota>> {
        Ok(self.get(conn, collection)?.1)
    }

    pub(super) fn forget(&mut self) {
        self.0.clear();
    }
}

fn read_settings(conn: &Connection, collection: &str) -> Result<Settings> {
    let rows: Vec<(String, i64)> = conn
        .prepare_cached("SELECT name, value FROM collection_settings WHERE collection = ?1")
        .and_then(|mut s| {
            s.query_map(params![collection], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(db_err("reading a collection's settings"))?;
    let default_ttl = rows
        .iter()
        .find(|(name, _)| name == crate::settings::DEFAULT_TTL_MS)
        .map(|(_, value)| *value);
    let quota = CollectionQuota::of(
        collection,
        rows.iter().map(|(n, v)| (collection, n.as_str(), *v)),
    );
    Ok(Settings {
        collection: collection.to_owned(),
        default_ttl,
        quota,
    })
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

/// Records of `collection` unexpired at `now_ms` and their logical JSON bytes.
pub fn usage(conn: &Connection, collection: &str, now_ms: i64) -> Result<CollectionUsage> {
    conn.prepare_cached(concat!(
        // A float total cast back: `sum()` fails the call with "integer overflow" past
        // `i64::MAX`; the cast saturates there (as the statistics' byte totals do).
        "SELECT count(*), CAST(total(max(coalesce(",
        inline_delta_len!("r.delta"),
        ", b.raw_len), 0)) AS INTEGER)
         FROM records r JOIN blobs b ON b.id = r.blob_id
         WHERE r.collection = ?1 AND (r.expires_at IS NULL OR r.expires_at > ?2)",
    ))
    .and_then(|mut s| {
        s.query_row(params![collection, now_ms], |r| {
            Ok(CollectionUsage::from_db(r.get(0)?, r.get(1)?))
        })
    })
    .map_err(db_err("measuring a collection's usage"))
}

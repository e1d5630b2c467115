//! Per-collection settings kept in the store (`collection_settings`: collection, name,
//! integer value), so every node of a shared database agrees on them: the names, and the
//! store calls that read and write them.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::PersistentStorageManager;
use crate::backend::{CollectionSetting, WriteOp};
use crate::error::{Result, StorageError};
use crate::rt::blocking;
use crate::validate;

/// The default TTL of a collection's records, in milliseconds (> 0).
pub(crate) const DEFAULT_TTL_MS: &str = "default_ttl_ms";

/// A duration as whole milliseconds for the database: at least 1, at most `i64::MAX`.
pub(crate) fn ttl_ms(collection: &str, ttl: Duration) -> Result<i64> {
    let ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
    if ms < 1 {
        return Err(StorageError::Config(format!(
            "a TTL for collection {collection:?} must be at least 1 ms, got {ttl:?}"
        )));
    }
    Ok(ms)
}

fn settings_named(rows: Vec<CollectionSetting>, name: &str) -> BTreeMap<String, i64> {
    rows.into_iter()
        .filter(|s| s.name == name)
        .map(|s| (s.collection, s.value))
        .collect()
}

impl PersistentStorageManager {
    /// Sets (`Some`) or clears (`None`) the default TTL of `collection`: every later write
    /// that gives no TTL of its own ([`store`](Self::store), [`WriteBatch::store`](crate::WriteBatch::store), …)
    /// expires that long after it was written. Kept in the store, so every node that shares
    /// the database applies it; records already written keep their expiry.
    pub async fn set_default_ttl(&self, collection: &str, ttl: Option<Duration>) -> Result<()> {
        self.check_writable()?;
        validate::collection(collection)?;
        let value = ttl.map(|t| ttl_ms(collection, t)).transpose()?;
        let op = WriteOp::Setting {
            collection: collection.to_owned(),
            name: DEFAULT_TTL_MS,
            value,
        };
        self.writer().write(vec![op]).await?;
        Ok(())
    }

    /// The default TTL of every collection that has one, by collection name.
    pub async fn default_ttls(&self) -> Result<BTreeMap<String, Duration>> {
        self.check_open()?;
        let backend = std::sync::Arc::clone(&self.shared().backend);
        let rows = blocking(move || backend.settings()).await?;
        Ok(settings_named(rows, DEFAULT_TTL_MS)
            .into_iter()
            .map(|(c, ms)| (c, Duration::from_millis(u64::try_from(ms).unwrap_or(0))))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ttl_is_whole_positive_milliseconds() -> Result<()> {
        assert_eq!(ttl_ms("c", Duration::from_secs(2))?, 2000);
        assert_eq!(ttl_ms("c", Duration::MAX)?, i64::MAX);
        let err = ttl_ms("lobbies", Duration::from_micros(10)).err();
        assert_eq!(
            err.map(|e| e.to_string()).as_deref(),
            Some(
                "invalid configuration: a TTL for collection \"lobbies\" must be at least 1 ms, \
                 got 10µs"
            )
        );
        Ok(())
    }
}

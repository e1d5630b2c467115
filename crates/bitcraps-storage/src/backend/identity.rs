//! The store's identity: what a schema migration creates in the `meta` table and every node
//! reads back — a random store id (the Redis namespace is derived from it, so every node of
//! one database agrees whatever its URL text), a random secret (the key of the Redis tier's
//! MACs) and whether the store runs with a Redis tier.

use crate::error::{Result, StorageError};

/// `meta` row: the random store id, 32 hex digits.
pub(crate) const STORE_ID: &str = "store_id";
/// `meta` row: the secret the Redis tier's MAC key is derived from, 64 hex digits.
pub(crate) const REDIS_SECRET: &str = "redis_secret";
/// `meta` row present once a node opened the store with a Redis tier.
pub(crate) const REDIS_TIER: &str = "redis_tier";
/// `meta` row of an encrypted store: the key check value (hex; `crypto/keyring.rs`).
pub(crate) const KEY_CHECK: &str = "key_check";
/// `meta` row present while `key enable` encrypts the store in place.
pub(crate) const ENCRYPTING: &str = "encrypting";

/// What a backend's `meta` table says about the store.
#[derive(Clone, PartialEq, Eq)]
pub struct StoreIdentity {
    /// Random, created with the schema; the same for every node of the database.
    pub store_id: String,
    /// Random, created with the schema; never leaves the database except as MAC keys.
    pub secret: [u8; 32],
    /// A node has opened this store with a Redis tier: writers without one would leave the
    /// other nodes' caches stale.
    pub redis_tier: bool,
    /// The key check value of an encrypted store (`None`: the store is plaintext).
    pub key_check: Option<String>,
    /// `key enable` started encrypting the store in place and has not finished.
    pub encrypting: bool,
}

impl std::fmt::Debug for StoreIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreIdentity")
            .field("store_id", &self.store_id)
            .field("secret", &"<redacted>")
            .field("redis_tier", &self.redis_tier)
            .field("encrypted", &self.key_check.is_some())
            .finish()
    }
}

impl StoreIdentity {
    /// A fresh random identity (the memory backend; migrations insert the same rows).
    #[cfg(any(test, feature = "testing"))]
    pub fn random() -> Result<Self> {
        Self::from_rows(fresh_rows()?)
    }

    /// The identity from `meta` rows; missing or malformed rows are corruption.
    pub(crate) fn from_rows(rows: impl IntoIterator<Item = (String, String)>) -> Result<Self> {
        let (mut store_id, mut secret, mut redis_tier, mut key_check) = (None, None, false, None);
        let mut encrypting = false;
        for (name, value) in rows {
            match name.as_str() {
                STORE_ID => store_id = Some(value),
                REDIS_SECRET => secret = decode_secret(&value),
                REDIS_TIER => redis_tier = true,
                KEY_CHECK => key_check = Some(value),
                ENCRYPTING => encrypting = true,
                _ => {}
            }
        }
        let corrupt = |what: &str| StorageError::Corruption {
            location: "the meta table".into(),
            detail: format!("no valid {what} row"),
        };
        let store_id = store_id
            .filter(|id| id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| corrupt(STORE_ID))?;
        Ok(StoreIdentity {
            store_id,
            secret: secret.ok_or_else(|| corrupt(REDIS_SECRET))?,
            redis_tier,
            key_check,
            encrypting,
        })
    }
}

fn decode_secret(hex: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if hex.len() != 64 {
        return None;
    }
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The two rows a new schema gets: a random store id and a random secret.
pub(crate) fn fresh_rows() -> Result<[(String, String); 2]> {
    Ok([
        (STORE_ID.to_owned(), random_hex(16)?),
        (REDIS_SECRET.to_owned(), random_hex(32)?),
    ])
}

/// `bytes` random bytes in lower-case hex, from SQLite's `randomblob` (a ChaCha20 generator
/// seeded from the operating system's entropy): portable, and no extra dependency.
pub(crate) fn random_hex(bytes: usize) -> Result<String> {
    let conn = rusqlite::Connection::open_in_memory()
        .map_err(|e| StorageError::database("drawing random bytes", e))?;
    let n = i64::try_from(bytes).unwrap_or(32);
    conn.query_row("SELECT lower(hex(randomblob(?1)))", [n], |r| r.get(0))
        .map_err(|e| StorageError::database("drawing random bytes", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_are_random_and_round_trip() -> Result<()> {
        let (a, b) = (StoreIdentity::random()?, StoreIdentity::random()?);
        assert_ne!(a.store_id, b.store_id);
        assert_ne!(a.secret, b.secret);
        assert!(!a.redis_tier);
        let [(n1, v1), (n2, v2)] = fresh_rows()?;
        let mut rows = vec![(n1, v1), (n2, v2.clone())];
        rows.push((REDIS_TIER.to_owned(), "on".to_owned()));
        let read = StoreIdentity::from_rows(rows)?;
        assert!(read.redis_tier);
        assert_eq!(decode_secret(&v2), Some(read.secret));
        assert!(!format!("{read:?}").contains(&v2));
        Ok(())
    }

    #[test]
    fn a_missing_or_malformed_row_is_corruption() {
        let rows = vec![(STORE_ID.to_owned(), "nothex".to_owned())];
        assert!(matches!(
            StoreIdentity::from_rows(rows),
            Err(StorageError::Corruption { .. })
        ));
        assert!(StoreIdentity::from_rows(Vec::new()).is_err());
    }
}

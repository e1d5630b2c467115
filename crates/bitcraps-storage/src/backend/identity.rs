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
/// `meta` row of an encrypted store restored into another database: the id its ciphertext
/// is bound to (the store id of the store that encrypted it). Absent, that is the store id.
pub(crate) const ENCRYPTION_SCOPE: &str = "encryption_scope";

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
    /// What the ciphertext is bound to when it is not `store_id` (a restore into another
    /// database keeps the backup's ciphertext and binding, but not its store id).
    pub encryption_scope: Option<String>,
}

impl std::fmt::Debug for StoreIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreIdentity")
            .field("store_id", &self.store_id)
            .field("secret", &"<redacted>")
            .field("redis_tier", &self.redis_tier)
            .field("encrypted", &self.key_check.is_some())
            .field("encryption_scope", &self.encryption_scope)
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
        let (mut encrypting, mut encryption_scope) = (false, None);
        for (name, value) in rows {
            match name.as_str() {
                STORE_ID => store_id = Some(value),
                REDIS_SECRET => secret = decode_secret(&value),
                REDIS_TIER => redis_tier = true,
                KEY_CHECK => key_check = Some(value),
                ENCRYPTING => encrypting = true,
                ENCRYPTION_SCOPE => encryption_scope = Some(value),
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
            encryption_scope,
        })
    }
}

impl StoreIdentity {
    /// The id an encrypted store's ciphertext, wrapped keys and key check are bound to.
    pub(crate) fn key_scope(&self) -> &str {
        self.encryption_scope.as_deref().unwrap_or(&self.store_id)
    }

    /// The `meta` rows of this identity (what a snapshot of a store without a `meta` table,
    /// the in-memory one, carries).
    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn to_rows(&self) -> Vec<(String, String)> {
        let mut rows = vec![
            (STORE_ID.to_owned(), self.store_id.clone()),
            (REDIS_SECRET.to_owned(), crate::value::hex(&self.secret)),
        ];
        let flag = |name: &str| (name.to_owned(), "on".to_owned());
        if self.redis_tier {
            rows.push(flag(REDIS_TIER));
        }
        if self.encrypting {
            rows.push(flag(ENCRYPTING));
        }
        if let Some(check) = &self.key_check {
            rows.push((KEY_CHECK.to_owned(), check.clone()));
        }
        if let Some(scope) = &self.encryption_scope {
            rows.push((ENCRYPTION_SCOPE.to_owned(), scope.clone()));
        }
        rows
    }
}

/// The `meta` rows a restore writes into its target, given the snapshot's identity rows, the
/// target's identity and how many data keys the target holds.
///
/// The target keeps its own store id, secret and Redis tier flag: it is another store (its
/// Redis namespace must not be the source's, which may still be running). An encrypted
/// snapshot's ciphertext stays bound to the store that encrypted it, so its key check comes
/// along with that store's scope ([`ENCRYPTION_SCOPE`]), as its wrapped data keys do. Mixing
/// is refused: an encrypted backup into a store that has keys of its own, or a plaintext
/// backup into an encrypted store (its plaintext would be unreadable there).
pub(crate) fn restored_rows(
    snapshot: impl IntoIterator<Item = (String, String)>,
    target: &StoreIdentity,
    target_keys: usize,
) -> Result<Vec<(String, String)>> {
    let snapshot = StoreIdentity::from_rows(snapshot)?;
    let Some(check) = snapshot.key_check.clone() else {
        if target.key_check.is_some() {
            return Err(StorageError::Config(
                "the restore target is encrypted and the backup is not: restore it into a \
                 store without a key, then encrypt that with `key enable`"
                    .into(),
            ));
        }
        return Ok(Vec::new());
    };
    if target.key_check.is_some() || target_keys > 0 {
        return Err(StorageError::Config(
            "the backup is of an encrypted store and the restore target already has \
             encryption keys of its own: restore into a new database or schema"
                .into(),
        ));
    }
    let mut rows = vec![
        (KEY_CHECK.to_owned(), check),
        (ENCRYPTION_SCOPE.to_owned(), snapshot.key_scope().to_owned()),
    ];
    if snapshot.encrypting {
        rows.push((ENCRYPTING.to_owned(), "on".to_owned()));
    }
    Ok(rows)
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
    fn a_restore_keeps_the_targets_identity_and_the_backups_binding() -> Result<()> {
        let mut source = StoreIdentity::random()?;
        let target = StoreIdentity::random()?;
        // Plaintext into plaintext: nothing to write.
        assert!(restored_rows(source.to_rows(), &target, 0)?.is_empty());
        source.key_check = Some("abc".into());
        let rows = restored_rows(source.to_rows(), &target, 0)?;
        let mut restored = target.to_rows();
        restored.extend(rows);
        let restored = StoreIdentity::from_rows(restored)?;
        assert_eq!(restored.store_id, target.store_id);
        assert_eq!(restored.secret, target.secret);
        assert_eq!(restored.key_check.as_deref(), Some("abc"));
        assert_eq!(restored.key_scope(), source.store_id);
        // Restored again from a restored store: still bound to the first store.
        let again = restored_rows(restored.to_rows(), &StoreIdentity::random()?, 0)?;
        assert!(again.contains(&(ENCRYPTION_SCOPE.to_owned(), source.store_id.clone())));
        // Mixing is refused.
        assert!(restored_rows(source.to_rows(), &target, 1).is_err());
        assert!(restored_rows(source.to_rows(), &restored, 0).is_err());
        source.key_check = None;
        assert!(restored_rows(source.to_rows(), &restored, 0).is_err());
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

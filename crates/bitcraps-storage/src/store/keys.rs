//! Key management of an encrypted store (`crypto/`): rotating the master key and
//! crypto-shredding a collection. Both hold the keyring's turn, so no data key is created,
//! rewrapped or destroyed by this process meanwhile.

use std::sync::Arc;

use super::PersistentStorageManager;
use crate::backend::KeyChange;
use crate::cache::cache_key;
use crate::crypto::{KeyProvider, Keyring};
use crate::error::{Result, StorageError};
use crate::list::ListOptions;
use crate::rt::blocking;

impl PersistentStorageManager {
    /// Encrypts the plaintext store `config` describes in place, with the key of
    /// `config.key` (the store must not be open elsewhere). Resumable: a run that was
    /// killed is finished by the next; until then the store opens only for this. Every
    /// record is re-encrypted page by page (one transaction each) and gets a new version;
    /// dictionaries are sealed; the result is deep-checked before the store is marked
    /// encrypted, then vacuumed so no freed page keeps plaintext. `progress` gets (records
    /// examined, records in the store) after each page. On an encrypted store it only checks
    /// the key and does nothing.
    pub async fn enable_encryption(
        config: crate::StorageConfig,
        progress: impl FnMut(u64, u64) + Send + 'static,
    ) -> Result<crate::EncryptionReport> {
        blocking(move || crate::crypto::enable(&config, progress)).await
    }

    fn keyring(&self) -> Result<Arc<Keyring>> {
        self.shared().keyring.clone().ok_or_else(|| {
            StorageError::Config("the store is not encrypted (it was opened without a key)".into())
        })
    }

    /// Re-wraps every data key of the store under the master key `new` gives, and replaces
    /// the key check value, in one transaction: the cost is one small row per key, whatever
    /// the amount of data. From the commit on, only the new key opens the store (the old one
    /// is [`StorageError::KeyMismatch`]); this handle goes on working. Returns the number of
    /// data keys rewrapped. Backups taken before still need the old key.
    ///
    /// On PostgreSQL, other nodes keep their old master key in memory: they keep reading,
    /// refuse to create new data keys (`KeyMismatch`), and must be reopened with the new key.
    pub async fn rotate_master_key(&self, new: Arc<dyn KeyProvider>) -> Result<u64> {
        self.check_writable()?;
        let ring = self.keyring()?;
        let backend = Arc::clone(&self.shared().backend);
        blocking(move || {
            let master = new.master_key()?;
            let to = Keyring::new(&master, new.describe(), ring.store_id().to_owned());
            drop(master);
            let _turn = ring.turn();
            let check = backend.identity()?.key_check.unwrap_or_default();
            if !ring.verifies(&check) {
                // Rotated elsewhere meanwhile.
                return Err(StorageError::KeyMismatch {
                    source_name: ring.source_name(),
                });
            }
            let keys = backend
                .data_keys()?
                .iter()
                .filter(|k| !k.is_destroyed())
                .map(|k| ring.rewrap(k, &to))
                .collect::<Result<Vec<_>>>()?;
            let count = u64::try_from(keys.len()).unwrap_or(u64::MAX);
            backend.write_keys(&KeyChange {
                check: Some(to.check_value()?),
                keys,
                replace: true,
                ..KeyChange::default()
            })?;
            ring.adopt_master(&to);
            tracing::info!(data_keys = count, "master key rotated");
            Ok(count)
        })
        .await
    }

    /// Gives `collection` a new data key (the next version): new writes are sealed under
    /// it, blobs under older versions stay readable (their keys are kept), and content
    /// addresses do not change, so equal documents still share one blob. Returns the new
    /// version. (Re-encrypting the old blobs is not done: they stay under the old version
    /// until overwritten.)
    pub async fn rotate_data_key(&self, collection: &str) -> Result<i64> {
        crate::validate::collection(collection)?;
        self.check_writable()?;
        let ring = self.keyring()?;
        let backend = Arc::clone(&self.shared().backend);
        let name = collection.to_owned();
        blocking(move || {
            let _turn = ring.turn();
            ring.load(&backend.data_keys()?)?;
            if ring.is_shredded(&name) {
                return Err(StorageError::Shredded { collection: name });
            }
            let current = ring.current(&name).ok_or_else(|| {
                StorageError::Config(format!(
                    "collection {name} has no data key yet: its first write creates one"
                ))
            })?;
            let version = current.version.saturating_add(1);
            let wrapped = ring.new_key(&name, version, Some(&current))?;
            backend.write_keys(&KeyChange::add(vec![wrapped]))?;
            ring.load(&backend.data_keys()?)?;
            tracing::info!(collection = %name, version, "data key rotated");
            Ok(version)
        })
        .await
    }

    /// Crypto-shreds `collection`: in one transaction its data keys are destroyed (their
    /// rows kept, emptied, so every node and every later open knows), its records, their
    /// blobs and its dictionaries deleted (SQLite overwrites the freed pages; the next
    /// checkpoint clears the WAL). Its reads and writes then fail with
    /// [`StorageError::Shredded`]; other collections are untouched. Returns the number of
    /// records destroyed.
    ///
    /// Backups taken before hold the collection's data key wrapped under the master key of
    /// their time: whoever has such a backup and that master key can still read it. Delete
    /// those backups, or rotate the master key and destroy the old one (which makes every
    /// older backup unreadable), to shred it there too.
    pub async fn shred_collection(&self, collection: &str) -> Result<u64> {
        crate::validate::collection(collection)?;
        self.check_writable()?;
        let ring = self.keyring()?;
        let backend = Arc::clone(&self.shared().backend);
        let name = collection.to_owned();
        let keys = blocking(move || {
            // No write of this process is between its key check and its commit from here
            // on, so every record committed is listed below and every later write fails.
            let _writes = ring.excluding_writes();
            let _turn = ring.turn();
            let stored = backend.data_keys()?;
            if ring.is_shredded(&name)
                || stored
                    .iter()
                    .any(|k| k.collection == name && k.is_destroyed())
            {
                return Err(StorageError::Shredded { collection: name });
            }
            if !stored.iter().any(|k| k.collection == name) {
                return Err(StorageError::Config(format!(
                    "collection {name} has no data key: nothing of it was ever stored"
                )));
            }
            let mut keys = Vec::new();
            let mut options = ListOptions::default().limit(1000);
            loop {
                let page = backend.list(&name, &options)?;
                keys.extend(page.keys);
                match page.next_after {
                    Some(after) => options = options.after(&after),
                    None => break,
                }
            }
            // From here on this process neither reads nor seals anything of it.
            ring.forget(&name);
            backend.write_keys(&KeyChange {
                shred: Some(name.clone()),
                ..KeyChange::default()
            })?;
            tracing::warn!(collection = %name, records = keys.len(), "collection crypto-shredded");
            Ok(keys
                .into_iter()
                .map(|k| cache_key(&name, &k))
                .collect::<Vec<_>>())
        })
        .await?;
        let shared = self.shared();
        for key in &keys {
            shared.cache.invalidate(key);
        }
        shared.keyframes.forget_collection(collection);
        let count = u64::try_from(keys.len()).unwrap_or(u64::MAX);
        if let Some(remote) = &shared.remote {
            remote.invalidate_after_commit(keys);
        }
        Ok(count)
    }
}

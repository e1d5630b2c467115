//! The keyring of an open encrypted store: the master key's cipher, the store id every
//! binding names, and the unwrapped data keys by id and by collection.
//!
//! A data key is 64 bytes of random material: 32 for the AEAD, 32 for the keyed content
//! address (blake3 keyed). A collection's later key versions keep its address key, so
//! equal documents keep one address whatever key version wrote them. Data keys are stored
//! wrapped (sealed under the master key, bound to the store, collection, id and version) in
//! the `data_keys` table; the key check value in `meta` is a block sealed under the master
//! key, so a wrong master key is detected before anything else is read.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use zeroize::Zeroizing;

use super::MasterKey;
use super::envelope::{self, Aad};
use super::key::fill_random;
use crate::backend::WrappedKey;
use crate::error::{Result, StorageError};
use crate::value::hex;

const CHECK_TAG: &str = "bitcraps-storage key check v1";
const WRAP_TAG: &str = "bitcraps-storage data key v1";

/// One collection's data key, unwrapped.
pub(crate) struct DataKey {
    /// Its id (in every ciphertext's header).
    pub(crate) id: i64,
    /// The collection it belongs to.
    pub(crate) collection: String,
    /// Its version within the collection (1, 2, …).
    pub(crate) version: i64,
    /// The AEAD under this key.
    pub(crate) cipher: envelope::Cipher,
    /// The key of the collection's content addresses.
    address_key: Zeroizing<[u8; 32]>,
    /// The fields every blob this key seals binds first, built once (`blob.rs`).
    pub(crate) aad_prefix: super::blob::AadPrefix,
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKey")
            .field("id", &self.id)
            .field("collection", &self.collection)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl DataKey {
    /// The content address of a document in this key's collection, from its plain content
    /// hash (blake3 of the JSON): blake3 keyed with the collection's address key. Equal
    /// documents get equal addresses within the collection and unrelated ones anywhere else;
    /// hashing the 32-byte hash rather than the document costs one block, not a pass over it.
    pub(crate) fn address(&self, content_hash: &[u8; 32]) -> [u8; 32] {
        *blake3::keyed_hash(&self.address_key, content_hash).as_bytes()
    }

    /// How errors name the key.
    pub(crate) fn name(&self) -> String {
        format!(
            "data key {} (collection {}, version {})",
            self.id, self.collection, self.version
        )
    }
}

/// The address key a v2 blob's content address was made with (a copy, zeroized on drop),
/// carried by the opened blob so that decoding can verify the document against the address
/// (`value::check_hash`). A copy rather than the shared key: the threads opening a page
/// would otherwise contend on one reference count per record. Equal when the data key ids
/// are; shows only the id.
#[derive(Clone)]
pub(crate) struct ContentKey {
    id: i64,
    address_key: Zeroizing<[u8; 32]>,
}

impl ContentKey {
    pub(crate) fn of(key: &DataKey) -> Self {
        ContentKey {
            id: key.id,
            address_key: key.address_key.clone(),
        }
    }

    /// The content address of a document whose blake3 hash is `content_hash`.
    pub(crate) fn address(&self, content_hash: &[u8; 32]) -> [u8; 32] {
        *blake3::keyed_hash(&self.address_key, content_hash).as_bytes()
    }
}

impl PartialEq for ContentKey {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl Eq for ContentKey {}

impl std::fmt::Debug for ContentKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ContentKey(data key {})", self.id)
    }
}

#[derive(Default)]
struct Keys {
    by_id: HashMap<i64, Arc<DataKey>>,
    /// The newest version of each collection's key: new writes use it.
    current: HashMap<String, Arc<DataKey>>,
    /// Collections whose keys were destroyed (`key shred`).
    shredded: HashSet<String>,
}

/// The master key in force: its cipher and where it came from.
struct Master {
    cipher: envelope::Cipher,
    source_name: String,
}

/// The master key's cipher and the data keys of one store.
pub(crate) struct Keyring {
    master: RwLock<Arc<Master>>,
    store_id: String,
    keys: RwLock<Keys>,
    /// Key changes (a new data key, a rotation, a shred) take turns in this process.
    changes: Mutex<()>,
    /// Writes (seal and commit, shared) against shreds (exclusive): a write checked against
    /// a collection's key commits before a shred of that collection lists its records, or
    /// after the shred and fails (`backend.rs`, `store/keys.rs`). Taken before `changes`.
    writes: RwLock<()>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("source", &self.source_name())
            .field("store_id", &self.store_id)
            .finish_non_exhaustive()
    }
}

impl Keyring {
    /// A keyring with no data keys yet.
    pub(crate) fn new(master: &MasterKey, source_name: String, store_id: String) -> Self {
        Keyring {
            master: RwLock::new(Arc::new(Master {
                cipher: envelope::cipher(master.bytes()),
                source_name,
            })),
            store_id,
            keys: RwLock::new(Keys::default()),
            changes: Mutex::new(()),
            writes: RwLock::new(()),
        }
    }

    fn master(&self) -> Arc<Master> {
        Arc::clone(
            &self
                .master
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Key changes take turns: hold this while creating, rewrapping or destroying keys.
    pub(crate) fn turn(&self) -> MutexGuard<'_, ()> {
        self.changes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Held (shared) by a group commit from its key checks through its commit.
    pub(crate) fn writing(&self) -> std::sync::RwLockReadGuard<'_, ()> {
        self.writes
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Held by a shred from listing the collection's records through destroying its keys:
    /// no group commit is between its key checks and its commit meanwhile.
    pub(crate) fn excluding_writes(&self) -> std::sync::RwLockWriteGuard<'_, ()> {
        self.writes
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// From now on, `to`'s master key is this keyring's (after a committed rotation).
    pub(crate) fn adopt_master(&self, to: &Keyring) {
        let new = to.master();
        *self
            .master
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = new;
    }

    /// The store id every binding names.
    pub(crate) fn store_id(&self) -> &str {
        &self.store_id
    }

    /// Where the master key came from.
    pub(crate) fn source_name(&self) -> String {
        self.master().source_name.clone()
    }

    fn check_aad(&self) -> Vec<u8> {
        Aad::new(CHECK_TAG).text(&self.store_id).finish()
    }

    /// A new key check value: a known block sealed under the master key (hex).
    pub(crate) fn check_value(&self) -> Result<String> {
        Ok(hex(&envelope::seal(
            &self.master().cipher,
            &self.check_aad(),
            &[0; 32],
        )?))
    }

    /// Whether `check` (a stored key check value) was made with this master key.
    pub(crate) fn verifies(&self, check: &str) -> bool {
        decode_hex(check)
            .and_then(|sealed| envelope::open(&self.master().cipher, &self.check_aad(), &sealed))
            .is_some_and(|block| block == [0; 32])
    }

    fn wrap_aad(&self, id: i64, collection: &str, version: i64) -> Vec<u8> {
        Aad::new(WRAP_TAG)
            .text(&self.store_id)
            .text(collection)
            .number(id)
            .number(version)
            .finish()
    }

    /// A new data key for `collection` at `version`, wrapped; its address key is
    /// `address_key` (a collection's earlier key's) or new.
    pub(crate) fn new_key(
        &self,
        collection: &str,
        version: i64,
        address_key: Option<&DataKey>,
    ) -> Result<WrappedKey> {
        let mut material = Zeroizing::new([0u8; 64]);
        fill_random(&mut material[..])?;
        if let Some(previous) = address_key {
            material[32..].copy_from_slice(&previous.address_key[..]);
        }
        let mut id_bytes = [0u8; 8];
        fill_random(&mut id_bytes)?;
        // Positive, so it fits every database's signed 64-bit integer the same way.
        let id = i64::from_be_bytes(id_bytes) & i64::MAX;
        let aad = self.wrap_aad(id, collection, version);
        Ok(WrappedKey {
            id,
            collection: collection.to_owned(),
            version,
            wrapped: envelope::seal(&self.master().cipher, &aad, &material[..])?,
            created_at_ms: crate::backend::now_ms(),
        })
    }

    /// `key` wrapped under another master key (rotation).
    pub(crate) fn rewrap(&self, key: &WrappedKey, to: &Keyring) -> Result<WrappedKey> {
        let material = self.unwrap_material(key)?;
        let aad = to.wrap_aad(key.id, &key.collection, key.version);
        Ok(WrappedKey {
            wrapped: envelope::seal(&to.master().cipher, &aad, &material[..])?,
            ..key.clone()
        })
    }

    fn unwrap_material(&self, key: &WrappedKey) -> Result<Zeroizing<Vec<u8>>> {
        let aad = self.wrap_aad(key.id, &key.collection, key.version);
        let master = self.master();
        envelope::open(&master.cipher, &aad, &key.wrapped)
            .map(Zeroizing::new)
            .filter(|m| m.len() == 64)
            .ok_or_else(|| {
                StorageError::corruption(
                    "the data_keys table",
                    format!(
                        "data key {} (collection {}, version {}) does not unwrap under the \
                         master key from {}",
                        key.id, key.collection, key.version, master.source_name
                    ),
                )
            })
    }

    /// Unwraps `wrapped` and adds the keys this keyring does not hold yet.
    pub(crate) fn load(&self, wrapped: &[WrappedKey]) -> Result<()> {
        let mut fresh = Vec::new();
        let mut destroyed = Vec::new();
        {
            let keys = self.read();
            for key in wrapped {
                if key.is_destroyed() {
                    destroyed.push(key.collection.clone());
                } else if !keys.by_id.contains_key(&key.id) {
                    fresh.push(key);
                }
            }
        }
        let mut unwrapped = Vec::with_capacity(fresh.len());
        for key in fresh {
            let material = self.unwrap_material(key)?;
            let (data, address) = material.split_at(32);
            let mut data_key = Zeroizing::new([0u8; 32]);
            data_key.copy_from_slice(data);
            let mut address_key = Zeroizing::new([0u8; 32]);
            address_key.copy_from_slice(address);
            unwrapped.push(Arc::new(DataKey {
                id: key.id,
                collection: key.collection.clone(),
                version: key.version,
                cipher: envelope::cipher(&data_key),
                address_key,
                aad_prefix: super::blob::AadPrefix::new(
                    &self.store_id,
                    &key.collection,
                    key.id,
                    key.version,
                ),
            }));
        }
        let mut keys = self
            .keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for collection in destroyed {
            keys.current.remove(&collection);
            keys.by_id.retain(|_, k| k.collection != collection);
            keys.shredded.insert(collection);
        }
        for key in unwrapped {
            if keys.shredded.contains(&key.collection) {
                continue;
            }
            let newer = keys
                .current
                .get(&key.collection)
                .is_none_or(|c| c.version < key.version);
            if newer {
                keys.current
                    .insert(key.collection.clone(), Arc::clone(&key));
            }
            keys.by_id.insert(key.id, key);
        }
        Ok(())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Keys> {
        self.keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The key new writes of `collection` use, if it has one.
    pub(crate) fn current(&self, collection: &str) -> Option<Arc<DataKey>> {
        self.read().current.get(collection).cloned()
    }

    /// Whether `collection`'s keys were destroyed.
    pub(crate) fn is_shredded(&self, collection: &str) -> bool {
        self.read().shredded.contains(collection)
    }

    /// Forgets `collection`'s keys: its reads and writes fail from now on.
    pub(crate) fn forget(&self, collection: &str) {
        let mut keys = self
            .keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        keys.current.remove(collection);
        keys.by_id.retain(|_, k| k.collection != collection);
        keys.shredded.insert(collection.to_owned());
    }

    /// The key with this id, if loaded.
    pub(crate) fn by_id(&self, id: i64) -> Option<Arc<DataKey>> {
        self.read().by_id.get(&id).cloned()
    }

    /// Whether any collection has a key older than its current one (after a data-key
    /// rotation): only then has re-encryption anything to do.
    pub(crate) fn has_old_versions(&self) -> bool {
        let keys = self.read();
        keys.by_id.values().any(|k| {
            keys.current
                .get(&k.collection)
                .is_some_and(|c| c.id != k.id)
        })
    }

    /// How many data keys are loaded (grows with every new key).
    pub(crate) fn key_count(&self) -> usize {
        self.read().by_id.len()
    }

    /// The current key of the collection `key` belongs to, when `key` is not it.
    pub(crate) fn successor(&self, key: &DataKey) -> Option<Arc<DataKey>> {
        self.current(&key.collection).filter(|c| c.id != key.id)
    }
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    text.as_bytes()
        .chunks_exact(2)
        .map(|pair| {
            std::str::from_utf8(pair)
                .ok()
                .and_then(|p| u8::from_str_radix(p, 16).ok())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_values_and_wrapped_keys_need_the_same_master_key() -> Result<()> {
        let (a, b) = (MasterKey::generate()?, MasterKey::generate()?);
        let ring = Keyring::new(&a, "test".into(), "s1".into());
        let check = ring.check_value()?;
        assert!(ring.verifies(&check));
        assert!(!Keyring::new(&b, "test".into(), "s1".into()).verifies(&check));
        assert!(!Keyring::new(&a, "test".into(), "s2".into()).verifies(&check));
        assert!(!ring.verifies("zz"));

        let wrapped = ring.new_key("games", 1, None)?;
        ring.load(std::slice::from_ref(&wrapped))?;
        let key = ring.current("games").ok_or(StorageError::Closed)?;
        assert_eq!((key.id, key.version), (wrapped.id, 1));
        let other = Keyring::new(&b, "other".into(), "s1".into());
        assert!(other.load(std::slice::from_ref(&wrapped)).is_err());
        // Moved to another collection: does not unwrap.
        let moved = WrappedKey {
            collection: "bets".into(),
            ..wrapped.clone()
        };
        assert!(
            Keyring::new(&a, "t".into(), "s1".into())
                .load(&[moved])
                .is_err()
        );
        // Rewrapped: opens under the new key only; the address key is kept by version 2.
        let rewrapped = ring.rewrap(&wrapped, &other)?;
        other.load(&[rewrapped])?;
        let v2 = ring.new_key("games", 2, Some(&key))?;
        ring.load(&[v2])?;
        let current = ring.current("games").ok_or(StorageError::Closed)?;
        assert_eq!(current.version, 2);
        let hash = *blake3::hash(b"doc").as_bytes();
        assert_eq!(current.address(&hash), key.address(&hash));
        assert_ne!(current.address(&hash), hash);
        Ok(())
    }
}

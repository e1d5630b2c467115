//! Opening fails closed: the decisions an open takes about encryption, before anything is
//! read from the records or written.
//!
//! | store | key configured | outcome |
//! |---|---|---|
//! | plaintext | none | plaintext, as before |
//! | encrypted (`key_check` row) | none | [`StorageError::KeyMissing`] |
//! | any | source fails | [`StorageError::KeySource`] |
//! | encrypted | does not verify the check | [`StorageError::KeyMismatch`] |
//! | encrypted | verifies | encrypted |
//! | new (no record, blob or dictionary) | given | becomes encrypted: the check is written |
//! | plaintext with data | given | [`StorageError::NotEncrypted`] (`key enable` encrypts it) |
//! | being encrypted by `key enable` | given | [`StorageError::Config`]: run it again |

use std::sync::Arc;

use super::backend::EncryptedBackend;
use super::keyring::Keyring;
use crate::backend::{Backend, KeyChange};
use crate::config::StorageConfig;
use crate::error::{Result, StorageError};

/// What [`attach`] makes of a backend.
pub(crate) struct Attached {
    /// The backend the store runs on: `EncryptedBackend` over the engine when encrypted.
    pub(crate) backend: Arc<dyn Backend>,
    /// The keyring, when encrypted.
    pub(crate) keyring: Option<Arc<Keyring>>,
}

/// Applies the table above to `backend` opened for `config`.
pub(crate) fn attach(backend: Arc<dyn Backend>, config: &StorageConfig) -> Result<Attached> {
    let identity = backend.identity()?;
    let provider = config.key.resolve()?;
    let Some(provider) = provider else {
        if identity.key_check.is_some() {
            return Err(StorageError::KeyMissing);
        }
        return Ok(Attached {
            backend,
            keyring: None,
        });
    };
    if identity.encrypting {
        return Err(StorageError::Config(
            "encrypting this store in place did not finish: run `bitcraps-storage key enable` \
             again to resume it"
                .into(),
        ));
    }
    let master = provider.master_key()?;
    let ring = Keyring::new(
        &master,
        provider.describe(),
        identity.key_scope().to_owned(),
    );
    drop(master);
    let check = match identity.key_check {
        Some(check) => check,
        None => {
            if config.database.read_only || !is_empty(&*backend)? {
                return Err(StorageError::NotEncrypted);
            }
            // A new store: encrypted from its first write. Insert-if-absent, then read back,
            // so of two nodes opening a new database with different keys one is refused.
            backend.write_keys(&KeyChange::check(ring.check_value()?))?;
            backend.identity()?.key_check.ok_or_else(|| {
                StorageError::corruption("the meta table", "the key check value was not stored")
            })?
        }
    };
    if !ring.verifies(&check) {
        return Err(StorageError::KeyMismatch {
            source_name: ring.source_name(),
        });
    }
    ring.load(&backend.data_keys()?)?;
    let ring = Arc::new(ring);
    Ok(Attached {
        backend: Arc::new(EncryptedBackend::new(backend, Arc::clone(&ring))),
        keyring: Some(ring),
    })
}

/// Whether the store holds nothing yet (no record, blob or dictionary).
fn is_empty(backend: &dyn Backend) -> Result<bool> {
    let stats = backend.statistics()?;
    Ok(stats.record_count == 0 && stats.blob_count == 0 && backend.dictionaries()?.is_empty())
}

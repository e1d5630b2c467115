//! `key enable`: encrypting a plaintext store in place, resumably.
//!
//! 1. The key check value and the `encrypting` mark are written in one transaction; from
//!    then on the store opens only with the key, and only `key enable` opens it until done.
//! 2. Collection by collection, page by page, every record whose blob is still plaintext is
//!    decoded (verified against its hash) and written again through the sealing wrapper, one
//!    transaction per page; its old plaintext blob is released. A run killed at any point
//!    leaves whole pages done; the next run skips sealed records and goes on.
//! 3. Plaintext dictionaries are sealed in place, in one transaction.
//! 4. The deep check runs with the keyring (a blob still in plaintext is damage), then the
//!    mark is cleared, and the file is vacuumed and checkpointed so no freed page keeps
//!    plaintext.
//!
//! A re-encrypted record gets a new version and update time, as any write.

use std::sync::Arc;

use super::backend::EncryptedBackend;
use super::keyring::Keyring;
use crate::backend::{Backend, KeyChange, WriteOp, now_ms};
use crate::codec::Codec;
use crate::config::StorageConfig;
use crate::error::{Result, StorageError};
use crate::list::ListOptions;
use crate::value::EncodedValue;

/// Records per transaction.
const PAGE: usize = 500;

/// What `key enable` ([`PersistentStorageManager::enable_encryption`](crate::PersistentStorageManager::enable_encryption)) did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct EncryptionReport {
    /// Records in the store.
    pub records: u64,
    /// Records this run encrypted (the rest were already, by an earlier run).
    pub records_encrypted: u64,
    /// Dictionaries this run sealed.
    pub dictionaries_encrypted: u64,
}

/// Encrypts the store `config` describes (opened with `config.key`) in place; `progress` is
/// called with (records examined, records in the store) after each page.
pub(crate) fn enable(
    config: &StorageConfig,
    mut progress: impl FnMut(u64, u64),
) -> Result<EncryptionReport> {
    config.validate()?;
    if config.database.read_only {
        return Err(StorageError::ReadOnly {
            operation: "encrypting the store",
        });
    }
    let provider = config.key.resolve()?.ok_or(StorageError::KeyMissing)?;
    let backend = crate::backend::open::open(config.clone())?.backend;
    let result = run(&backend, &*provider, &mut progress);
    let closed = backend.close();
    let report = result?;
    closed?;
    Ok(report)
}

fn run(
    backend: &Arc<dyn Backend>,
    provider: &dyn super::KeyProvider,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<EncryptionReport> {
    let identity = backend.identity()?;
    let master = provider.master_key()?;
    let ring = Arc::new(Keyring::new(
        &master,
        provider.describe(),
        identity.key_scope().to_owned(),
    ));
    drop(master);
    match &identity.key_check {
        Some(check) if !identity.encrypting => {
            // Already encrypted: nothing to do but say whether the key is the store's.
            if !ring.verifies(check) {
                return Err(StorageError::KeyMismatch {
                    source_name: ring.source_name(),
                });
            }
            return Ok(EncryptionReport::default());
        }
        Some(check) => {
            if !ring.verifies(check) {
                return Err(StorageError::KeyMismatch {
                    source_name: ring.source_name(),
                });
            }
        }
        None => backend.write_keys(&KeyChange {
            check: Some(ring.check_value()?),
            encrypting: Some(true),
            ..KeyChange::default()
        })?,
    }
    ring.load(&backend.data_keys()?)?;
    let sealing = EncryptedBackend::mixed(Arc::clone(backend), Arc::clone(&ring));
    let mut report = EncryptionReport {
        records: backend.statistics()?.record_count,
        ..EncryptionReport::default()
    };
    let decoders = crate::verify::Decoders::new(&sealing.dictionaries()?, None);
    let mut examined = 0u64;
    for collection in backend.collections()? {
        let mut options = ListOptions::default().limit(PAGE);
        loop {
            let page = backend.scan(&collection, &options)?;
            let mut unit = Vec::new();
            for (key, record) in &page.items {
                examined += 1;
                if sealing.is_sealed_blob(&record.blob)? {
                    continue;
                }
                let location = format!("{collection}/{key}");
                unit.push(WriteOp::Put {
                    collection: collection.clone(),
                    key: key.clone(),
                    value: reencode(&decoders, &location, &record.blob)?,
                    now_ms: now_ms(),
                    keep_version: None,
                    // Encrypting a record does not change when it expires.
                    expires_ms: record.expires_ms,
                });
            }
            if !unit.is_empty() {
                report.records_encrypted += u64::try_from(unit.len()).unwrap_or(u64::MAX);
                for outcome in sealing.apply(&[unit])? {
                    outcome?;
                }
            }
            progress(examined, report.records.max(examined));
            match page.next_after {
                Some(after) => options = options.after(&after),
                None => break,
            }
        }
    }
    let mut dictionaries = Vec::new();
    for d in backend.dictionaries()? {
        if !sealing.is_sealed(&d.data)? {
            let key = sealing.key_for_write(&d.collection)?;
            dictionaries.push((d.id, super::blob::seal_dictionary(&ring, &key, &d.data)?));
        }
    }
    report.dictionaries_encrypted = u64::try_from(dictionaries.len()).unwrap_or(u64::MAX);
    if !dictionaries.is_empty() {
        backend.write_keys(&KeyChange {
            dictionaries,
            ..KeyChange::default()
        })?;
    }
    // Verified before the mark goes: every blob must now open with the keys.
    let m = backend.maintenance();
    let mut check = m.check()?;
    let plain_dictionaries =
        EncryptedBackend::new(Arc::clone(backend), Arc::clone(&ring)).dictionaries()?;
    crate::verify::deepen(
        &mut check,
        &plain_dictionaries,
        Some(Arc::clone(&ring)),
        crate::verify::Readers::of(m),
    )?;
    if !check.is_ok() {
        return Err(StorageError::corruption(
            "the store being encrypted",
            format!("it fails its checks after encryption: {}", check.problems()),
        ));
    }
    backend.write_keys(&KeyChange {
        encrypting: Some(false),
        ..KeyChange::default()
    })?;
    // Freed pages may still hold plaintext: rebuild the file and fold the WAL into it.
    m.vacuum()?;
    m.checkpoint()?;
    Ok(report)
}

/// A plaintext blob read back as the value the pipeline would have encoded (its stored form
/// kept; a chunk list with its chunks), verified, for sealing.
fn reencode(
    decoders: &crate::verify::Decoders,
    location: &str,
    blob: &crate::backend::StoredBlob,
) -> Result<EncodedValue> {
    let raw = decoders.decode(location, blob)?;
    let hash: [u8; 32] = blob
        .hash
        .as_slice()
        .try_into()
        .map_err(|_| StorageError::corruption(location, "the content hash is not 32 bytes"))?;
    if crate::chunk::is_chunked(blob.codec_id) {
        let delta = blob.codec_id == crate::chunk::DELTA;
        let chunks = blob
            .chunks
            .iter()
            .enumerate()
            .map(|(i, c)| reencode(decoders, &format!("{location} chunk {i}"), c))
            .collect::<Result<Vec<_>>>()?;
        return Ok(EncodedValue {
            hash,
            codec: Codec::None,
            raw: raw.into(),
            // A delta keeps its patch; a chunk list has no bytes of its own.
            stored: if delta {
                blob.data.clone().into()
            } else {
                Arc::from([])
            },
            dict_id: None,
            chunks: chunks.into(),
            delta,
            sealed: None,
        });
    }
    let codec = u8::try_from(blob.codec_id)
        .ok()
        .and_then(Codec::from_id)
        .ok_or_else(|| StorageError::corruption(location, "unknown codec"))?;
    Ok(EncodedValue {
        hash,
        codec,
        raw: raw.into(),
        stored: blob.data.clone().into(),
        dict_id: blob.dict_id,
        chunks: Arc::from([]),
        delta: false,
        sealed: None,
    })
}

//! Reading every stored byte: the deep check. Blobs are read page by page (in id order,
//! through [`Maintenance::blobs_after`](crate::backend::Maintenance::blobs_after) or the same
//! query on a snapshot file), each decoded with its dictionary and hashed; the records that
//! name a damaged blob are then looked up, so damage is reported by collection and key.
//!
//! The same primitive serves three callers: [`PersistentStorageManager::check_consistency_deep`]
//! (the whole live store at once), the background scrub (a budget of bytes per run, resuming
//! at the last blob id), and backup verification (a snapshot file). It is a function of two
//! page readers, so it runs over any backend.

use std::collections::HashMap;
use std::sync::Arc;

use zstd::dict::DecoderDictionary;

use crate::PersistentStorageManager;
use crate::backend::{
    BlobEntry, BlobReference, ConsistencyReport, DamagedDocument, StoredBlob, StoredDictionary,
};
use crate::crypto::Keyring;
use crate::error::Result;
use crate::rt::blocking;
use crate::value;

/// Blobs per page read (each may be as large as the largest value).
pub(crate) const PAGE: usize = 64;

/// Decoders for every stored dictionary, by id, and the keyring of an encrypted store.
pub(crate) struct Decoders {
    dictionaries: HashMap<i64, DecoderDictionary<'static>>,
    keyring: Option<Arc<Keyring>>,
}

impl Decoders {
    /// Decoders of `stored` (dictionaries in plaintext); with `keyring`, blobs are opened
    /// with it before they are decoded.
    pub(crate) fn new(stored: &[StoredDictionary], keyring: Option<Arc<Keyring>>) -> Self {
        Decoders {
            dictionaries: stored
                .iter()
                .map(|d| (d.id, DecoderDictionary::copy(&d.data)))
                .collect(),
            keyring,
        }
    }

    /// Decodes `entry` and checks its hash; the failure's detail when it does not verify.
    fn verify(&self, entry: &BlobEntry) -> Option<String> {
        let location = format!("blob {}", entry.id);
        let opened;
        let blob = match &self.keyring {
            None => &entry.blob,
            Some(ring) => match crate::crypto::open_stored_blob(ring, &entry.blob, &location) {
                Ok(blob) => {
                    opened = blob;
                    &opened
                }
                Err(crate::StorageError::Corruption { detail, .. }) => return Some(detail),
                Err(other) => return Some(other.to_string()),
            },
        };
        self.decode(&location, blob).err().map(|e| match e {
            crate::StorageError::Corruption { detail, .. } => detail,
            other => other.to_string(),
        })
    }

    /// The verified JSON of a plaintext (or opened) blob, decoded with its dictionary.
    pub(crate) fn decode(&self, location: &str, blob: &StoredBlob) -> crate::Result<Vec<u8>> {
        value::decode_stored(location, blob, |id, location| {
            self.dictionaries.get(&id).ok_or_else(|| {
                crate::StorageError::corruption(
                    location,
                    format!("its zstd dictionary {id} does not exist"),
                )
            })
        })
    }
}

/// Stored bytes of a blob and its chunks.
fn stored_len(blob: &StoredBlob) -> usize {
    blob.chunks
        .iter()
        .fold(blob.data.len(), |n, c| n.saturating_add(c.data.len()))
}

/// What one stretch of verification read.
#[derive(Debug, Default)]
pub(crate) struct Stretch {
    /// The last blob id read (the cursor to resume after).
    pub(crate) last_id: i64,
    /// Blobs read.
    pub(crate) blobs: u64,
    /// Stored bytes read.
    pub(crate) bytes: u64,
    /// Damaged blobs: id and what failed.
    pub(crate) damaged: Vec<(i64, String)>,
    /// Every blob after the starting id was read.
    pub(crate) finished: bool,
}

/// Verifies blobs with ids above `after`, page by page, until every blob was read or (with
/// `budget`) at least `budget` stored bytes were.
pub(crate) fn verify_blobs(
    decoders: &Decoders,
    after: i64,
    budget: Option<u64>,
    mut page: impl FnMut(i64, usize) -> Result<Vec<BlobEntry>>,
) -> Result<Stretch> {
    let mut stretch = Stretch {
        last_id: after,
        ..Stretch::default()
    };
    loop {
        if budget.is_some_and(|b| stretch.bytes >= b) {
            return Ok(stretch);
        }
        let entries = page(stretch.last_id, PAGE)?;
        if entries.is_empty() {
            stretch.finished = true;
            return Ok(stretch);
        }
        let before = stretch.last_id;
        for entry in &entries {
            if let Some(detail) = decoders.verify(entry) {
                tracing::error!(blob = entry.id, %detail, "a stored document failed verification");
                stretch.damaged.push((entry.id, detail));
            }
            stretch.blobs += 1;
            stretch.bytes = stretch
                .bytes
                .saturating_add(u64::try_from(stored_len(&entry.blob)).unwrap_or(u64::MAX));
            stretch.last_id = stretch.last_id.max(entry.id);
        }
        if stretch.last_id == before {
            // A page that does not move forward would be read again forever.
            stretch.finished = true;
            return Ok(stretch);
        }
    }
}

/// The records that name the damaged blobs, each with its blob's failure.
pub(crate) fn name_damage(
    damaged: &[(i64, String)],
    naming: impl FnOnce(&[i64]) -> Result<Vec<BlobReference>>,
) -> Result<Vec<DamagedDocument>> {
    if damaged.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<i64> = damaged.iter().map(|(id, _)| *id).collect();
    let details: HashMap<i64, &str> = damaged.iter().map(|(id, d)| (*id, d.as_str())).collect();
    Ok(naming(&ids)?
        .into_iter()
        .map(|(blob_id, collection, key)| DamagedDocument {
            detail: details
                .get(&blob_id)
                .copied()
                .unwrap_or_default()
                .to_owned(),
            collection,
            key,
            blob_id,
        })
        .collect())
}

/// Adds the deep check to `report`: every blob read and verified, damage named by key. Only
/// on a store whose engine check passed (reading a damaged file further proves nothing).
pub(crate) fn deepen(
    report: &mut ConsistencyReport,
    dictionaries: &[StoredDictionary],
    keyring: Option<Arc<Keyring>>,
    page: impl FnMut(i64, usize) -> Result<Vec<BlobEntry>>,
    naming: impl FnOnce(&[i64]) -> Result<Vec<BlobReference>>,
) -> Result<()> {
    if report.integrity != ["ok"] {
        return Ok(());
    }
    let stretch = verify_blobs(&Decoders::new(dictionaries, keyring), i64::MIN, None, page)?;
    report.deep = true;
    report.blobs_verified = stretch.blobs;
    report.bytes_verified = stretch.bytes;
    report.damaged_blobs = u64::try_from(stretch.damaged.len()).unwrap_or(u64::MAX);
    report.damaged = name_damage(&stretch.damaged, naming)?;
    Ok(())
}

impl PersistentStorageManager {
    /// [`check_consistency`](Self::check_consistency), and then every blob of the store read,
    /// decoded with its dictionary and checked against its content hash: the check that reads
    /// every byte. Damaged documents are in [`ConsistencyReport::damaged`], by collection and
    /// key. It reads the whole store; the background scrub does the same in budgeted steps.
    pub async fn check_consistency_deep(&self) -> Result<ConsistencyReport> {
        self.check_open()?;
        let backend = Arc::clone(&self.shared().backend);
        let keyring = self.shared().keyring.clone();
        blocking(move || {
            let m = backend.maintenance();
            let mut report = m.check()?;
            let dictionaries = backend.dictionaries()?;
            deepen(
                &mut report,
                &dictionaries,
                keyring,
                |after, limit| m.blobs_after(after, limit),
                |ids| m.records_naming(ids),
            )?;
            Ok(report)
        })
        .await
    }
}

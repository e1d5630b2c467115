//! Reading every stored byte: the deep check. Blobs are read page by page (in id order,
//! through [`Maintenance::blobs_after`](crate::backend::Maintenance::blobs_after) or the same
//! query on a snapshot file), each decoded with its dictionary and hashed; the records that
//! name a damaged blob are then looked up, so damage is reported by collection and key. Then
//! the deltas SQLite keeps in their record's row (schema 13), which no blob holds, are read
//! page by page in key order ([`Maintenance::inline_deltas_after`](crate::backend::Maintenance::inline_deltas_after))
//! and each decoded over its keyframe and checked against the document's hash, as a read
//! does: a damaged one is reported by its record.
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
    BlobEntry, BlobReference, ConsistencyReport, DamagedDocument, InlineDeltaEntry, Maintenance,
    RecordCursor, StoredBlob, StoredDictionary,
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

    /// Decodes `stored` (read at `location`) and checks its hash; the failure's detail when
    /// it does not verify.
    fn verify(&self, location: &str, stored: &StoredBlob) -> Option<String> {
        let opened;
        let blob = match &self.keyring {
            None => stored,
            Some(ring) => match crate::crypto::open_stored_blob(ring, stored, location) {
                Ok(blob) => {
                    opened = blob;
                    &opened
                }
                Err(crate::StorageError::Corruption { detail, .. }) => return Some(detail),
                Err(other) => return Some(other.to_string()),
            },
        };
        self.decode(location, blob).err().map(|e| match e {
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
            if let Some(detail) = decoders.verify(&format!("blob {}", entry.id), &entry.blob) {
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

/// What one stretch of the pass over deltas kept in their record's row read.
#[derive(Debug, Default)]
pub(crate) struct InlineStretch {
    /// The last record read (the cursor to resume after).
    pub(crate) last: Option<RecordCursor>,
    /// Inline deltas read.
    pub(crate) deltas: u64,
    /// Stored bytes read: each delta's and its keyframe's chunks.
    pub(crate) bytes: u64,
    /// The records whose delta did not verify over its keyframe.
    pub(crate) damaged: Vec<DamagedDocument>,
    /// Every record after the starting one was read.
    pub(crate) finished: bool,
}

/// Verifies the deltas kept in record rows after `after`, page by page, as a read does:
/// each decoded over its keyframe's chunks (opened with the keyring on an encrypted store)
/// and checked against the document's hash, until every one was read or (with `budget`) at
/// least `budget` stored bytes were. The blob pass reads the keyframes but not these bytes.
pub(crate) fn verify_inline_deltas(
    decoders: &Decoders,
    after: Option<RecordCursor>,
    budget: Option<u64>,
    mut page: impl FnMut(Option<&RecordCursor>, usize) -> Result<Vec<InlineDeltaEntry>>,
) -> Result<InlineStretch> {
    let mut stretch = InlineStretch {
        last: after,
        ..InlineStretch::default()
    };
    loop {
        if budget.is_some_and(|b| stretch.bytes >= b) {
            return Ok(stretch);
        }
        let entries = page(stretch.last.as_ref(), PAGE)?;
        let Some(last) = entries.last() else {
            stretch.finished = true;
            return Ok(stretch);
        };
        let next = (last.collection.clone(), last.key.clone());
        if stretch.last.as_ref().is_some_and(|before| &next <= before) {
            // A page that does not move forward would be read again forever.
            stretch.finished = true;
            return Ok(stretch);
        }
        for entry in entries {
            let location = format!("{}/{}", entry.collection, entry.key);
            if let Some(detail) = decoders.verify(&location, &entry.blob) {
                tracing::error!(%location, %detail, "a delta kept in its record failed verification");
                stretch.damaged.push(DamagedDocument {
                    detail: format!("its inline delta: {detail}"),
                    collection: entry.collection,
                    key: entry.key,
                    blob_id: entry.keyframe_id,
                });
            }
            stretch.deltas += 1;
            stretch.bytes = stretch
                .bytes
                .saturating_add(u64::try_from(stored_len(&entry.blob)).unwrap_or(u64::MAX));
        }
        stretch.last = Some(next);
    }
}

/// Adds `found` to `damaged` but for records already there (a delta over a damaged
/// keyframe fails too, and its record is named by the blob pass), in collection and key
/// order.
pub(crate) fn merge_damage(damaged: &mut Vec<DamagedDocument>, found: Vec<DamagedDocument>) {
    for d in found {
        if !damaged
            .iter()
            .any(|x| x.collection == d.collection && x.key == d.key)
        {
            damaged.push(d);
        }
    }
    damaged.sort_by(|a, b| (&a.collection, &a.key).cmp(&(&b.collection, &b.key)));
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

/// The page readers of the deep check: blobs in id order, the records that name given
/// blobs, and the deltas kept in record rows in key order.
pub(crate) struct Readers<P, N, I> {
    pub(crate) blobs: P,
    pub(crate) naming: N,
    pub(crate) inline: I,
}

impl<'m>
    Readers<
        Box<dyn FnMut(i64, usize) -> Result<Vec<BlobEntry>> + 'm>,
        Box<dyn FnOnce(&[i64]) -> Result<Vec<BlobReference>> + 'm>,
        Box<dyn FnMut(Option<&RecordCursor>, usize) -> Result<Vec<InlineDeltaEntry>> + 'm>,
    >
{
    /// The readers of a backend's maintenance interface.
    pub(crate) fn of(m: &'m dyn Maintenance) -> Self {
        Readers {
            blobs: Box::new(|after, limit| m.blobs_after(after, limit)),
            naming: Box::new(|ids| m.records_naming(ids)),
            inline: Box::new(|after, limit| m.inline_deltas_after(after, limit)),
        }
    }
}

/// Adds the deep check to `report`: every blob and every delta kept in a record row read and
/// verified, damage named by key. Only on a store whose engine check passed (reading a
/// damaged file further proves nothing).
pub(crate) fn deepen<P, N, I>(
    report: &mut ConsistencyReport,
    dictionaries: &[StoredDictionary],
    keyring: Option<Arc<Keyring>>,
    readers: Readers<P, N, I>,
) -> Result<()>
where
    P: FnMut(i64, usize) -> Result<Vec<BlobEntry>>,
    N: FnOnce(&[i64]) -> Result<Vec<BlobReference>>,
    I: FnMut(Option<&RecordCursor>, usize) -> Result<Vec<InlineDeltaEntry>>,
{
    if report.integrity != ["ok"] {
        return Ok(());
    }
    let decoders = Decoders::new(dictionaries, keyring);
    let stretch = verify_blobs(&decoders, i64::MIN, None, readers.blobs)?;
    let inline = verify_inline_deltas(&decoders, None, None, readers.inline)?;
    report.deep = true;
    report.blobs_verified = stretch.blobs;
    report.inline_deltas_verified = inline.deltas;
    report.bytes_verified = stretch.bytes.saturating_add(inline.bytes);
    report.damaged_blobs = u64::try_from(stretch.damaged.len()).unwrap_or(u64::MAX);
    report.damaged = name_damage(&stretch.damaged, readers.naming)?;
    merge_damage(&mut report.damaged, inline.damaged);
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
            deepen(&mut report, &dictionaries, keyring, Readers::of(m))?;
            Ok(report)
        })
        .await
    }
}

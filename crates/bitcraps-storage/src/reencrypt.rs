//! Re-encryption after a data-key rotation: blobs still sealed under an older key of their
//! collection are sealed again under its current key, a budget of stored bytes at a time.
//!
//! Each step reads blobs in id order from where the previous step stopped, authenticates
//! each one under an older key, seals its payload again under the current key (fresh nonce,
//! same content address, codec, dictionary and length: dedup and the record rows are
//! untouched) and writes the new bytes in one transaction — each only while the blob still
//! holds the bytes it was read with, so a blob deleted or replaced meanwhile is left alone.
//! The chunks of a large document's chunk list are sealed again the same way, found by
//! their content address (a chunk shared by several lists once). After the last blob, the
//! pass reads the deltas SQLite keeps in record rows and seals those again the same way.
//! When a step reaches the last blob, the pass is complete and the next one starts over. A
//! store without older keys, or whose last complete pass found nothing under them (and no
//! key was added since), does nothing (one look at the keyring).
//!
//! Maintenance runs one step (`maintenance.reencrypt_bytes_per_run`);
//! [`PersistentStorageManager::reencrypt`] runs one now. Dictionaries stay sealed under the
//! key they were trained with, and older keys stay in the store (backups taken before the
//! rotation need them; a shred destroys them all).

use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;

use crate::PersistentStorageManager;
use std::collections::HashSet;

use crate::backend::{
    KeyChange, RecordCursor, ResealedBlob, ResealedChunk, ResealedInline, StoredBlob,
};
use crate::crypto::{DataKey, Keyring};
use crate::error::{Result, StorageError};
use crate::rt::blocking;
use crate::store::Shared;

/// Blobs read per page.
const PAGE: usize = 256;

/// What one re-encryption step did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ReencryptStep {
    /// Blobs read in this step.
    pub blobs_examined: u64,
    /// Stored bytes read in this step.
    pub bytes_examined: u64,
    /// Blobs sealed again under their collection's current key.
    pub blobs_resealed: u64,
    /// Chunks of large documents sealed again under their collection's current key.
    pub chunks_resealed: u64,
    /// Blobs under an older key that did not authenticate: left as they are (the scrub and
    /// the deep check name their records).
    pub blobs_damaged: u64,
    /// This step reached the last blob (or there was nothing under an older key).
    pub pass_complete: bool,
}

/// Where the pass in progress stands.
#[derive(Debug, Default)]
struct Walk {
    /// The last blob id examined (`None`: the next step starts a pass).
    cursor: Option<i64>,
    /// Past the last blob: the pass reads the deltas kept in record rows, after this record
    /// (`Some(None)`: from the first).
    records: Option<Option<RecordCursor>>,
    /// Blobs resealed or found damaged in the pass so far.
    touched: u64,
    /// The number of data keys when a complete pass found nothing under an older key: until
    /// a key is added, there is nothing to do.
    settled_at: Option<usize>,
}

/// The re-encryption walk of one store.
#[derive(Debug, Default)]
pub(crate) struct ReencryptState {
    walk: Mutex<Walk>,
}

impl ReencryptState {
    /// Whether a step may have something to do: some collection has an older key and no
    /// complete pass found everything sealed under the current keys since it was added.
    pub(crate) fn pending(&self, ring: &Keyring) -> bool {
        ring.has_old_versions() && lock(&self.walk).settled_at != Some(ring.key_count())
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One step on a blocking thread.
fn step(shared: &Shared, ring: &Keyring, budget: u64) -> Result<ReencryptStep> {
    let state = &shared.counters.reencrypt;
    let backend = &shared.backend;
    // Rotations made by other nodes (or processes) count too.
    ring.load(&backend.data_keys()?)?;
    let mut done = ReencryptStep::default();
    if !state.pending(ring) {
        done.pass_complete = true;
        return Ok(done);
    }
    let mut walk = lock(&state.walk);
    let m = backend.maintenance();
    let mut after = walk.cursor.unwrap_or(i64::MIN);
    let mut resealed = Vec::new();
    let mut resealed_chunks = Vec::new();
    let mut seen_chunks = HashSet::new();
    let mut resealed_inline = Vec::new();
    let mut records = walk.records.take();
    while done.bytes_examined < budget.max(1) {
        // After the blobs, the deltas kept in record rows (SQLite), in key order.
        if let Some(record_after) = &mut records {
            let page = m.inline_deltas_after(record_after.as_ref(), PAGE)?;
            if page.is_empty() {
                done.pass_complete = true;
                break;
            }
            for entry in page {
                *record_after = Some((entry.collection.clone(), entry.key.clone()));
                examined(&mut done, &entry.blob.data);
                // The keyframe's chunks are the blob pass's.
                let location = || format!("{}/{} (its inline delta)", entry.collection, entry.key);
                if let Some(after) = resealed_bytes(ring, &entry.blob, location, &mut done) {
                    resealed_inline.push(ResealedInline {
                        collection: entry.collection,
                        key: entry.key,
                        before: entry.blob.data,
                        after,
                    });
                }
            }
            continue;
        }
        let page = m.blobs_after(after, PAGE)?;
        if page.is_empty() {
            records = Some(None);
            continue;
        }
        for entry in page {
            after = entry.id;
            examined(&mut done, &entry.blob.data);
            // A list's chunks first, whatever key sealed the list: a version written after
            // the rotation may list chunks an older version stored under the older key.
            for (i, chunk) in entry.blob.chunks.iter().enumerate() {
                let len = u64::try_from(chunk.data.len()).unwrap_or(u64::MAX);
                done.bytes_examined = done.bytes_examined.saturating_add(len);
                let location = format!("blob {} chunk {i}", entry.id);
                match reseal_chunk(ring, chunk, &location, &mut seen_chunks) {
                    Ok(Some(c)) => resealed_chunks.push(c),
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(blob = entry.id, chunk = i, error = %e, "re-encryption skipped a damaged chunk");
                        done.blobs_damaged += 1;
                    }
                }
            }
            let location = || format!("blob {}", entry.id);
            if let Some(bytes) = resealed_bytes(ring, &entry.blob, location, &mut done) {
                resealed.push(ResealedBlob {
                    id: entry.id,
                    before: entry.blob.data,
                    after: bytes,
                });
            }
        }
    }
    if !resealed.is_empty() || !resealed_chunks.is_empty() || !resealed_inline.is_empty() {
        done.blobs_resealed =
            u64::try_from(resealed.len() + resealed_inline.len()).unwrap_or(u64::MAX);
        done.chunks_resealed = u64::try_from(resealed_chunks.len()).unwrap_or(u64::MAX);
        // Key changes of this process (a rotation, a shred) take turns with this write.
        let _turn = ring.turn();
        backend.write_keys(&KeyChange {
            resealed,
            resealed_chunks,
            resealed_inline,
            ..KeyChange::default()
        })?;
    }
    walk.touched += done.blobs_resealed + done.chunks_resealed + done.blobs_damaged;
    if done.pass_complete {
        if walk.touched == 0 {
            walk.settled_at = Some(ring.key_count());
        }
        walk.cursor = None;
        walk.records = None;
        walk.touched = 0;
    } else {
        walk.cursor = Some(after);
        walk.records = records;
    }
    tracing::debug!(
        examined = done.blobs_examined,
        resealed = done.blobs_resealed,
        complete = done.pass_complete,
        "re-encryption step"
    );
    Ok(done)
}

/// Counts one blob (or inline delta) of `data` read by the step.
fn examined(done: &mut ReencryptStep, data: &[u8]) {
    done.blobs_examined += 1;
    let len = u64::try_from(data.len()).unwrap_or(u64::MAX);
    done.bytes_examined = done.bytes_examined.saturating_add(len);
}

/// `blob`'s bytes sealed again under its collection's current key, when an older key
/// sealed it. One that does not authenticate is counted as damaged and left as it is (the
/// scrub and the deep check name its record).
fn resealed_bytes(
    ring: &Keyring,
    blob: &StoredBlob,
    location: impl FnOnce() -> String,
    done: &mut ReencryptStep,
) -> Option<Vec<u8>> {
    let (from, to) = older_key(ring, &blob.data)?;
    let location = location();
    match crate::crypto::reseal_blob(ring, &from, &to, blob, &location) {
        Ok(bytes) => Some(bytes),
        Err(e) => {
            tracing::warn!(%location, error = %e, "re-encryption skipped a damaged blob");
            done.blobs_damaged += 1;
            None
        }
    }
}

/// The older key that sealed `data` and the current key of its collection, when `data`
/// is sealed under an older key.
fn older_key(ring: &Keyring, data: &[u8]) -> Option<(Arc<DataKey>, Arc<DataKey>)> {
    let from = crate::crypto::sealed_key_id(data).and_then(|id| ring.by_id(id))?;
    let to = ring.successor(&from)?;
    Some((from, to))
}

/// `chunk` sealed again under its collection's current key, if an older key sealed it and
/// no other list of this step already resealed it.
fn reseal_chunk(
    ring: &Keyring,
    chunk: &StoredBlob,
    location: &str,
    seen: &mut HashSet<Vec<u8>>,
) -> Result<Option<ResealedChunk>> {
    let Some((from, to)) = older_key(ring, &chunk.data) else {
        return Ok(None);
    };
    if !seen.insert(chunk.hash.clone()) {
        return Ok(None);
    }
    let after = crate::crypto::reseal_blob(ring, &from, &to, chunk, location)?;
    Ok(Some(ResealedChunk {
        hash: chunk.hash.clone(),
        before: chunk.data.clone(),
        after,
    }))
}

impl PersistentStorageManager {
    /// Runs one step of re-encryption now: blobs sealed under an older data key of their
    /// collection (after [`rotate_data_key`](Self::rotate_data_key)) are sealed again under
    /// its current key, from where the last step stopped, until
    /// `maintenance.reencrypt_bytes_per_run` stored bytes were read or the pass is complete.
    /// Maintenance runs one step each time. Reads and writes go on meanwhile; a blob changed
    /// meanwhile is left for the next pass. A plaintext store is a
    /// [`StorageError::Config`] error.
    pub async fn reencrypt(&self) -> Result<ReencryptStep> {
        self.check_open()?;
        self.check_read_write("re-encryption")?;
        let shared = Arc::clone(self.shared());
        let ring = shared.keyring.clone().ok_or_else(|| {
            StorageError::Config("the store is not encrypted (it was opened without a key)".into())
        })?;
        let budget = self.config().maintenance.reencrypt_bytes_per_run;
        blocking(move || step(&shared, &ring, budget)).await
    }
}

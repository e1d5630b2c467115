//! The decoded keyframes of recent deltas (`delta.rs`), so a delta write or read applies its
//! patch without decompressing and verifying the keyframe's chunks (about 1 MiB for a 1 MiB
//! document) each time.
//!
//! An entry is keyed by the collection and the ordered hashes of the keyframe's chunks, and
//! holds their concatenation, inserted only after every chunk was verified against its own
//! hash. Chunks are content-addressed, so an entry can never go stale: an overwrite or a
//! delete that drops the keyframe only makes its entry unused, and eviction removes it. A
//! reader still hashes the whole document it assembles from an entry and its patch.
//!
//! Beside the document, an entry may hold the keyframe's chunks as the values a delta write
//! lists (`store/delta.rs`), built once per keyframe instead of copying the document into
//! them on every write, and the hasher's states over the document (`prefix_hash.rs`), so a
//! delta write hashes only what follows the prefix it shares, and the JSON check's marks over
//! the document (`json/marks.rs`), so `store_json` checks only what follows that prefix; all
//! count towards the entry's bytes.
//!
//! The cache is bounded on its own ([`MAX_BYTES`], [`MAX_ENTRIES`]), apart from the
//! document cache (`cache.size_mb`) like the dictionary decoders, and its bytes are reported
//! in the cache statistics (`keyframe_bytes`). A collection's shred drops its entries.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use super::latest::Latest;
use super::prefix_hash::PrefixHashes;
use crate::backend::StoredBlob;
use crate::json::Marks;
use crate::value::EncodedValue;

/// A keyframe's chunks as the values a delta lists, in order.
pub(crate) type ChunkValues = Arc<[EncodedValue]>;

/// At most this many bytes of decoded keyframes are held.
pub const MAX_BYTES: usize = 16 * 1024 * 1024;
/// At most this many keyframes are held.
pub const MAX_ENTRIES: usize = 8;

/// What identifies a keyframe's document: its collection and its chunks' hashes in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct KeyframeId([u8; 32]);

impl KeyframeId {
    /// The id of the keyframe whose chunks `blob` lists, in `collection`.
    pub(crate) fn of(collection: &str, blob: &StoredBlob) -> Self {
        Self::of_hashes(collection, blob.chunks.iter().map(|c| c.hash.as_slice()))
    }

    /// The id of the keyframe whose chunks have `hashes`, in order, in `collection`.
    pub(crate) fn of_hashes<'a>(collection: &str, hashes: impl Iterator<Item = &'a [u8]>) -> Self {
        let mut h = blake3::Hasher::new();
        h.update(
            &u64::try_from(collection.len())
                .unwrap_or(u64::MAX)
                .to_be_bytes(),
        );
        h.update(collection.as_bytes());
        for hash in hashes {
            h.update(hash);
        }
        Self(*h.finalize().as_bytes())
    }
}

struct Entry {
    id: KeyframeId,
    collection: String,
    document: Arc<[u8]>,
    /// The chunks a delta of this keyframe lists, once a write built them.
    chunks: Option<ChunkValues>,
    /// The hasher's states over the document, once a write built them (`prefix_hash.rs`).
    hashes: Option<Arc<PrefixHashes>>,
    /// The JSON check's marks over the document, once a write built them (`json/marks.rs`).
    marks: Option<Arc<Marks>>,
}

impl Entry {
    /// The bytes the entry holds: the document, and the chunks' copies of it (each chunk's
    /// bytes and, when they are not the same allocation, its compressed form).
    fn bytes(&self) -> usize {
        let chunks = self.chunks.as_deref().map_or(0, |c| {
            c.iter()
                .map(|v| {
                    let stored = if Arc::ptr_eq(&v.raw, &v.stored) {
                        0
                    } else {
                        v.stored.len()
                    };
                    v.raw.len().saturating_add(stored)
                })
                .sum()
        });
        let hashes = self.hashes.as_deref().map_or(0, PrefixHashes::bytes);
        let marks = self.marks.as_deref().map_or(0, Marks::bytes);
        self.document
            .len()
            .saturating_add(chunks)
            .saturating_add(hashes)
            .saturating_add(marks)
    }
}

/// A keyframe held with everything a delta of it needs ([`Keyframes::resumable`]).
pub(crate) struct Resumable {
    pub(crate) document: Arc<[u8]>,
    pub(crate) chunks: ChunkValues,
    pub(crate) hashes: Arc<PrefixHashes>,
    pub(crate) marks: Arc<Marks>,
}

/// The bounded cache of decoded keyframes, most recently used last.
#[derive(Default)]
pub(crate) struct Keyframes {
    entries: Mutex<VecDeque<Entry>>,
    /// Which keyframe each recently written key's next delta would be of (`latest.rs`).
    latest: Latest,
}

impl Keyframes {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The keyframe `id`'s document, if held.
    pub(crate) fn get(&self, id: KeyframeId) -> Option<Arc<[u8]>> {
        self.get_listed(id).map(|(document, _)| document)
    }

    /// The keyframe's document, and its chunks as a delta lists them when a write stored
    /// them ([`Self::set_chunks`]); marks the entry used.
    pub(crate) fn get_listed(&self, id: KeyframeId) -> Option<(Arc<[u8]>, Option<ChunkValues>)> {
        let mut entries = self.lock();
        let at = entries.iter().position(|e| e.id == id)?;
        let entry = entries.remove(at)?;
        let found = (Arc::clone(&entry.document), entry.chunks.clone());
        entries.push_back(entry);
        Some(found)
    }

    /// Everything a delta of the keyframe `id` needs, when a write stored it all with the
    /// entry: the document, its chunks as a delta lists them, the hasher's states and the
    /// JSON check's marks over it; marks the entry used. `None` when any is missing.
    pub(crate) fn resumable(&self, id: KeyframeId) -> Option<Resumable> {
        let mut entries = self.lock();
        let at = entries.iter().position(|e| e.id == id)?;
        let entry = entries.remove(at)?;
        let found = match (&entry.chunks, &entry.hashes, &entry.marks) {
            (Some(chunks), Some(hashes), Some(marks)) => Some(Resumable {
                document: Arc::clone(&entry.document),
                chunks: Arc::clone(chunks),
                hashes: Arc::clone(hashes),
                marks: Arc::clone(marks),
            }),
            _ => None,
        };
        entries.push_back(entry);
        found
    }

    /// Keeps `chunks` (the values of the keyframe's chunks, in order) with the entry of `id`,
    /// if it is still held and stays within the bounds with them.
    pub(crate) fn set_chunks(&self, id: KeyframeId, chunks: ChunkValues) {
        let mut entries = self.lock();
        if let Some(entry) = entries.iter_mut().find(|e| e.id == id) {
            entry.chunks = Some(chunks);
        }
        Self::evict(&mut entries);
    }

    /// The hasher's states over the keyframe `id`'s document, when a write stored them.
    pub(crate) fn hashes(&self, id: KeyframeId) -> Option<Arc<PrefixHashes>> {
        self.lock()
            .iter()
            .find(|e| e.id == id)
            .and_then(|e| e.hashes.clone())
    }

    /// Keeps `hashes` with the entry of `id`, if it is still held and stays within the
    /// bounds with them.
    pub(crate) fn set_hashes(&self, id: KeyframeId, hashes: Arc<PrefixHashes>) {
        let mut entries = self.lock();
        if let Some(entry) = entries.iter_mut().find(|e| e.id == id) {
            entry.hashes = Some(hashes);
        }
        Self::evict(&mut entries);
    }

    /// The JSON check's marks over the keyframe `id`'s document, when a write stored them.
    pub(crate) fn marks(&self, id: KeyframeId) -> Option<Arc<Marks>> {
        self.lock()
            .iter()
            .find(|e| e.id == id)
            .and_then(|e| e.marks.clone())
    }

    /// Keeps `marks` with the entry of `id`, if it is still held and stays within the
    /// bounds with them.
    pub(crate) fn set_marks(&self, id: KeyframeId, marks: Arc<Marks>) {
        let mut entries = self.lock();
        if let Some(entry) = entries.iter_mut().find(|e| e.id == id) {
            entry.marks = Some(marks);
        }
        Self::evict(&mut entries);
    }

    fn evict(entries: &mut VecDeque<Entry>) {
        let mut total: usize = entries.iter().map(Entry::bytes).sum();
        while entries.len() > MAX_ENTRIES || total > MAX_BYTES {
            let Some(old) = entries.pop_front() else {
                break;
            };
            total = total.saturating_sub(old.bytes());
        }
    }

    /// Holds `document`, the verified keyframe `id` of `collection`, evicting the least
    /// recently used ones past the bounds (a document larger than the bound is not held).
    pub(crate) fn insert(&self, id: KeyframeId, collection: &str, document: Arc<[u8]>) {
        if document.len() > MAX_BYTES {
            return;
        }
        let mut entries = self.lock();
        entries.retain(|e| e.id != id);
        entries.push_back(Entry {
            id,
            collection: collection.to_owned(),
            document,
            chunks: None,
            hashes: None,
            marks: None,
        });
        Self::evict(&mut entries);
    }

    /// Drops every keyframe of `collection` (its shred).
    pub(crate) fn forget_collection(&self, collection: &str) {
        self.lock().retain(|e| e.collection != collection);
        self.latest.forget_collection(collection);
    }

    /// What this process last committed under each recently written key (`latest.rs`).
    pub(crate) fn latest(&self) -> &Latest {
        &self.latest
    }

    /// How many keyframes are held, and their bytes.
    pub(crate) fn usage(&self) -> (u64, u64) {
        let entries = self.lock();
        let bytes: usize = entries.iter().map(Entry::bytes).sum();
        (
            u64::try_from(entries.len()).unwrap_or(u64::MAX),
            u64::try_from(bytes).unwrap_or(u64::MAX),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> KeyframeId {
        KeyframeId([n; 32])
    }

    #[test]
    fn holds_at_most_its_bounds_and_evicts_the_oldest() {
        let cache = Keyframes::default();
        for n in 0..10u8 {
            cache.insert(id(n), "c", Arc::from(vec![n; 1000]));
        }
        assert_eq!(cache.usage(), (8, 8000));
        assert!(cache.get(id(0)).is_none() && cache.get(id(1)).is_none());
        // A use makes an entry the most recent: the next insert evicts id(3), not id(2).
        assert_eq!(cache.get(id(2)).as_deref(), Some(&[2u8; 1000][..]));
        cache.insert(id(10), "c", Arc::from(vec![10; 1000]));
        assert!(cache.get(id(2)).is_some() && cache.get(id(3)).is_none());
        cache.insert(id(11), "c", Arc::from(vec![0; MAX_BYTES - 1000]));
        let (entries, bytes) = cache.usage();
        assert!(
            bytes <= u64::try_from(MAX_BYTES).unwrap_or(0),
            "{entries} {bytes}"
        );
        cache.insert(id(12), "c", Arc::from(vec![0; MAX_BYTES + 1]));
        assert!(cache.get(id(12)).is_none());
        cache.forget_collection("c");
        assert_eq!(cache.usage(), (0, 0));
    }

    /// The chunk values a delta write keeps with an entry are returned with it and count
    /// towards the bounds (they copy the document's bytes).
    #[test]
    fn chunk_values_are_kept_with_their_entry_and_counted() {
        let cache = Keyframes::default();
        // Odd chunks compressed (their stored form is a second allocation, 200 bytes), even
        // ones stored as they are (one allocation for both): both are counted as held.
        let value = |n: u8| {
            let raw: Arc<[u8]> = Arc::from(vec![n; 500]);
            let (codec, stored) = if n % 2 == 1 {
                (crate::codec::Codec::Zstd, Arc::from(vec![n; 200]))
            } else {
                (crate::codec::Codec::None, Arc::clone(&raw))
            };
            EncodedValue {
                hash: [n; 32],
                codec,
                raw,
                stored,
                dict_id: None,
                chunks: Arc::from([]),
                delta: false,
                sealed: None,
            }
        };
        cache.insert(id(1), "c", Arc::from(vec![1; 1000]));
        assert!(matches!(cache.get_listed(id(1)), Some((_, None))));
        cache.set_chunks(id(1), Arc::from([value(1), value(2)]));
        let Some((document, chunks)) = cache.get_listed(id(1)) else {
            panic!("the entry is held");
        };
        assert_eq!(document.len(), 1000);
        let hashes: Vec<_> = chunks
            .iter()
            .flat_map(|c| c.iter().map(|v| v.hash))
            .collect();
        assert_eq!(hashes, [[1; 32], [2; 32]]);
        assert_eq!(cache.usage(), (1, 1000 + 500 + 200 + 500));
        // An entry no longer held is not brought back by its chunks.
        cache.set_chunks(id(2), Arc::from([value(3)]));
        assert_eq!(cache.usage(), (1, 2200));
        assert!(cache.get(id(2)).is_none());
        // With its chunks an entry can exceed the bounds, and is evicted.
        cache.insert(id(3), "c", Arc::from(vec![0; MAX_BYTES / 2]));
        cache.set_chunks(
            id(3),
            Arc::from([EncodedValue {
                raw: Arc::from(vec![0; MAX_BYTES / 2 + 1]),
                ..value(4)
            }]),
        );
        assert!(cache.get(id(3)).is_none(), "{:?}", cache.usage());
        assert!(cache.get(id(1)).is_none(), "the older entry went first");
    }

    #[test]
    fn the_id_names_the_collection_and_the_chunks_in_order() {
        let chunk = |b: u8| StoredBlob {
            codec_id: 0,
            raw_len: 1,
            hash: vec![b; 32],
            data: vec![b],
            dict_id: None,
            chunks: Vec::new(),
            keyed: None,
        };
        let list = |chunks: Vec<StoredBlob>| StoredBlob {
            codec_id: super::super::DELTA,
            raw_len: 2,
            hash: vec![0; 32],
            data: Vec::new(),
            dict_id: None,
            chunks,
            keyed: None,
        };
        let ab = list(vec![chunk(1), chunk(2)]);
        let ba = list(vec![chunk(2), chunk(1)]);
        assert_eq!(KeyframeId::of("c", &ab), KeyframeId::of("c", &ab));
        assert_ne!(KeyframeId::of("c", &ab), KeyframeId::of("c", &ba));
        assert_ne!(KeyframeId::of("c", &ab), KeyframeId::of("d", &ab));
    }
}

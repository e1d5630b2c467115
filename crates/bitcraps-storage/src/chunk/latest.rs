//! What this process last committed under a key whose document is chunked: the keyframe a
//! new version would be a delta of, and how many versions after it that delta would be. A
//! delta write (`store/delta.rs`) chooses its base from here when the keyframe is still in
//! the keyframe cache, instead of reading the key's record back from the database — a read
//! that followed every commit again, since the commit had invalidated the reading
//! connection's pages (~16 page reads, about a third of a text rewrite's encode).
//!
//! The writer thread records each committed put of a key (`writer/group.rs`): a keyframe or
//! a delta sets the key's entry, any other put, a delete, an expiry sweep or a prefix delete
//! drops it. Writes this process does not see (another node's, a restore's) can leave an
//! entry stale, and that is harmless: a delta names its keyframe's chunks by content, with
//! their bytes, so a delta of an older keyframe is as correct as one of the current; it may
//! only be larger, or come a keyframe early or late. The entries are few ([`MAX_KEYS`],
//! the most recently written kept): only keys whose keyframe is cached gain from one.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use super::keyframes::KeyframeId;
use crate::value::{ContentHash, EncodedValue};

/// At most this many keys are remembered.
pub(crate) const MAX_KEYS: usize = 64;

struct Written {
    collection: String,
    key: String,
    keyframe: KeyframeId,
    /// How many versions after the keyframe a delta of it would be now.
    next_depth: u32,
    /// The committed version's content hash: a rewrite of exactly it keeps its depth.
    hash: ContentHash,
}

/// What [`Latest::get`] knows of a key's committed version.
pub(crate) struct Last {
    /// The keyframe the next version would be a delta of.
    pub(crate) keyframe: KeyframeId,
    /// That delta's depth.
    pub(crate) next_depth: u32,
    /// The committed version's content hash.
    pub(crate) hash: ContentHash,
}

/// The keys' last committed keyframes, most recently written last.
#[derive(Default)]
pub(crate) struct Latest {
    keys: Mutex<VecDeque<Written>>,
    /// Whether `keys` may hold any: a store of small documents only never takes the lock
    /// for them (the writer thread records every put).
    any: AtomicBool,
}

impl Latest {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Written>> {
        self.keys.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The keyframe the next version of `collection/key` would be a delta of, and that
    /// delta's depth, when this process committed its current version.
    pub(crate) fn get(&self, collection: &str, key: &str) -> Option<Last> {
        self.lock()
            .iter()
            .find(|w| w.key == key && w.collection == collection)
            .map(|w| Last {
                keyframe: w.keyframe,
                next_depth: w.next_depth,
                hash: w.hash,
            })
    }

    /// `value` was committed under `collection/key`.
    pub(crate) fn committed(&self, collection: &str, key: &str, value: &EncodedValue) {
        let depth = if value.delta {
            super::delta::depth(&value.stored, "").ok()
        } else if value.is_chunked() {
            Some(0)
        } else {
            None
        };
        if depth.is_none() && !self.any.load(Ordering::Acquire) {
            return;
        }
        let mut keys = self.lock();
        keys.retain(|w| w.key != key || w.collection != collection);
        let Some(depth) = depth else {
            return;
        };
        let hashes = value.chunks.iter().map(|c| &c.hash[..]);
        self.any.store(true, Ordering::Release);
        keys.push_back(Written {
            collection: collection.to_owned(),
            key: key.to_owned(),
            keyframe: KeyframeId::of_hashes(collection, hashes),
            next_depth: depth.saturating_add(1),
            hash: value.hash,
        });
        while keys.len() > MAX_KEYS {
            keys.pop_front();
        }
    }

    /// `collection/key` was deleted (or expired).
    pub(crate) fn forget(&self, collection: &str, key: &str) {
        if self.any.load(Ordering::Acquire) {
            self.lock()
                .retain(|w| w.key != key || w.collection != collection);
        }
    }

    /// Every key of `collection` (its shred).
    pub(crate) fn forget_collection(&self, collection: &str) {
        self.lock().retain(|w| w.collection != collection);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::codec::Codec;

    fn value(chunks: &[u8], delta_depth: Option<u32>) -> EncodedValue {
        let chunk = |n: u8| EncodedValue {
            hash: [n; 32],
            codec: Codec::None,
            raw: Arc::from(vec![n; 10]),
            stored: Arc::from(vec![n; 10]),
            dict_id: None,
            chunks: Arc::from([]),
            delta: false,
            sealed: None,
        };
        let stored = match delta_depth {
            Some(d) => d.to_be_bytes().to_vec(),
            None => vec![0; 4],
        };
        EncodedValue {
            hash: [0; 32],
            codec: Codec::None,
            raw: Arc::from(vec![0; 20]),
            stored: Arc::from(stored),
            dict_id: None,
            chunks: chunks.iter().map(|&n| chunk(n)).collect(),
            delta: delta_depth.is_some(),
            sealed: None,
        }
    }

    /// The keyframe and the next depth `get` gives.
    fn got(latest: &Latest, collection: &str, key: &str) -> Option<(KeyframeId, u32)> {
        latest
            .get(collection, key)
            .map(|last| (last.keyframe, last.next_depth))
    }

    #[test]
    fn a_keyframe_then_its_deltas_name_it_one_version_deeper_each() {
        let latest = Latest::default();
        let id = |chunks: &[u8]| {
            let v = value(chunks, None);
            KeyframeId::of_hashes("c", v.chunks.iter().map(|c| &c.hash[..]))
        };
        assert_eq!(got(&latest, "c", "k"), None);
        latest.committed("c", "k", &value(&[1, 2], None));
        assert_eq!(got(&latest, "c", "k"), Some((id(&[1, 2]), 1)));
        latest.committed("c", "k", &value(&[1, 2], Some(1)));
        assert_eq!(got(&latest, "c", "k"), Some((id(&[1, 2]), 2)));
        latest.committed("c", "k", &value(&[1, 2], Some(7)));
        assert_eq!(got(&latest, "c", "k"), Some((id(&[1, 2]), 8)));
        assert_eq!(got(&latest, "c", "other"), None);
        assert_eq!(got(&latest, "d", "k"), None);
        // A whole (unchunked) value replaces it: nothing to be a delta of.
        latest.committed("c", "k", &value(&[], None));
        assert_eq!(got(&latest, "c", "k"), None);
        latest.committed("c", "k", &value(&[3], None));
        latest.forget("c", "k");
        assert_eq!(got(&latest, "c", "k"), None);
        latest.committed("c", "k", &value(&[3], None));
        latest.committed("d", "k", &value(&[3], None));
        latest.forget_collection("c");
        assert_eq!(got(&latest, "c", "k"), None);
        assert!(got(&latest, "d", "k").is_some());
    }

    #[test]
    fn holds_the_most_recently_written_keys_only() {
        let latest = Latest::default();
        for n in 0..MAX_KEYS + 3 {
            latest.committed("c", &n.to_string(), &value(&[1], None));
        }
        assert_eq!(latest.lock().len(), MAX_KEYS);
        assert_eq!(got(&latest, "c", "0"), None);
        assert!(got(&latest, "c", &(MAX_KEYS + 2).to_string()).is_some());
    }
}

//! A document's key as the read path sees it: collection and key, never joined into a
//! `String` on a hit, and their keyed hash, computed once per read and shared by the cache
//! (its slot) and the access tracker (its map).
//!
//! It names exactly what the joined cache key (`collection` NUL `key`, [`super::cache_key`])
//! names: [`DocKey::of`] a joined key hashes, compares and picks a stripe like [`DocKey::new`]
//! of its parts, so the write path (which holds joined keys) and the read path (which holds
//! parts) meet in the same slot.

use std::hash::{BuildHasher, Hasher};

use super::stripes::STRIPES;
use super::{fnv_extend, key_hasher};

/// A collection and a key, with their keyed 64-bit hash.
#[derive(Debug, Clone, Copy)]
pub struct DocKey<'a> {
    collection: &'a str,
    /// `None` for a joined key without a NUL (tests' and tools' bare keys): the whole key is
    /// then `collection`.
    key: Option<&'a str>,
    hash: u64,
}

impl<'a> DocKey<'a> {
    /// The key of document `key` in `collection`.
    pub fn new(collection: &'a str, key: &'a str) -> Self {
        Self::from_parts(collection, Some(key))
    }

    /// The key named by a joined cache key ([`super::cache_key`]).
    pub fn of(cache_key: &'a str) -> Self {
        match cache_key.split_once('\0') {
            Some((collection, key)) => Self::from_parts(collection, Some(key)),
            None => Self::from_parts(cache_key, None),
        }
    }

    fn from_parts(collection: &'a str, key: Option<&'a str>) -> Self {
        let mut h = key_hasher().build_hasher();
        h.write(collection.as_bytes());
        if let Some(key) = key {
            h.write_u8(0);
            h.write(key.as_bytes());
        }
        DocKey {
            collection,
            key,
            hash: h.finish(),
        }
    }

    /// A key with a hash of the test's choosing (to stage collisions).
    #[cfg(test)]
    pub(crate) fn with_hash(collection: &'a str, key: &'a str, hash: u64) -> Self {
        DocKey {
            collection,
            key: Some(key),
            hash,
        }
    }

    /// The keyed hash (the cache's slot; the access tracker's map key).
    pub fn hash(&self) -> u64 {
        self.hash
    }

    /// The collection.
    pub fn collection(&self) -> &'a str {
        self.collection
    }

    /// The key within the collection (empty for a bare joined key).
    pub fn key(&self) -> &'a str {
        self.key.unwrap_or_default()
    }

    /// The joined cache key, built (for the miss path and the tracker's first count).
    pub fn joined(&self) -> String {
        match self.key {
            Some(key) => super::cache_key(self.collection, key),
            None => self.collection.to_owned(),
        }
    }

    /// Length of the joined key in bytes.
    pub fn joined_len(&self) -> usize {
        self.collection.len() + self.key.map_or(0, |k| k.len() + 1)
    }

    /// Whether `joined` (a joined cache key's bytes) names this document.
    pub fn matches(&self, joined: &[u8]) -> bool {
        let c = self.collection.as_bytes();
        if joined.len() != self.joined_len() || joined.get(..c.len()) != Some(c) {
            return false;
        }
        match self.key {
            None => true,
            Some(key) => {
                joined.get(c.len()) == Some(&0) && joined.get(c.len() + 1..) == Some(key.as_bytes())
            }
        }
    }

    /// The generation stripe of this key: the one [`super::Stripes::of`] picks for the
    /// joined key.
    pub(super) fn stripe(&self) -> usize {
        let mut h = fnv_extend(super::FNV_OFFSET, self.collection.as_bytes());
        if let Some(key) = self.key {
            h = fnv_extend(fnv_extend(h, &[0]), key.as_bytes());
        }
        usize::try_from(h).unwrap_or(0) % STRIPES
    }
}

#[cfg(test)]
mod tests {
    use super::super::{cache_key, stripes::Stripes};
    use super::*;

    #[test]
    fn parts_and_joined_keys_meet_in_one_slot_and_stripe() {
        for (c, k) in [
            ("games", "g-1"),
            ("c", ""),
            ("", "k"),
            ("tables", "t\u{e9}-9"),
        ] {
            let joined = cache_key(c, k);
            let (parts, of) = (DocKey::new(c, k), DocKey::of(&joined));
            assert_eq!(parts.hash(), of.hash(), "{joined:?}");
            assert_eq!(parts.stripe(), Stripes::of(&joined), "{joined:?}");
            assert_eq!(parts.joined(), joined);
            assert!(parts.matches(joined.as_bytes()) && of.matches(joined.as_bytes()));
            assert_eq!((of.collection(), of.key()), (c, k));
        }
        let bare = DocKey::of("k");
        assert_eq!(bare.stripe(), Stripes::of("k"));
        assert!(bare.matches(b"k") && !bare.matches(b"k\0") && !bare.matches(b"kk"));
    }

    #[test]
    fn a_key_matches_only_itself() {
        let doc = DocKey::new("games", "g-1");
        for other in [
            cache_key("games", "g-2"),
            cache_key("games", "g-10"),
            cache_key("games", "g-"),
            cache_key("game", "s\0g-1"),
            "games\u{1}g-1".to_owned(),
            "gamesXg-1".to_owned(),
        ] {
            assert!(!doc.matches(other.as_bytes()), "{other:?}");
        }
        assert_ne!(doc.hash(), DocKey::new("games", "g-2").hash());
    }
}

//! The content hash of a new version from its keyframe's hashing state (issue #16).
//!
//! Every write hashes its document (blake3, the content hash a read verifies): ~1.75 M
//! instructions for a 1 MiB document, the largest part of a delta write after the caller's
//! serialization. A version that shares its first bytes with its keyframe — an append shares
//! all but its last few — need not hash them again: blake3 is incremental, and the same
//! bytes fed in any number of updates give the same hash. So a keyframe in the cache keeps
//! the hasher's state every [`STRIDE`] bytes of its document; the hash of a new version
//! resumes from the last state inside the prefix it shares with the keyframe (found by
//! comparing the bytes) and hashes only the rest.

use crate::value::ContentHash;

/// Bytes of the keyframe between two kept states.
pub(crate) const STRIDE: usize = 16 * 1024;

/// The hasher's states over a keyframe document: `states[i]` has consumed its first
/// `i * STRIDE` bytes.
#[derive(Clone)]
pub(crate) struct PrefixHashes {
    states: Vec<blake3::Hasher>,
}

impl std::fmt::Debug for PrefixHashes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrefixHashes")
            .field("states", &self.states.len())
            .finish()
    }
}

impl PrefixHashes {
    /// The states over `document` (one pass of blake3 over it).
    pub(crate) fn of(document: &[u8]) -> Self {
        let mut hasher = blake3::Hasher::new();
        let mut states = vec![hasher.clone()];
        for block in document.chunks_exact(STRIDE) {
            hasher.update(block);
            states.push(hasher.clone());
        }
        Self { states }
    }

    /// The states over `document` and its blake3 hash, in one pass.
    pub(crate) fn of_with_hash(document: &[u8]) -> (Self, ContentHash) {
        Self { states: Vec::new() }.resumed(0, document)
    }

    /// The states over `raw`, a document whose first `shared` bytes are those of the
    /// document these states are over (`chunk::common_prefix`), and blake3 of `raw`: the
    /// states inside that prefix are kept, and only what follows the last of them is
    /// hashed. What [`PrefixHashes::of`] and a whole hash of `raw` give, in one pass over
    /// the new bytes (a new keyframe of a document that grows by appends: its last few KiB).
    pub(crate) fn resumed(&self, shared: usize, raw: &[u8]) -> (Self, ContentHash) {
        let kept = (shared / STRIDE).saturating_add(1).min(self.states.len());
        let mut states = self.states.get(..kept).unwrap_or_default().to_vec();
        let mut hasher = match states.last() {
            Some(state) => state.clone(),
            None => {
                states.push(blake3::Hasher::new());
                blake3::Hasher::new()
            }
        };
        let at = states.len().saturating_sub(1).saturating_mul(STRIDE);
        let mut blocks = raw.get(at..).unwrap_or_default().chunks_exact(STRIDE);
        for block in &mut blocks {
            hasher.update(block);
            states.push(hasher.clone());
        }
        hasher.update(blocks.remainder());
        (Self { states }, *hasher.finalize().as_bytes())
    }

    /// The bytes the states take.
    pub(crate) fn bytes(&self) -> usize {
        self.states
            .len()
            .saturating_mul(std::mem::size_of::<blake3::Hasher>())
    }

    /// blake3 of `raw`, hashing only what follows the last kept state of the document the
    /// states are over inside the prefix `raw` shares with it, its first `shared` bytes
    /// (`chunk::common_prefix`): the states of its whole blocks.
    pub(crate) fn hash(&self, shared: usize, raw: &[u8]) -> ContentHash {
        let shared_blocks = shared / STRIDE;
        let (mut hasher, at) = match self.states.get(shared_blocks) {
            Some(state) => (state.clone(), shared_blocks.saturating_mul(STRIDE)),
            None => (blake3::Hasher::new(), 0),
        };
        hasher.update(raw.get(at..).unwrap_or_default());
        *hasher.finalize().as_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hash resumed from a state equals blake3 of the whole, for versions that share
    /// all, part, none of the keyframe, or are shorter than it.
    #[test]
    fn resumed_hashes_equal_whole_hashes() {
        let base: Vec<u8> = (0..STRIDE * 5 + 123)
            .map(|i| u8::try_from(i * 7 % 251).unwrap_or(0))
            .collect();
        let states = PrefixHashes::of(&base);
        assert_eq!(states.states.len(), 6);
        let mut appended = base.clone();
        appended.extend_from_slice(b"one more roll");
        let mut edited = base.clone();
        if let Some(b) = edited.get_mut(STRIDE * 2 + 5) {
            *b ^= 1;
        }
        let mut first = base.clone();
        if let Some(b) = first.first_mut() {
            *b ^= 1;
        }
        let short = base.get(..STRIDE + 10).unwrap_or_default().to_vec();
        for raw in [&base, &appended, &edited, &first, &short, &Vec::new()] {
            let shared = super::super::common_prefix(&base, raw);
            assert_eq!(&states.hash(shared, raw), blake3::hash(raw).as_bytes());
            // Resumed states are the states of a whole pass, with the whole hash.
            let (resumed, hash) = states.resumed(shared, raw);
            assert_eq!(&hash, blake3::hash(raw).as_bytes());
            let whole = PrefixHashes::of(raw);
            let (fresh, fresh_hash) = PrefixHashes::of_with_hash(raw);
            assert_eq!(fresh_hash, hash);
            assert_eq!(fresh.states.len(), whole.states.len());
            assert_eq!(resumed.states.len(), whole.states.len());
            for (a, b) in resumed.states.iter().zip(&whole.states) {
                assert_eq!(a.finalize(), b.finalize());
            }
        }
    }
}

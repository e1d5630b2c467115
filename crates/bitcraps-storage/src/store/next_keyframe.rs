//! A new keyframe of a key whose last keyframe is in memory (issue #16): after
//! `compression.keyframe_interval` deltas (or a version a delta does not suit), the new
//! version is stored whole again, as a chunk list. Encoded from nothing, that costs about
//! what a rewrite of the whole document costs — FastCDC over it, every chunk compressed and
//! hashed, the document hashed, and from JSON text its check and marks — once every 64
//! versions, ~15 delta rewrites' worth. But the new keyframe shares all but its last bytes
//! with the last one, and each of those steps can resume where the two part:
//!
//! - the chunks the cut would make again are the last keyframe's, already encoded
//!   (`chunk::cut_resumed`); only the rest is cut and compressed;
//! - the hasher's states inside the shared prefix are the last keyframe's; the document's
//!   hash and its new states hash only what follows them (`PrefixHashes::resumed`);
//! - the JSON check's marks inside the prefix are the last keyframe's; the check resumes from
//!   the last of them, marking the rest (`Marks::resumed`, by the caller).
//!
//! Each gives exactly what the whole pass gives (the same chunks, hash, states and marks),
//! so the keyframe is the one a fresh encode would store.

use std::sync::Arc;

use super::Shared;
use super::delta::{Base, remember_keyframe};
use crate::chunk::prefix_hash::PrefixHashes;
use crate::dictionary::EncoderDict;
use crate::error::Result;
use crate::json::Marks;
use crate::value::{EncodedValue, Pipeline};

/// `raw`, a new version of `collection/key` whose first `shared` bytes are those of its
/// last keyframe `base`, encoded as a keyframe resumed from `base` and kept in the keyframe
/// cache (with `marks`, the JSON check's marks over `raw` when the caller took them, and
/// the hasher's states); sealed ahead of the writer on an encrypted store. Blocking.
pub(super) fn resumed(
    shared: &Shared,
    pipeline: &Pipeline,
    (collection, key): (&str, &str),
    (base, prefix): (&Base, usize),
    raw: Arc<[u8]>,
    dict: Option<&EncoderDict>,
    marks: Option<Marks>,
) -> Result<EncodedValue> {
    pipeline.check_size(collection, key, raw.len())?;
    let chunks = crate::chunk::cut_resumed(&raw, (&base.chunks, prefix), &|bytes| {
        pipeline.encode_whole(bytes, dict)
    })?;
    let (hashes, hash) = match shared.keyframes.hashes(base.id) {
        Some(states) => states.resumed(prefix, &raw),
        None => PrefixHashes::of_with_hash(&raw),
    };
    let encoded = EncodedValue::chunked(hash, raw, chunks);
    remember_keyframe(shared, collection, &encoded, marks, Some(hashes));
    crate::crypto::preseal(shared.keyring.as_deref(), collection, encoded)
}

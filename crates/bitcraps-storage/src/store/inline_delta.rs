//! A delta encoded on the caller's task (issue #16): when this process wrote the key last
//! and its keyframe is in memory with everything a delta needs (its chunk values, the
//! hasher's states and the JSON check's marks: `Keyframes::resumable`), a text rewrite that
//! is an append or a small edit costs a `memcmp` of the document against the keyframe, a
//! check of its last few KiB, a splice and a hash of its changed tail, and one copy of the
//! text — no I/O, and less CPU than compressing a 256 KiB document, which `store` already
//! does on the caller's task (`INLINE_ENCODE_LIMIT`). Handing that to the blocking pool and
//! back cost two of the rewrite's four thread hand-offs, the larger part of its wall time
//! on a busy machine. Anything else — a base to read from the database, a chain at its
//! longest, a check or a middle that would be long, a splice that is not small (a zstd
//! patch is then tried) — takes the blocking pool as before. The delta is the one that path
//! would write, byte for byte.

use std::sync::Arc;

use super::Shared;
use crate::chunk::{self, delta};
use crate::error::Result;
use crate::value::{EncodedValue, Pipeline};

/// The largest document encoded here: comparing and copying 4 MiB is ~0.5 ms.
const MAX_DOCUMENT: usize = 4 * 1024 * 1024;
/// The most text checked here: what follows the keyframe's last mark inside the prefix.
const MAX_CHECKED: usize = 64 * 1024;
/// The largest middle (the bytes not shared with the keyframe) compressed here.
const MAX_MIDDLE: usize = 32 * 1024;

/// The JSON text `text` of `collection/key` checked and encoded as a delta of the keyframe
/// this process last wrote for the key, when that keyframe is in memory and the delta is a
/// small splice; `None` (nothing done but comparing) when the blocking pool should encode it.
pub(super) fn encode(
    shared: &Shared,
    pipeline: &Pipeline,
    (collection, key): (&str, &str),
    text: &str,
) -> Result<Option<EncodedValue>> {
    if text.len() > MAX_DOCUMENT || text.len() <= pipeline.chunk_threshold {
        return Ok(None);
    }
    let Some(last) = shared.keyframes.latest().get(collection, key) else {
        return Ok(None);
    };
    let (id, depth) = (last.keyframe, last.next_depth);
    if super::delta::chain_full(pipeline, depth) {
        return Ok(None);
    }
    let Some(base) = shared.keyframes.resumable(id) else {
        return Ok(None);
    };
    let raw = text.as_bytes();
    let prefix = chunk::common_prefix(&base.document, raw);
    let Some(verdict) = base.marks.check_within(prefix, raw, MAX_CHECKED) else {
        return Ok(None);
    };
    super::json::checked(collection, key, text, verdict)?;
    let level = pipeline.level;
    let splice = (&*base.document, raw, prefix);
    let Some(mut stored) = delta::encode_small_splice(splice, level, depth, MAX_MIDDLE)? else {
        return Ok(None);
    };
    let hash = base.hashes.hash(prefix, raw);
    let kept = super::delta::depth_of(depth, Some(&last.hash), &hash);
    if kept != depth {
        // Exactly the current version: encoded again at its depth (rare; a splice is cheap).
        let Some(again) = delta::encode_small_splice(splice, level, kept, MAX_MIDDLE)? else {
            return Ok(None);
        };
        stored = again;
    }
    // The one copy of the text: the writer and the cache share it from here on.
    let value = EncodedValue::delta(hash, Arc::from(raw), stored.into(), base.chunks);
    crate::crypto::preseal(shared.keyring.as_deref(), collection, value).map(Some)
}

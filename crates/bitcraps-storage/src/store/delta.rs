//! Choosing a delta for an overwrite (`chunk/delta.rs`): before a large document is encoded,
//! the key's current record is read (or, when this process wrote it last and its keyframe is
//! cached, what it wrote is taken instead: `chunk/latest.rs`); when it is a keyframe (a chunk
//! list) or a delta fewer
//! than `compression.keyframe_interval` versions after one, the new version is encoded
//! against that keyframe's document (`chunk/delta.rs`: a splice of its first and last bytes
//! when that is small, as for an append; else the smaller of the splice and a zstd patch)
//! and kept when the result is small. Anything that keeps a
//! delta from being made — no record, a small or whole one, a chunk that does not verify —
//! falls back to chunking: a write never fails for want of a delta. The delta names the
//! keyframe's chunks by content (with their bytes), so it stays correct whatever a racing
//! writer did to the key meanwhile.

use std::sync::Arc;

use super::Shared;
use crate::backend::StoredBlob;
use crate::chunk::keyframes::{ChunkValues, KeyframeId};
use crate::chunk::prefix_hash::PrefixHashes;
use crate::chunk::{self, delta};
use crate::codec::Codec;
use crate::dictionary::EncoderDict;
use crate::error::Result;
use crate::json::Marks;
use crate::value::{ContentHash, EncodedValue, Pipeline};

/// A delta of `raw` against `collection/key`'s keyframe, if one is worth it.
/// Blocking: reads the record and decompresses the keyframe (see [`base`]).
pub(super) fn try_delta(
    shared: &Shared,
    pipeline: &Pipeline,
    collection: &str,
    key: &str,
    raw: &Arc<[u8]>,
) -> Result<Option<EncodedValue>> {
    match base(shared, pipeline, collection, key, raw.len())? {
        Some(base) => {
            let prefix = chunk::common_prefix(&base.document, raw);
            against(shared, pipeline, &base, raw, prefix)
        }
        None => Ok(None),
    }
}

/// The keyframe a new version of a key would be a delta of, and how deep that delta is.
pub(super) struct Base {
    pub(super) id: KeyframeId,
    /// The keyframe's document.
    pub(super) document: Arc<[u8]>,
    pub(super) chunks: ChunkValues,
    depth: u32,
    /// The key's current version's content hash, when it is a delta of this keyframe (one
    /// version less deep): a rewrite of exactly it keeps that depth ([`depth_of`]).
    current: Option<ContentHash>,
    /// The chain is at its longest: the new version is a keyframe, which may be cut and
    /// hashed from this one (`next_keyframe.rs`), not a delta of it.
    pub(super) full: bool,
}

/// The keyframe a new version of `collection/key`, `len` bytes long, would be a delta of:
/// `None` when it would not be one (deltas off, a small document, no record, a record that
/// is neither a keyframe nor a delta, a chain at its longest, a chunk that does not verify).
/// Blocking: reads the record — unless this process wrote the key last and its keyframe is
/// cached (`chunk/latest.rs`) — and, when the keyframe is not cached, its chunks.
pub(super) fn base(
    shared: &Shared,
    pipeline: &Pipeline,
    collection: &str,
    key: &str,
    len: usize,
) -> Result<Option<Base>> {
    Ok(base_or_full(shared, pipeline, collection, key, len)?.filter(|b| !b.full))
}

/// Like [`base`], and also the keyframe of a chain at its longest when it is cached
/// (marked [`Base::full`]): the new version is then a keyframe cut and hashed from it.
pub(super) fn base_or_full(
    shared: &Shared,
    pipeline: &Pipeline,
    collection: &str,
    key: &str,
    len: usize,
) -> Result<Option<Base>> {
    if pipeline.keyframe_interval == 0
        || pipeline.chunk_threshold == 0
        || len <= pipeline.chunk_threshold
    {
        return Ok(None);
    }
    // This process's last write of the key, when its keyframe is cached: no record read.
    if let Some(last) = shared.keyframes.latest().get(collection, key) {
        let (id, depth) = (last.keyframe, last.next_depth);
        let full = chain_full(pipeline, depth);
        if let Some(mut base) = cached(shared, pipeline, id, depth) {
            base.current = Some(last.hash);
            return Ok(Some(base));
        }
        if full {
            return Ok(None);
        }
    }
    let Some(record) = shared.backend.get(collection, key)? else {
        return Ok(None);
    };
    let blob = record.blob;
    let location = format!("{collection}/{key}");
    let depth = match blob.codec_id {
        chunk::CHUNKED => 1,
        chunk::DELTA => match delta::depth(&blob.data, &location) {
            Ok(d) => d.saturating_add(1),
            Err(_) => return Ok(None),
        },
        _ => return Ok(None),
    };
    if chain_full(pipeline, depth) {
        return Ok(cached(
            shared,
            pipeline,
            KeyframeId::of(collection, &blob),
            depth,
        ));
    }
    // An encrypted blob's hash is a keyed address, never equal to a plain content hash.
    let current = (blob.codec_id == chunk::DELTA && blob.keyed.is_none())
        .then(|| ContentHash::try_from(&blob.hash[..]).ok())
        .flatten();
    let Some((document, chunks)) = keyframe(shared, collection, &blob, &location) else {
        return Ok(None);
    };
    Ok(Some(Base {
        id: KeyframeId::of(collection, &blob),
        document,
        chunks,
        depth,
        current,
        full: false,
    }))
}

/// The keyframe `id` as the base of a version `depth` after it, when it is cached with its
/// chunk values.
fn cached(shared: &Shared, pipeline: &Pipeline, id: KeyframeId, depth: u32) -> Option<Base> {
    match shared.keyframes.get_listed(id) {
        Some((document, Some(chunks))) => Some(Base {
            id,
            document,
            chunks,
            depth,
            current: None,
            full: chain_full(pipeline, depth),
        }),
        _ => None,
    }
}

/// Whether a delta `depth` versions after its keyframe would make the chain too long: the
/// next version is a keyframe instead.
pub(super) fn chain_full(pipeline: &Pipeline, depth: u32) -> bool {
    depth >= pipeline.keyframe_interval || depth > delta::MAX_DEPTH
}

/// The depth of a new version whose content hash is `hash`, `next` versions after its
/// keyframe unless it is exactly the current version (content hash `current`), a delta of the
/// same keyframe: that one keeps the current depth, so identical rewrites never run the chain
/// to its end (its delta is then the current one, byte for byte).
pub(super) fn depth_of(next: u32, current: Option<&ContentHash>, hash: &ContentHash) -> u32 {
    if next >= 2 && current == Some(hash) {
        next - 1
    } else {
        next
    }
}

/// `raw` as a delta of `base`, whose document's first `prefix` bytes it shares
/// (`chunk::common_prefix`, computed once per write), if that is small enough to be worth
/// it. The delta's bytes are `raw` itself, shared, not a copy.
pub(super) fn against(
    shared: &Shared,
    pipeline: &Pipeline,
    base: &Base,
    raw: &Arc<[u8]>,
    prefix: usize,
) -> Result<Option<EncodedValue>> {
    let mut stored = delta::encode((&base.document, raw, prefix), pipeline.level, base.depth)?;
    if stored.len() > delta::MAX_PATCH {
        return Ok(None);
    }
    let hash = prefix_hashes(shared, base.id, &base.document).hash(prefix, raw);
    let depth = depth_of(base.depth, base.current.as_ref(), &hash);
    if depth != base.depth {
        // Exactly the current version: encoded again at its depth (rare).
        stored = delta::encode((&base.document, raw, prefix), pipeline.level, depth)?;
    }
    let (raw, chunks) = (Arc::clone(raw), Arc::clone(&base.chunks));
    Ok(Some(EncodedValue::delta(hash, raw, stored.into(), chunks)))
}

/// The JSON check's marks over `base`'s document, from the cache or built (one check of the
/// document) and kept there: a new version is then checked from the last mark inside the
/// prefix it shares with the keyframe (`json/marks.rs`).
pub(super) fn marks(shared: &Shared, base: &Base) -> Arc<Marks> {
    if let Some(marks) = shared.keyframes.marks(base.id) {
        return marks;
    }
    let marks = Arc::new(Marks::of(&base.document));
    shared.keyframes.set_marks(base.id, Arc::clone(&marks));
    marks
}

/// The keyframe document `blob`'s chunks hold, and those chunks as values to list again;
/// `None` when a chunk does not verify. A keyframe in the cache (`chunk/keyframes.rs`) is
/// not decoded again, and its chunk values are built once (each chunk's bytes its slice of
/// the cached document) and kept with it: a write of a delta copies nothing of the keyframe.
fn keyframe(
    shared: &Shared,
    collection: &str,
    blob: &StoredBlob,
    location: &str,
) -> Option<(Arc<[u8]>, ChunkValues)> {
    let id = KeyframeId::of(collection, blob);
    if let Some((base, listed)) = shared.keyframes.get_listed(id) {
        if let Some(chunks) = listed {
            return Some((base, chunks));
        }
        if let Some(chunks) = slices(&base, blob) {
            let chunks: ChunkValues = chunks.into();
            shared.keyframes.set_chunks(id, Arc::clone(&chunks));
            return Some((base, chunks));
        }
    }
    let (base, chunks) = decode_keyframe(shared, blob, location)?;
    let base: Arc<[u8]> = base.into();
    let chunks: ChunkValues = chunks.into();
    shared.keyframes.insert(id, collection, Arc::clone(&base));
    shared.keyframes.set_chunks(id, Arc::clone(&chunks));
    Some((base, chunks))
}

/// What a large document's write stores: `delta` when one was worth it, else `raw` encoded
/// whole (its chunks sharing `raw`, not copying it) and kept in the keyframe cache (with
/// `marks`, see [`remember_keyframe`]); sealed ahead of the writer on an encrypted store.
/// Blocking.
pub(super) fn or_keyframe(
    shared: &Shared,
    pipeline: &Pipeline,
    (collection, key): (&str, &str),
    delta: Option<EncodedValue>,
    raw: Arc<[u8]>,
    dict: Option<&EncoderDict>,
    marks: Option<Marks>,
) -> Result<EncodedValue> {
    let encoded = match delta {
        Some(delta) => delta,
        None => {
            let encoded = pipeline.encode_shared_with(collection, key, raw, dict)?;
            remember_keyframe(shared, collection, &encoded, marks, None);
            encoded
        }
    };
    crate::crypto::preseal(shared.keyring.as_deref(), collection, encoded)
}

/// Keeps the keyframe `encoded` (a chunked value this write is storing for
/// `collection`) in the keyframe cache with its chunk values, so the deltas that follow it
/// do not read its chunks back and decompress them (with `marks`, the JSON check's marks
/// over the document when the write took them, `store_json`'s next check resumes, and with
/// `hashes`, the hasher's states over it when the write took them, the next delta's hash
/// does). The bytes are the writer's own; the entry is keyed by the chunks' hashes, so it
/// serves only a record that lists them.
pub(super) fn remember_keyframe(
    shared: &Shared,
    collection: &str,
    encoded: &EncodedValue,
    marks: Option<Marks>,
    hashes: Option<PrefixHashes>,
) {
    if !encoded.is_chunked() || encoded.delta {
        return;
    }
    let id = KeyframeId::of_hashes(collection, encoded.chunks.iter().map(|c| &c.hash[..]));
    shared
        .keyframes
        .insert(id, collection, Arc::clone(&encoded.raw));
    shared.keyframes.set_chunks(id, Arc::clone(&encoded.chunks));
    if let Some(marks) = marks {
        shared.keyframes.set_marks(id, Arc::new(marks));
    }
    if let Some(hashes) = hashes {
        shared.keyframes.set_hashes(id, Arc::new(hashes));
    }
}

/// The hasher's states over the keyframe document `base` (id `id`), from the cache or built
/// (one pass of blake3) and kept there: a delta's hash then resumes after the prefix it
/// shares with its keyframe (`chunk/prefix_hash.rs`).
fn prefix_hashes(shared: &Shared, id: KeyframeId, base: &[u8]) -> Arc<PrefixHashes> {
    if let Some(hashes) = shared.keyframes.hashes(id) {
        return hashes;
    }
    let hashes = Arc::new(PrefixHashes::of(base));
    shared.keyframes.set_hashes(id, Arc::clone(&hashes));
    hashes
}

/// `blob`'s chunks as values whose bytes are consecutive slices of `base`, the cached
/// document of its keyframe; `None` when their lengths do not add up to it.
fn slices(base: &[u8], blob: &StoredBlob) -> Option<Vec<EncodedValue>> {
    let mut at = 0usize;
    let mut chunks = Vec::with_capacity(blob.chunks.len());
    for c in &blob.chunks {
        let len = usize::try_from(c.raw_len).ok()?;
        let end = at.checked_add(len)?;
        let raw: Arc<[u8]> = base.get(at..end)?.into();
        at = end;
        chunks.push(EncodedValue {
            hash: plain_hash(c, &raw)?,
            codec: u8::try_from(c.codec_id).ok().and_then(Codec::from_id)?,
            raw,
            stored: c.data.clone().into(),
            dict_id: c.dict_id,
            chunks: Arc::from([]),
            delta: false,
            sealed: None,
        });
    }
    (at == base.len()).then_some(chunks)
}

/// The plain content hash (blake3) of chunk `c`, whose verified bytes are `raw`: its
/// `hash`, or for an encrypted v2 blob (whose `hash` is the keyed address, `StoredBlob::keyed`)
/// blake3 of `raw`, checked against that address. Chunks are sealed in layout v1; a v2 blob
/// serves as a chunk only when a whole document with the same bytes was stored first.
fn plain_hash(c: &StoredBlob, raw: &[u8]) -> Option<crate::value::ContentHash> {
    match &c.keyed {
        None => c.hash.as_slice().try_into().ok(),
        Some(_) => crate::value::check_hash("", &c.hash, c.keyed.as_ref(), raw, "").ok(),
    }
}

/// The keyframe document `blob`'s chunks hold, each chunk decoded and verified.
fn decode_keyframe(
    shared: &Shared,
    blob: &StoredBlob,
    location: &str,
) -> Option<(Vec<u8>, Vec<EncodedValue>)> {
    let mut base = Vec::new();
    let mut chunks = Vec::with_capacity(blob.chunks.len());
    for c in &blob.chunks {
        let dict = match c.dict_id {
            Some(id) => Some(super::read::dictionary_decoder(shared, id, location).ok()?),
            None => None,
        };
        let raw = crate::value::decode(
            location,
            c.codec_id,
            c.raw_len,
            &c.hash,
            c.keyed.as_ref(),
            &c.data,
            dict.as_deref(),
        )
        .ok()?;
        let codec = u8::try_from(c.codec_id).ok().and_then(Codec::from_id)?;
        let hash = plain_hash(c, &raw)?;
        base.extend_from_slice(&raw);
        chunks.push(EncodedValue {
            hash,
            codec,
            raw: raw.into(),
            stored: c.data.clone().into(),
            dict_id: c.dict_id,
            chunks: Arc::from([]),
            delta: false,
            sealed: None,
        });
    }
    Some((base, chunks))
}

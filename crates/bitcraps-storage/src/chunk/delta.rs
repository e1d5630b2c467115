//! Delta encoding of overwrites (issue #16): a new version of a large document stored as a
//! zstd patch against the document of its key's last **keyframe** (a chunk list), whose chunks
//! the delta lists as its own — so they stay referenced while a delta needs them, by the
//! chunk reference counts that already exist. A read assembles the keyframe from its
//! verified chunks and applies one patch: the chain is one step long by construction, and a
//! new keyframe is written after `compression.keyframe_interval` deltas (the patches grow as
//! the versions drift from their keyframe).
//!
//! A delta's stored bytes: a header `versions since the keyframe (u32, big-endian)` whose top
//! bit names the body's form, then the body, in one of two forms chosen per version:
//!
//! - **splice** (top bit set, `splice.rs`): the keyframe's first and last bytes and a
//!   compressed middle — what an append or a small edit is, found by `memcmp`;
//! - **patch** (top bit clear): a zstd frame compressed with the keyframe document as zstd's
//!   reference prefix (`--patch-from`), for versions that differ from their keyframe in
//!   more than one place. Indexing the 1 MiB prefix costs more than compressing the
//!   document, so a splice is tried first and a patch only when the splice is not small.
//!
//! Both forms are sealed, stored and verified alike (the document's hash, after applying).

use zstd::zstd_safe::{self, CCtx, CParameter, DCtx, DParameter};

use crate::error::{Result, StorageError};

/// The codec id of a delta blob (permanent, like every codec id).
pub const DELTA: i64 = 17;
/// The default number of deltas after which an overwrite writes a keyframe again. A splice
/// does not drift from its keyframe the way a zstd patch does (an append's middle grows by
/// the appended bytes only) and a patch larger than [`MAX_PATCH`] makes a keyframe anyway,
/// so keyframes can be rare: 64 (it was 16) cut the bytes a durable append writes from
/// ~19.9 KB to ~17.8 KB and 100 retained versions of a 1 MiB log from 280 KB to 107 KB
/// (BENCHMARKS.md, issue #16).
pub const DEFAULT_KEYFRAME_INTERVAL: u32 = 64;
/// A patch larger than this is not worth it: chunking the version costs about as much.
pub(crate) const MAX_PATCH: usize = super::AVG_SIZE;
/// The window the patch is compressed with: the keyframe (at most the largest value, but
/// in practice megabytes) and the new version.
const WINDOW_LOG: u32 = 27;
const HEADER: usize = 4;
/// The header's top bit: the body is a splice, not a zstd patch.
const SPLICE: u32 = 1 << 31;
/// The largest depth a header holds (below the form bit).
pub(crate) const MAX_DEPTH: u32 = SPLICE - 1;
/// A splice at most this large is taken without trying a patch.
const SMALL_SPLICE: usize = 4 * 1024;
/// A splice whose middle is larger than this is not tried (a patch finds more to share).
const MAX_SPLICE_MIDDLE: usize = 4 * MAX_PATCH;

fn zstd_error(code: usize) -> String {
    zstd_safe::get_error_name(code).to_owned()
}

/// The stored bytes of a delta `depth` (at most [`MAX_DEPTH`]) versions after its keyframe:
/// `raw` against `base` at `level`, as a splice when that is small, else the smaller of the
/// splice and a zstd patch.
pub(crate) fn encode(
    (base, raw, prefix): (&[u8], &[u8], usize),
    level: i32,
    depth: u32,
) -> Result<Vec<u8>> {
    let depth = depth.min(MAX_DEPTH);
    let splice = match spliced((base, raw, prefix), level, depth, MAX_SPLICE_MIDDLE)? {
        Some(splice) if splice.len() <= SMALL_SPLICE => return Ok(splice),
        other => other,
    };
    let patch = patch(base, raw, level, depth)?;
    Ok(match splice {
        Some(splice) if splice.len() <= patch.len() => splice,
        _ => patch,
    })
}

/// What [`encode`] returns when that is a splice it takes without trying a patch (the
/// common case of an append), found from a middle of at most `max_middle` bytes; `None`
/// when [`encode`] would try a patch, or the middle is larger. Costs two `memcmp`s
/// and the compression of the middle: cheap enough to run on the caller's task.
pub(crate) fn encode_small_splice(
    (base, raw, prefix): (&[u8], &[u8], usize),
    level: i32,
    depth: u32,
    max_middle: usize,
) -> Result<Option<Vec<u8>>> {
    let max_middle = max_middle.min(MAX_SPLICE_MIDDLE);
    let splice = spliced((base, raw, prefix), level, depth.min(MAX_DEPTH), max_middle)?;
    Ok(splice.filter(|s| s.len() <= SMALL_SPLICE))
}

/// The stored bytes of a delta in the splice form (header and body), or `None` when its
/// middle is larger than `max_middle`.
fn spliced(
    (base, raw, prefix): (&[u8], &[u8], usize),
    level: i32,
    depth: u32,
    max_middle: usize,
) -> Result<Option<Vec<u8>>> {
    let mut splice = Vec::with_capacity(HEADER + SMALL_SPLICE);
    splice.extend_from_slice(&(depth | SPLICE).to_be_bytes());
    let done = super::splice::encode((base, raw, prefix), level, max_middle, &mut splice)?;
    Ok(done.map(|()| splice))
}

/// The stored bytes of a delta in the patch form.
fn patch(base: &[u8], raw: &[u8], level: i32, depth: u32) -> Result<Vec<u8>> {
    let failed = |e: String| StorageError::Compression {
        codec: "zstd patch",
        source: std::io::Error::other(e),
    };
    let mut ctx = CCtx::try_create().ok_or_else(|| failed("no context".into()))?;
    ctx.set_parameter(CParameter::CompressionLevel(level))
        .map_err(zstd_error)
        .map_err(failed)?;
    ctx.set_parameter(CParameter::WindowLog(WINDOW_LOG))
        .map_err(zstd_error)
        .map_err(failed)?;
    ctx.ref_prefix(base).map_err(zstd_error).map_err(failed)?;
    let mut out = Vec::with_capacity(zstd_safe::compress_bound(raw.len()).saturating_add(HEADER));
    out.extend_from_slice(&depth.to_be_bytes());
    let mut frame = Vec::with_capacity(zstd_safe::compress_bound(raw.len()));
    ctx.compress2(&mut frame, raw)
        .map_err(zstd_error)
        .map_err(failed)?;
    out.extend_from_slice(&frame);
    Ok(out)
}

/// How many versions after its keyframe the delta with stored bytes `stored` is.
pub(crate) fn depth(stored: &[u8], location: &str) -> Result<u32> {
    let header: [u8; HEADER] = stored
        .get(..HEADER)
        .and_then(|h| h.try_into().ok())
        .ok_or_else(|| StorageError::corruption(location, "a delta without its header"))?;
    Ok(u32::from_be_bytes(header) & MAX_DEPTH)
}

/// Whether the delta with stored bytes `stored` is a splice (its header read by `depth`).
fn is_splice(stored: &[u8]) -> bool {
    stored.first().is_some_and(|b| b & 0x80 != 0)
}

/// The document of the delta `stored` against `base`, at most `raw_len` bytes.
pub(crate) fn apply(base: &[u8], stored: &[u8], raw_len: usize, location: &str) -> Result<Vec<u8>> {
    depth(stored, location)?;
    let frame = stored.get(HEADER..).unwrap_or_default();
    if is_splice(stored) {
        return super::splice::apply(base, frame, raw_len, location);
    }
    let corrupt =
        |e: String| StorageError::corruption(location, format!("the delta does not apply: {e}"));
    let mut ctx = DCtx::try_create().ok_or_else(|| corrupt("no context".into()))?;
    ctx.set_parameter(DParameter::WindowLogMax(WINDOW_LOG))
        .map_err(zstd_error)
        .map_err(corrupt)?;
    ctx.ref_prefix(base).map_err(zstd_error).map_err(corrupt)?;
    let mut out = Vec::with_capacity(raw_len);
    ctx.decompress(&mut out, frame)
        .map_err(zstd_error)
        .map_err(corrupt)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_patch_applies_to_its_base_only() -> Result<()> {
        let base: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i % 251).to_be_bytes())
            .collect();
        let mut next = base.clone();
        next.extend_from_slice(b"{\"n\": 8001, \"dice\": [3, 4]}");
        let stored = patch(&base, &next, 3, 2)?;
        assert!(!is_splice(&stored));
        assert!(stored.len() < 200, "{} bytes", stored.len());
        assert_eq!(depth(&stored, "c/k")?, 2);
        assert_eq!(apply(&base, &stored, next.len(), "c/k")?, next);
        // Another base: an error or other bytes, never the document (the caller hashes).
        let other = vec![0u8; base.len()];
        assert!(apply(&other, &stored, next.len(), "c/k").map_or(true, |d| d != next));
        // Too short for a header, or a frame that does not decode: corruption.
        assert!(apply(&base, b"\0\0", 10, "c/k").is_err());
        assert!(apply(&base, b"\0\0\0\0garbage", 10, "c/k").is_err());
        assert!(apply(&base, b"\x80\0\0\0garbage", 10, "c/k").is_err());
        Ok(())
    }

    /// An append is a splice (no patch tried); edits spread over the document are the
    /// smaller of the two forms. Either applies to its base and keeps its depth.
    #[test]
    fn an_append_is_a_splice_and_scattered_edits_a_patch() -> Result<()> {
        let base: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i % 251).to_be_bytes())
            .collect();
        let mut appended = base.clone();
        appended.extend_from_slice(b"{\"n\": 8001, \"dice\": [3, 4]}");
        let prefix = super::super::common_prefix(&base, &appended);
        let stored = encode((&base, &appended, prefix), 3, 5)?;
        assert!(is_splice(&stored) && stored.len() < 100, "{}", stored.len());
        let small = encode_small_splice((&base, &appended, prefix), 3, 5, 1024)?;
        assert_eq!(small.as_ref(), Some(&stored), "the same bytes as encode");
        let small = encode_small_splice((&base, &appended, prefix), 3, 5, 10)?;
        assert_eq!(small, None, "a middle over the limit");
        assert_eq!(depth(&stored, "c/k")?, 5);
        assert_eq!(apply(&base, &stored, appended.len(), "c/k")?, appended);
        // Bytes changed at both ends and every 10 KiB between: one middle of the whole
        // document for a splice, a few hundred bytes for a patch.
        let mut scattered = base.clone();
        for at in (0..scattered.len()).step_by(10_000) {
            if let Some(b) = scattered.get_mut(at) {
                *b ^= 0x55;
            }
        }
        if let Some(b) = scattered.last_mut() {
            *b ^= 0x55;
        }
        let prefix = super::super::common_prefix(&base, &scattered);
        let stored = encode((&base, &scattered, prefix), 3, 1)?;
        assert!(!is_splice(&stored), "{} bytes", stored.len());
        let small = encode_small_splice((&base, &scattered, prefix), 3, 1, usize::MAX)?;
        assert_eq!(small, None, "encode tried a patch");
        assert_eq!(depth(&stored, "c/k")?, 1);
        assert_eq!(apply(&base, &stored, scattered.len(), "c/k")?, scattered);
        Ok(())
    }
}

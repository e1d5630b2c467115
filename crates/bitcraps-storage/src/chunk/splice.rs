//! The splice form of a delta (`delta.rs`): the new version as the keyframe's first bytes,
//! a middle of its own and the keyframe's last bytes. An append or a small edit of a large
//! document is exactly that, and finding it costs two `memcmp`s over the document and one
//! zstd call over the middle — no index of the whole keyframe, as a zstd patch against a
//! reference prefix builds for every version.
//!
//! Its body (after the delta header): `prefix length (u64, big-endian) | suffix length (u64,
//! big-endian) | zstd frame of the middle`. A read checks both lengths against the keyframe
//! and the document's length before it copies anything; the caller hashes the document.

use crate::error::{Result, StorageError};

const LENGTHS: usize = 16;
/// The block the common prefix and suffix are compared in (one `memcmp` each).
const BLOCK: usize = 4096;

/// How many leading bytes `a` and `b` share: computed once per delta write, for the JSON
/// check's marks, the splice and the resumed hash alike.
pub(crate) fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    let mut at = 0;
    for (x, y) in a.chunks(BLOCK).zip(b.chunks(BLOCK)) {
        if x == y {
            at += x.len();
            continue;
        }
        return at + x.iter().zip(y).take_while(|(p, q)| p == q).count();
    }
    at
}

/// How many trailing bytes `a` and `b` share.
fn common_suffix(a: &[u8], b: &[u8]) -> usize {
    let mut at = 0;
    for (x, y) in a.rchunks(BLOCK).zip(b.rchunks(BLOCK)) {
        if x == y {
            at += x.len();
            continue;
        }
        return at
            + x.iter()
                .rev()
                .zip(y.iter().rev())
                .take_while(|(p, q)| p == q)
                .count();
    }
    at
}

/// The bytes of `raw` that `base` does not hold at its start and end: `(prefix, suffix)`,
/// the lengths shared, never overlapping in either; `prefix` is [`common_prefix`] of the two.
pub(crate) fn split(base: &[u8], raw: &[u8], prefix: usize) -> (usize, usize) {
    let room = base.len().min(raw.len()).saturating_sub(prefix);
    let (base_rest, raw_rest) = (
        base.get(prefix..).unwrap_or_default(),
        raw.get(prefix..).unwrap_or_default(),
    );
    (prefix, common_suffix(base_rest, raw_rest).min(room))
}

/// The splice body of `raw` against `base` (whose [`common_prefix`] is `prefix`), appended
/// to `out`; `None` when the middle is larger than `max_middle` (a zstd patch may then do
/// better).
pub(crate) fn encode(
    (base, raw, prefix): (&[u8], &[u8], usize),
    level: i32,
    max_middle: usize,
    out: &mut Vec<u8>,
) -> Result<Option<()>> {
    let (prefix, suffix) = split(base, raw, prefix);
    let middle = raw
        .get(prefix..raw.len().saturating_sub(suffix))
        .unwrap_or_default();
    if middle.len() > max_middle {
        return Ok(None);
    }
    let frame =
        crate::zstd_ctx::compress(middle, level, None).map_err(|e| StorageError::Compression {
            codec: "zstd splice",
            source: std::io::Error::other(e),
        })?;
    out.reserve(LENGTHS + frame.len());
    out.extend_from_slice(&u64::try_from(prefix).unwrap_or(u64::MAX).to_be_bytes());
    out.extend_from_slice(&u64::try_from(suffix).unwrap_or(u64::MAX).to_be_bytes());
    out.extend_from_slice(&frame);
    Ok(Some(()))
}

/// The document of the splice `body` against `base`, which must be `raw_len` bytes long.
pub(crate) fn apply(base: &[u8], body: &[u8], raw_len: usize, location: &str) -> Result<Vec<u8>> {
    let corrupt = |detail: String| StorageError::corruption(location, detail);
    let length = |at: usize| -> Result<usize> {
        let bytes: [u8; 8] = body
            .get(at..at + 8)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| corrupt("a splice without its lengths".into()))?;
        usize::try_from(u64::from_be_bytes(bytes))
            .map_err(|_| corrupt("a splice length out of range".into()))
    };
    let (prefix, suffix) = (length(0)?, length(8)?);
    let kept = prefix
        .checked_add(suffix)
        .filter(|&k| k <= base.len() && k <= raw_len)
        .ok_or_else(|| {
            corrupt(format!(
                "a splice keeps {prefix} + {suffix} bytes of a {}-byte keyframe for a \
                 {raw_len}-byte document",
                base.len()
            ))
        })?;
    let middle_len = raw_len - kept;
    let frame = body.get(LENGTHS..).unwrap_or_default();
    // The frame declares its size: checked before anything is allocated for it.
    let declared = zstd::zstd_safe::get_frame_content_size(frame)
        .ok()
        .flatten()
        .and_then(|n| usize::try_from(n).ok());
    if declared != Some(middle_len) {
        return Err(corrupt(format!(
            "the splice's middle declares {declared:?} bytes, expected {middle_len}"
        )));
    }
    let middle = crate::zstd_ctx::decompress(frame, middle_len, None)
        .map_err(|e| corrupt(format!("the splice's middle does not decode: {e}")))?;
    if middle.len() != middle_len {
        return Err(corrupt(format!(
            "the splice's middle holds {} bytes, expected {middle_len}",
            middle.len()
        )));
    }
    let mut out = Vec::new();
    out.try_reserve_exact(raw_len)
        .map_err(|_| corrupt(format!("no room for a {raw_len}-byte document")))?;
    out.extend_from_slice(base.get(..prefix).unwrap_or_default());
    out.extend_from_slice(&middle);
    out.extend_from_slice(base.get(base.len() - suffix..).unwrap_or_default());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(base: &[u8], raw: &[u8]) -> Result<usize> {
        let mut body = Vec::new();
        let prefix = common_prefix(base, raw);
        assert!(encode((base, raw, prefix), 3, usize::MAX, &mut body)?.is_some());
        assert_eq!(apply(base, &body, raw.len(), "c/k")?, raw);
        Ok(body.len())
    }

    #[test]
    fn appends_edits_and_overlaps_round_trip() -> Result<()> {
        let base: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let mut appended = base.get(..base.len() - 2).unwrap_or_default().to_vec();
        appended.extend_from_slice(b",{\"n\": 8001}]}");
        appended.extend_from_slice(base.get(base.len() - 2..).unwrap_or_default());
        assert!(round_trip(&base, &appended)? < 64);
        let mut edited = base.clone();
        if let Some(b) = edited.get_mut(150_000) {
            *b ^= 0xff;
        }
        assert!(round_trip(&base, &edited)? < 64);
        // Shorter, equal, empty, and a repeated byte whose prefix and suffix would overlap.
        round_trip(&base, base.get(..1000).unwrap_or_default())?;
        round_trip(&base, &base)?;
        round_trip(&base, b"")?;
        round_trip(b"", b"abc")?;
        round_trip(&[7u8; 5000], &[7u8; 5001])?;
        round_trip(&[7u8; 5001], &[7u8; 5000])?;
        assert_eq!(split(b"aXa", b"aa", 1), (1, 1));
        assert_eq!(split(b"aa", b"aXa", 1), (1, 1));
        Ok(())
    }

    #[test]
    fn common_prefix_counts_equal_leading_bytes() {
        let a = vec![7u8; 10_000];
        let mut b = a.clone();
        assert_eq!(common_prefix(&a, &b), 10_000);
        if let Some(x) = b.get_mut(9_000) {
            *x = 8;
        }
        assert_eq!(common_prefix(&a, &b), 9_000);
        assert_eq!(common_prefix(&a, &b[..100]), 100);
        assert_eq!(common_prefix(&[], &b), 0);
    }

    #[test]
    fn a_large_middle_is_left_to_the_patch() -> Result<()> {
        let mut body = Vec::new();
        assert!(encode((b"abc", &[1u8; 100], 0), 3, 10, &mut body)?.is_none());
        assert!(body.is_empty());
        Ok(())
    }

    /// Hostile bodies from disk: corruption, never a panic or an allocation they ask for.
    #[test]
    fn hostile_bodies_are_corruption() -> Result<()> {
        let base = b"hello world".to_vec();
        let mut body = Vec::new();
        let raw = b"hello there world";
        encode(
            (&base, raw, common_prefix(&base, raw)),
            3,
            usize::MAX,
            &mut body,
        )?;
        let bad = |body: &[u8], raw_len: usize| apply(&base, body, raw_len, "c/k").is_err();
        assert!(bad(b"", 17));
        assert!(bad(body.get(..12).unwrap_or_default(), 17));
        let mut huge = body.clone();
        huge.splice(0..8, u64::MAX.to_be_bytes());
        assert!(bad(&huge, 17));
        let mut long = body.clone();
        long.splice(0..8, 20u64.to_be_bytes());
        assert!(bad(&long, 17));
        assert!(bad(&body, 16), "a wrong document length");
        assert!(bad(&body, 40), "a wrong document length");
        let mut garbage = body.get(..16).unwrap_or_default().to_vec();
        garbage.extend_from_slice(b"garbage");
        assert!(bad(&garbage, 17));
        Ok(())
    }
}

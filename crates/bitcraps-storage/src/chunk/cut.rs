//! Cutting a document into content-defined chunks (FastCDC 2020, 16 KiB average) and
//! encoding each like a document of its own.

use std::sync::Arc;

use fastcdc::v2020::FastCDC;

use super::{AVG_SIZE, MAX_SIZE, MIN_SIZE};
use crate::error::Result;
use crate::value::EncodedValue;

/// Encodes one chunk's bytes (the pipeline's compression, with the collection's dictionary).
pub(crate) type Chunker<'a> = dyn Fn(Vec<u8>) -> Result<EncodedValue> + 'a;

/// `raw` cut into chunks, in order, each encoded by `encode`.
pub(crate) fn cut(raw: &[u8], encode: &Chunker<'_>) -> Result<Arc<[EncodedValue]>> {
    FastCDC::new(raw, MIN_SIZE, AVG_SIZE, MAX_SIZE)
        .map(|c| {
            let end = c.offset.saturating_add(c.length);
            encode(raw.get(c.offset..end).unwrap_or_default().to_vec())
        })
        .collect::<Result<Vec<_>>>()
        .map(Arc::from)
}

/// `raw` cut as [`cut`] cuts it, given `prior`, the chunks of a document whose first
/// `shared` bytes `raw` shares (`chunk::common_prefix`): the chunks of `prior` the cut
/// would make again are taken as they are (their encoding too), and only the rest of `raw`
/// is cut and encoded. A new keyframe of a document that grows by appends encodes one or
/// two chunks, not all of them.
///
/// Which chunks a cut makes again: FastCDC cuts a chunk from its first byte, deciding its
/// end from its own bytes and the byte after it (the one tested there), and from how far
/// the data runs only when that ends the chunk — which only `prior`'s last chunk can have.
/// So every other chunk of `prior` that ends before the shared prefix does (the byte after
/// it inside the prefix too) is a chunk of `raw`, and the cut of the rest from its end
/// goes on as the whole cut would.
pub(crate) fn cut_resumed(
    raw: &[u8],
    (prior, shared): (&[EncodedValue], usize),
    encode: &Chunker<'_>,
) -> Result<Arc<[EncodedValue]>> {
    let mut chunks = Vec::with_capacity(prior.len().saturating_add(2));
    let mut at = 0usize;
    if let Some((_, kept)) = prior.split_last() {
        for chunk in kept {
            let end = at.saturating_add(chunk.raw_len());
            if end >= shared {
                break;
            }
            chunks.push(chunk.clone());
            at = end;
        }
    }
    let rest = raw.get(at..).unwrap_or_default();
    for c in FastCDC::new(rest, MIN_SIZE, AVG_SIZE, MAX_SIZE) {
        let end = c.offset.saturating_add(c.length);
        chunks.push(encode(
            rest.get(c.offset..end).unwrap_or_default().to_vec(),
        )?);
    }
    Ok(chunks.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Codec;

    fn plain(bytes: Vec<u8>) -> Result<EncodedValue> {
        let hash = *blake3::hash(&bytes).as_bytes();
        let raw: Arc<[u8]> = bytes.into();
        Ok(EncodedValue {
            hash,
            codec: Codec::None,
            stored: Arc::clone(&raw),
            raw,
            dict_id: None,
            chunks: Arc::from([]),
            delta: false,
            sealed: None,
        })
    }

    fn document(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                b'a' + u8::try_from(x % 26).unwrap_or(0)
            })
            .collect()
    }

    #[test]
    fn chunks_cover_the_document_in_order() -> Result<()> {
        let doc = document(7, 300_000);
        let chunks = cut(&doc, &plain)?;
        assert!(chunks.len() > 4, "{} chunks", chunks.len());
        let joined: Vec<u8> = chunks.iter().flat_map(|c| c.raw.iter().copied()).collect();
        assert_eq!(joined, doc);
        assert!(chunks.iter().all(|c| c.raw_len() <= MAX_SIZE));
        Ok(())
    }

    /// A resumed cut makes exactly the chunks of a whole cut, for appends, edits at any
    /// place, truncations and documents that share nothing; it re-encodes only what follows
    /// the chunks it kept.
    #[test]
    fn a_resumed_cut_is_the_whole_cut() -> Result<()> {
        let doc = document(11, 400_000);
        let prior = cut(&doc, &plain)?;
        let mut versions = Vec::new();
        let mut appended = doc.clone();
        appended.extend_from_slice(b"{\"roll\":[3,4]}");
        versions.push(appended);
        for at in [0, 1, 5_000, 100_000, 200_001, 399_000, 399_999] {
            let mut edited = doc.clone();
            if let Some(b) = edited.get_mut(at) {
                *b ^= 1;
            }
            versions.push(edited);
            versions.push(doc.get(..at).unwrap_or_default().to_vec());
            let mut inserted = doc.clone();
            inserted.splice(at..at, *b"xyz");
            versions.push(inserted);
        }
        versions.push(document(12, 300_000));
        versions.push(doc.clone());
        for version in &versions {
            let shared = crate::chunk::common_prefix(&doc, version);
            let encoded = std::cell::Cell::new(0usize);
            let counting = |bytes: Vec<u8>| {
                encoded.set(encoded.get() + 1);
                plain(bytes)
            };
            let resumed = cut_resumed(version, (&prior, shared), &counting)?;
            let whole = cut(version, &plain)?;
            let hashes = |c: &[EncodedValue]| c.iter().map(|v| v.hash).collect::<Vec<_>>();
            assert_eq!(hashes(&resumed), hashes(&whole), "{} bytes", version.len());
            if version.len() > doc.len() && shared == doc.len() {
                assert!(encoded.get() <= 2, "{} chunks encoded", encoded.get());
            }
        }
        Ok(())
    }

    #[test]
    fn an_append_keeps_the_earlier_chunks() -> Result<()> {
        let doc = document(9, 300_000);
        let mut longer = doc.clone();
        longer.extend_from_slice(b"{\"roll\":[3,4]}");
        let a = cut(&doc, &plain)?;
        let b = cut(&longer, &plain)?;
        let shared = a
            .iter()
            .filter(|c| b.iter().any(|d| d.hash == c.hash))
            .count();
        assert!(shared + 1 >= a.len(), "{shared} of {} shared", a.len());
        Ok(())
    }
}

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

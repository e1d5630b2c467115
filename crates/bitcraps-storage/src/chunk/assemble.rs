//! Reading a chunk list back: every chunk decoded and verified on its own, then the whole
//! document's length and hash. Any failure is [`StorageError::Corruption`] at the record (or
//! blob) with the chunk's position.

use std::sync::Arc;

use super::keyframes::{KeyframeId, Keyframes};
use crate::backend::StoredBlob;
use crate::error::{Result, StorageError};

/// The document of the chunked or delta (and, in an encrypted store, opened) `blob`;
/// `decode` turns one chunk into its verified bytes. A delta's chunks are its keyframe's:
/// their concatenation is the base its patch applies to.
#[cfg(test)]
pub(crate) fn assemble(
    location: &str,
    blob: &StoredBlob,
    decode: impl FnMut(&str, &StoredBlob) -> Result<Vec<u8>>,
) -> Result<Vec<u8>> {
    assemble_with(location, blob, None, decode)
}

/// [`assemble`], taking a delta's keyframe from `keyframes` (the cache and the blob's
/// collection) when it holds it, and putting it there when it does not.
pub(crate) fn assemble_with(
    location: &str,
    blob: &StoredBlob,
    keyframes: Option<(&Keyframes, &str)>,
    decode: impl FnMut(&str, &StoredBlob) -> Result<Vec<u8>>,
) -> Result<Vec<u8>> {
    let raw_len = usize::try_from(blob.raw_len).map_err(|_| {
        StorageError::corruption(location, format!("invalid length {}", blob.raw_len))
    })?;
    let raw = if blob.codec_id == super::DELTA {
        let base = match keyframes {
            Some((cache, collection)) => {
                let id = KeyframeId::of(collection, blob);
                match cache.get(id) {
                    Some(base) => base,
                    None => {
                        let base: Arc<[u8]> = concat(location, blob, usize::MAX, decode)?.into();
                        cache.insert(id, collection, Arc::clone(&base));
                        base
                    }
                }
            }
            None => concat(location, blob, usize::MAX, decode)?.into(),
        };
        super::delta::apply(&base, &blob.data, raw_len, location)?
    } else {
        concat(location, blob, raw_len, decode)?
    };
    if raw.len() != raw_len {
        return Err(StorageError::corruption(
            location,
            format!("it holds {} bytes, expected {raw_len}", raw.len()),
        ));
    }
    crate::value::check_hash(
        location,
        &blob.hash,
        blob.keyed.as_ref(),
        &raw,
        " of the assembled document",
    )?;
    Ok(raw)
}

/// `blob`'s chunks, each verified, concatenated (at most `limit` bytes).
pub(crate) fn concat(
    location: &str,
    blob: &StoredBlob,
    limit: usize,
    mut decode: impl FnMut(&str, &StoredBlob) -> Result<Vec<u8>>,
) -> Result<Vec<u8>> {
    let raw_len = limit;
    if blob.chunks.is_empty() {
        return Err(StorageError::corruption(
            location,
            "a chunked document has no chunks",
        ));
    }
    let mut raw =
        Vec::with_capacity(raw_len.min(blob.chunks.len().saturating_mul(super::MAX_SIZE)));
    for (i, chunk) in blob.chunks.iter().enumerate() {
        if !chunk.chunks.is_empty() || super::is_chunked(chunk.codec_id) {
            return Err(StorageError::corruption(
                location,
                format!("chunk {i} is itself a chunk list"),
            ));
        }
        let count = blob.chunks.len();
        let bytes = decode(location, chunk).map_err(|e| match e {
            StorageError::Corruption { location, detail } => StorageError::Corruption {
                location,
                detail: format!("chunk {} of {count}: {detail}", i + 1),
            },
            other => other,
        })?;
        if raw.len().saturating_add(bytes.len()) > raw_len {
            return Err(StorageError::corruption(
                location,
                format!("its chunks hold more than its {raw_len} bytes"),
            ));
        }
        raw.extend_from_slice(&bytes);
    }
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(bytes: &[u8]) -> StoredBlob {
        StoredBlob {
            codec_id: 0,
            raw_len: i64::try_from(bytes.len()).unwrap_or(-1),
            hash: blake3::hash(bytes).as_bytes().to_vec(),
            data: bytes.to_vec(),
            dict_id: None,
            chunks: Vec::new(),
            keyed: None,
        }
    }

    fn list(doc: &[u8], chunks: Vec<StoredBlob>) -> StoredBlob {
        StoredBlob {
            codec_id: super::super::CHUNKED,
            raw_len: i64::try_from(doc.len()).unwrap_or(-1),
            hash: blake3::hash(doc).as_bytes().to_vec(),
            data: Vec::new(),
            dict_id: None,
            chunks,
            keyed: None,
        }
    }

    fn plain(location: &str, b: &StoredBlob) -> Result<Vec<u8>> {
        crate::value::decode(
            location, b.codec_id, b.raw_len, &b.hash, None, &b.data, None,
        )
    }

    fn detail(r: Result<Vec<u8>>) -> String {
        match r {
            Err(StorageError::Corruption { location, detail }) => {
                assert_eq!(location, "c/k");
                detail
            }
            other => panic!("expected corruption, got {other:?}"),
        }
    }

    #[test]
    fn chunks_assemble_into_the_document() -> Result<()> {
        let blob = list(b"hello world", vec![whole(b"hello "), whole(b"world")]);
        assert_eq!(assemble("c/k", &blob, plain)?, b"hello world");
        Ok(())
    }

    /// Hostile lists from disk: every one is corruption at the record, never a panic.
    #[test]
    fn hostile_lists_are_corruption() {
        let doc = b"hello world";
        let empty = list(doc, Vec::new());
        assert!(detail(assemble("c/k", &empty, plain)).contains("no chunks"));
        let short = list(doc, vec![whole(b"hello ")]);
        assert!(
            detail(assemble("c/k", &short, plain)).contains("expected 11"),
            "{:?}",
            assemble("c/k", &short, plain)
        );
        let long = list(doc, vec![whole(b"hello "), whole(b"world"), whole(b"!")]);
        assert!(detail(assemble("c/k", &long, plain)).contains("more than"));
        let swapped = list(doc, vec![whole(b"world"), whole(b"hello ")]);
        assert!(detail(assemble("c/k", &swapped, plain)).contains("hash mismatch"));
        let mut bad = whole(b"world");
        bad.data = b"WORLD".to_vec();
        let damaged = list(doc, vec![whole(b"hello "), bad]);
        assert!(detail(assemble("c/k", &damaged, plain)).starts_with("chunk 2 of 2:"));
        let nested = list(
            doc,
            vec![list(b"hello ", vec![whole(b"hello ")]), whole(b"world")],
        );
        assert!(detail(assemble("c/k", &nested, plain)).contains("itself a chunk list"));
        let mut negative = list(doc, vec![whole(b"hello "), whole(b"world")]);
        negative.raw_len = -5;
        assert!(detail(assemble("c/k", &negative, plain)).contains("invalid length"));
    }
}

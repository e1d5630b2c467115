//! Reading a chunk list back: every chunk decoded and verified on its own, then the whole
//! document's length and hash. Any failure is [`StorageError::Corruption`] at the record (or
//! blob) with the chunk's position.

use crate::backend::StoredBlob;
use crate::error::{Result, StorageError};

/// The document of the chunked (and, in an encrypted store, opened) `blob`; `decode` turns
/// one chunk into its verified bytes.
pub(crate) fn assemble(
    location: &str,
    blob: &StoredBlob,
    mut decode: impl FnMut(&str, &StoredBlob) -> Result<Vec<u8>>,
) -> Result<Vec<u8>> {
    let raw_len = usize::try_from(blob.raw_len).map_err(|_| {
        StorageError::corruption(location, format!("invalid length {}", blob.raw_len))
    })?;
    if blob.chunks.is_empty() {
        return Err(StorageError::corruption(
            location,
            "a chunked document has no chunks",
        ));
    }
    let mut raw = Vec::with_capacity(raw_len);
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
    if raw.len() != raw_len {
        return Err(StorageError::corruption(
            location,
            format!("its chunks hold {} bytes, expected {raw_len}", raw.len()),
        ));
    }
    let actual = blake3::hash(&raw);
    if actual.as_bytes().as_slice() != blob.hash.as_slice() {
        return Err(StorageError::corruption(
            location,
            format!(
                "content hash mismatch of the assembled document: stored {}, computed {}",
                crate::value::hex(&blob.hash),
                actual.to_hex()
            ),
        ));
    }
    Ok(raw)
}

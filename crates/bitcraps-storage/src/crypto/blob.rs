//! The stored form of encrypted documents and dictionaries:
//!
//! ```text
//! 0xE2 | data key id (8 bytes, big-endian) | nonce (12) | AES-256-GCM-SIV(payload)    | tag (16)
//! 0xE1 | data key id (8 bytes, big-endian) | nonce (24) | XChaCha20-Poly1305(payload) | tag (16)
//! ```
//!
//! The first byte names the AEAD (`envelope.rs`): documents and chunks are sealed with the
//! machine's preferred suite, dictionaries with XChaCha20-Poly1305; both always open.
//!
//! A document's payload is the blake3 hash of its JSON (32 bytes, what reads verify the
//! decompressed bytes against) followed by the compressed bytes; its associated data binds
//! the store id, the collection, the key id and version, the content address (the row's
//! `hash`), the codec, the dictionary id and the JSON length. A dictionary's payload is the
//! dictionary, bound to the store, collection, key id and version. Bytes that do not parse
//! or authenticate are [`StorageError::Corruption`] naming the key, never data.

use std::sync::Arc;

use super::envelope::{self, Aad, Suite};
use super::keyring::{DataKey, Keyring};
use crate::backend::StoredBlob;
use crate::error::{Result, StorageError};
use crate::value::EncodedValue;

/// First byte of an encrypted blob or dictionary sealed with XChaCha20-Poly1305.
const FORMAT_XCHACHA: u8 = 0xE1;
/// First byte of an encrypted blob sealed with AES-256-GCM-SIV.
const FORMAT_SIV: u8 = 0xE2;
pub(crate) const HEADER_LEN: usize = 9;
const BLOB_TAG: &str = "bitcraps-storage blob v1";
const DICTIONARY_TAG: &str = "bitcraps-storage dictionary v1";

/// The AEAD whose format byte `sealed` starts with, if it has an encrypted format.
pub(crate) fn suite(sealed: &[u8]) -> Option<Suite> {
    match *sealed.first()? {
        FORMAT_XCHACHA => Some(Suite::XChaCha20Poly1305),
        FORMAT_SIV => Some(Suite::Aes256GcmSiv),
        _ => None,
    }
}

const fn format_byte(suite: Suite) -> u8 {
    match suite {
        Suite::XChaCha20Poly1305 => FORMAT_XCHACHA,
        Suite::Aes256GcmSiv => FORMAT_SIV,
    }
}

/// The data key id in the header of `sealed`, if it has an encrypted format.
pub(crate) fn key_id(sealed: &[u8]) -> Option<i64> {
    suite(sealed)?;
    let id: [u8; 8] = sealed.get(1..HEADER_LEN)?.try_into().ok()?;
    Some(i64::from_be_bytes(id))
}

/// `plain` sealed under `key` with `suite`, bound to `aad`, behind the header.
pub(crate) fn seal_with_header(
    suite: Suite,
    key: &DataKey,
    aad: &[u8],
    plain: &[u8],
) -> Result<Vec<u8>> {
    seal_payload(suite, key, aad, &[], plain)
}

/// The plaintext of `sealed` (header first, as [`seal_with_header`] made it) under `key`
/// and `aad`, or `None` when it does not authenticate.
pub(crate) fn open_with_header(key: &DataKey, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    envelope::open_with(suite(sealed)?, &key.cipher, aad, sealed.get(HEADER_LEN..)?)
}

fn blob_aad(
    ring: &Keyring,
    key: &DataKey,
    address: &[u8],
    codec: i64,
    dict_id: Option<i64>,
    raw_len: i64,
) -> Vec<u8> {
    Aad::new(BLOB_TAG)
        .text(ring.store_id())
        .text(&key.collection)
        .number(key.id)
        .number(key.version)
        .bytes(address)
        .number(codec)
        .number(dict_id.unwrap_or(-1))
        .number(raw_len)
        .finish()
}

/// `value` as an encrypted store writes it: addressed by the collection's keyed hash, its
/// stored bytes sealed under `key` (the plain hash inside). A chunked value's chunks are
/// sealed the same way, each addressed by its own keyed hash (dedup within the collection).
pub(crate) fn seal_value(
    ring: &Keyring,
    key: &DataKey,
    value: &EncodedValue,
) -> Result<EncodedValue> {
    let address = key.address(&value.hash);
    let raw_len = i64::try_from(value.raw_len()).unwrap_or(i64::MAX);
    let aad = blob_aad(
        ring,
        key,
        &address,
        value.codec_id(),
        value.dict_id,
        raw_len,
    );
    let out = seal_payload(Suite::preferred(), key, &aad, &value.hash, &value.stored)?;
    let chunks = value
        .chunks
        .iter()
        .map(|c| seal_value(ring, key, c))
        .collect::<Result<Vec<_>>>()?;
    Ok(EncodedValue {
        hash: address,
        codec: value.codec,
        raw: Arc::clone(&value.raw),
        stored: out.into(),
        dict_id: value.dict_id,
        chunks: chunks.into(),
        delta: value.delta,
        sealed: None,
    })
}

/// The key a stored blob names, checked to belong to `collection` when one is given.
pub(crate) fn blob_key(
    key: Option<Arc<DataKey>>,
    id: Option<i64>,
    collection: Option<&str>,
    location: &str,
) -> Result<Arc<DataKey>> {
    let Some(id) = id else {
        return Err(StorageError::corruption(
            location,
            "the stored bytes are not encrypted (no encryption header) in an encrypted store",
        ));
    };
    let key = key.ok_or_else(|| {
        StorageError::corruption(
            location,
            format!("the stored bytes name data key {id}, which this store does not have"),
        )
    })?;
    if let Some(collection) = collection.filter(|c| *c != key.collection) {
        return Err(StorageError::corruption(
            location,
            format!(
                "the stored bytes are sealed with {} and belong to another collection than {collection}",
                key.name()
            ),
        ));
    }
    Ok(key)
}

/// `blob` decrypted under `key`: the compressed bytes, and the plain content hash that
/// decoding verifies them against. A chunk list's chunks are left as they are (see
/// `open_chunks`).
pub(crate) fn open_blob(
    ring: &Keyring,
    key: &DataKey,
    blob: &StoredBlob,
    location: &str,
) -> Result<StoredBlob> {
    try_open_blob(ring, key, blob).ok_or_else(|| not_authentic(key, location))
}

/// [`open_blob`] without the error (the read path builds the error's location only when it
/// needs one).
pub(crate) fn try_open_blob(
    ring: &Keyring,
    key: &DataKey,
    blob: &StoredBlob,
) -> Option<StoredBlob> {
    let aad = blob_aad(
        ring,
        key,
        &blob.hash,
        blob.codec_id,
        blob.dict_id,
        blob.raw_len,
    );
    let mut data = open_with_header(key, &aad, &blob.data).filter(|payload| payload.len() >= 32)?;
    // The payload is `hash || compressed`: the hash moves out, the rest stays in place.
    let hash = data.drain(..32).collect();
    Some(StoredBlob {
        codec_id: blob.codec_id,
        raw_len: blob.raw_len,
        hash,
        data,
        dict_id: blob.dict_id,
        chunks: blob.chunks.clone(),
    })
}

/// The stored bytes of `blob` (sealed under `from`) sealed again under `to`, a newer key of
/// the same collection: the same content address, codec, dictionary and length, a fresh
/// nonce. The payload is authenticated under `from` first; the compressed bytes are not
/// decoded.
pub(crate) fn reseal_blob(
    ring: &Keyring,
    from: &DataKey,
    to: &DataKey,
    blob: &StoredBlob,
    location: &str,
) -> Result<Vec<u8>> {
    let opened = open_blob(ring, from, blob, location)?;
    let aad = blob_aad(
        ring,
        to,
        &blob.hash,
        blob.codec_id,
        blob.dict_id,
        blob.raw_len,
    );
    seal_payload(Suite::preferred(), to, &aad, &opened.hash, &opened.data)
}

/// `header || nonce || sealed(hash || stored) || tag` under `key` with `suite`, built and
/// sealed in one buffer.
fn seal_payload(
    suite: Suite,
    key: &DataKey,
    aad: &[u8],
    hash: &[u8],
    stored: &[u8],
) -> Result<Vec<u8>> {
    let at = HEADER_LEN + suite.nonce_len();
    let mut out = Vec::with_capacity(at + hash.len() + stored.len() + envelope::TAG_LEN);
    out.push(format_byte(suite));
    out.extend_from_slice(&key.id.to_be_bytes());
    out.resize(at, 0);
    out.extend_from_slice(hash);
    out.extend_from_slice(stored);
    envelope::seal_in_place(suite, &key.cipher, aad, &mut out, at)?;
    Ok(out)
}

/// `blob` (a chunk list or a whole blob) opened under `key`, and each of its chunks under
/// the key its header names, `key_of` checking that key belongs to the same collection.
pub(crate) fn open_tree(
    ring: &Keyring,
    key: &DataKey,
    blob: &StoredBlob,
    location: &str,
    mut key_of: impl FnMut(&StoredBlob, &str) -> Result<Arc<DataKey>>,
) -> Result<StoredBlob> {
    let mut opened = open_blob(ring, key, blob, location)?;
    opened.chunks = blob
        .chunks
        .iter()
        .enumerate()
        .map(|(i, chunk)| {
            let at = format!("{location} chunk {i}");
            let chunk_key = key_of(chunk, &at)?;
            if chunk_key.collection != key.collection {
                return Err(StorageError::corruption(
                    &at,
                    format!(
                        "the chunk is sealed with {}, of another collection",
                        chunk_key.name()
                    ),
                ));
            }
            let mut c = open_blob(ring, &chunk_key, chunk, &at)?;
            c.chunks.clear();
            Ok(c)
        })
        .collect::<Result<_>>()?;
    Ok(opened)
}

fn not_authentic(key: &DataKey, location: &str) -> StorageError {
    StorageError::corruption(
        location,
        format!(
            "the ciphertext does not authenticate under {}: it was altered, or moved from \
             another record",
            key.name()
        ),
    )
}

fn dictionary_aad(ring: &Keyring, key: &DataKey) -> Vec<u8> {
    Aad::new(DICTIONARY_TAG)
        .text(ring.store_id())
        .text(&key.collection)
        .number(key.id)
        .number(key.version)
        .finish()
}

/// A trained dictionary sealed under its collection's key.
pub(crate) fn seal_dictionary(ring: &Keyring, key: &DataKey, data: &[u8]) -> Result<Vec<u8>> {
    seal_with_header(
        Suite::XChaCha20Poly1305,
        key,
        &dictionary_aad(ring, key),
        data,
    )
}

/// A stored dictionary decrypted (`key` must be the one its header names).
pub(crate) fn open_dictionary(
    ring: &Keyring,
    key: &DataKey,
    sealed: &[u8],
    location: &str,
) -> Result<Vec<u8>> {
    open_with_header(key, &dictionary_aad(ring, key), sealed)
        .ok_or_else(|| not_authentic(key, location))
}

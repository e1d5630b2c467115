//! The stored form of encrypted documents and dictionaries: a header (`header.rs`: the
//! format byte naming the AEAD and the payload's layout, the data key id), the nonce, the
//! sealed payload and the tag.
//!
//! Documents and chunks are sealed with the machine's preferred suite, dictionaries with
//! XChaCha20-Poly1305; every format always opens.
//!
//! A whole document is sealed in layout v2 (format 0xE3, or 0xE4 with XChaCha20-Poly1305):
//! its payload is the compressed bytes alone, and reads verify the decompressed bytes
//! against the row's keyed content address (the address key's hash of blake3 of the JSON,
//! `keyring.rs`), which the associated data binds. Chunks, chunk lists and deltas, and
//! every blob written before v2, are layout v1 (0xE2, or 0xE1): the payload is the blake3
//! hash of the JSON (32 bytes) followed by the compressed bytes, so a chunk's plain hash
//! (which keys the keyframe cache and a delta's next keyframe) comes out of the ciphertext.
//! The associated data binds the layout's own tag, the store id, the collection, the key id
//! and version, the content address (the row's `hash`), the codec, the dictionary id and
//! the JSON length: a blob moved to another record, or relabelled to the other layout, does
//! not authenticate. A dictionary's payload is the dictionary, bound to the store,
//! collection, key id and version. Bytes that do not parse or authenticate are
//! [`StorageError::Corruption`] naming the key, never data.

use std::sync::Arc;

use super::envelope::{self, Aad, Suite};
use super::header::{self, Layout};
use super::keyring::{ContentKey, DataKey, Keyring};
use crate::backend::StoredBlob;
use crate::error::{Result, StorageError};
use crate::value::EncodedValue;

const BLOB_TAG: &str = "bitcraps-storage blob v1";
const BLOB_TAG_V2: &str = "bitcraps-storage blob v2";
const DICTIONARY_TAG: &str = "bitcraps-storage dictionary v1";
/// Bytes of the plain content hash at the start of a v1 document payload.
const PLAIN_HASH_LEN: usize = 32;

/// The data key id in the header of `sealed`, if it has an encrypted format.
pub(crate) fn key_id(sealed: &[u8]) -> Option<i64> {
    header::parse(sealed).map(|h| h.key_id)
}

/// `plain` sealed under `key` with `suite`, bound to `aad`, behind a v1 header.
pub(crate) fn seal_with_header(
    suite: Suite,
    key: &DataKey,
    aad: &[u8],
    plain: &[u8],
) -> Result<Vec<u8>> {
    seal_payload(suite, Layout::V1, key, aad, &[], plain)
}

/// The plaintext of `sealed` (header first, as [`seal_with_header`] made it) under `key`
/// and `aad`, or `None` when it does not authenticate (or has a v2 header, which only
/// documents have).
pub(crate) fn open_with_header(key: &DataKey, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    let h = header::parse(sealed).filter(|h| h.layout == Layout::V1)?;
    envelope::open_with(h.suite, &key.cipher, aad, sealed.get(header::LEN..)?)
}

/// The fields of a blob's associated data that every blob one data key seals starts with —
/// the layout's tag, the store id, the collection, the key id and version — encoded once per
/// key and layout (a record's binding then adds only its own four fields: no allocation and
/// no re-encoding of the same strings per record). The bytes are exactly [`Aad`]'s.
pub(crate) struct AadPrefix {
    store_id: String,
    v1: Vec<u8>,
    v2: Vec<u8>,
}

impl AadPrefix {
    pub(crate) fn new(store_id: &str, collection: &str, id: i64, version: i64) -> Self {
        let prefix = |tag: &str| {
            Aad::new(tag)
                .text(store_id)
                .text(collection)
                .number(id)
                .number(version)
                .finish()
        };
        AadPrefix {
            store_id: store_id.to_owned(),
            v1: prefix(BLOB_TAG),
            v2: prefix(BLOB_TAG_V2),
        }
    }

    fn get(&self, layout: Layout) -> &[u8] {
        match layout {
            Layout::V1 => &self.v1,
            Layout::V2 => &self.v2,
        }
    }
}

/// Room on the stack for a blob's associated data: the prefix (two tags' worth of fixed
/// fields, a store id and a collection name) and the record's 72 bytes. Longer collection
/// names take a heap buffer.
const AAD_STACK: usize = 384;

/// Calls `f` with the associated data of a blob sealed under `key` in `layout`: the key's
/// prefix ([`AadPrefix`]; built here when `key` belongs to a keyring of another store id,
/// which no caller does), then the content address (the row's `hash`), the codec, the
/// dictionary id (-1 for none) and the JSON length, each length-prefixed as [`Aad`] does.
#[expect(
    clippy::too_many_arguments,
    reason = "a binding's fields, each its own argument as the stored row has them"
)]
fn with_blob_aad<R>(
    ring: &Keyring,
    key: &DataKey,
    layout: Layout,
    address: &[u8],
    codec: i64,
    dict_id: Option<i64>,
    raw_len: i64,
    f: impl FnOnce(&[u8]) -> R,
) -> R {
    let built;
    let prefix = if key.aad_prefix.store_id == ring.store_id() {
        key.aad_prefix.get(layout)
    } else {
        built = AadPrefix::new(ring.store_id(), &key.collection, key.id, key.version);
        built.get(layout)
    };
    let fields: [&[u8]; 4] = [
        address,
        &codec.to_be_bytes(),
        &dict_id.unwrap_or(-1).to_be_bytes(),
        &raw_len.to_be_bytes(),
    ];
    let mut stack = [0u8; AAD_STACK];
    let mut at = Fill {
        buf: &mut stack,
        at: 0,
    };
    if at.put(prefix) && fields.iter().all(|field| at.field(field)) {
        let len = at.at;
        return f(stack.get(..len).unwrap_or_default());
    }
    let mut aad = Aad::from_prefix(prefix);
    for field in fields {
        aad = aad.bytes(field);
    }
    f(&aad.finish())
}

/// [`with_blob_aad`] of a stored row: its hash, codec, dictionary and JSON length.
fn with_stored_aad<R>(
    ring: &Keyring,
    key: &DataKey,
    layout: Layout,
    blob: &StoredBlob,
    f: impl FnOnce(&[u8]) -> R,
) -> R {
    with_blob_aad(
        ring,
        key,
        layout,
        &blob.hash,
        blob.codec_id,
        blob.dict_id,
        blob.raw_len,
        f,
    )
}

/// Length-prefixed fields written into a fixed buffer; `false` when they do not fit.
struct Fill<'a> {
    buf: &'a mut [u8],
    at: usize,
}

impl Fill<'_> {
    fn put(&mut self, bytes: &[u8]) -> bool {
        let Some(end) = self.at.checked_add(bytes.len()) else {
            return false;
        };
        match self.buf.get_mut(self.at..end) {
            Some(place) => {
                place.copy_from_slice(bytes);
                self.at = end;
                true
            }
            None => false,
        }
    }

    fn field(&mut self, bytes: &[u8]) -> bool {
        let Ok(len) = u32::try_from(bytes.len()) else {
            return false;
        };
        self.put(&len.to_be_bytes()) && self.put(bytes)
    }
}

/// `value` as an encrypted store writes it: addressed by the collection's keyed hash, its
/// stored bytes sealed under `key` (a whole document in layout v2; a chunk list or delta,
/// with the plain hash inside, in v1). A chunked value's chunks are sealed the same way in
/// v1, each addressed by its own keyed hash (dedup within the collection).
pub(crate) fn seal_value(
    ring: &Keyring,
    key: &DataKey,
    value: &EncodedValue,
) -> Result<EncodedValue> {
    let whole = value.chunks.is_empty() && !crate::chunk::is_chunked(value.codec_id());
    let layout = if whole && !documents_v1() {
        Layout::V2
    } else {
        Layout::V1
    };
    seal_value_as(ring, key, value, layout)
}

#[cfg(feature = "testing")]
static DOCUMENTS_V1: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

#[cfg(feature = "testing")]
fn documents_v1() -> bool {
    DOCUMENTS_V1.load(std::sync::atomic::Ordering::Relaxed)
}

#[cfg(not(feature = "testing"))]
const fn documents_v1() -> bool {
    false
}

/// Tests: seal whole documents in layout v1 (`true`, format 0xE2 or 0xE1, with the plain
/// content hash inside), as every release before layout v2 did, or in v2 again (`false`).
/// Process-wide.
#[cfg(feature = "testing")]
pub fn seal_documents_v1(on: bool) {
    DOCUMENTS_V1.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// [`seal_value`] in `layout` (its chunks in v1).
pub(crate) fn seal_value_as(
    ring: &Keyring,
    key: &DataKey,
    value: &EncodedValue,
    layout: Layout,
) -> Result<EncodedValue> {
    let address = key.address(&value.hash);
    let raw_len = i64::try_from(value.raw_len()).unwrap_or(i64::MAX);
    let prefix: &[u8] = match layout {
        Layout::V1 => &value.hash,
        Layout::V2 => &[],
    };
    let out = with_blob_aad(
        ring,
        key,
        layout,
        &address,
        value.codec_id(),
        value.dict_id,
        raw_len,
        |aad| seal_payload_shared(Suite::preferred(), layout, key, aad, prefix, &value.stored),
    )?;
    let chunks = value
        .chunks
        .iter()
        .map(|c| seal_value_as(ring, key, c, Layout::V1))
        .collect::<Result<Vec<_>>>()?;
    Ok(EncodedValue {
        hash: address,
        codec: value.codec,
        raw: Arc::clone(&value.raw),
        stored: out,
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

/// `blob` decrypted under `key`: the compressed bytes, and what decoding verifies them
/// against (a v1 blob: the plain content hash from inside the ciphertext; a v2 blob: the
/// row's keyed address, with the key that made it). A chunk list's chunks are left as they
/// are (see `open_tree`).
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
    let h = header::parse(&blob.data)?;
    let sealed = blob.data.get(header::LEN..)?;
    let mut data = with_stored_aad(ring, key, h.layout, blob, |aad| {
        envelope::open_with(h.suite, &key.cipher, aad, sealed)
    })?;
    let (hash, keyed) = match h.layout {
        Layout::V1 => {
            if data.len() < PLAIN_HASH_LEN {
                return None;
            }
            // The payload is `hash || compressed`: the hash moves out, the rest stays in place.
            (data.drain(..PLAIN_HASH_LEN).collect(), None)
        }
        Layout::V2 => (blob.hash.clone(), Some(ContentKey::of(key))),
    };
    Some(StoredBlob {
        codec_id: blob.codec_id,
        raw_len: blob.raw_len,
        hash,
        data,
        dict_id: blob.dict_id,
        chunks: blob.chunks.clone(),
        keyed,
    })
}

/// [`try_open_blob`], taking the blob: a whole document of layout v2 sealed with
/// AES-256-GCM-SIV (what documents are sealed as) is decrypted in the buffer it was read
/// into, with no allocation and no copy of the payload; any other blob is opened as
/// [`try_open_blob`] does. A blob that does not open comes back as it was (its ciphertext,
/// never a failed decryption's bytes), so the caller can still name the error.
pub(crate) fn try_open_blob_owned(
    ring: &Keyring,
    key: &DataKey,
    mut blob: StoredBlob,
) -> Opening<StoredBlob> {
    let in_place = header::parse(&blob.data).filter(|h| {
        h.layout == Layout::V2 && h.suite == Suite::Aes256GcmSiv && blob.chunks.is_empty()
    });
    let Some(h) = in_place else {
        return match try_open_blob(ring, key, &blob) {
            Some(opened) => Opening::Opened(opened),
            None => Opening::Unopened(blob),
        };
    };
    // The fields one by one: the closure borrows the row's data mutably.
    let opened = with_blob_aad(
        ring,
        key,
        h.layout,
        &blob.hash,
        blob.codec_id,
        blob.dict_id,
        blob.raw_len,
        |aad| envelope::open_siv_in_place(&key.cipher, aad, &mut blob.data, header::LEN),
    );
    if !opened {
        return Opening::Unopened(blob);
    }
    // The row's keyed address, which decoding verifies the document against.
    Opening::Opened(StoredBlob {
        keyed: Some(ContentKey::of(key)),
        ..blob
    })
}

/// What opening a blob (or a record) that is taken gives back: it opened, or it is as it
/// was (its ciphertext), for the caller to open the long way.
pub(crate) enum Opening<T> {
    Opened(T),
    Unopened(T),
}

impl<T> Opening<T> {
    /// `f` of either.
    pub(crate) fn map<U>(self, f: impl FnOnce(T) -> U) -> Opening<U> {
        match self {
            Opening::Opened(t) => Opening::Opened(f(t)),
            Opening::Unopened(t) => Opening::Unopened(f(t)),
        }
    }
}

/// The stored bytes of `blob` (sealed under `from`) sealed again under `to`, a newer key of
/// the same collection, in the same layout: the same content address, codec, dictionary
/// and length, a fresh nonce. The payload is authenticated under `from` first; the
/// compressed bytes are not decoded.
pub(crate) fn reseal_blob(
    ring: &Keyring,
    from: &DataKey,
    to: &DataKey,
    blob: &StoredBlob,
    location: &str,
) -> Result<Vec<u8>> {
    let opened = open_blob(ring, from, blob, location)?;
    let (layout, prefix): (Layout, &[u8]) = match opened.keyed {
        Some(_) => (Layout::V2, &[]),
        None => (Layout::V1, &opened.hash),
    };
    with_stored_aad(ring, to, layout, blob, |aad| {
        seal_payload(Suite::preferred(), layout, to, aad, prefix, &opened.data)
    })
}

/// `header || nonce || sealed(prefix || stored) || tag` under `key` with `suite`, built and
/// sealed in one buffer.
fn seal_payload(
    suite: Suite,
    layout: Layout,
    key: &DataKey,
    aad: &[u8],
    prefix: &[u8],
    stored: &[u8],
) -> Result<Vec<u8>> {
    let mut out = vec![0u8; sealed_len(suite, prefix, stored)];
    seal_payload_into(suite, layout, key, aad, prefix, stored, &mut out)?;
    Ok(out)
}

/// [`seal_payload`], built and sealed in the shared buffer an [`EncodedValue`] holds (one
/// allocation of the final size: no `Vec` copied into an `Arc` afterwards).
fn seal_payload_shared(
    suite: Suite,
    layout: Layout,
    key: &DataKey,
    aad: &[u8],
    prefix: &[u8],
    stored: &[u8],
) -> Result<Arc<[u8]>> {
    let mut out: Arc<[u8]> = std::iter::repeat_n(0u8, sealed_len(suite, prefix, stored)).collect();
    let buf = Arc::get_mut(&mut out)
        .ok_or_else(|| StorageError::Task("encryption failed: no buffer".into()))?;
    seal_payload_into(suite, layout, key, aad, prefix, stored, buf)?;
    Ok(out)
}

/// The length of [`seal_payload`]'s output.
fn sealed_len(suite: Suite, prefix: &[u8], stored: &[u8]) -> usize {
    header::LEN + suite.nonce_len() + prefix.len() + stored.len() + envelope::TAG_LEN
}

/// Writes [`seal_payload`]'s output into `buf`, which is [`sealed_len`] long.
fn seal_payload_into(
    suite: Suite,
    layout: Layout,
    key: &DataKey,
    aad: &[u8],
    prefix: &[u8],
    stored: &[u8],
    buf: &mut [u8],
) -> Result<()> {
    let failed = || StorageError::Task("encryption failed: no buffer".into());
    let at = header::LEN + suite.nonce_len();
    let body_end = buf
        .len()
        .checked_sub(envelope::TAG_LEN)
        .ok_or_else(failed)?;
    buf.get_mut(..header::LEN)
        .ok_or_else(failed)?
        .copy_from_slice(&header::bytes(suite, layout, key.id));
    let (p, s) = buf
        .get_mut(at..body_end)
        .filter(|body| body.len() == prefix.len() + stored.len())
        .ok_or_else(failed)?
        .split_at_mut(prefix.len());
    p.copy_from_slice(prefix);
    s.copy_from_slice(stored);
    envelope::seal_into(suite, &key.cipher, aad, buf, at)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Codec;
    use crate::crypto::MasterKey;

    fn missing(what: &str) -> StorageError {
        StorageError::Task(what.to_owned())
    }

    fn ring_with_key() -> Result<(Keyring, Arc<DataKey>)> {
        let ring = Keyring::new(&MasterKey::generate()?, "t".into(), "s".into());
        ring.load(&[ring.new_key("bank", 1, None)?])?;
        let key = ring.current("bank").ok_or_else(|| missing("no key"))?;
        Ok((ring, key))
    }

    fn whole(json: &[u8]) -> EncodedValue {
        EncodedValue {
            hash: *blake3::hash(json).as_bytes(),
            codec: Codec::None,
            raw: json.into(),
            stored: json.into(),
            dict_id: None,
            chunks: Arc::from([]),
            delta: false,
            sealed: None,
        }
    }

    fn stored(v: &EncodedValue) -> StoredBlob {
        StoredBlob {
            codec_id: v.codec_id(),
            raw_len: i64::try_from(v.raw_len()).unwrap_or(-1),
            hash: v.hash.to_vec(),
            data: v.stored.to_vec(),
            dict_id: v.dict_id,
            chunks: Vec::new(),
            keyed: None,
        }
    }

    #[test]
    fn whole_documents_seal_in_layout_v2_without_the_plain_hash() -> Result<()> {
        let (ring, key) = ring_with_key()?;
        let doc = br#"{"chips":10}"#;
        let v1 = stored(&seal_value_as(&ring, &key, &whole(doc), Layout::V1)?);
        let v2 = stored(&seal_value(&ring, &key, &whole(doc))?);
        assert_eq!(header::parse(&v2.data).map(|h| h.layout), Some(Layout::V2));
        assert_eq!(v1.data.len() - v2.data.len(), 32, "the plain hash is gone");
        assert_eq!(v2.hash, key.address(blake3::hash(doc).as_bytes()));

        let opened = try_open_blob(&ring, &key, &v2).ok_or_else(|| missing("v2 does not open"))?;
        assert_eq!(opened.data, doc);
        assert_eq!(opened.hash, v2.hash, "the keyed address, to verify against");
        assert!(opened.keyed.is_some());
        let plain = crate::value::check_hash("c/k", &opened.hash, opened.keyed.as_ref(), doc, "")?;
        assert_eq!(&plain, blake3::hash(doc).as_bytes());
        assert!(
            crate::value::check_hash("c/k", &opened.hash, opened.keyed.as_ref(), b"{}", "")
                .is_err()
        );

        let old = try_open_blob(&ring, &key, &v1).ok_or_else(|| missing("v1 does not open"))?;
        assert_eq!(old.data, doc);
        assert_eq!(&old.hash[..], blake3::hash(doc).as_bytes());
        assert!(old.keyed.is_none());
        Ok(())
    }

    #[test]
    fn a_relabelled_layout_does_not_open() -> Result<()> {
        let (ring, key) = ring_with_key()?;
        for (from, to) in [(Layout::V2, Layout::V1), (Layout::V1, Layout::V2)] {
            let mut blob = stored(&seal_value_as(&ring, &key, &whole(b"[1,2,3]"), from)?);
            let relabelled = header::bytes(Suite::preferred(), to, key.id);
            blob.data.splice(..header::LEN, relabelled);
            assert_eq!(header::parse(&blob.data).map(|h| h.layout), Some(to));
            assert!(
                try_open_blob(&ring, &key, &blob).is_none(),
                "{from:?} as {to:?}"
            );
        }
        Ok(())
    }

    #[test]
    fn a_v2_blob_under_another_address_or_altered_does_not_open() -> Result<()> {
        let (ring, key) = ring_with_key()?;
        let blob = stored(&seal_value(&ring, &key, &whole(b"\"a\""))?);
        let other = stored(&seal_value(&ring, &key, &whole(b"\"b\""))?);
        let moved = StoredBlob {
            data: blob.data.clone(),
            ..other
        };
        assert!(try_open_blob(&ring, &key, &moved).is_none());
        for at in [header::LEN, header::LEN + 12, blob.data.len() - 1] {
            let mut altered = blob.clone();
            if let Some(b) = altered.data.get_mut(at) {
                *b ^= 1;
            }
            assert!(try_open_blob(&ring, &key, &altered).is_none(), "byte {at}");
        }
        Ok(())
    }

    /// The associated data as it was built per record before the per-key prefix: every
    /// field through [`Aad`].
    fn fields_aad(ring: &Keyring, key: &DataKey, layout: Layout, blob: &StoredBlob) -> Vec<u8> {
        let tag = match layout {
            Layout::V1 => BLOB_TAG,
            Layout::V2 => BLOB_TAG_V2,
        };
        Aad::new(tag)
            .text(ring.store_id())
            .text(&key.collection)
            .number(key.id)
            .number(key.version)
            .bytes(&blob.hash)
            .number(blob.codec_id)
            .number(blob.dict_id.unwrap_or(-1))
            .number(blob.raw_len)
            .finish()
    }

    #[test]
    fn the_prefixed_binding_is_byte_for_byte_the_fields_binding() -> Result<()> {
        let long = "c".repeat(AAD_STACK);
        for collection in ["bank", long.as_str()] {
            let ring = Keyring::new(&MasterKey::generate()?, "t".into(), "store-1".into());
            ring.load(&[ring.new_key(collection, 1, None)?])?;
            let key = ring.current(collection).ok_or_else(|| missing("no key"))?;
            // A keyring of another store id (none is made so; the binding still holds).
            let other = Keyring::new(&MasterKey::generate()?, "t".into(), "store-2".into());
            let mut blob = stored(&whole(b"{}"));
            for dict_id in [None, Some(7)] {
                blob.dict_id = dict_id;
                for layout in [Layout::V1, Layout::V2] {
                    for r in [&ring, &other] {
                        let built = with_stored_aad(r, &key, layout, &blob, <[u8]>::to_vec);
                        assert_eq!(built, fields_aad(r, &key, layout, &blob));
                    }
                }
            }
        }
        Ok(())
    }

    #[test]
    fn opening_in_place_gives_what_opening_by_copy_gives() -> Result<()> {
        let (ring, key) = ring_with_key()?;
        for layout in [Layout::V1, Layout::V2] {
            let doc = br#"{"player":"p1","chips":[1,2,3]}"#;
            let blob = stored(&seal_value_as(&ring, &key, &whole(doc), layout)?);
            let copied = try_open_blob(&ring, &key, &blob).ok_or_else(|| missing("copy"))?;
            let Opening::Opened(owned) = try_open_blob_owned(&ring, &key, blob.clone()) else {
                return Err(missing("in place"));
            };
            assert_eq!(owned.data, doc, "{layout:?}");
            assert_eq!(
                (owned.hash, owned.keyed, owned.codec_id, owned.raw_len),
                (copied.hash, copied.keyed, copied.codec_id, copied.raw_len)
            );
        }
        Ok(())
    }

    #[test]
    fn a_blob_that_does_not_open_in_place_comes_back_as_it_was() -> Result<()> {
        let (ring, key) = ring_with_key()?;
        let (other_ring, other_key) = ring_with_key()?;
        let blob = stored(&seal_value(&ring, &key, &whole(br#"{"secret":1}"#))?);
        let mut altered = blob.clone();
        if let Some(b) = altered.data.last_mut() {
            *b ^= 1;
        }
        let mut moved = blob.clone();
        moved.raw_len += 1;
        let mut short = blob.clone();
        short.data.truncate(header::LEN + 20);
        for (what, r, k, b) in [
            ("altered", &ring, &key, altered),
            ("moved", &ring, &key, moved),
            ("short", &ring, &key, short),
            ("another key", &other_ring, &other_key, blob),
        ] {
            match try_open_blob_owned(r, k, b.clone()) {
                Opening::Opened(_) => panic!("{what}: opened"),
                Opening::Unopened(back) => {
                    assert_eq!(back.data, b.data, "{what}: the ciphertext, unchanged");
                    assert_eq!(back.hash, b.hash);
                    assert!(back.keyed.is_none());
                }
            }
        }
        Ok(())
    }

    #[test]
    fn resealing_keeps_the_layout() -> Result<()> {
        let (ring, from) = ring_with_key()?;
        ring.load(&[ring.new_key("bank", 2, Some(&from))?])?;
        let to = ring.current("bank").ok_or_else(|| missing("no key"))?;
        assert_ne!(to.id, from.id);
        for layout in [Layout::V1, Layout::V2] {
            let blob = stored(&seal_value_as(&ring, &from, &whole(b"[true]"), layout)?);
            let data = reseal_blob(&ring, &from, &to, &blob, "c/k")?;
            let h = header::parse(&data).ok_or_else(|| missing("no header"))?;
            assert_eq!((h.layout, h.key_id), (layout, to.id));
            let resealed = StoredBlob { data, ..blob };
            let opened =
                try_open_blob(&ring, &to, &resealed).ok_or_else(|| missing("does not open"))?;
            assert_eq!(opened.data, b"[true]");
        }
        Ok(())
    }
}

//! The value pipeline: serialize → hash → compress (only when smaller), and back with
//! verification. Runs outside the writer so that group commit only does database work.

use std::sync::Arc;

use serde::de::DeserializeOwned;

use crate::codec::Codec;
use crate::crypto::ContentKey;
use crate::dictionary::{self, EncoderDict};
use crate::error::{Result, StorageError};

mod recent;

/// A blake3 content hash of a value's serialized (uncompressed) bytes.
pub type ContentHash = [u8; 32];

/// A value ready to be written: its JSON bytes, their hash, and the stored form.
#[derive(Debug, Clone)]
pub struct EncodedValue {
    /// blake3 of `raw`.
    pub hash: ContentHash,
    /// The codec `stored` is in.
    pub codec: Codec,
    /// The serialized JSON document.
    pub raw: Arc<[u8]>,
    /// The bytes that go to disk (`raw` itself when `codec` is [`Codec::None`]).
    pub stored: Arc<[u8]>,
    /// The zstd dictionary `stored` needs, if any.
    pub dict_id: Option<i64>,
    /// The document's chunks in order, each encoded like a document of its own, when it is
    /// stored chunked (`chunk/`); empty otherwise. A chunked value's `codec` is
    /// [`Codec::None`] and its `stored` is what its `blobs` row holds: nothing in a plaintext
    /// store (the sealed plain hash in an encrypted one).
    pub chunks: Arc<[EncodedValue]>,
    /// `stored` is a patch against the document its `chunks` hold (a delta, `chunk/delta.rs`).
    pub delta: bool,
    /// In an encrypted store, this value already sealed by the caller's encode step, under
    /// the collection's data key current then (`crypto/backend.rs`), so the writer thread does
    /// not seal it; `None` elsewhere. The writer seals again if the key changed meanwhile.
    pub sealed: Option<Arc<Presealed>>,
}

/// A value sealed ahead of the writer: the id of the data key it is sealed under, and the
/// sealed form the backend stores.
#[derive(Debug)]
pub struct Presealed {
    pub(crate) key_id: i64,
    pub(crate) value: EncodedValue,
}

impl EncodedValue {
    /// A document of `raw` bytes (hashing to `hash`) stored as the chunk list `chunks`.
    pub(crate) fn chunked(hash: ContentHash, raw: Arc<[u8]>, chunks: Arc<[EncodedValue]>) -> Self {
        EncodedValue {
            hash,
            codec: Codec::None,
            raw,
            stored: Arc::from([]),
            dict_id: None,
            chunks,
            delta: false,
            sealed: None,
        }
    }

    /// A document stored as the patch `stored` against the keyframe whose chunks are
    /// `chunks`.
    pub(crate) fn delta(
        hash: ContentHash,
        raw: Arc<[u8]>,
        stored: Arc<[u8]>,
        chunks: Arc<[EncodedValue]>,
    ) -> Self {
        EncodedValue {
            stored,
            delta: true,
            ..EncodedValue::chunked(hash, raw, chunks)
        }
    }

    /// Length of the serialized document.
    pub fn raw_len(&self) -> usize {
        self.raw.len()
    }

    /// Whether the value is stored as a chunk list.
    pub fn is_chunked(&self) -> bool {
        !self.chunks.is_empty()
    }

    /// The codec id its `blobs` row holds: 16 (`chunk::CHUNKED`) for a
    /// chunk list, else its codec's.
    pub fn codec_id(&self) -> i64 {
        if self.delta {
            crate::chunk::DELTA
        } else if self.is_chunked() {
            crate::chunk::CHUNKED
        } else {
            i64::from(self.codec.id())
        }
    }

    /// Stored bytes of the value and all its chunks (before chunk deduplication).
    pub fn stored_len(&self) -> usize {
        self.chunks
            .iter()
            .fold(self.stored.len(), |n, c| n.saturating_add(c.stored.len()))
    }
}

/// Settings of the pipeline, taken from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct Pipeline {
    /// Codec for new writes ([`Codec::None`] when compression is disabled).
    pub codec: Codec,
    /// The codec's level.
    pub level: i32,
    /// Largest accepted serialized value.
    pub max_value_size: usize,
    /// Documents larger than this are stored in chunks (`chunk/`); 0: never.
    pub chunk_threshold: usize,
    /// Overwrites of a chunked document are deltas for this many versions after a keyframe
    /// (`chunk/delta.rs`); 0: never.
    pub keyframe_interval: u32,
}

impl Pipeline {
    /// Serializes `value` and prepares it for storage (the benchmarks and tests use it; the
    /// store encodes through `encode_raw_with`).
    #[cfg(any(test, feature = "testing"))]
    pub fn encode<T: serde::Serialize + ?Sized>(
        &self,
        collection: &str,
        key: &str,
        value: &T,
    ) -> Result<EncodedValue> {
        let raw = serde_json::to_vec(value).map_err(|source| StorageError::Serialize {
            collection: collection.to_owned(),
            key: key.to_owned(),
            source,
        })?;
        self.encode_raw(collection, key, raw)
    }

    /// Fails with [`StorageError::ValueTooLarge`] when `len` is over the limit.
    pub(crate) fn check_size(&self, collection: &str, key: &str, len: usize) -> Result<()> {
        if len > self.max_value_size {
            return Err(StorageError::ValueTooLarge {
                collection: collection.to_owned(),
                key: key.to_owned(),
                size: u64::try_from(len).unwrap_or(u64::MAX),
                limit: u64::try_from(self.max_value_size).unwrap_or(u64::MAX),
            });
        }
        Ok(())
    }

    /// Prepares already-serialized JSON bytes for storage.
    #[cfg(any(test, feature = "testing"))]
    pub fn encode_raw(&self, collection: &str, key: &str, raw: Vec<u8>) -> Result<EncodedValue> {
        self.encode_raw_with(collection, key, raw, None)
    }

    /// Like [`Pipeline::encode_raw`], compressing with `dict` when the codec is zstd.
    pub(crate) fn encode_raw_with(
        &self,
        collection: &str,
        key: &str,
        raw: Vec<u8>,
        dict: Option<&EncoderDict>,
    ) -> Result<EncodedValue> {
        self.check_size(collection, key, raw.len())?;
        if self.chunks(raw.len()) {
            return self.encode_chunked(raw.into(), dict);
        }
        self.encode_whole(raw, dict)
    }

    /// Like [`Pipeline::encode_raw_with`], for bytes already shared: a document that is
    /// chunked keeps `raw` itself as its bytes, so a large document is not copied again (a
    /// smaller one is encoded whole from a copy).
    pub(crate) fn encode_shared_with(
        &self,
        collection: &str,
        key: &str,
        raw: Arc<[u8]>,
        dict: Option<&EncoderDict>,
    ) -> Result<EncodedValue> {
        self.check_size(collection, key, raw.len())?;
        if self.chunks(raw.len()) {
            return self.encode_chunked(raw, dict);
        }
        self.encode_whole(raw.to_vec(), dict)
    }

    /// Whether a document of `len` bytes is stored as a chunk list.
    fn chunks(&self, len: usize) -> bool {
        self.chunk_threshold > 0 && len > self.chunk_threshold
    }

    /// `raw` as a chunk list (`chunk/cut.rs`), each chunk encoded whole.
    fn encode_chunked(&self, raw: Arc<[u8]>, dict: Option<&EncoderDict>) -> Result<EncodedValue> {
        let hash = *blake3::hash(&raw).as_bytes();
        let chunks = crate::chunk::cut(&raw, &|bytes| self.encode_whole(bytes, dict))?;
        Ok(EncodedValue::chunked(hash, raw, chunks))
    }

    /// `raw` as one compressed blob (or one chunk of a chunked document). A document this
    /// thread just encoded the same way takes its stored form from `recent` instead of being
    /// compressed again.
    pub(crate) fn encode_whole(
        &self,
        raw: Vec<u8>,
        dict: Option<&EncoderDict>,
    ) -> Result<EncodedValue> {
        let hash = *blake3::hash(&raw).as_bytes();
        let raw: Arc<[u8]> = raw.into();
        let dict = dict.filter(|_| self.codec == Codec::Zstd);
        let key = recent::Key::new(&hash, self.codec, self.level, dict);
        let outcome = match recent::find(&key) {
            Some(outcome) => outcome,
            None => {
                let outcome = self.compress(&raw, dict)?;
                if outcome.codec != Codec::None {
                    recent::remember(key, &outcome);
                }
                outcome
            }
        };
        Ok(EncodedValue {
            hash,
            codec: outcome.codec,
            stored: outcome.stored,
            raw,
            dict_id: outcome.dict_id,
            // `Arc::default()` of a slice is a shared static: no allocation here,
            // no free on the writer thread that drops the value.
            chunks: Arc::default(),
            delta: false,
            sealed: None,
        })
    }

    /// What `raw` is stored as: compressed with `dict` (or the codec alone) when that is
    /// smaller, else `raw` itself.
    fn compress(&self, raw: &Arc<[u8]>, dict: Option<&EncoderDict>) -> Result<recent::Outcome> {
        if self.codec != Codec::None {
            let packed = match dict {
                Some(d) => dictionary::compress(raw, d)?,
                None => self.codec.compress_shared(raw, self.level)?,
            };
            // The original design's rule: keep the compressed form only when it is smaller.
            if packed.len() < raw.len() {
                return Ok(recent::Outcome {
                    codec: self.codec,
                    stored: packed,
                    dict_id: dict.map(|d| d.id),
                });
            }
        }
        Ok(recent::Outcome {
            codec: Codec::None,
            stored: Arc::clone(raw),
            dict_id: None,
        })
    }
}

/// Turns stored bytes back into the serialized document, verifying codec, length and hash.
/// `dict` is the zstd dictionary the blob names, if it names one.
/// `keyed` is the key of a v2 blob's content address (`StoredBlob::keyed`), whose `hash`
/// is that address.
pub(crate) fn decode(
    location: &str,
    codec_id: i64,
    raw_len: i64,
    hash: &[u8],
    keyed: Option<&ContentKey>,
    stored: &[u8],
    dict: Option<&zstd::dict::DecoderDictionary<'static>>,
) -> Result<Vec<u8>> {
    let codec = u8::try_from(codec_id)
        .ok()
        .and_then(Codec::from_id)
        .ok_or_else(|| {
            StorageError::corruption(location, format!("unknown codec id {codec_id}"))
        })?;
    let raw_len = usize::try_from(raw_len)
        .map_err(|_| StorageError::corruption(location, format!("invalid length {raw_len}")))?;
    let raw = match (codec, dict) {
        (Codec::Zstd, Some(d)) => dictionary::decompress(stored, raw_len, d, location)?,
        (_, Some(_)) => {
            return Err(StorageError::corruption(
                location,
                format!("codec {codec} cannot use a dictionary"),
            ));
        }
        (_, None) => codec.decompress(stored, raw_len, location)?,
    };
    check_hash(location, hash, keyed, &raw, "")?;
    Ok(raw)
}

/// Checks that `raw` is the document `hash` names: blake3 of it, or with `keyed` (a v2
/// blob's, `StoredBlob::keyed`) that key's content address of that; blake3 of `raw`.
/// `what` names the document in the error (empty for the blob's own).
pub(crate) fn check_hash(
    location: &str,
    hash: &[u8],
    keyed: Option<&ContentKey>,
    raw: &[u8],
    what: &str,
) -> Result<ContentHash> {
    let plain = *blake3::hash(raw).as_bytes();
    let computed = match keyed {
        Some(key) => key.address(&plain),
        None => plain,
    };
    if computed.as_slice() != hash {
        let kind = if keyed.is_some() { " (keyed)" } else { "" };
        return Err(StorageError::corruption(
            location,
            format!(
                "content hash mismatch{what}: stored {}, computed {}{kind}",
                hex(hash),
                hex(&computed)
            ),
        ));
    }
    Ok(plain)
}

/// The verified document of a stored blob (opened, in an encrypted store), whole or chunked;
/// `dict` finds the decoder of a dictionary id the blob or one of its chunks names.
pub(crate) fn decode_stored<D>(
    location: &str,
    blob: &crate::backend::StoredBlob,
    dict: impl FnMut(i64, &str) -> Result<D>,
) -> Result<Vec<u8>>
where
    D: std::ops::Deref<Target = zstd::dict::DecoderDictionary<'static>>,
{
    decode_stored_with(location, blob, None, dict)
}

/// [`decode_stored`], with a delta's keyframe from (and into) `keyframes`: the cache and the
/// blob's collection (`chunk/keyframes.rs`).
pub(crate) fn decode_stored_with<D>(
    location: &str,
    blob: &crate::backend::StoredBlob,
    keyframes: Option<(&crate::chunk::keyframes::Keyframes, &str)>,
    mut dict: impl FnMut(i64, &str) -> Result<D>,
) -> Result<Vec<u8>>
where
    D: std::ops::Deref<Target = zstd::dict::DecoderDictionary<'static>>,
{
    let mut one = |location: &str, b: &crate::backend::StoredBlob| {
        let d = b.dict_id.map(|id| dict(id, location)).transpose()?;
        decode(
            location,
            b.codec_id,
            b.raw_len,
            &b.hash,
            b.keyed.as_ref(),
            &b.data,
            d.as_deref(),
        )
    };
    if crate::chunk::is_chunked(blob.codec_id) {
        crate::chunk::assemble_with(location, blob, keyframes, one)
    } else {
        one(location, blob)
    }
}

/// Deserializes a verified document as `T`.
///
/// Parsed as a `str` once the whole document is checked to be UTF-8: from bytes, serde_json
/// validates every string and object key on its own (one `from_utf8` call each), which was
/// ~15 % of a 1 KiB game document's parse; one pass over the document costs ~400
/// instructions against ~4,000. Same parser, so the same values and the same errors (line
/// and column included); a document that is not UTF-8 is parsed from bytes, as before, so
/// its error is serde_json's own.
pub fn deserialize<T: DeserializeOwned>(collection: &str, key: &str, raw: &[u8]) -> Result<T> {
    let parsed = match std::str::from_utf8(raw) {
        Ok(text) => serde_json::from_str(text),
        Err(_) => serde_json::from_slice(raw),
    };
    parsed.map_err(|source| StorageError::Deserialize {
        collection: collection.to_owned(),
        key: key.to_owned(),
        type_name: std::any::type_name::<T>(),
        source,
    })
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pipeline of `codec` at level 3, 1 MiB values, no chunking or deltas (also
    /// `recent.rs`'s tests).
    pub(super) fn pipeline(codec: Codec) -> Pipeline {
        Pipeline {
            codec,
            level: 3,
            max_value_size: 1 << 20,
            chunk_threshold: 0,
            keyframe_interval: 0,
        }
    }

    /// A large document handed over shared is chunked as the same bytes owned would be,
    /// and the value keeps those very bytes (a 1 MiB rewrite is not copied again); a small
    /// one is encoded whole as before.
    #[test]
    fn shared_bytes_encode_as_owned_ones_and_a_chunked_document_keeps_them() -> Result<()> {
        let p = Pipeline {
            chunk_threshold: 64 * 1024,
            ..pipeline(Codec::Zstd)
        };
        let doc: Vec<u8> = (0..40_000u32)
            .flat_map(|i| format!("{{\"n\":{i}}},").into_bytes())
            .collect();
        let shared: Arc<[u8]> = doc.clone().into();
        let owned = p.encode_raw_with("c", "k", doc, None)?;
        let kept = p.encode_shared_with("c", "k", Arc::clone(&shared), None)?;
        assert!(kept.is_chunked());
        assert!(Arc::ptr_eq(&kept.raw, &shared), "the bytes were copied");
        assert_eq!(kept.hash, owned.hash);
        let hashes = |v: &EncodedValue| v.chunks.iter().map(|c| c.hash).collect::<Vec<_>>();
        assert_eq!(hashes(&kept), hashes(&owned));
        let small: Arc<[u8]> = Arc::from(&b"[1,2,3]"[..]);
        let whole = p.encode_shared_with("c", "k", small, None)?;
        assert!(!whole.is_chunked());
        assert_eq!(&*whole.raw, b"[1,2,3]");
        let tight = Pipeline {
            max_value_size: 10,
            ..p
        };
        assert!(matches!(
            tight.encode_shared_with("c", "k", shared, None),
            Err(StorageError::ValueTooLarge { .. })
        ));
        Ok(())
    }

    #[test]
    fn compresses_only_when_smaller() -> Result<()> {
        let p = pipeline(Codec::Zstd);
        let small = p.encode("c", "k", &1u8)?;
        assert_eq!(small.codec, Codec::None);
        assert_eq!(&*small.stored, b"1");
        let big = p.encode("c", "k", &vec!["same text"; 100])?;
        assert_eq!(big.codec, Codec::Zstd);
        assert!(big.stored.len() < big.raw.len());
        let back = decode(
            "c/k",
            i64::from(big.codec.id()),
            i64::try_from(big.raw_len()).unwrap_or(0),
            &big.hash,
            None,
            &big.stored,
            None,
        )?;
        assert_eq!(back, &*big.raw);
        Ok(())
    }

    #[test]
    fn hash_mismatch_is_corruption() -> Result<()> {
        let v = pipeline(Codec::None).encode("c", "k", &"hello")?;
        let mut bad = v.stored.to_vec();
        bad[1] ^= 1;
        let err = decode("c/k", 0, 7, &v.hash, None, &bad, None);
        match err {
            Err(StorageError::Corruption { location, detail }) => {
                assert_eq!(location, "c/k");
                assert!(detail.starts_with("content hash mismatch"), "{detail}");
            }
            other => panic!("expected corruption, got {other:?}"),
        }
        assert!(decode("c/k", 77, 7, &v.hash, None, &v.stored, None).is_err());
        assert!(decode("c/k", 0, -1, &v.hash, None, &v.stored, None).is_err());
        Ok(())
    }

    #[test]
    fn too_large_is_rejected() {
        let p = Pipeline {
            max_value_size: 4,
            ..pipeline(Codec::Zstd)
        };
        assert!(matches!(
            p.encode("c", "k", &"12345"),
            Err(StorageError::ValueTooLarge {
                size: 7,
                limit: 4,
                ..
            })
        ));
    }

    #[test]
    fn wrong_type_names_the_type() {
        let err = deserialize::<u32>("c", "k", b"\"text\"").err();
        let msg = err.map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(msg, "value at c/k does not deserialize as u32");
    }

    /// `deserialize` parses a UTF-8 document as a `str` (one validation pass) instead of
    /// bytes: it must give exactly serde_json's `from_slice` values and errors, for valid
    /// documents, documents that do not fit the type, malformed JSON and invalid UTF-8
    /// (which must still fail, with serde_json's own error, not be replaced or skipped).
    #[test]
    fn deserialize_matches_serde_json_from_bytes() {
        #[derive(Debug, PartialEq, serde::Deserialize)]
        struct Doc {
            name: String,
            ratio: f64,
            tags: Vec<String>,
            point: Option<u8>,
        }
        let inputs: [&[u8]; 12] = [
            br#"{"name":"caf\u00e9","ratio":0.1,"tags":["a"],"point":4}"#,
            "{\"name\":\"caf\u{e9} \u{1F3B2}\",\"ratio\":1e300,\"tags\":[],\"point\":null}"
                .as_bytes(),
            br#"{"name":"\ud83c\udfb2","ratio":-0.0,"tags":["x","y"],"point":null}"#,
            br#"{"name":"n","ratio":1.7976931348623157e308,"tags":[],"point":null,"extra":[1]}"#,
            br#"{"name":"n","ratio":2.2250738585072014e-308,"tags":[],"point":null}"#,
            br#"{"name":"\ud800","ratio":1,"tags":[],"point":null}"#,
            b"{\"name\":\"\xff\",\"ratio\":1,\"tags\":[],\"point\":null}",
            b"{\"name\":\"a\",\"ratio\":1,\"tags\":[],\"point\":null}\xc3",
            br#"{"name":"n","ratio":1,"tags":[],"point":300}"#,
            br#"{"name":"n","ratio":1,"tags":[],"point":null} x"#,
            br#"{"name":"n","ratio":1,"tags":["#,
            b"\n\n  {\"name\": 7}",
        ];
        for raw in inputs {
            let ours = deserialize::<Doc>("c", "k", raw);
            let theirs = serde_json::from_slice::<Doc>(raw);
            match (ours, theirs) {
                (Ok(a), Ok(b)) => {
                    assert_eq!(a, b, "{}", String::from_utf8_lossy(raw));
                    assert_eq!(a.ratio.to_bits(), b.ratio.to_bits());
                }
                (Err(StorageError::Deserialize { source, .. }), Err(b)) => {
                    assert_eq!(source.to_string(), b.to_string());
                    assert_eq!(source.classify(), b.classify());
                }
                (a, b) => panic!(
                    "{}: ours {a:?}, serde_json {b:?}",
                    String::from_utf8_lossy(raw)
                ),
            }
            let ours = deserialize::<serde_json::Value>("c", "k", raw).map_err(|e| e.to_string());
            let theirs = serde_json::from_slice::<serde_json::Value>(raw);
            assert_eq!(ours.is_ok(), theirs.is_ok());
            if let (Ok(a), Ok(b)) = (ours, theirs) {
                assert_eq!(a, b);
            }
        }
    }
}

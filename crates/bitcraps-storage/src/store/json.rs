//! Storing JSON text as it is (`store_json`, `store_json_batch`): the text is checked
//! (`json/`), not parsed into a value and serialized again, and its bytes are what is stored,
//! so key order, number spelling and escapes survive and the caller pays no serialization.
//!
//! An overwrite of a large document that becomes a delta (`delta.rs`) is checked from the
//! last mark of its keyframe inside the prefix it shares with it (`json/marks.rs`); a
//! document that becomes a keyframe is checked whole, and its marks are kept with it in the
//! keyframe cache.

use std::sync::Arc;
use std::time::Instant;

use super::write::{Document, INLINE_ENCODE_LIMIT, encode_sealed};
use super::{PersistentStorageManager, Shared};
use crate::dictionary::EncoderDict;
use crate::error::Result;
use crate::json::{self, Marks};
use crate::observe::Operation;
use crate::rt::blocking;
use crate::validate;
use crate::value::{EncodedValue, Pipeline};

/// JSON text, checked before it is stored.
pub(super) struct Text<'a>(pub(super) &'a str);

impl Document for Text<'_> {
    fn raw(&self, collection: &str, key: &str, _capacity: usize) -> Result<Vec<u8>> {
        let text = json::trim(self.0);
        checked(collection, key, text, json::check(text.as_bytes()))?;
        Ok(text.as_bytes().to_vec())
    }
}

/// `Ok` when the check accepted `text`, or refused it but serde_json accepts it after all;
/// else the error that says why it is not JSON (`json::refused`).
pub(super) fn checked<T>(
    collection: &str,
    key: &str,
    text: &str,
    verdict: std::result::Result<T, json::Refusal>,
) -> Result<Option<T>> {
    match verdict {
        Ok(t) => Ok(Some(t)),
        Err(refusal) => match json::refused(collection, key, text, refusal) {
            Some(e) => Err(e),
            None => Ok(None),
        },
    }
}

impl PersistentStorageManager {
    /// Stores the JSON text `json` under `collection`/`key`, replacing any previous value,
    /// like [`store`](Self::store) of a value that serializes to it, without the
    /// serialization: the text is checked and stored as it is, byte for byte, without the
    /// whitespace around it (key order, number spelling and escapes are kept, as with a
    /// `serde_json::value::RawValue`). Reads return it as stored: [`retrieve_raw`](Self::retrieve_raw)
    /// byte for byte, [`retrieve`](Self::retrieve) parsed into any type.
    ///
    /// Text that is not one JSON document is refused with
    /// [`StorageError::InvalidJson`](crate::StorageError::InvalidJson) (serde_json's message,
    /// with line and column), text nested deeper than [`MAX_JSON_DEPTH`](crate::MAX_JSON_DEPTH)
    /// with [`StorageError::JsonTooDeep`](crate::StorageError::JsonTooDeep); nothing is
    /// written then. So is text a typed read could not return: a lone surrogate escape
    /// (`"\ud800"`) or a number beyond an `f64`'s range (`1e400`), which a `RawValue`
    /// would keep. The check accepts exactly what serde_json does, in a pass that builds no
    /// value; an overwrite of a large document stored as a delta checks only from about the
    /// point where it departs from its keyframe (an append: its last few KiB).
    pub async fn store_json(&self, collection: &str, key: &str, json: &str) -> Result<()> {
        let work = async {
            let started = Instant::now();
            self.check_writable()?;
            validate::key(collection, key)?;
            let value = self.encode_json(collection, key, json).await?;
            self.put_encoded(collection, key, value, None, started)
                .await
        };
        self.public_call(Operation::Store, collection, Some(key), work)
            .await
    }

    /// Stores every `(key, JSON text)` pair in one atomic transaction, like
    /// [`store_batch`](Self::store_batch), each text checked and stored as
    /// [`store_json`](Self::store_json) does (every text is checked whole: a batch writes no
    /// deltas). One text that is not JSON refuses the batch: nothing is written.
    pub async fn store_json_batch<K: AsRef<str>, J: AsRef<str>>(
        &self,
        collection: &str,
        items: &[(K, J)],
    ) -> Result<()> {
        let items: Vec<_> = items
            .iter()
            .map(|(k, j)| (k.as_ref(), Text(j.as_ref()), None, None))
            .collect();
        let work = self.store_batch_inner(collection, &items);
        self.public_call(Operation::StoreBatch, collection, None, work)
            .await
    }

    /// `json` checked and encoded: as a delta of its keyframe when it is a large document's
    /// overwrite and that is worth it (checked from the keyframe's marks), else whole.
    async fn encode_json(&self, collection: &str, key: &str, json: &str) -> Result<EncodedValue> {
        let pipeline = self.inner.pipeline;
        let text = json::trim(json);
        pipeline.check_size(collection, key, text.len())?;
        let dict = self.inner.shared.dictionaries.encoder(collection);
        let ring = self.inner.shared.keyring.clone();
        if pipeline.keyframe_interval > 0 && text.len() > pipeline.chunk_threshold {
            // An append to a keyframe in memory: encoded here (`inline_delta.rs`).
            let shared = &self.inner.shared;
            if let Some(encoded) =
                super::inline_delta::encode(shared, &pipeline, (collection, key), text)?
            {
                self.observe(collection, &encoded);
                return Ok(encoded);
            }
            let shared = Arc::clone(shared);
            // The one copy of the text: from here on its bytes are shared by the delta or
            // the keyframe, the writer and the cache.
            let (c, k, text) = (
                collection.to_owned(),
                key.to_owned(),
                Arc::<str>::from(text),
            );
            let encoded = blocking(move || {
                let ck = (c.as_str(), k.as_str());
                encode_large(&shared, &pipeline, ck, text, dict.as_deref())
            })
            .await?;
            self.observe(collection, &encoded);
            return Ok(encoded);
        }
        let encoded = if text.len() <= INLINE_ENCODE_LIMIT {
            let raw = Text(text).raw(collection, key, 0)?;
            encode_sealed(
                &pipeline,
                ring.as_deref(),
                collection,
                key,
                raw,
                dict.as_deref(),
            )?
        } else {
            let (c, k, text) = (collection.to_owned(), key.to_owned(), text.to_owned());
            blocking(move || {
                let raw = Text(&text).raw(&c, &k, 0)?;
                encode_sealed(&pipeline, ring.as_deref(), &c, &k, raw, dict.as_deref())
            })
            .await?
        };
        self.observe(collection, &encoded);
        Ok(encoded)
    }
}

/// The large JSON text `text` of `collection/key` checked and encoded (blocking): as a delta
/// of its keyframe when that is worth it (checked from the keyframe's marks), else as a
/// keyframe — resumed from the last one when that is in memory (`next_keyframe.rs`: its
/// chunks, hash and marks taken over where the two agree), else checked and cut whole.
fn encode_large(
    shared: &Shared,
    pipeline: &Pipeline,
    (c, k): (&str, &str),
    text: Arc<str>,
    dict: Option<&EncoderDict>,
) -> Result<EncodedValue> {
    let Some(base) = super::delta::base_or_full(shared, pipeline, c, k, text.len())? else {
        let verdict = json::check_marking(text.as_bytes(), json::STRIDE);
        let marks = checked(c, k, &text, verdict)?.map(Marks::from_marks);
        let raw = Arc::<[u8]>::from(text);
        return super::delta::or_keyframe(shared, pipeline, (c, k), None, raw, dict, marks);
    };
    // The prefix the text shares with the keyframe, compared once for the check, the
    // splice, the hash and a resumed keyframe.
    let prefix = crate::chunk::common_prefix(&base.document, text.as_bytes());
    let base_marks = super::delta::marks(shared, &base);
    if !base.full {
        checked(c, k, &text, base_marks.check(prefix, text.as_bytes()))?;
        let raw = Arc::<[u8]>::from(text);
        if let Some(delta) = super::delta::against(shared, pipeline, &base, &raw, prefix)? {
            return super::delta::or_keyframe(
                shared,
                pipeline,
                (c, k),
                Some(delta),
                raw,
                dict,
                None,
            );
        }
        // Not worth a delta: a keyframe after all, with marks resumed too (the text was
        // checked above).
        let marks = base_marks.resumed(prefix, &raw).ok();
        let at = (&base, prefix);
        return super::next_keyframe::resumed(shared, pipeline, (c, k), at, raw, dict, marks);
    }
    let verdict = base_marks.resumed(prefix, text.as_bytes());
    let marks = checked(c, k, &text, verdict)?;
    let raw = Arc::<[u8]>::from(text);
    super::next_keyframe::resumed(shared, pipeline, (c, k), (&base, prefix), raw, dict, marks)
}

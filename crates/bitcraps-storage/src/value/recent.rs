//! The stored form of the documents this thread encoded last, by content hash, so that a
//! document identical to one just encoded is not compressed again.
//!
//! Identical documents are what deduplication is for: the writer stores one blob per content
//! hash and drops the stored bytes of every later copy. Compressing those copies first is
//! work thrown away — a 200-byte document still costs ~13k instructions of zstd with the
//! dictionary (frame set-up and default entropy tables), a 1 KiB one ~23k (issue #15). Here a
//! few slots per thread, picked by the hash, remember what the last documents became; a
//! document whose hash, codec, level and dictionary match a slot takes that slot's stored
//! bytes (shared, not copied). A slot whose document came back keeps it against the next few
//! new documents that pick the same slot (each takes one of its hits away), so a document
//! that recurs is not pushed out by the distinct ones written between its copies. Compression is deterministic for those inputs, so the result
//! is the bytes compressing it again would give.
//!
//! A dictionary is told apart by [`EncoderDict::serial`], unique in the process, not by its
//! id: ids are per store, and one thread encodes for every store the process opens.

use std::cell::RefCell;
use std::sync::Arc;

use super::ContentHash;
use crate::codec::Codec;
use crate::dictionary::EncoderDict;

/// Slots per thread.
const SLOTS: usize = 32;
/// Stored forms longer than this are not remembered (bounds what a thread holds: 64 KiB).
const MAX_STORED: usize = 2048;
/// A slot's hits count at most this high.
const MAX_HITS: u8 = 8;

/// What a document was encoded with and into.
#[derive(Clone)]
pub(super) struct Outcome {
    /// The codec its stored form is in (`Codec::None`: stored as is).
    pub(super) codec: Codec,
    /// The stored form.
    pub(super) stored: Arc<[u8]>,
    /// The id of the dictionary `stored` needs, if any.
    pub(super) dict_id: Option<i64>,
}

/// What a document is and how it is encoded: equal keys give equal stored forms.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) struct Key {
    hash: ContentHash,
    codec: Codec,
    level: i32,
    /// The dictionary's [`EncoderDict::serial`].
    dict: Option<u64>,
}

impl Key {
    pub(super) fn new(
        hash: &ContentHash,
        codec: Codec,
        level: i32,
        dict: Option<&EncoderDict>,
    ) -> Self {
        Key {
            hash: *hash,
            codec,
            level,
            dict: dict.map(EncoderDict::serial),
        }
    }
}

/// One remembered document: what it was encoded with (the key) and what it became.
struct Slot {
    key: Key,
    outcome: Outcome,
    /// Times its document came back, less the new documents it was kept against since.
    hits: u8,
}

thread_local! {
    static SLOTS_OF_THREAD: RefCell<[Option<Slot>; SLOTS]> = const { RefCell::new([const { None }; SLOTS]) };
}

fn index(hash: &ContentHash) -> usize {
    // blake3 output is uniform: its first byte picks a slot as well as any.
    usize::from(hash[0]) % SLOTS
}

/// What the document of `key` became when this thread last encoded it so, if a slot still
/// holds it.
pub(super) fn find(key: &Key) -> Option<Outcome> {
    SLOTS_OF_THREAD.with(|slots| {
        let mut slots = slots.try_borrow_mut().ok()?;
        let slot = slots.get_mut(index(&key.hash))?.as_mut()?;
        (slot.key == *key).then(|| {
            slot.hits = slot.hits.saturating_add(1).min(MAX_HITS);
            slot.outcome.clone()
        })
    })
}

/// Remembers what the document of `key` became (a compressed form: one stored as is costs
/// nothing to encode again).
pub(super) fn remember(key: Key, outcome: &Outcome) {
    if outcome.stored.len() > MAX_STORED {
        return;
    }
    SLOTS_OF_THREAD.with(|slots| {
        let Ok(mut slots) = slots.try_borrow_mut() else {
            return;
        };
        match slots.get_mut(index(&key.hash)) {
            Some(Some(kept)) if kept.hits > 0 => kept.hits -= 1,
            Some(s) => {
                *s = Some(Slot {
                    key,
                    outcome: outcome.clone(),
                    hits: 0,
                });
            }
            None => {}
        }
    });
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::codec::Codec;
    use crate::dictionary::EncoderDict;
    use crate::error::{Result, StorageError};
    use crate::value::{Pipeline, decode};

    fn pipeline() -> Pipeline {
        crate::value::tests::pipeline(Codec::Zstd)
    }

    fn doc(i: usize) -> Vec<u8> {
        format!(
            r#"{{"id":"game-{i:06}","table":{},"state":"come_out","players":[{{"name":"p{}","balance":{}}}],"settings":{{"min_bet":10,"max_bet":5000}}}}"#,
            i % 64,
            i % 7,
            i * 37 % 1000
        )
        .into_bytes()
    }

    fn dictionary(id: i64, seed: usize) -> Result<EncoderDict> {
        let samples: Vec<Arc<[u8]>> = (0..300).map(|i| Arc::from(doc(i * 13 + seed))).collect();
        Ok(EncoderDict::new(
            id,
            &crate::dictionary::train(&samples)?,
            3,
        ))
    }

    /// A document identical to the one this thread just encoded the same way takes that
    /// one's stored form (the same bytes, shared) instead of being compressed again.
    #[test]
    fn an_identical_document_is_not_compressed_again() -> Result<()> {
        let p = pipeline();
        let first = p.encode_raw("c", "a", doc(1))?;
        let again = p.encode_raw("c", "b", doc(1))?;
        assert_eq!(first.codec, Codec::Zstd);
        assert!(
            Arc::ptr_eq(&first.stored, &again.stored),
            "compressed again"
        );
        assert_eq!(again.hash, first.hash);
        assert!(!Arc::ptr_eq(&first.raw, &again.raw));
        // Another document, or the same one at another level, is compressed.
        let other = p.encode_raw("c", "a", doc(2))?;
        assert!(!Arc::ptr_eq(&first.stored, &other.stored));
        let level = Pipeline { level: 5, ..p };
        assert!(!Arc::ptr_eq(
            &level.encode_raw("c", "a", doc(1))?.stored,
            &first.stored
        ));
        Ok(())
    }

    /// Two stores of one process may each have a dictionary 1 trained on different
    /// documents: a document encoded with one must not take the stored form made with the
    /// other, which would not decode with its own.
    #[test]
    fn a_dictionary_of_the_same_id_from_another_store_is_not_confused() -> Result<()> {
        let p = pipeline();
        let (a, b) = (dictionary(1, 0)?, dictionary(1, 5_000)?);
        let raw = doc(424_242);
        let with_a = p.encode_raw_with("c", "k", raw.clone(), Some(&a))?;
        let with_b = p.encode_raw_with("c", "k", raw.clone(), Some(&b))?;
        assert_eq!((with_a.dict_id, with_b.dict_id), (Some(1), Some(1)));
        assert!(!Arc::ptr_eq(&with_a.stored, &with_b.stored));
        let decoder = zstd::dict::DecoderDictionary::copy(&crate::dictionary::train(
            &(0..300)
                .map(|i| Arc::from(doc(i * 13 + 5_000)))
                .collect::<Vec<Arc<[u8]>>>(),
        )?);
        let len = i64::try_from(raw.len()).map_err(|e| StorageError::Task(e.to_string()))?;
        let back = decode(
            "c/k",
            1,
            len,
            &with_b.hash,
            None,
            &with_b.stored,
            Some(&decoder),
        )?;
        assert_eq!(back, raw);
        // With the same dictionary again, the stored form is shared.
        let again = p.encode_raw_with("c", "k2", raw, Some(&b))?;
        assert!(Arc::ptr_eq(&again.stored, &with_b.stored));
        Ok(())
    }

    /// A document that came back is kept against a new document that picks its slot
    /// (regression: with a plain replace, one write of a distinct document between two
    /// copies of a recurring one pushed it out, ~1 copy in 5 of the benchmark's lobby
    /// document was compressed again).
    #[test]
    fn a_recurring_document_outlasts_a_new_one_in_its_slot() -> Result<()> {
        let p = pipeline();
        let hot = doc(7);
        let slot = super::index(blake3::hash(&hot).as_bytes());
        let first = p.encode_raw("c", "k", hot.clone())?;
        assert!(Arc::ptr_eq(
            &p.encode_raw("c", "k", hot.clone())?.stored,
            &first.stored
        ));
        let rival = (100..100_000)
            .map(doc)
            .find(|d| super::index(blake3::hash(d).as_bytes()) == slot)
            .ok_or_else(|| StorageError::Task("no document for the slot".into()))?;
        let _ = p.encode_raw("c", "r", rival)?;
        let after = p.encode_raw("c", "k", hot)?;
        assert!(Arc::ptr_eq(&after.stored, &first.stored), "pushed out");
        Ok(())
    }
}

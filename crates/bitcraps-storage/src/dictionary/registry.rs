//! The registry of dictionaries this process knows: encoders by collection, decoders by
//! id, and the sampling that decides when a collection is ready to train.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use zstd::dict::{DecoderDictionary, EncoderDictionary};

use crate::error::{Result, StorageError};

/// Upper bound of a trained dictionary, in bytes.
pub const DICTIONARY_SIZE: usize = 16 * 1024;
/// Documents larger than this are not used as training samples.
const MAX_SAMPLE_LEN: usize = 16 * 1024;

/// A dictionary as stored by a backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDictionary {
    /// Its id (referenced by blobs).
    pub id: i64,
    /// The collection it was trained for.
    pub collection: String,
    /// The zstd dictionary bytes.
    pub data: Vec<u8>,
}

/// A dictionary ready for compression.
pub struct EncoderDict {
    /// Its id.
    pub id: i64,
    /// The prepared zstd dictionary (at the configured level).
    pub dict: EncoderDictionary<'static>,
    /// Unique among the dictionaries this process prepares (ids are only unique in a store).
    serial: u64,
}

impl EncoderDict {
    /// Prepares `data`, the dictionary stored as `id`, for compression at `level`.
    pub fn new(id: i64, data: &[u8], level: i32) -> Self {
        static SERIALS: AtomicU64 = AtomicU64::new(0);
        EncoderDict {
            id,
            dict: EncoderDictionary::copy(data, level),
            serial: SERIALS.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// A number no other dictionary prepared by this process has: what tells two stores'
    /// dictionaries of the same id apart.
    pub fn serial(&self) -> u64 {
        self.serial
    }
}

impl std::fmt::Debug for EncoderDict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncoderDict").field("id", &self.id).finish()
    }
}

type Map<K, V> = RwLock<HashMap<K, V>>;

/// The dictionaries in use, the samples being gathered, and the collections in training.
pub struct Dictionaries {
    enabled: bool,
    level: i32,
    training_samples: usize,
    current: Map<String, Arc<EncoderDict>>,
    decoders: Map<i64, Arc<DecoderDictionary<'static>>>,
    samples: Mutex<HashMap<String, Vec<Arc<[u8]>>>>,
    training: Mutex<HashSet<String>>,
}

fn read<'a, K, V>(m: &'a Map<K, V>) -> std::sync::RwLockReadGuard<'a, HashMap<K, V>> {
    m.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<'a, K, V>(m: &'a Map<K, V>) -> std::sync::RwLockWriteGuard<'a, HashMap<K, V>> {
    m.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Dictionaries {
    /// A registry; with `enabled` false it never samples or trains (but still decodes).
    pub fn new(enabled: bool, level: i32, training_samples: usize) -> Self {
        Dictionaries {
            enabled,
            level,
            training_samples: training_samples.max(8),
            current: RwLock::default(),
            decoders: RwLock::default(),
            samples: Mutex::default(),
            training: Mutex::default(),
        }
    }

    /// Registers a committed dictionary (on open, and after training). The newest one per
    /// collection becomes the collection's current dictionary.
    pub fn install(&self, stored: &StoredDictionary) {
        let decoder = Arc::new(DecoderDictionary::copy(&stored.data));
        write(&self.decoders).insert(stored.id, decoder);
        let encoder = Arc::new(EncoderDict::new(stored.id, &stored.data, self.level));
        let mut current = write(&self.current);
        let newer = current
            .get(&stored.collection)
            .is_none_or(|c| c.id < stored.id);
        if newer {
            current.insert(stored.collection.clone(), encoder);
        }
        drop(current);
        // Samples gathered while training ran are no longer needed.
        self.samples
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&stored.collection);
    }

    /// The dictionary new values of `collection` are compressed with, if any.
    pub fn encoder(&self, collection: &str) -> Option<Arc<EncoderDict>> {
        read(&self.current).get(collection).cloned()
    }

    /// The dictionary a blob needs. A blob naming an unknown dictionary is corruption.
    pub fn decoder(&self, id: i64, location: &str) -> Result<Arc<DecoderDictionary<'static>>> {
        read(&self.decoders).get(&id).cloned().ok_or_else(|| {
            StorageError::corruption(location, format!("dictionary {id} does not exist"))
        })
    }

    /// Offers a written document as a training sample. Returns the samples once enough were
    /// gathered for a collection that has no dictionary and is not already training; the
    /// caller must then train, [`Dictionaries::install`] the result if any, and call
    /// [`Dictionaries::training_done`].
    pub fn observe(&self, collection: &str, raw: &Arc<[u8]>) -> Option<Vec<Arc<[u8]>>> {
        if !self.enabled || raw.len() > MAX_SAMPLE_LEN || self.encoder(collection).is_some() {
            return None;
        }
        let mut samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        let entry = samples.entry(collection.to_owned()).or_default();
        entry.push(Arc::clone(raw));
        if entry.len() < self.training_samples {
            return None;
        }
        let mut training = self.training.lock().unwrap_or_else(|p| p.into_inner());
        if !training.insert(collection.to_owned()) {
            return None;
        }
        samples.remove(collection)
    }

    /// Ends a training attempt. Without an installed dictionary, sampling goes on and a
    /// later batch of samples is handed out again.
    pub fn training_done(&self, collection: &str) {
        self.training
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(collection);
    }
}

/// Compresses with a dictionary; the frame repeats neither the dictionary's id nor the
/// magic number (`frame.rs`).
pub fn compress(data: &[u8], dict: &EncoderDict) -> Result<Arc<[u8]>> {
    crate::zstd_ctx::compress_shared(
        data,
        0,
        Some(dict.dict.as_cdict()),
        super::frame::strip_header,
    )
    .map_err(|e| StorageError::Compression {
        codec: "zstd",
        source: std::io::Error::other(e),
    })
}

/// Decompresses with a dictionary into at most `raw_len` bytes.
pub fn decompress(
    data: &[u8],
    raw_len: usize,
    dict: &DecoderDictionary<'static>,
    location: &str,
) -> Result<Vec<u8>> {
    crate::zstd_ctx::decompress(data, raw_len, Some(dict.as_ddict()))
        .map_err(|e| StorageError::corruption(location, format!("zstd with dictionary: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dictionary::train;

    fn doc(i: usize) -> Arc<[u8]> {
        Arc::from(
            format!(
                r#"{{"game_id":"g-{i}","table":{},"players":["p{i}","q{}"],"bets":[{{"kind":"pass_line","amount":{}}}],"state":"come_out"}}"#,
                i % 8,
                i * 7,
                i % 50
            )
            .into_bytes(),
        )
    }

    #[test]
    fn trains_after_enough_samples_and_improves_ratio() -> Result<()> {
        let d = Dictionaries::new(true, 3, 200);
        let mut trained = None;
        for i in 0..200 {
            if let Some(s) = d.observe("games", &doc(i)) {
                trained = Some(s);
            }
        }
        let samples = trained.ok_or_else(|| StorageError::Task("no training".into()))?;
        assert_eq!(samples.len(), 200);
        // While training, no second batch is handed out.
        for i in 0..300 {
            assert!(d.observe("games", &doc(i)).is_none());
        }
        let pending = |d: &Dictionaries| {
            d.samples
                .lock()
                .map(|s| s.get("games").map_or(0, Vec::len))
                .unwrap_or(0)
        };
        assert_eq!(pending(&d), 300);
        let data = train(&samples)?;
        d.install(&StoredDictionary {
            id: 7,
            collection: "games".into(),
            data,
        });
        d.training_done("games");
        // Regression: samples gathered during training were kept forever.
        assert_eq!(
            pending(&d),
            0,
            "installing a dictionary drops leftover samples"
        );
        let enc = d
            .encoder("games")
            .ok_or_else(|| StorageError::Task("no enc".into()))?;
        let sample = doc(1234);
        let with = compress(&sample, &enc)?;
        let without =
            zstd::bulk::compress(&sample, 3).map_err(|e| StorageError::Task(e.to_string()))?;
        assert!(
            with.len() < without.len(),
            "{} vs {}",
            with.len(),
            without.len()
        );
        // Schema version 14: the frame is stored without its magic number.
        assert!(!with.starts_with(&crate::zstd_ctx::MAGIC), "{with:02x?}");
        let back = decompress(&with, sample.len(), &*d.decoder(7, "t")?, "t")?;
        assert_eq!(&back[..], &sample[..]);
        assert!(d.decoder(8, "t").is_err());
        // A collection with a dictionary is no longer sampled.
        assert!(d.observe("games", &doc(1)).is_none());
        Ok(())
    }

    #[test]
    fn disabled_never_samples() {
        let d = Dictionaries::new(false, 3, 8);
        for i in 0..100 {
            assert!(d.observe("games", &doc(i)).is_none());
        }
    }
}

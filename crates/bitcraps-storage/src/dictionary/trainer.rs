//! The dictionary lifecycle: sample a collection's first documents, train a zstd dictionary
//! off the runtime, commit it through the writer, and start compressing with it.

use std::sync::Arc;

use crate::PersistentStorageManager;
use crate::backend::{OpOutcome, WriteOp, now_ms};
use crate::error::{Result, StorageError};
use crate::rt::blocking;
use crate::value::EncodedValue;

use super::{DICTIONARY_SIZE, StoredDictionary};

impl PersistentStorageManager {
    /// Offers a written document to dictionary sampling; starts training when it is time.
    pub(crate) fn observe(&self, collection: &str, encoded: &EncodedValue) {
        if let Some(samples) = self.shared().dictionaries.observe(collection, &encoded.raw) {
            let this = self.clone();
            let collection = collection.to_owned();
            tokio::spawn(async move { this.train_dictionary(collection, samples).await });
        }
    }

    /// Trains a dictionary for `collection` off the runtime, commits it, and starts using it.
    async fn train_dictionary(&self, collection: String, samples: Vec<Arc<[u8]>>) {
        let dictionaries = &self.shared().dictionaries;
        let trained = match blocking(move || train(&samples)).await {
            Ok(data) => data,
            Err(e) => {
                tracing::info!(%collection, error = %e, "no dictionary trained; sampling again");
                dictionaries.training_done(&collection);
                return;
            }
        };
        let data: Arc<[u8]> = trained.into();
        let op = WriteOp::PutDictionary {
            collection: collection.clone(),
            data: Arc::clone(&data),
            now_ms: now_ms(),
        };
        match self.writer().write(vec![op]).await.as_deref() {
            Ok([OpOutcome::Dictionary { id }]) => {
                dictionaries.install(&StoredDictionary {
                    id: *id,
                    collection: collection.clone(),
                    data: data.to_vec(),
                });
                dictionaries.training_done(&collection);
                tracing::info!(%collection, id, bytes = data.len(), "trained a zstd dictionary");
            }
            other => {
                // Nobody's call fails with it, so it is counted here.
                crate::stats::Counters::add(&self.shared().counters.errors, 1);
                tracing::warn!(%collection, outcome = ?other, "could not store a dictionary");
                dictionaries.training_done(&collection);
            }
        }
    }
}

/// Trains a dictionary from samples (CPU-bound: call off the async runtime).
pub fn train(samples: &[Arc<[u8]>]) -> Result<Vec<u8>> {
    zstd::dict::from_samples(samples, DICTIONARY_SIZE).map_err(|source| StorageError::Compression {
        codec: "zstd dictionary training",
        source,
    })
}

//! Verification reads every byte: every blob of a snapshot is decompressed (with the
//! dictionary it names) and its content hash checked, as restic's `check --read-data` does.
//! A damaged blob is reported by the collection and key of the documents that use it.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use zstd::dict::DecoderDictionary;

use crate::backend::snapshot::{self, Chunk};
use crate::error::{Result, StorageError};

/// Damaged documents named in the error, at most.
const NAMED: usize = 10;

/// What a content check read.
#[derive(Debug, Default)]
pub struct Contents {
    /// Blobs decoded.
    pub blobs: u64,
    /// Bytes they decoded to.
    pub bytes: u64,
}

/// Decodes every blob of the snapshot at `db`; the first damage is a
/// [`StorageError::Corruption`] at `location` naming the damaged documents.
pub fn check(db: &Path, location: &str) -> Result<Contents> {
    let mut dictionaries: HashMap<i64, DecoderDictionary<'static>> = HashMap::new();
    // Blob id → what is wrong with it.
    let mut damaged: BTreeMap<i64, String> = BTreeMap::new();
    let mut documents: Vec<String> = Vec::new();
    let mut damaged_documents = 0usize;
    let mut contents = Contents::default();
    snapshot::read_rows(db, |chunk| {
        match chunk {
            Chunk::Dictionaries(rows) => {
                for (id, _, _, data) in rows {
                    dictionaries.insert(id, DecoderDictionary::copy(&data));
                }
            }
            Chunk::Blobs(rows) => {
                for (id, hash, codec, raw_len, _, _, data, dict_id) in rows {
                    let blob = format!("blob {id}");
                    let decoded = match dict_id {
                        Some(d) => match dictionaries.get(&d) {
                            Some(dict) => crate::value::decode(
                                &blob,
                                codec,
                                raw_len,
                                &hash,
                                &data,
                                Some(dict),
                            ),
                            None => Err(StorageError::corruption(
                                &blob,
                                format!("dictionary {d} does not exist"),
                            )),
                        },
                        None => crate::value::decode(&blob, codec, raw_len, &hash, &data, None),
                    };
                    match decoded {
                        Ok(raw) => {
                            contents.blobs += 1;
                            contents.bytes += u64::try_from(raw.len()).unwrap_or(u64::MAX);
                        }
                        Err(e) => {
                            let detail = match e {
                                StorageError::Corruption { detail, .. } => detail,
                                other => other.to_string(),
                            };
                            damaged.insert(id, detail);
                        }
                    }
                }
            }
            Chunk::Records(rows) => {
                for (collection, key, blob_id, ..) in rows {
                    if let Some(why) = damaged.get(&blob_id) {
                        damaged_documents += 1;
                        if documents.len() < NAMED {
                            documents.push(format!("{collection}/{key} (blob {blob_id}: {why})"));
                        }
                    }
                }
            }
            Chunk::Done => {}
        }
        Ok(())
    })
    .map_err(|e| StorageError::corruption(location, format!("the copy cannot be read: {e}")))?;
    if damaged.is_empty() {
        return Ok(contents);
    }
    let more = damaged_documents.saturating_sub(documents.len());
    let named = if documents.is_empty() {
        format!(
            "blobs {:?} used by no document",
            damaged.keys().collect::<Vec<_>>()
        )
    } else if more > 0 {
        format!("{} and {more} more", documents.join(", "))
    } else {
        documents.join(", ")
    };
    Err(StorageError::corruption(
        location,
        format!(
            "{} damaged blob(s), {damaged_documents} damaged document(s): {named}",
            damaged.len()
        ),
    ))
}

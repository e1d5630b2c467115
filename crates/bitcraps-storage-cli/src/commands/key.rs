//! `key …`: encryption at rest. `generate` prints a new master key, `rotate` re-wraps the
//! data keys under a new one, `shred` crypto-shreds a collection.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use bitcraps_storage::{KeySource, MasterKey, PersistentStorageManager, StorageConfig};

use crate::exit::CliError;
use crate::progress::Ui;

/// Prints a new random master key: 64 hex characters and a newline, nothing else (so
/// `key generate > FILE` makes a key file). The key is never logged.
pub fn generate() -> Result<()> {
    let key = MasterKey::generate()?;
    let mut line = key.to_hex();
    line.push('\n');
    super::print(&line)
}

/// Re-wraps every data key under the key in `new_key_file`.
pub async fn rotate(storage: &PersistentStorageManager, new_key_file: PathBuf) -> Result<()> {
    let shown = new_key_file.display().to_string();
    let count = storage
        .rotate_master_key(Arc::new(KeySource::File(new_key_file)))
        .await
        .context("rotating the master key")?;
    super::print(&format!(
        "rotated: {count} data keys re-wrapped; only the key in {shown} opens the store now\n"
    ))
}

/// Gives `collection` a new data key.
pub async fn rotate_data(storage: &PersistentStorageManager, collection: &str) -> Result<()> {
    let version = storage
        .rotate_data_key(collection)
        .await
        .with_context(|| format!("rotating the data key of {collection}"))?;
    super::print(&format!(
        "{collection}: new writes use data key version {version}\n"
    ))
}

/// Runs re-encryption steps until a pass over the store completes.
pub async fn reencrypt(storage: &PersistentStorageManager) -> Result<()> {
    let (mut examined, mut resealed, mut chunks, mut damaged) = (0u64, 0u64, 0u64, 0u64);
    loop {
        let step = storage.reencrypt().await.context("re-encrypting")?;
        examined += step.blobs_examined;
        resealed += step.blobs_resealed;
        chunks += step.chunks_resealed;
        damaged += step.blobs_damaged;
        if step.pass_complete {
            break;
        }
    }
    super::print(&format!(
        "re-encrypted: {resealed} of {examined} blobs read sealed again under their \
         collection's current data key, and {chunks} chunks of large documents\n"
    ))?;
    if damaged > 0 {
        anyhow::bail!(
            "{damaged} blobs under an older key did not authenticate and were left as they \
             are; `maintenance` and `stats` name the damaged records"
        );
    }
    Ok(())
}

/// Crypto-shreds `collection` (the caller checked `--yes`).
pub async fn shred(storage: &PersistentStorageManager, collection: &str, yes: bool) -> Result<()> {
    debug_assert!(yes, "refused earlier without --yes");
    let count = storage
        .shred_collection(collection)
        .await
        .with_context(|| format!("shredding collection {collection}"))?;
    super::print(&format!(
        "shredded {collection}: its data key and {count} records destroyed\n"
    ))
}

/// Encrypts the plaintext store `config` names in place with its key (`--key-file`).
pub async fn enable(config: StorageConfig, ui: &Ui) -> Result<()> {
    if !config.key.is_set() {
        return Err(
            CliError::Usage("key enable needs the key: pass --key-file FILE".into()).into(),
        );
    }
    let location = super::describe(&config);
    let bar = ui.bar(None, "records", "encrypting");
    let shown = bar.clone();
    let mut counted = 0u64;
    let report = PersistentStorageManager::enable_encryption(config, move |done, _total| {
        shown.inc(done.saturating_sub(counted));
        counted = done;
    })
    .await
    .with_context(|| format!("encrypting the store at {location}"))?;
    bar.finish_and_clear();
    super::print(&format!(
        "encrypted: {} of {} records re-encrypted by this run, {} dictionaries sealed; \
         verified\n",
        report.records_encrypted, report.records, report.dictionaries_encrypted
    ))
}

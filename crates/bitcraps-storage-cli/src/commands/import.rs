//! `import [FILE]`: JSON Lines (as written by `export`) into the store, in atomic batches.

use std::pin::Pin;

use anyhow::{Context, Result};
use bitcraps_storage::PersistentStorageManager;
use serde_json::value::RawValue;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, BufReader};

use crate::cli::ImportArgs;
use crate::exit::CliError;
use crate::progress::Ui;
use crate::{document, jsonl};

/// Records of one collection waiting to be stored together.
struct Batch {
    collection: String,
    items: Vec<(String, Box<RawValue>)>,
}

/// Streams the input: consecutive lines of the same collection are stored with one
/// `store_batch` (all or nothing) of at most `--batch-size` records, each value as the bytes
/// in its line. A malformed line (not UTF-8, not JSON, or a value nested deeper than `put`
/// accepts) stops the import with exit 4; the batches before it stay stored, and the message
/// says how many records that was.
pub async fn run(storage: &PersistentStorageManager, args: &ImportArgs, ui: &Ui) -> Result<()> {
    let path = args.file.as_ref().filter(|p| p.as_os_str() != "-");
    let (mut input, len): (Pin<Box<dyn AsyncBufRead + Send>>, Option<u64>) = match path {
        Some(path) => {
            let file = tokio::fs::File::open(path)
                .await
                .with_context(|| format!("cannot open {}", path.display()))?;
            let len = file.metadata().await.ok().map(|m| m.len());
            (Box::pin(BufReader::new(file)), len)
        }
        None => (Box::pin(BufReader::new(tokio::io::stdin())), None),
    };
    let limit = usize::try_from(args.batch_size).unwrap_or(usize::MAX);
    let bar = ui.byte_bar(len, "importing");
    let mut imported = 0u64;
    let mut collections = std::collections::BTreeSet::new();
    let mut batch: Option<Batch> = None;
    let mut bytes = Vec::new();
    let mut number = 0u64;
    loop {
        bytes.clear();
        let read = input
            .read_until(b'\n', &mut bytes)
            .await
            .context("reading the import")?;
        if read == 0 {
            break;
        }
        number += 1;
        bar.inc(u64::try_from(read).unwrap_or(u64::MAX));
        let bad_line = |why: String| {
            CliError::InvalidInput(format!(
                "line {number}: {why} ({imported} records before it were imported)"
            ))
        };
        let line = document::utf8(&bytes, "the line").map_err(bad_line)?;
        if line.trim().is_empty() {
            continue;
        }
        let entry = jsonl::parse(line.trim_end()).map_err(|e| bad_line(e.to_string()))?;
        document::check_depth(&entry.value, "the value").map_err(bad_line)?;
        let switch = batch
            .as_ref()
            .is_some_and(|b| b.collection != entry.collection || b.items.len() >= limit);
        if switch && let Some(full) = batch.take() {
            imported += store(storage, full).await?;
        }
        collections.insert(entry.collection.clone());
        batch
            .get_or_insert_with(|| Batch {
                collection: entry.collection,
                items: Vec::new(),
            })
            .items
            .push((entry.key, entry.value));
    }
    if let Some(last) = batch.take() {
        imported += store(storage, last).await?;
    }
    bar.finish_and_clear();
    ui.suspend(|| {
        crate::notes::note!(
            "imported {imported} records into {} collection(s)",
            collections.len()
        );
    });
    Ok(())
}

async fn store(storage: &PersistentStorageManager, batch: Batch) -> Result<u64> {
    storage
        .store_batch(&batch.collection, &batch.items)
        .await
        .with_context(|| {
            format!(
                "storing a batch of {} records into {}",
                batch.items.len(),
                batch.collection
            )
        })?;
    Ok(u64::try_from(batch.items.len()).unwrap_or(u64::MAX))
}

//! `import [FILE]`: JSON Lines (as written by `export`) into the store, in atomic batches.

use std::pin::Pin;

use anyhow::{Context, Result};
use bitcraps_storage::{PersistentStorageManager, StorageError};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, BufReader};

use crate::cli::ImportArgs;
use crate::exit::CliError;
use crate::progress::Ui;
use crate::{document, jsonl};

/// Records of one collection waiting to be stored together.
struct Batch {
    collection: String,
    /// Each record's key and JSON text.
    items: Vec<(String, String)>,
    /// Where each record came from, in the same order.
    lines: Vec<Line>,
}

/// The input line a record came from.
struct Line {
    number: u64,
    /// The line up to the value, for a line split without parsing its value
    /// (`jsonl::split`): the value is checked by the store, and a refused one is parsed
    /// again, whole line, to say why.
    head: Option<String>,
}

/// Streams the input: consecutive lines of the same collection are stored with one
/// `store_json_batch` (all or nothing) of at most `--batch-size` records (a batch of one with
/// `store_json`, which may store a large document's overwrite as a delta), each value as the
/// bytes in its line. A line in the form `export` writes is split without parsing its value,
/// which the store checks (once, and for a large document's append only its end); any other
/// line is parsed here. A malformed line (not UTF-8, not JSON, or a value nested deeper than
/// `put` accepts) stops the import with exit 4; the batches before it stay stored, and the
/// message says how many records that was.
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
        let line = line.trim_end();
        let (collection, key, value, head) = match jsonl::split(line) {
            Some(split) => (
                split.collection,
                split.key,
                split.value.to_owned(),
                Some(split.head.to_owned()),
            ),
            None => {
                let entry = jsonl::parse(line).map_err(|e| bad_line(e.to_string()))?;
                document::check_depth(&entry.value, "the value").map_err(bad_line)?;
                let value = String::from(Box::<str>::from(entry.value));
                (entry.collection, entry.key, value, None)
            }
        };
        let switch = batch
            .as_ref()
            .is_some_and(|b| b.collection != collection || b.items.len() >= limit);
        if switch && let Some(full) = batch.take() {
            imported += store(storage, full, imported).await?;
        }
        collections.insert(collection.clone());
        let pending = batch.get_or_insert_with(|| Batch {
            collection,
            items: Vec::new(),
            lines: Vec::new(),
        });
        pending.items.push((key, value));
        pending.lines.push(Line { number, head });
    }
    if let Some(last) = batch.take() {
        imported += store(storage, last, imported).await?;
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

async fn store(storage: &PersistentStorageManager, batch: Batch, imported: u64) -> Result<u64> {
    let c = &batch.collection;
    let stored = match batch.items.as_slice() {
        [(key, value)] => storage.store_json(c, key, value).await,
        items => storage.store_json_batch(c, items).await,
    };
    match stored {
        Ok(()) => Ok(u64::try_from(batch.items.len()).unwrap_or(u64::MAX)),
        Err(e @ (StorageError::InvalidJson { .. } | StorageError::JsonTooDeep { .. })) => {
            Err(refused(&batch, &e, imported).into())
        }
        Err(e) => Err(anyhow::Error::new(e).context(format!(
            "storing a batch of {} records into {c}",
            batch.items.len()
        ))),
    }
}

/// The error for a batch the store refused because a value is not JSON: the first of its
/// lines that fails the checks a line parsed here goes through, with their message.
fn refused(batch: &Batch, e: &StorageError, imported: u64) -> CliError {
    let at = |number: u64, why: &dyn std::fmt::Display| {
        CliError::InvalidInput(format!(
            "line {number}: {why} ({imported} records before it were imported)"
        ))
    };
    for ((_, value), line) in batch.items.iter().zip(&batch.lines) {
        let why = match &line.head {
            Some(head) => match jsonl::parse(&format!("{head}{value}}}")) {
                Err(e) => Some(e.to_string()),
                Ok(entry) => document::check_depth(&entry.value, "the value").err(),
            },
            None => None,
        };
        if let Some(why) = why {
            return at(line.number, &why);
        }
    }
    at(batch.lines.first().map_or(0, |l| l.number), e)
}

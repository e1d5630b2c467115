//! `put <collection> <key> [JSON|-] [--if-version V | --if-absent] [--ttl D] [--print-version]`:
//! store a document, checked as JSON first.

use std::io::IsTerminal;

use anyhow::{Context, Result};
use bitcraps_storage::{PersistentStorageManager, StorageError, WriteBatch};
use tokio::io::AsyncReadExt;

use crate::cli::PutArgs;
use crate::document;
use crate::exit::CliError;

/// Checks the document (exit 4 when it is not UTF-8, not JSON or nested too deep; nothing
/// stored) and stores its bytes as given, without the whitespace around it: key order, number
/// spelling and spacing are kept, as `import` keeps them. With a condition, the write happens
/// only if it holds when the write commits (exit 5 otherwise, nothing written).
pub async fn run(storage: &PersistentStorageManager, args: &PutArgs) -> Result<()> {
    let bytes = match args.json.as_deref() {
        Some(arg) if arg != "-" => arg.as_encoded_bytes().to_vec(),
        _ => read_stdin().await?,
    };
    let raw = document::utf8(&bytes, "the document")
        .and_then(|text| document::check(text, "the document"))
        .map_err(CliError::InvalidInput)?;
    let (c, k) = (&args.record.collection, &args.record.key);
    let version = match args.ttl {
        None => storage.store_if(c, k, raw, args.condition.expect()).await,
        // The condition and the store with its TTL in one unit.
        Some(ttl) => {
            let mut batch = WriteBatch::new();
            batch.expect(c, k, args.condition.expect());
            batch.store_with_ttl(c, k, raw, ttl)?;
            storage
                .apply(batch)
                .await
                .map(|written| written.first().map(|(_, _, v)| *v))
                .and_then(|v| v.ok_or_else(|| StorageError::Task("no version was reported".into())))
        }
    }
    .with_context(|| format!("storing {c}/{k}"))?;
    if args.print_version {
        crate::commands::print(&format!("{version}\n"))?;
    }
    Ok(())
}

async fn read_stdin() -> Result<Vec<u8>> {
    if std::io::stdin().is_terminal() {
        crate::notes::note!("reading the JSON document from stdin (end with Ctrl-D)");
    }
    let mut bytes = Vec::new();
    tokio::io::stdin()
        .read_to_end(&mut bytes)
        .await
        .context("reading the document from stdin")?;
    Ok(bytes)
}

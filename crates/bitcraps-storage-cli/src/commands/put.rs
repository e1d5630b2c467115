//! `put <collection> <key> [JSON|-]`: store a document, validated as JSON first.

use std::io::IsTerminal;

use anyhow::{Context, Result};
use bitcraps_storage::PersistentStorageManager;
use tokio::io::AsyncReadExt;

use crate::cli::PutArgs;
use crate::exit::CliError;

/// Parses the document (exit 4 when it is not JSON, nothing stored) and stores it in compact
/// form.
pub async fn run(storage: &PersistentStorageManager, args: &PutArgs) -> Result<()> {
    let text = match args.json.as_deref() {
        Some(text) if text != "-" => text.to_owned(),
        _ => read_stdin().await?,
    };
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| CliError::InvalidInput(format!("the document is not valid JSON: {e}")))?;
    let (c, k) = (&args.record.collection, &args.record.key);
    storage
        .store(c, k, &value)
        .await
        .with_context(|| format!("storing {c}/{k}"))
}

async fn read_stdin() -> Result<String> {
    if std::io::stdin().is_terminal() {
        eprintln!("reading the JSON document from stdin (end with Ctrl-D)");
    }
    let mut text = String::new();
    tokio::io::stdin()
        .read_to_string(&mut text)
        .await
        .context("reading the document from stdin")?;
    Ok(text)
}

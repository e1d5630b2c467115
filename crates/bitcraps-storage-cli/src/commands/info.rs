//! `info <collection> <key> [--json]`: a record's metadata.

use anyhow::{Context, Result};
use bitcraps_storage::PersistentStorageManager;

use crate::cli::InfoArgs;
use crate::commands::print;
use crate::exit::CliError;
use crate::render;

/// Prints the metadata as a table or JSON; exit 3 when missing.
pub async fn run(storage: &PersistentStorageManager, args: &InfoArgs) -> Result<()> {
    let (c, k) = (&args.record.collection, &args.record.key);
    let meta = storage
        .metadata(c, k)
        .await
        .with_context(|| format!("reading the metadata of {c}/{k}"))?
        .ok_or_else(|| CliError::NotFound {
            collection: c.clone(),
            key: k.clone(),
        })?;
    if args.json {
        print(&format!("{}\n", serde_json::to_string_pretty(&meta)?))
    } else {
        print(&format!(
            "{}\n",
            render::key_value(&render::metadata(&meta))
        ))
    }
}

//! `get <collection> <key>`: print the stored JSON document.

use anyhow::{Context, Result};
use bitcraps_storage::PersistentStorageManager;

use crate::cli::GetArgs;
use crate::commands::print;
use crate::exit::CliError;

/// Prints the document as stored (as `put` or `import` was given it), or pretty-printed;
/// exit 3 when missing.
pub async fn run(storage: &PersistentStorageManager, args: &GetArgs) -> Result<()> {
    let (c, k) = (&args.record.collection, &args.record.key);
    let raw = storage
        .retrieve_raw(c, k)
        .await
        .with_context(|| format!("reading {c}/{k}"))?
        .ok_or_else(|| CliError::NotFound {
            collection: c.clone(),
            key: k.clone(),
        })?;
    let mut text = if args.pretty {
        let value: serde_json::Value =
            serde_json::from_slice(&raw).with_context(|| format!("{c}/{k} is not JSON"))?;
        serde_json::to_string_pretty(&value)?
    } else {
        String::from_utf8(raw.to_vec()).with_context(|| format!("{c}/{k} is not UTF-8"))?
    };
    text.push('\n');
    print(&text)
}

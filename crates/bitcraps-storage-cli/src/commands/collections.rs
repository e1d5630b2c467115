//! `collections [--json]`: the collections that hold records, one per line (control
//! characters escaped, as `list` prints keys), or a JSON array of the names as stored.

use anyhow::{Context, Result};
use bitcraps_storage::PersistentStorageManager;

use crate::cli::CollectionsArgs;
use crate::commands::print;
use crate::render;

pub async fn run(storage: &PersistentStorageManager, args: &CollectionsArgs) -> Result<()> {
    let names = storage
        .collections()
        .await
        .context("listing the collections")?;
    if args.json {
        return print(&format!("{}\n", serde_json::to_string_pretty(&names)?));
    }
    let mut text = String::new();
    for name in &names {
        text.push_str(&render::escape_controls(name));
        text.push('\n');
    }
    print(&text)
}

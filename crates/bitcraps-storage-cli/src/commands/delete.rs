//! `delete <collection> <key> [--force]`.

use anyhow::{Context, Result};
use bitcraps_storage::PersistentStorageManager;

use crate::cli::DeleteArgs;
use crate::exit::CliError;

/// Deletes the record. A missing record is exit 3 ("not found"), like `get`, unless `--force`
/// (then deleting is idempotent, like `rm -f`).
pub async fn run(storage: &PersistentStorageManager, args: &DeleteArgs) -> Result<()> {
    let (c, k) = (&args.record.collection, &args.record.key);
    let existed = storage
        .delete(c, k)
        .await
        .with_context(|| format!("deleting {c}/{k}"))?;
    if existed || args.force {
        Ok(())
    } else {
        Err(CliError::NotFound {
            collection: c.clone(),
            key: k.clone(),
        }
        .into())
    }
}

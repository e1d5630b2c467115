//! `delete <collection> <key> [--force] [--if-version V | --if-absent]`.

use anyhow::{Context, Result};
use bitcraps_storage::PersistentStorageManager;

use crate::cli::DeleteArgs;
use crate::exit::CliError;

/// Deletes the record. A missing record is exit 3 ("not found"), like `get`, unless `--force`
/// (then deleting is idempotent, like `rm -f`) or `--if-absent` (absence was the condition).
/// With `--if-version V` the record is deleted only if it is at version V (exit 5 otherwise,
/// nothing deleted).
pub async fn run(storage: &PersistentStorageManager, args: &DeleteArgs) -> Result<()> {
    let (c, k) = (&args.record.collection, &args.record.key);
    let existed = storage
        .delete_if(c, k, args.condition.expect())
        .await
        .with_context(|| format!("deleting {c}/{k}"))?;
    if existed || args.force || args.condition.if_absent {
        Ok(())
    } else {
        Err(CliError::NotFound {
            collection: c.clone(),
            key: k.clone(),
        }
        .into())
    }
}

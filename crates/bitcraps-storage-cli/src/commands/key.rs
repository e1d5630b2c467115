//! `key …`: encryption at rest. `generate` prints a new master key.

use anyhow::Result;
use bitcraps_storage::MasterKey;

/// Prints a new random master key: 64 hex characters and a newline, nothing else (so
/// `key generate > FILE` makes a key file). The key is never logged.
pub fn generate() -> Result<()> {
    let key = MasterKey::generate()?;
    let mut line = key.to_hex();
    line.push('\n');
    super::print(&line)
}

//! The stores under test, behind one small trait. Every write method returns only once the
//! write is durable (on disk), in each store's own durable mode.

mod fjall_store;
mod ours;
mod redb_store;
mod sled_store;
mod sqlite;

use std::path::Path;

use anyhow::Result;

use crate::docs::Game;

/// Names of every store, ours first.
pub const ALL: [&str; 5] = ["bitcraps-storage", "rusqlite", "redb", "sled", "fjall"];

/// One store under test.
pub trait Store: Send + Sync {
    /// Stores one document durably.
    fn put(&self, key: &str, doc: &Game) -> Result<()>;
    /// Stores documents in one durable batch.
    fn put_batch(&self, items: &[(String, Game)]) -> Result<()>;
    /// Reads and deserializes one document.
    fn get(&self, key: &str) -> Result<Option<Game>>;
    /// Up to `limit` keys starting with `prefix`, strictly after `after`, in order.
    fn list(&self, prefix: &str, after: Option<&str>, limit: usize) -> Result<Vec<String>>;
    /// Brings the files to rest (checkpoint, flush) before they are measured.
    fn settle(&self) -> Result<()>;
}

/// Opens store `name` in `dir`.
pub fn open(name: &str, dir: &Path) -> Result<Box<dyn Store>> {
    Ok(match name {
        "bitcraps-storage" => Box::new(ours::Ours::open(dir)?),
        "rusqlite" => Box::new(sqlite::Sqlite::open(dir)?),
        "redb" => Box::new(redb_store::Redb::open(dir)?),
        "sled" => Box::new(sled_store::Sled::open(dir)?),
        "fjall" => Box::new(fjall_store::Fjall::open(dir)?),
        other => anyhow::bail!("unknown store {other:?}"),
    })
}

/// The smallest key greater than every key starting with `prefix` (ASCII prefixes).
pub fn prefix_end(prefix: &str) -> Option<String> {
    let mut bytes = prefix.as_bytes().to_vec();
    while let Some(last) = bytes.pop() {
        if last < 0x7f {
            bytes.push(last + 1);
            return String::from_utf8(bytes).ok();
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docs::document;

    #[test]
    fn every_store_round_trips_and_lists() -> Result<()> {
        for name in ALL {
            let dir = tempfile::tempdir()?;
            let store = open(name, dir.path())?;
            store.put("g-1", &document(1))?;
            let batch: Vec<(String, Game)> =
                (2..10).map(|i| (format!("g-{i}"), document(i))).collect();
            store.put_batch(&batch)?;
            store.put("h-1", &document(11))?;
            assert_eq!(store.get("g-3")?, Some(document(3)), "{name}");
            assert_eq!(store.get("nope")?, None, "{name}");
            let page = store.list("g-", None, 4)?;
            assert_eq!(page, ["g-1", "g-2", "g-3", "g-4"], "{name}");
            let page = store.list("g-", Some("g-7"), 4)?;
            assert_eq!(page, ["g-8", "g-9"], "{name}");
            store.settle()?;
        }
        Ok(())
    }
}

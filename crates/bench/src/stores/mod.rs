//! The stores under test, behind one small trait. Every write method returns only once the
//! write is durable (on disk), in each store's own durable mode.

mod fjall;
mod ours;
mod pg_jsonb;
mod redb;
mod redis_namespace;
mod rusqlite;
mod schema;
mod sled;

pub use schema::{TAG_VAR, child_tag, drop_left_by};

/// The test PostgreSQL server (`BITCRAPS_TEST_POSTGRES_URL`): `None` (the test skips) when it
/// is not set, an error when `BITCRAPS_TEST_REQUIRE_SERVICES` says it must be.
#[cfg(test)]
pub fn test_server() -> Result<Option<String>> {
    let Ok(server) = std::env::var("BITCRAPS_TEST_POSTGRES_URL") else {
        anyhow::ensure!(
            std::env::var_os("BITCRAPS_TEST_REQUIRE_SERVICES").is_none(),
            "BITCRAPS_TEST_POSTGRES_URL is not set"
        );
        eprintln!("skipped: BITCRAPS_TEST_POSTGRES_URL is not set");
        return Ok(None);
    };
    Ok(Some(server))
}

use std::path::Path;
use std::sync::Arc;

use anyhow::{Result, anyhow, ensure};

use crate::docs::Game;

/// Names of every embedded store, ours first (then ours encrypted at rest and ours reading
/// through `retrieve_shared`, not peers).
pub const ALL: [&str; 7] = [
    OURS,
    OURS_ENCRYPTED,
    OURS_SHARED,
    "rusqlite",
    "redb",
    "sled",
    "fjall",
];
/// Ours on SQLite, the first column.
pub const OURS: &str = "bitcraps-storage";
/// Ours on SQLite with a typed tier (`cache.typed_percent` = [`ours::SHARED_TYPED_PERCENT`]),
/// its typed reads through `retrieve_shared` (an `Arc<Game>` kept decoded while hot) instead
/// of `retrieve` (a column beside ours, not a peer).
pub const OURS_SHARED: &str = "bitcraps-storage-shared";
/// Ours on SQLite with encryption at rest (a column beside ours, not a peer).
pub const OURS_ENCRYPTED: &str = "bitcraps-storage-encrypted";
/// Ours on PostgreSQL (with `--postgres`).
pub const OURS_POSTGRES: &str = "bitcraps-storage-pg";
/// Ours on PostgreSQL with the Redis cache tier (with `--postgres` and `--redis`).
pub const OURS_POSTGRES_REDIS: &str = "bitcraps-storage-pg-redis";

/// The PostgreSQL peer: a tuned `key → JSONB` table (with `--postgres`).
pub const PEER_POSTGRES: &str = "postgres-jsonb";

/// Database servers for the stores that need one.
#[derive(Debug, Clone, Default)]
pub struct Servers {
    /// PostgreSQL URL; each run gets a fresh schema on it.
    pub postgres: Option<String>,
    /// Redis URL; each run gets a fresh namespace on it.
    pub redis: Option<String>,
}

/// Whether `name` is one of our configurations (not a peer to compare with).
pub fn is_ours(name: &str) -> bool {
    name.starts_with("bitcraps-storage")
}

/// One operation of a concurrent workload.
pub enum Op {
    /// A durable single store (boxed so that a plan of reads stays small in memory).
    Put(String, Box<Game>),
    /// A typed read of a key that exists.
    Get(String),
}

/// One worker's operations, shared so that async tasks can own them without a copy.
pub type Worker = Arc<Vec<Op>>;

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
    /// Up to `limit` records (key and document) starting with `prefix`, strictly after
    /// `after`, in order. The default is what an application does with a key listing alone:
    /// one page of keys, then one read per key (ours overrides it with `scan`).
    fn scan(&self, prefix: &str, after: Option<&str>, limit: usize) -> Result<Vec<(String, Game)>> {
        self.list(prefix, after, limit)?
            .into_iter()
            .map(|k| {
                let doc = self
                    .get(&k)?
                    .ok_or_else(|| anyhow!("{k} listed but not found"))?;
                Ok((k, doc))
            })
            .collect()
    }
    /// Brings the files to rest (checkpoint, flush, close) before they are measured. Nothing
    /// is called on the store afterwards except [`Store::remote_footprint`].
    fn settle(&self) -> Result<()>;

    /// For a store whose data lives on a server rather than in its directory: its size there
    /// as of [`Store::settle`]. `None` (the default) measures the directory.
    fn remote_footprint(&self) -> Option<u64> {
        None
    }

    /// Bytes the store's change feed (its change log) occupies in `dir` or on its server, as
    /// of [`Store::settle`]; `None` (the default) for a store without one.
    fn change_log_bytes(&self, _dir: &std::path::Path) -> Result<Option<u64>> {
        Ok(None)
    }

    /// Runs each worker's operations concurrently, one OS thread per worker. An async store
    /// overrides this to run one task per worker instead.
    fn run_workers(&self, workers: &[Worker]) -> Result<()> {
        std::thread::scope(|s| {
            let handles: Vec<_> = workers
                .iter()
                .map(|ops| s.spawn(move || ops.iter().try_for_each(|op| self.apply(op))))
                .collect();
            handles
                .into_iter()
                .try_for_each(|h| h.join().map_err(|_| anyhow!("worker panicked"))?)
        })
    }

    /// Applies one operation (a read must find its document).
    fn apply(&self, op: &Op) -> Result<()> {
        match op {
            Op::Put(key, doc) => self.put(key, doc),
            Op::Get(key) => {
                let doc = self.get(key)?;
                ensure!(doc.is_some(), "missing {key}");
                std::hint::black_box(doc);
                Ok(())
            }
        }
    }
}

/// Opens store `name` in `dir` (or on one of `servers`).
pub fn open(name: &str, dir: &Path, servers: &Servers) -> Result<Box<dyn Store>> {
    let postgres = || {
        servers
            .postgres
            .as_deref()
            .ok_or_else(|| anyhow!("{name} needs --postgres URL"))
    };
    Ok(match name {
        "bitcraps-storage" => Box::new(ours::Ours::open(dir, &ours::Location::Sqlite)?),
        OURS_SHARED => Box::new(ours::Ours::open(dir, &ours::Location::SqliteShared)?),
        OURS_ENCRYPTED => Box::new(ours::Ours::open(dir, &ours::Location::SqliteEncrypted)?),
        OURS_POSTGRES => Box::new(ours::Ours::open(
            dir,
            &ours::Location::Postgres {
                server: postgres()?,
                redis: None,
            },
        )?),
        OURS_POSTGRES_REDIS => Box::new(ours::Ours::open(
            dir,
            &ours::Location::Postgres {
                server: postgres()?,
                redis: Some(
                    servers
                        .redis
                        .as_deref()
                        .ok_or_else(|| anyhow!("{name} needs --redis URL"))?,
                ),
            },
        )?),
        PEER_POSTGRES => Box::new(pg_jsonb::PgJsonb::open(postgres()?)?),
        "rusqlite" => Box::new(rusqlite::Sqlite::open(dir)?),
        "redb" => Box::new(redb::Redb::open(dir)?),
        "sled" => Box::new(sled::Sled::open(dir)?),
        "fjall" => Box::new(fjall::Fjall::open(dir)?),
        other => anyhow::bail!("unknown store {other:?}"),
    })
}

/// Where a page starts for a key-value store: at `after` when it is inside the prefix range.
pub fn page_start<'a>(prefix: &'a str, after: Option<&'a str>) -> &'a str {
    after.filter(|a| *a >= prefix).unwrap_or(prefix)
}

/// One page from `keys` (in order, from [`page_start`]): keys with `prefix`, after `after`.
pub fn collect_page(
    keys: impl Iterator<Item = Result<String>>,
    prefix: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<String>> {
    let mut page = Vec::with_capacity(limit);
    for key in keys {
        let key = key?;
        if !key.starts_with(prefix) || page.len() >= limit {
            break;
        }
        if Some(key.as_str()) != after {
            page.push(key);
        }
    }
    Ok(page)
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
    use crate::docs::{document, lobby};

    #[test]
    fn every_store_round_trips_and_lists() -> Result<()> {
        for name in ALL {
            let dir = tempfile::tempdir()?;
            let store = open(name, dir.path(), &Servers::default())?;
            store.put("g-1", &document(1))?;
            let batch: Vec<(String, Game)> =
                (2..10).map(|i| (format!("g-{i}"), document(i))).collect();
            store.put_batch(&batch)?;
            store.run_workers(&[
                Arc::new(vec![
                    Op::Put("h-1".into(), Box::new(document(11))),
                    Op::Get("g-2".into()),
                ]),
                Arc::new(vec![Op::Get("g-1".into())]),
            ])?;
            assert!(
                store
                    .run_workers(&[Arc::new(vec![Op::Get("nope".into())])])
                    .is_err(),
                "{name}"
            );
            assert_eq!(store.get("g-3")?, Some(document(3)), "{name}");
            assert_eq!(store.get("h-1")?, Some(document(11)), "{name}");
            assert_eq!(store.get("nope")?, None, "{name}");
            let page = store.list("g-", None, 4)?;
            assert_eq!(page, ["g-1", "g-2", "g-3", "g-4"], "{name}");
            let page = store.list("g-", Some("g-7"), 4)?;
            assert_eq!(page, ["g-8", "g-9"], "{name}");
            store.settle()?;
        }
        Ok(())
    }

    #[test]
    fn documents_are_about_a_kilobyte_and_a_fifth_are_lobbies() {
        let docs: Vec<Vec<u8>> = (0..1000)
            .map(|i| serde_json::to_vec(&document(i)).unwrap_or_default())
            .collect();
        let lobby = serde_json::to_vec(&lobby()).unwrap_or_default();
        let lobbies = docs.iter().filter(|d| **d == lobby).count();
        assert!((150..250).contains(&lobbies), "{lobbies}");
        let games: Vec<&Vec<u8>> = docs.iter().filter(|d| **d != lobby).collect();
        let mean = games.iter().map(|d| d.len()).sum::<usize>() / games.len();
        assert!(
            (600..1400).contains(&mean),
            "mean game document {mean} bytes"
        );
    }
}

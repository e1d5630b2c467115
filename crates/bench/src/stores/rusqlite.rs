//! rusqlite as a competent user would set it up: a `(collection, key) → JSON` table without
//! rowid, WAL, `synchronous=FULL`, cached prepared statements, one mutex'd writer and a pool
//! of reader connections (one per concurrent reader).

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use ::rusqlite::{Connection, OptionalExtension, params};
use anyhow::{Result, anyhow};

use super::{Store, prefix_end};
use crate::docs::Game;

const COLLECTION: &str = "games";
const PUT: &str = "INSERT OR REPLACE INTO kv (collection, key, value) VALUES (?1, ?2, ?3)";
const BUSY: Duration = Duration::from_secs(10);

pub struct Sqlite {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
}

fn lock<T>(m: &Mutex<T>) -> Result<MutexGuard<'_, T>> {
    m.lock().map_err(|_| anyhow!("poisoned"))
}

impl Sqlite {
    pub fn open(dir: &Path) -> Result<Self> {
        let path = dir.join("kv.db");
        let writer = Connection::open(&path)?;
        writer.busy_timeout(BUSY)?;
        writer.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;
             CREATE TABLE IF NOT EXISTS kv (
                 collection TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL,
                 PRIMARY KEY (collection, key)
             ) WITHOUT ROWID;",
        )?;
        Ok(Sqlite {
            path,
            writer: Mutex::new(writer),
            readers: Mutex::new(Vec::new()),
        })
    }

    fn with_reader<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = match lock(&self.readers)?.pop() {
            Some(c) => c,
            None => {
                let c = Connection::open(&self.path)?;
                c.busy_timeout(BUSY)?;
                c
            }
        };
        let result = f(&conn);
        lock(&self.readers)?.push(conn);
        result
    }
}

impl Store for Sqlite {
    fn put(&self, key: &str, doc: &Game) -> Result<()> {
        let value = serde_json::to_vec(doc)?;
        let conn = lock(&self.writer)?;
        conn.prepare_cached(PUT)?
            .execute(params![COLLECTION, key, value])?;
        Ok(())
    }

    fn put_batch(&self, items: &[(String, Game)]) -> Result<()> {
        let mut conn = lock(&self.writer)?;
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(PUT)?;
            for (key, doc) in items {
                stmt.execute(params![COLLECTION, key, serde_json::to_vec(doc)?])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn get(&self, key: &str) -> Result<Option<Game>> {
        self.with_reader(|c| {
            let value: Option<Vec<u8>> = c
                .prepare_cached("SELECT value FROM kv WHERE collection = ?1 AND key = ?2")?
                .query_row([COLLECTION, key], |r| r.get(0))
                .optional()?;
            Ok(value.map(|v| serde_json::from_slice(&v)).transpose()?)
        })
    }

    fn list(&self, prefix: &str, after: Option<&str>, limit: usize) -> Result<Vec<String>> {
        let end = prefix_end(prefix).unwrap_or_else(|| "\u{10FFFF}".into());
        // One lower bound, so SQLite seeks straight to the page start.
        let (sql, start) = match after {
            Some(a) if a >= prefix => (
                "SELECT key FROM kv WHERE collection = ?1 AND key > ?2 AND key < ?3 \
                 ORDER BY key LIMIT ?4",
                a,
            ),
            _ => (
                "SELECT key FROM kv WHERE collection = ?1 AND key >= ?2 AND key < ?3 \
                 ORDER BY key LIMIT ?4",
                prefix,
            ),
        };
        self.with_reader(|c| {
            let mut stmt = c.prepare_cached(sql)?;
            let keys = stmt
                .query_map(
                    params![COLLECTION, start, end, i64::try_from(limit)?],
                    |r| r.get(0),
                )?
                .collect::<::rusqlite::Result<Vec<String>>>()?;
            Ok(keys)
        })
    }

    fn settle(&self) -> Result<()> {
        // Reader connections hold no snapshot between calls; close them first anyway.
        lock(&self.readers)?.clear();
        lock(&self.writer)?.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")?;
        Ok(())
    }
}

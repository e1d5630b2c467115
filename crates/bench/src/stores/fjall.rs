//! fjall, made durable with `persist(SyncAll)` after every write.

use std::path::Path;

use ::fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use anyhow::Result;

use super::Store;
use crate::docs::Game;

pub struct Fjall {
    db: Database,
    games: Keyspace,
}

impl Fjall {
    pub fn open(dir: &Path) -> Result<Self> {
        let db = Database::builder(dir.join("fjall")).open()?;
        let games = db.keyspace("games", KeyspaceCreateOptions::default)?;
        Ok(Fjall { db, games })
    }
}

impl Store for Fjall {
    fn put(&self, key: &str, doc: &Game) -> Result<()> {
        self.games.insert(key, serde_json::to_vec(doc)?)?;
        self.db.persist(PersistMode::SyncAll)?;
        Ok(())
    }

    fn put_batch(&self, items: &[(String, Game)]) -> Result<()> {
        let mut batch = self.db.batch();
        for (key, doc) in items {
            batch.insert(&self.games, key.as_str(), serde_json::to_vec(doc)?);
        }
        batch.commit()?;
        self.db.persist(PersistMode::SyncAll)?;
        Ok(())
    }

    fn get(&self, key: &str) -> Result<Option<Game>> {
        Ok(self
            .games
            .get(key)?
            .map(|v| serde_json::from_slice(&v))
            .transpose()?)
    }

    fn list(&self, prefix: &str, after: Option<&str>, limit: usize) -> Result<Vec<String>> {
        let start = super::page_start(prefix, after);
        super::collect_page(
            self.games
                .range(start..)
                .map(|g| Ok(String::from_utf8(g.key()?.to_vec())?)),
            prefix,
            after,
            limit,
        )
    }

    fn settle(&self) -> Result<()> {
        self.db.persist(PersistMode::SyncAll)?;
        Ok(())
    }
}

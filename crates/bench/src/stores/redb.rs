//! redb with its default durable commit.

use std::path::Path;

use ::redb::{Database, ReadableDatabase, TableDefinition};
use anyhow::Result;

use super::Store;
use crate::docs::Game;

const TABLE: TableDefinition<&str, &[u8]> = TableDefinition::new("games");

pub struct Redb {
    db: Database,
}

impl Redb {
    pub fn open(dir: &Path) -> Result<Self> {
        let db = Database::create(dir.join("games.redb"))?;
        let tx = db.begin_write()?;
        tx.open_table(TABLE)?;
        tx.commit()?;
        Ok(Redb { db })
    }
}

impl Store for Redb {
    fn put(&self, key: &str, doc: &Game) -> Result<()> {
        let value = serde_json::to_vec(doc)?;
        let tx = self.db.begin_write()?;
        tx.open_table(TABLE)?.insert(key, value.as_slice())?;
        tx.commit()?;
        Ok(())
    }

    fn put_batch(&self, items: &[(String, Game)]) -> Result<()> {
        let tx = self.db.begin_write()?;
        {
            let mut table = tx.open_table(TABLE)?;
            for (key, doc) in items {
                table.insert(key.as_str(), serde_json::to_vec(doc)?.as_slice())?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn get(&self, key: &str) -> Result<Option<Game>> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(TABLE)?;
        let value = table.get(key)?;
        Ok(value
            .map(|v| serde_json::from_slice(v.value()))
            .transpose()?)
    }

    fn list(&self, prefix: &str, after: Option<&str>, limit: usize) -> Result<Vec<String>> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(TABLE)?;
        let start = super::page_start(prefix, after);
        super::collect_page(
            table.range(start..)?.map(|e| Ok(e?.0.value().to_owned())),
            prefix,
            after,
            limit,
        )
    }

    fn settle(&self) -> Result<()> {
        Ok(())
    }
}

//! sled, made durable with `flush()` after every write.

use std::path::Path;

use anyhow::Result;

use super::Store;
use crate::docs::Game;

pub struct Sled {
    db: ::sled::Db,
}

impl Sled {
    pub fn open(dir: &Path) -> Result<Self> {
        Ok(Sled {
            db: ::sled::open(dir.join("sled"))?,
        })
    }
}

impl Store for Sled {
    fn put(&self, key: &str, doc: &Game) -> Result<()> {
        self.db.insert(key, serde_json::to_vec(doc)?)?;
        self.db.flush()?;
        Ok(())
    }

    fn put_batch(&self, items: &[(String, Game)]) -> Result<()> {
        let mut batch = ::sled::Batch::default();
        for (key, doc) in items {
            batch.insert(key.as_str(), serde_json::to_vec(doc)?);
        }
        self.db.apply_batch(batch)?;
        self.db.flush()?;
        Ok(())
    }

    fn get(&self, key: &str) -> Result<Option<Game>> {
        Ok(self
            .db
            .get(key)?
            .map(|v| serde_json::from_slice(&v))
            .transpose()?)
    }

    fn list(&self, prefix: &str, after: Option<&str>, limit: usize) -> Result<Vec<String>> {
        let start = super::page_start(prefix, after);
        super::collect_page(
            self.db
                .range(start..)
                .map(|e| Ok(String::from_utf8(e?.0.to_vec())?)),
            prefix,
            after,
            limit,
        )
    }

    fn settle(&self) -> Result<()> {
        self.db.flush()?;
        Ok(())
    }
}

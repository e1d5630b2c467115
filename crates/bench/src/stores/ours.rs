//! bitcraps-storage with its defaults (zstd + dictionaries, dedup, durable group commit),
//! driven from the benchmark's threads through a Tokio runtime.

use std::path::Path;

use anyhow::Result;
use bitcraps_storage::{ListOptions, PersistentStorageManager, StorageConfig};

use super::Store;
use crate::docs::Game;

pub struct Ours {
    rt: tokio::runtime::Runtime,
    storage: PersistentStorageManager,
}

impl Ours {
    pub fn open(dir: &Path) -> Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let mut config = StorageConfig::with_data_path(dir);
        config.enable_background_tasks = false;
        // Settling measures the live store; a backup would only add time and files.
        config.backup_on_maintenance = false;
        let storage = rt.block_on(PersistentStorageManager::open(config))?;
        Ok(Ours { rt, storage })
    }
}

impl Store for Ours {
    fn put(&self, key: &str, doc: &Game) -> Result<()> {
        Ok(self.rt.block_on(self.storage.store("games", key, doc))?)
    }

    fn put_batch(&self, items: &[(String, Game)]) -> Result<()> {
        Ok(self.rt.block_on(self.storage.store_batch("games", items))?)
    }

    fn get(&self, key: &str) -> Result<Option<Game>> {
        Ok(self.rt.block_on(self.storage.retrieve("games", key))?)
    }

    fn list(&self, prefix: &str, after: Option<&str>, limit: usize) -> Result<Vec<String>> {
        let mut options = ListOptions::default().prefix(prefix).limit(limit);
        if let Some(after) = after {
            options = options.after(after);
        }
        Ok(self.rt.block_on(self.storage.list("games", options))?.keys)
    }

    fn settle(&self) -> Result<()> {
        // Maintenance without a backup: flush, checkpoint (truncating the WAL), optimize.
        self.rt.block_on(async {
            let report = self.storage.maintenance().await?;
            anyhow::ensure!(report.errors.is_empty(), "{:?}", report.errors);
            Ok(())
        })
    }
}

impl Drop for Ours {
    fn drop(&mut self) {
        let _ = self.rt.block_on(self.storage.close());
    }
}

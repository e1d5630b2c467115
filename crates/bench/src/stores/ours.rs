//! bitcraps-storage with its defaults (zstd + dictionaries, dedup, durable group commit,
//! 64 MiB cache, 4 readers). Concurrent workloads run as Tokio tasks, as an async user would
//! run them; single calls from the benchmark's thread go through `block_on`.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Result, anyhow, ensure};
use bitcraps_storage::{ListOptions, PersistentStorageManager, StorageConfig};

use super::{Op, Store, Worker};
use crate::docs::Game;

const COLLECTION: &str = "games";

pub struct Ours {
    rt: tokio::runtime::Runtime,
    storage: PersistentStorageManager,
}

impl Ours {
    pub fn open(dir: &Path) -> Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        let mut config = StorageConfig::with_data_path(dir);
        // No scheduled statistics/maintenance in the middle of a measurement.
        config.enable_background_tasks = false;
        // Settling measures the live store; a backup would only add time and files.
        config.backup_on_maintenance = false;
        let storage = rt.block_on(PersistentStorageManager::open(config))?;
        Ok(Ours { rt, storage })
    }
}

async fn apply(storage: &PersistentStorageManager, op: &Op) -> Result<()> {
    match op {
        Op::Put(key, doc) => storage.store(COLLECTION, key, doc).await?,
        Op::Get(key) => {
            let doc: Option<Game> = storage.retrieve(COLLECTION, key).await?;
            ensure!(doc.is_some(), "missing {key}");
            std::hint::black_box(doc);
        }
    }
    Ok(())
}

impl Store for Ours {
    fn put(&self, key: &str, doc: &Game) -> Result<()> {
        Ok(self.rt.block_on(self.storage.store(COLLECTION, key, doc))?)
    }

    fn put_batch(&self, items: &[(String, Game)]) -> Result<()> {
        Ok(self
            .rt
            .block_on(self.storage.store_batch(COLLECTION, items))?)
    }

    fn get(&self, key: &str) -> Result<Option<Game>> {
        Ok(self.rt.block_on(self.storage.retrieve(COLLECTION, key))?)
    }

    fn list(&self, prefix: &str, after: Option<&str>, limit: usize) -> Result<Vec<String>> {
        let mut options = ListOptions::default().prefix(prefix).limit(limit);
        if let Some(after) = after {
            options = options.after(after);
        }
        Ok(self
            .rt
            .block_on(self.storage.list(COLLECTION, options))?
            .keys)
    }

    fn settle(&self) -> Result<()> {
        // close() finishes the writer, checkpoints and truncates the WAL.
        Ok(self.rt.block_on(self.storage.close())?)
    }

    fn run_workers(&self, workers: &[Worker]) -> Result<()> {
        self.rt.block_on(async {
            let mut tasks = tokio::task::JoinSet::new();
            for ops in workers {
                let ops = Arc::clone(ops);
                let storage = self.storage.clone();
                tasks.spawn(async move {
                    for op in ops.iter() {
                        apply(&storage, op).await?;
                    }
                    anyhow::Ok(())
                });
            }
            while let Some(done) = tasks.join_next().await {
                done.map_err(|e| anyhow!("task failed: {e}"))??;
            }
            Ok(())
        })
    }
}

impl Drop for Ours {
    fn drop(&mut self) {
        // Closing twice is harmless; after settle() this does nothing.
        let _ = self.rt.block_on(self.storage.close());
    }
}

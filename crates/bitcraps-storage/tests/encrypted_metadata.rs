//! Review probe (envelope v2): an encrypted store's `metadata().content_hash` is blake3 of
//! the document as `retrieve_raw` returns it — for v2 and v1 whole documents, chunked
//! documents and their deltas — with and without a value cache, as on a plaintext store.

use bitcraps_storage::testing::seal_documents_v1;
use bitcraps_storage::{PersistentStorageManager, StorageConfig};
use serde_json::{Value, json};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn big(n: usize) -> Value {
    json!((0..n)
        .map(|i| json!({"i": i, "who": format!("player-{}", i % 17), "roll": [i % 6 + 1, i % 5 + 1]}))
        .collect::<Vec<_>>())
}

async fn hashes_match(s: &PersistentStorageManager, keys: &[&str]) -> Result {
    for key in keys {
        let raw = s.retrieve_raw("c", key).await?.ok_or("missing")?;
        let meta = s.metadata("c", key).await?.ok_or("no metadata")?;
        assert_eq!(
            meta.content_hash,
            blake3::hash(&raw).to_hex().to_string(),
            "{key}"
        );
    }
    Ok(())
}

async fn run(config: StorageConfig) -> Result {
    let s = PersistentStorageManager::open(config).await?;
    seal_documents_v1(true);
    s.store("c", "v1", &json!({"a": 1})).await?;
    seal_documents_v1(false);
    s.store("c", "v2", &json!({"a": 2})).await?;
    s.store("c", "big", &big(3000)).await?;
    s.store("c", "big", &big(3001)).await?;
    s.store_json("c", "text", &big(3000).to_string()).await?;
    s.store_json("c", "text", &big(3002).to_string()).await?;
    let keys = ["v1", "v2", "big", "text"];
    hashes_match(&s, &keys).await?;
    s.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_metadata_hashes_the_document() -> Result {
    let dir = tempfile::tempdir()?;
    let key_dir = tempfile::tempdir()?;
    let key = key_dir.path().join("master.key");
    std::fs::write(
        &key,
        bitcraps_storage::MasterKey::generate()?.to_hex().as_bytes(),
    )?;
    // With a cache and without one (every read through the backend).
    for (i, cache_mb) in [64, 0].into_iter().enumerate() {
        let mut config = StorageConfig::with_data_path(dir.path().join(i.to_string()));
        config.maintenance.background_tasks = false;
        config.key = bitcraps_storage::KeyConfig::default().file(&key);
        config.cache.size_mb = cache_mb;
        run(config).await?;
    }
    Ok(())
}

//! Store, read, list and delete BitCraps documents on the embedded default.
//! Run: `cargo run --release --example quickstart`

use bitcraps_storage::{ListOptions, PersistentStorageManager, StorageConfig};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Game {
    table: u32,
    point: Option<u8>,
    players: Vec<String>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let storage = PersistentStorageManager::open(StorageConfig::with_data_path(dir.path())).await?;

    let games: Vec<(String, Game)> = (0..100)
        .map(|i| {
            let game = Game {
                table: i % 8,
                point: [None, Some(4), Some(6), Some(8)][(i % 4) as usize],
                players: vec!["alice".into(), "bob".into()],
            };
            (format!("g-{i:03}"), game)
        })
        .collect();
    storage.store_batch("games", &games).await?;
    for i in 0..16 {
        storage
            .store(
                "lobbies",
                &format!("lobby-{i}"),
                &serde_json::json!({"min_bet": 10}),
            )
            .await?;
    }

    let g: Option<Game> = storage.retrieve("games", "g-007").await?;
    println!("g-007 = {g:?}");
    let page = storage
        .list("games", ListOptions::default().prefix("g-01").limit(5))
        .await?;
    println!(
        "first page of g-01*: {:?} (next after {:?})",
        page.keys, page.next_after
    );
    println!("deleted g-000: {}", storage.delete("games", "g-000").await?);

    let stats = storage.statistics().await?;
    println!(
        "{} records, {} blobs, {} deduplicated writes, {} logical bytes stored in {} bytes",
        stats.database_stats.record_count,
        stats.database_stats.blob_count,
        stats.deduplicated_writes,
        stats.database_stats.logical_bytes,
        stats.database_stats.stored_bytes,
    );
    storage.close().await?;
    Ok(())
}

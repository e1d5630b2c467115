//! Backups of a PostgreSQL store: created online as a SQLite archive, verified, restored into a
//! fresh schema with every record and its metadata intact; a non-empty target is refused.
//! Needs `BITCRAPS_TEST_POSTGRES_URL`; skipped without.

#![cfg(feature = "postgres")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation
)]

use crate::common;

use bitcraps_storage::{ListOptions, PersistentStorageManager, StorageConfig, StorageError};
use common::{Game, PgSchema, game, lobby};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

async fn all_records(
    s: &PersistentStorageManager,
) -> Result<
    Vec<(
        String,
        String,
        serde_json::Value,
        bitcraps_storage::RecordMetadata,
    )>,
> {
    let mut out = Vec::new();
    for collection in s.collections().await? {
        let keys = s
            .list(&collection, ListOptions::default().limit(10_000))
            .await?
            .keys;
        for key in keys {
            // Metadata before the read, so this pass's own read is not in its access count.
            let meta = s.metadata(&collection, &key).await?.expect("meta");
            let value: serde_json::Value = s.retrieve(&collection, &key).await?.expect("value");
            out.push((collection.clone(), key, value, meta));
        }
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_verify_and_restore_into_a_fresh_schema() -> Result {
    let Some(fixture) = common::pg_fixture() else {
        return Ok(());
    };
    let mut config = fixture.config.clone();
    config.compression.dictionary_training_samples = 64;
    // Reads are flushed only when the test says so, so both passes see the same counts.
    config.write.access_flush_interval = std::time::Duration::from_secs(3600);
    let s = PersistentStorageManager::open(config.clone()).await?;
    // Enough games to train a dictionary, shared content, and flushed access statistics.
    let items: Vec<(String, Game)> = (0..300)
        .map(|i| (format!("g-{i:04}"), game("g", i)))
        .collect();
    for chunk in items.chunks(50) {
        s.store_batch("games", chunk).await?;
    }
    // Keep writing until the trained dictionary is in use (for at most 30 s), so the backup
    // carries dictionary ids too.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut extra = 0u32;
    loop {
        let key = format!("d-{extra:04}");
        s.store("games", &key, &game(&key, extra)).await?;
        if s.metadata("games", &key)
            .await?
            .expect("meta")
            .dictionary_id
            .is_some()
        {
            break;
        }
        extra += 1;
        assert!(
            std::time::Instant::now() < deadline,
            "no dictionary was trained after {extra} writes"
        );
    }
    let extra = u64::from(extra) + 1;
    for i in 0..5 {
        s.store("lobbies", &format!("l-{i}"), &lobby()).await?;
    }
    s.delete("games", "g-0000").await?;
    for _ in 0..3 {
        let _: Option<Game> = s.retrieve("games", "g-0001").await?;
    }
    s.flush().await?;
    let before = all_records(&s).await?;
    assert_eq!(before.len() as u64, 299 + 5 + extra);
    assert!(before.iter().any(|(.., m)| m.dictionary_id.is_some()));

    let info = s.backups().create_backup().await?;
    assert_eq!(info.backend, "postgres");
    assert_eq!(info.snapshot.record_count, 304 + extra);
    let verified = s.backups().verify_backup(&info.id).await?;
    assert_eq!(verified.snapshot, info.snapshot);

    let target = PgSchema::create(&fixture_base_url());
    let mut target_config = config.clone();
    target_config.database.data_path = config.database.data_path.join("restored");
    target_config.database.url = Some(target.url());
    let report = s
        .backups()
        .restore_backup_into(&info.id, &target_config)
        .await?;
    assert_eq!(report.snapshot, info.snapshot);

    let mut restored_config = config.clone();
    restored_config.database.data_path = config.database.data_path.join("restored");
    restored_config.database.url = Some(target.url());
    let r = PersistentStorageManager::open(restored_config).await?;
    let after = all_records(&r).await?;
    assert_eq!(
        after, before,
        "every record and its metadata survive the restore"
    );
    assert!(r.check_consistency().await?.is_ok());
    let stats = r.statistics().await?.database_stats;
    assert_eq!(stats.record_count, 304 + extra);
    assert_eq!(
        stats.dictionary_count,
        s.statistics().await?.database_stats.dictionary_count
    );
    // The id sequences continue after the restored ids: new content and dictionaries insert.
    r.store("games", "new", &game("new", 7)).await?;
    r.store("games", "g-0001", &"overwritten").await?;
    assert_eq!(
        r.retrieve::<Game>("games", "new").await?,
        Some(game("new", 7))
    );
    assert!(r.check_consistency().await?.is_ok());
    r.close().await?;

    // A non-empty target is refused and left as it was.
    let err = s
        .backups()
        .restore_backup_into(&info.id, &target_config)
        .await
        .expect_err("target is not empty");
    // Refused as TargetNotEmpty (was Config) before the backup is verified.
    assert!(
        matches!(err, StorageError::TargetNotEmpty { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("exists and is not empty"), "{err}");
    let r = PersistentStorageManager::open({
        let mut c = StorageConfig::with_data_path(config.database.data_path.join("restored"));
        c.database.url = Some(target.url());
        c
    })
    .await?;
    assert_eq!(
        r.statistics().await?.database_stats.record_count,
        305 + extra
    );
    r.close().await?;
    s.close().await?;
    Ok(())
}

fn fixture_base_url() -> String {
    std::env::var("BITCRAPS_TEST_POSTGRES_URL").expect("checked by the fixture")
}

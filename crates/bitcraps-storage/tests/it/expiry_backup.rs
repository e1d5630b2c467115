//! Backups keep expiry times and collection settings: a backup of a store (SQLite, the
//! in-memory backend, and PostgreSQL when `BITCRAPS_TEST_POSTGRES_URL` is set) restored into
//! SQLite and into PostgreSQL has the same `expires_at` for every record and the same default
//! TTLs; a restored record whose expiry has passed is not returned.

use crate::common;

use std::time::Duration;

use bitcraps_storage::{PersistentStorageManager, StorageConfig};
use common::Fixture;
use common::lifecycle::{assert_invisible, assert_visible};
use serde_json::json;

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

const MINUTE: Duration = Duration::from_secs(60);

async fn check_restore(
    source: &PersistentStorageManager,
    id: &str,
    target: &StorageConfig,
) -> Result {
    source.backups().restore_backup_into(id, target).await?;
    let r = PersistentStorageManager::open(target.clone()).await?;
    for key in ["seat", "plain", "roll"] {
        let want = source.metadata("seats", key).await?.map(|m| m.expires_at);
        let got = r.metadata("seats", key).await?.map(|m| m.expires_at);
        assert_eq!(got, want, "seats/{key}");
    }
    assert_eq!(r.default_ttls().await?, source.default_ttls().await?);
    assert_visible(&r, "seats", "seat").await?;
    // Time passes after the restore: the restored record expires on schedule.
    r.advance_clock(2 * MINUTE);
    assert_invisible(&r, "seats", "seat").await?;
    assert_visible(&r, "seats", "plain").await?;
    r.advance_clock(10 * MINUTE);
    assert_invisible(&r, "seats", "roll").await?;
    r.close().await?;
    Ok(())
}

async fn round_trip(fixture: Fixture) -> Result {
    let s = fixture.open(fixture.config.clone()).await?;
    s.store_with_ttl("seats", "seat", &json!({"seat": 1}), MINUTE)
        .await?;
    s.store("seats", "plain", &json!({"seat": 2})).await?;
    s.set_default_ttl("seats", Some(10 * MINUTE)).await?;
    s.store("seats", "roll", &json!({"dice": [3, 4]})).await?;
    let info = s.backups().create_backup().await?;

    let dir = tempfile::tempdir()?;
    check_restore(&s, &info.id, &StorageConfig::with_data_path(dir.path())).await?;
    #[cfg(feature = "postgres")]
    if let Some(pg) = common::pg_fixture() {
        check_restore(&s, &info.id, &pg.config).await?;
    }
    s.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_backup_keeps_expiry() -> Result {
    round_trip(common::sqlite_fixture()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_backup_keeps_expiry() -> Result {
    round_trip(common::memory_fixture()).await
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_backup_keeps_expiry() -> Result {
    match common::pg_fixture() {
        Some(fixture) => round_trip(fixture).await,
        None => Ok(()),
    }
}

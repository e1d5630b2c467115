//! Versions survive a backup and its restore, into SQLite and into PostgreSQL, and the clock
//! travels with them: a key deleted before the backup, written again after the restore, gets
//! a version newer than the one it had (the restored store never hands out an old number).

use crate::common;

use bitcraps_storage::{Expect, PersistentStorageManager, StorageConfig, Version};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

async fn version(s: &PersistentStorageManager, key: &str) -> Result<Option<Version>> {
    Ok(s.retrieve_versioned::<i32>("games", key)
        .await?
        .map(|(_, v)| v))
}

/// Restores `id` of `source` into `target` and checks versions and the clock there.
async fn check_restore(
    source: &PersistentStorageManager,
    id: &str,
    target: &StorageConfig,
    kept: &[(&str, Version)],
    gone_at: Version,
) -> Result {
    source.backups().restore_backup_into(id, target).await?;
    let r = PersistentStorageManager::open(target.clone()).await?;
    for (key, v) in kept {
        assert_eq!(version(&r, key).await?, Some(*v), "{key}");
    }
    // The source's version is valid against the restored copy.
    let (key, v) = kept.first().ok_or("no records")?;
    let next = r.store_if("games", key, &7, Expect::Version(*v)).await?;
    assert!(
        next > gone_at,
        "clock continues after the source's: {next} vs {gone_at}"
    );
    let again = r.store_if("games", "gone", &1, Expect::Absent).await?;
    assert!(
        again > gone_at,
        "a deleted key never gets an old version back: {again}"
    );
    assert!(r.check_consistency().await?.is_ok());
    r.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_and_the_clock_survive_backup_and_restore() -> Result {
    let fixture = common::sqlite_fixture();
    let s = fixture.open(fixture.config.clone()).await?;
    s.store("games", "a", &1).await?;
    s.store("games", "b", &2).await?;
    s.store("games", "a", &3).await?;
    for n in 0..5 {
        s.store("games", "gone", &n).await?;
    }
    let gone_at = version(&s, "gone").await?.ok_or("gone")?;
    assert!(s.delete("games", "gone").await?);
    let kept = [
        ("a", version(&s, "a").await?.ok_or("a")?),
        ("b", version(&s, "b").await?.ok_or("b")?),
    ];
    assert!(
        kept.iter().all(|(_, v)| *v < gone_at),
        "the deleted key is the newest"
    );
    let info = s.backups().create_backup().await?;

    let dir = tempfile::tempdir()?;
    check_restore(
        &s,
        &info.id,
        &StorageConfig::with_data_path(dir.path()),
        &kept,
        gone_at,
    )
    .await?;
    #[cfg(feature = "postgres")]
    if let Some(pg) = common::pg_fixture() {
        check_restore(&s, &info.id, &pg.config, &kept, gone_at).await?;
    }
    s.close().await?;
    Ok(())
}

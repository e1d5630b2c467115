//! A flipped byte or a truncation in a backup makes `verify` fail with a clear error and
//! `restore` refuse without creating the target.

mod common;

use bitcraps_storage::{PersistentStorageManager, StorageError};
use common::{game, sqlite_fixture};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

async fn damaged(damage: impl Fn(&mut Vec<u8>)) -> Result<StorageError> {
    let f = sqlite_fixture();
    let s = PersistentStorageManager::open(f.config.clone()).await?;
    let items: Vec<(String, _)> = (0..200).map(|i| (format!("g-{i}"), game("g", i))).collect();
    s.store_batch("games", &items).await?;
    let info = s.backups().create_backup().await?;
    let archive = s.backups().directory().join(format!("{}.db.zst", info.id));
    let mut bytes = std::fs::read(&archive)?;
    damage(&mut bytes);
    std::fs::write(&archive, &bytes)?;

    let err = s
        .backups()
        .verify_backup(&info.id)
        .await
        .err()
        .ok_or("damaged backup verified")?;
    assert!(err.is_corruption(), "{err}");
    assert!(
        err.to_string().contains(&format!("backup {}", info.id)),
        "{err}"
    );
    let target = tempfile::tempdir()?.path().join("restored");
    let refused = s.backups().restore_backup(&info.id, &target).await;
    assert!(refused.is_err(), "restore of a damaged backup must refuse");
    assert!(
        !target.exists(),
        "a refused restore must not create its target"
    );
    s.close().await?;
    Ok(err)
}

#[tokio::test]
async fn flipped_byte_fails_verification() -> Result {
    let err = damaged(|b| {
        let mid = b.len() / 2;
        b[mid] ^= 0x40;
    })
    .await?;
    assert!(err.to_string().contains("checksum mismatch"), "{err}");
    Ok(())
}

#[tokio::test]
async fn truncation_fails_verification() -> Result {
    let err = damaged(|b| b.truncate(b.len() * 2 / 3)).await?;
    assert!(err.to_string().contains("truncated"), "{err}");
    Ok(())
}

#[tokio::test]
async fn consistent_tampering_is_caught_by_the_database_checks() -> Result {
    // Damage that also rewrites the manifest's checksum: the content checks still catch it.
    let f = sqlite_fixture();
    let s = PersistentStorageManager::open(f.config.clone()).await?;
    s.store("games", "g", &game("g", 1)).await?;
    let info = s.backups().create_backup().await?;
    let dir = s.backups().directory().to_path_buf();
    let archive = dir.join(format!("{}.db.zst", info.id));
    let garbage = zstd::encode_all(&b"not a database at all"[..], 3)?;
    std::fs::write(&archive, &garbage)?;
    let manifest = dir.join(format!("{}.json", info.id));
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&manifest)?)?;
    m["archive_bytes"] = garbage.len().into();
    m["archive_blake3"] = blake3::hash(&garbage).to_hex().to_string().into();
    std::fs::write(&manifest, serde_json::to_vec(&m)?)?;
    let err = s
        .backups()
        .verify_backup(&info.id)
        .await
        .expect_err("tampered");
    assert!(err.is_corruption(), "{err}");
    s.close().await?;
    Ok(())
}

//! A flipped byte or a truncation in a backup makes `verify` fail with a clear error and
//! `restore` refuse without creating the target; a damaged document under a valid archive
//! checksum is found by decoding every blob, and named.

use crate::common;

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

#[tokio::test]
async fn a_flipped_document_byte_under_a_valid_archive_checksum_is_named() -> Result {
    // The archive is recompressed and the manifest's size and checksum rewritten, and the
    // database stays a valid SQLite file with exact references: only decoding every blob
    // and checking its content hash finds the damage.
    let f = sqlite_fixture();
    let s = PersistentStorageManager::open(f.config.clone()).await?;
    let items: Vec<(String, _)> = (0..20).map(|i| (format!("g-{i}"), game("g", i))).collect();
    s.store_batch("games", &items).await?;
    let info = s.backups().create_backup().await?;
    let dir = s.backups().directory().to_path_buf();
    let archive = dir.join(format!("{}.db.zst", info.id));
    let scratch = tempfile::tempdir()?;
    let db = scratch.path().join("copy.db");
    std::fs::write(&db, zstd::decode_all(&std::fs::read(&archive)?[..])?)?;
    {
        let conn = rusqlite::Connection::open(&db)?;
        let blob: i64 = conn.query_row(
            "SELECT blob_id FROM records WHERE collection = 'games' AND key = 'g-7'",
            [],
            |r| r.get(0),
        )?;
        let mut data: Vec<u8> =
            conn.query_row("SELECT data FROM blobs WHERE id = ?1", [blob], |r| r.get(0))?;
        let mid = data.len() / 2;
        data[mid] ^= 0x01;
        conn.execute(
            "UPDATE blobs SET data = ?1 WHERE id = ?2",
            rusqlite::params![data, blob],
        )?;
    }
    let packed = zstd::encode_all(&std::fs::read(&db)?[..], 3)?;
    std::fs::write(&archive, &packed)?;
    let manifest = dir.join(format!("{}.json", info.id));
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&manifest)?)?;
    m["archive_bytes"] = packed.len().into();
    m["archive_blake3"] = blake3::hash(&packed).to_hex().to_string().into();
    std::fs::write(&manifest, serde_json::to_vec(&m)?)?;

    let err = s
        .backups()
        .verify_backup(&info.id)
        .await
        .expect_err("a damaged document verified");
    assert!(err.is_corruption(), "{err}");
    assert!(err.to_string().contains("games/g-7"), "{err}");
    s.close().await?;
    Ok(())
}

#[tokio::test]
async fn verification_decodes_every_blob() -> Result {
    let f = sqlite_fixture();
    let s = PersistentStorageManager::open(f.config.clone()).await?;
    let items: Vec<(String, _)> = (0..300).map(|i| (format!("g-{i}"), game("g", i))).collect();
    s.store_batch("games", &items).await?;
    let info = s.backups().create_backup().await?;
    let v = s.backups().verify_backup(&info.id).await?;
    assert_eq!(v.blobs_decoded, info.snapshot.blob_count);
    assert!(v.bytes_decoded > 0, "{v:?}");
    s.close().await?;
    Ok(())
}

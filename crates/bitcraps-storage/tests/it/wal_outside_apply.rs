//! Every commit of the writer connection keeps the WAL bounded, not only `apply`'s group
//! commits: re-encryption's `write_keys` (after a data key rotation), `restore`,
//! `repair_references` and `vacuum` commit on it too. A WAL hook that replaced SQLite's
//! automatic checkpoint and was looked at only by `apply` let those grow the WAL by every
//! byte they wrote (98 MiB after 96 MiB of key writes); SQLite's automatic checkpoint every
//! 4,000 frames keeps it near 16 MiB plus one commit.

use bitcraps_storage::testing::sqlite::SqliteBackend;
use bitcraps_storage::testing::{Backend, KeyChange, ResealedBlob};
use bitcraps_storage::{PersistentStorageManager, StorageConfig};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Bytes rewritten in all, through `write_keys` alone.
const REWRITTEN: usize = 96 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_outside_apply_still_checkpoint_the_wal() -> Result {
    let dir = tempfile::tempdir()?;
    let mut config = StorageConfig::with_data_path(dir.path());
    config.maintenance.background_tasks = false;
    let s = PersistentStorageManager::open(config).await?;
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    for i in 0..64 {
        let text: String = (0..48 * 1024)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                char::from(b'a' + u8::try_from(seed % 26).unwrap_or(0))
            })
            .collect();
        s.store("docs", &format!("d-{i:02}"), &text).await?;
    }
    // The WAL folded into the database file: it starts empty below.
    s.close().await?;
    drop(s);

    let backend = SqliteBackend::open(&crate::common::sqlite_options(
        dir.path().join("bitcraps.db"),
        1,
    ))?;
    let mut blobs = Vec::new();
    let mut after = 0;
    loop {
        let page = backend.maintenance().blobs_after(after, 100)?;
        let Some(last) = page.last() else { break };
        after = last.id;
        blobs.extend(
            page.into_iter()
                .filter(|e| e.blob.data.len() > 1024)
                .map(|e| (e.id, e.blob.data)),
        );
    }
    let per_round: usize = blobs.iter().map(|(_, d)| d.len()).sum();
    assert!(per_round > 1 << 20, "{per_round} bytes of blobs");
    // What re-encryption does after a rotation: each step rewrites blobs in one commit.
    // (A fresh nonce changes every byte of a blob, so every page of it is written again.)
    for _ in 0..REWRITTEN / per_round + 1 {
        let resealed = blobs
            .iter_mut()
            .map(|(id, data)| {
                let before = data.clone();
                for b in data.iter_mut() {
                    *b ^= 0x5A;
                }
                ResealedBlob {
                    id: *id,
                    before,
                    after: data.clone(),
                }
            })
            .collect();
        backend.write_keys(&KeyChange {
            resealed,
            ..KeyChange::default()
        })?;
    }
    let wal = std::fs::metadata(dir.path().join("bitcraps.db-wal"))?.len();
    backend.close()?;
    // SQLite's automatic checkpoint (4,000 frames, 16 MiB) kept the WAL near 16 MiB plus one
    // commit (~2 MiB here); 48 MiB is far above that and far below what was written.
    assert!(
        wal < 48 << 20,
        "the WAL holds {} MiB after {} MiB were rewritten outside `apply`: never checkpointed",
        wal >> 20,
        REWRITTEN >> 20
    );
    Ok(())
}

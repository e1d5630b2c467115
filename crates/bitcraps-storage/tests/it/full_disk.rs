//! A store whose disk fills up: every acknowledged write stays readable, the store can be
//! read, listed, reopened and backed up to another disk while the disk is full, and writes
//! work again once space is freed. Runs on a small private tmpfs, so it needs to be able to
//! mount one (root on Linux); elsewhere it says why it skipped.
//!
//! The regression behind it: opening a store ran a write transaction to record the schema
//! version, so a full disk made even `get`, `list` and `export` fail ("database or disk is
//! full while committing the schema migration").

use std::path::{Path, PathBuf};
use std::process::Command;

use bitcraps_storage::{ListOptions, PersistentStorageManager, StorageConfig};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// A tmpfs mounted for this test, unmounted on drop.
struct Tmpfs {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` bytes, or says why it cannot.
    fn mount(size: u64) -> std::result::Result<Tmpfs, String> {
        if !cfg!(target_os = "linux") {
            return Err("tmpfs mounts are Linux-only".into());
        }
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let path = dir.path().to_path_buf();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs failed (not root?): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs { path, _dir: dir })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

fn config(data: &Path, backups: &Path) -> StorageConfig {
    let mut config = StorageConfig::with_data_path(data);
    config.backup.dir = Some(backups.to_path_buf());
    config.maintenance.background_tasks = false;
    // Reads must reach the database, not the cache.
    config.cache.size_mb = 0;
    // Incompressible, unique documents fill the disk predictably.
    config.compression.enabled = false;
    config
}

/// A unique document of about 4 KiB that does not compress.
fn document(i: u64) -> String {
    let mut state = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..4096)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            char::from(b'a' + u8::try_from(state % 26).unwrap_or(0))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_keeps_every_acknowledged_write_readable() -> Result {
    let fs = match Tmpfs::mount(6 * 1024 * 1024) {
        Ok(fs) => fs,
        Err(reason) => {
            println!("skipped: {reason}");
            return Ok(());
        }
    };
    let data = fs.path.join("data");
    let backups = tempfile::tempdir()?;
    // Ballast, freed later to give space back.
    let ballast = fs.path.join("ballast");
    std::fs::write(&ballast, vec![0u8; 1024 * 1024])?;

    let storage = PersistentStorageManager::open(config(&data, backups.path())).await?;
    let mut acknowledged = Vec::new();
    let mut full = None;
    for i in 0..10_000u64 {
        match storage
            .store("docs", &format!("d-{i:05}"), &document(i))
            .await
        {
            Ok(()) => acknowledged.push(i),
            Err(e) => {
                full = Some(e);
                break;
            }
        }
    }
    let Some(error) = full else {
        return Err("the disk never filled up".into());
    };
    println!("disk full after {} writes: {error}", acknowledged.len());
    assert!(
        acknowledged.len() > 100,
        "too few writes before the disk filled"
    );

    // Full disk: reads, listing and a backup to another disk still work.
    for &i in &acknowledged {
        let got: Option<String> = storage.retrieve("docs", &format!("d-{i:05}")).await?;
        assert_eq!(
            got,
            Some(document(i)),
            "acknowledged d-{i:05} is not readable"
        );
    }
    let listed = storage
        .list("docs", ListOptions::default().limit(100_000))
        .await?;
    assert_eq!(listed.keys.len(), acknowledged.len());
    let backup = storage.backups().create_backup().await?;
    assert_eq!(
        usize::try_from(backup.snapshot.record_count)?,
        acknowledged.len()
    );
    storage.close().await?;

    // Reopening on the full disk writes nothing, so it works, and reads work.
    let reopened = PersistentStorageManager::open(config(&data, backups.path())).await?;
    let last = acknowledged.last().copied().unwrap_or(0);
    let got: Option<String> = reopened.retrieve("docs", &format!("d-{last:05}")).await?;
    assert_eq!(got, Some(document(last)));
    let verified = reopened.backups().verify_backup(&backup.id).await?;
    assert_eq!(verified.snapshot.record_count, backup.snapshot.record_count);

    // Space freed: writes work again, and nothing acknowledged is missing.
    std::fs::remove_file(&ballast)?;
    reopened.store("docs", "after", &document(99_999)).await?;
    let listed = reopened
        .list("docs", ListOptions::default().limit(100_000))
        .await?;
    assert_eq!(listed.keys.len(), acknowledged.len() + 1);
    for &i in &acknowledged {
        let got: Option<String> = reopened.retrieve("docs", &format!("d-{i:05}")).await?;
        assert_eq!(
            got,
            Some(document(i)),
            "d-{i:05} lost after the disk was full"
        );
    }
    assert!(reopened.check_consistency().await?.is_ok());
    reopened.close().await?;
    Ok(())
}

//! Maintenance on PostgreSQL: broken reference counts and orphaned blobs are repaired, the
//! PostgreSQL steps (ANALYZE; vacuum and checkpoint left to the server, and said so) succeed,
//! no backup is taken by default (every node maintains the same database), and the node
//! configured with `backup.on_maintenance` archives the store. Needs
//! `BITCRAPS_TEST_POSTGRES_URL`; skipped without.

#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use bitcraps_storage::PersistentStorageManager;
use common::lobby;

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_repairs_references_and_backs_up() -> Result {
    let Some(fixture) = common::pg_fixture() else {
        return Ok(());
    };
    let mut config = fixture.config.clone();
    config.maintenance.background_tasks = false;
    let s = PersistentStorageManager::open(config).await?;
    for i in 0..4 {
        s.store("lobbies", &format!("l-{i}"), &lobby()).await?;
    }
    s.store("games", "g", &"unique").await?;
    // Damage the references behind the store's back: a wrong count and an orphan.
    let url = fixture.config.database.url.clone().expect("url");
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
    let task = tokio::spawn(conn);
    client
        .batch_execute(
            "UPDATE blobs SET refcount = refcount + 3
               WHERE id = (SELECT blob_id FROM records WHERE key = 'l-0');
             INSERT INTO blobs (hash, codec, raw_len, stored_len, refcount, data)
               VALUES (decode(repeat('ab', 32), 'hex'), 0, 3, 3, 1, 'abc'::bytea);",
        )
        .await?;
    let report = s.check_consistency().await?;
    // The orphan's count (1, nothing refers to it) is wrong too.
    assert_eq!(report.refcount_mismatches, 2, "{report:?}");
    assert_eq!(report.orphaned_blobs, 1, "{report:?}");
    assert!(!report.is_ok());

    let m = s.maintenance().await?;
    assert!(m.errors.is_empty(), "{:?}", m.errors);
    // Orphans go first, so the orphan is removed, not also "fixed".
    assert_eq!(m.references.refcounts_fixed, 1);
    assert_eq!(m.references.orphans_removed, 1);
    assert_eq!(m.references.orphan_bytes_removed, 3);
    assert!(m.database_optimized);
    assert_eq!(m.backend, "postgres");
    // PostgreSQL wording: nothing claims a WAL was truncated or free pages were counted.
    assert!(!m.wal_checkpointed && !m.vacuumed);
    let detail = |name: &str| {
        m.steps
            .iter()
            .find(|step| step.name == name)
            .map(|step| step.detail.clone())
            .unwrap_or_default()
    };
    assert!(detail("vacuum").contains("autovacuum"), "{:?}", m.steps);
    assert!(
        detail("checkpoint").contains("runs its own checkpoints"),
        "{:?}",
        m.steps
    );
    for step in &m.steps {
        assert!(
            !step.detail.contains("truncated") && !step.detail.contains("free pages"),
            "{step:?}"
        );
    }
    // Off by default on PostgreSQL: no node backs up unless configured to.
    assert!(m.backup.is_none() && m.retention.is_none(), "{m:?}");
    assert!(!m.steps.iter().any(|step| step.name == "backup"));
    assert!(s.check_consistency().await?.is_ok());

    // The node configured for it takes the backup.
    let mut config = fixture.config.clone();
    config.maintenance.background_tasks = false;
    config.backup.on_maintenance = Some(true);
    let node = PersistentStorageManager::open(config).await?;
    let m = node.maintenance().await?;
    let backup = m.backup.expect("the configured node took a backup");
    assert_eq!(backup.backend, "postgres");
    assert_eq!(backup.snapshot.record_count, 5);
    node.close().await?;
    assert_eq!(
        s.metadata("lobbies", "l-3").await?.expect("meta").shared_by,
        4
    );
    // Vacuum is available directly (maintenance leaves it to autovacuum: free_pages is 0).
    drop(client);
    let _ = task.await;
    s.close().await?;
    Ok(())
}

//! The contract of the change feed, as tests every backend must pass: every committed put,
//! delete and expiry is in the log once, in commit order, with dense seqs; a unit that fails
//! logs nothing; `watch` catches up and then follows with no gap and no duplicate; retention
//! removes a prefix and a read past it is a typed error. Time moves with the store's
//! injected clock, never by sleeping. A backend's test file invokes `feed_suite!(fixture_fn)`.

use std::time::Duration;

use bitcraps_storage::{
    Change, ChangeKind, Expect, PersistentStorageManager, StorageConfig, StorageError, Version,
    WriteBatch,
};
use serde_json::json;

use super::Fixture;
pub use super::conformance::Result;

const MINUTE: Duration = Duration::from_secs(60);
/// How long a test waits for a change it expects before it fails.
const PATIENCE: Duration = Duration::from_secs(30);

async fn open(f: &Fixture) -> Result<PersistentStorageManager> {
    Ok(f.open(manual(f.config.clone())).await?)
}

/// Sweeps and retention run only when the test calls them.
fn manual(mut config: StorageConfig) -> StorageConfig {
    config.maintenance.expiry_sweep_interval = Duration::from_secs(3600);
    config.maintenance.interval_hours = 0;
    config
}

#[macro_export]
macro_rules! feed_suite {
    ($fixture:path) => {
        $crate::feed_suite!(@tests $fixture;
            every_put_delete_and_expiry_is_logged_in_commit_order,
            a_bulk_batch_over_expired_keys_logs_every_change_in_order,
            a_failed_unit_logs_nothing_and_leaves_no_gap,
            watch_catches_up_then_follows_without_gap_or_duplicate,
            retention_removes_a_prefix_and_reading_past_it_is_an_error,
            versions_and_seqs_never_repeat_after_a_delete_or_pruning_everything);
    };
    (@tests $fixture:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() -> $crate::common::feed::Result {
                match $crate::common::IntoFixture::into_fixture($fixture()) {
                    Some(fixture) => $crate::common::feed::$name(fixture).await,
                    None => Ok(()),
                }
            }
        )*
    };
}

/// `(collection, key, kind, version)` of each change, checking that seqs follow `after`
/// densely.
fn shape(after: u64, changes: &[Change]) -> Vec<(String, String, ChangeKind, Version)> {
    for (i, c) in changes.iter().enumerate() {
        assert_eq!(c.seq, after + 1 + i as u64, "seqs are dense: {changes:?}");
    }
    changes
        .iter()
        .map(|c| (c.collection.clone(), c.key.clone(), c.kind, c.version))
        .collect()
}

fn row(c: &str, k: &str, kind: ChangeKind, v: Version) -> (String, String, ChangeKind, Version) {
    (c.to_owned(), k.to_owned(), kind, v)
}

pub async fn every_put_delete_and_expiry_is_logged_in_commit_order(f: Fixture) -> Result {
    let s = open(&f).await?;
    let head = s.change_head().await?;
    let v1 = s.store_if("games", "a", &json!(1), Expect::Any).await?;
    let v2 = s.store_if("games", "a", &json!(2), Expect::Any).await?;
    assert!(s.delete("games", "a").await?);
    assert!(
        !s.delete("games", "a").await?,
        "deleting nothing logs nothing"
    );
    // Expiry: by the sweep, and by a write over an expired key (expire, then put).
    s.store_with_ttl("seats", "s-1", &json!({"seat": 1}), MINUTE)
        .await?;
    s.store_with_ttl("seats", "s-2", &json!({"seat": 2}), MINUTE)
        .await?;
    let v_s1 = s.metadata("seats", "s-1").await?.ok_or("s-1")?.version;
    let v_s2 = s.metadata("seats", "s-2").await?.ok_or("s-2")?.version;
    s.advance_clock(2 * MINUTE);
    let v_s2b = s
        .store_if("seats", "s-2", &json!({"seat": 22}), Expect::Absent)
        .await?;
    assert_eq!(s.sweep_expired().await?, 1);
    // A batch: its changes in its order; a prefix delete: one delete per key, in key order.
    let mut batch = WriteBatch::new();
    batch.store("rolls", "r-2", &json!(2))?;
    batch.store("rolls", "r-1", &json!(1))?;
    let versions = s.apply(batch).await?;
    let vr2 = versions.first().map(|v| v.2).ok_or("r-2")?;
    let vr1 = versions.get(1).map(|v| v.2).ok_or("r-1")?;
    assert_eq!(s.delete_prefix("rolls", "r-").await?, 2);

    let changes = s.changes_since(head, 1000).await?;
    use ChangeKind::{Delete, Expire, Put};
    assert_eq!(
        shape(head, &changes),
        [
            row("games", "a", Put, v1),
            row("games", "a", Put, v2),
            row("games", "a", Delete, v2),
            row("seats", "s-1", Put, v_s1),
            row("seats", "s-2", Put, v_s2),
            row("seats", "s-2", Expire, v_s2),
            row("seats", "s-2", Put, v_s2b),
            row("seats", "s-1", Expire, v_s1),
            row("rolls", "r-2", Put, vr2),
            row("rolls", "r-1", Put, vr1),
            row("rolls", "r-1", Delete, vr1),
            row("rolls", "r-2", Delete, vr2),
        ]
    );
    assert_eq!(s.change_head().await?, head + 12);
    // Paging: the same log, a page at a time.
    let first = s.changes_since(head, 5).await?;
    let rest = s.changes_since(head + 5, 1000).await?;
    assert_eq!([first, rest].concat(), changes);
    assert!(s.changes_since(head + 12, 10).await?.is_empty());
    // Reopened: the log is durable.
    s.close().await?;
    let s = open(&f).await?;
    assert_eq!(s.changes_since(head, 1000).await?, changes);
    s.close().await?;
    Ok(())
}

/// A bulk batch (more changes than one multi-row insert of the log holds, and a remainder)
/// over keys that expired, live keys and new keys: every change in the batch's order, an
/// expiry before the put over it, dense seqs; an expired record's content that the put
/// stores again stays one blob with exact references, and the record is new (issue #15:
/// puts insert first and read the row only when the key is present).
pub async fn a_bulk_batch_over_expired_keys_logs_every_change_in_order(f: Fixture) -> Result {
    let s = open(&f).await?;
    s.store_with_ttl("bulk", "k-000", &json!({"same": true}), MINUTE)
        .await?;
    s.store_with_ttl("bulk", "k-001", &json!({"old": 1}), MINUTE)
        .await?;
    s.store("bulk", "k-002", &json!({"live": 2})).await?;
    let m0 = s.metadata("bulk", "k-000").await?.ok_or("k-000")?;
    let m1 = s.metadata("bulk", "k-001").await?.ok_or("k-001")?;
    let m2 = s.metadata("bulk", "k-002").await?.ok_or("k-002")?;
    s.advance_clock(2 * MINUTE);
    let head = s.change_head().await?;
    let items: Vec<(String, serde_json::Value)> = (0..150)
        .map(|i| {
            let doc = if i == 0 {
                json!({"same": true})
            } else {
                json!({"n": i})
            };
            (format!("k-{i:03}"), doc)
        })
        .collect();
    s.store_batch("bulk", &items).await?;
    let changes = s.changes_since(head, 1000).await?;
    let mut expected = Vec::new();
    for (i, (key, _)) in items.iter().enumerate() {
        let version = s.metadata("bulk", key).await?.ok_or("stored")?.version;
        match i {
            0 => expected.push(row("bulk", key, ChangeKind::Expire, m0.version)),
            1 => expected.push(row("bulk", key, ChangeKind::Expire, m1.version)),
            _ => {}
        }
        expected.push(row("bulk", key, ChangeKind::Put, version));
    }
    assert_eq!(shape(head, &changes), expected);
    assert_eq!(s.change_head().await?, head + 152);
    let again = s.metadata("bulk", "k-000").await?.ok_or("k-000")?;
    assert_eq!(again.shared_by, 1, "one record refers to the content");
    assert!(
        again.created_at > m0.created_at,
        "an expired key's put is a new record"
    );
    let live = s.metadata("bulk", "k-002").await?.ok_or("k-002")?;
    assert_eq!(
        live.created_at, m2.created_at,
        "a live key's put replaces it"
    );
    assert!(live.version > m2.version);
    assert_eq!(s.statistics().await?.database_stats.blob_count, 150);
    let report = s.check_consistency().await?;
    assert!(report.is_ok(), "{report:?}");
    s.close().await?;
    Ok(())
}

pub async fn a_failed_unit_logs_nothing_and_leaves_no_gap(f: Fixture) -> Result {
    let s = open(&f).await?;
    s.store("games", "a", &json!(1)).await?;
    let head = s.change_head().await?;
    let refused = s.store_if("games", "a", &json!(2), Expect::Absent).await;
    assert!(
        matches!(refused, Err(StorageError::Conflict { .. })),
        "{refused:?}"
    );
    let mut batch = WriteBatch::new();
    batch.store("games", "b", &json!(1))?;
    batch.expect("games", "a", Expect::Absent);
    assert!(s.apply(batch).await.is_err(), "the batch's condition fails");
    assert_eq!(s.change_head().await?, head, "nothing was logged");
    assert!(s.changes_since(head, 10).await?.is_empty());
    // Concurrent writers, some failing, share group commits: the log is still dense and
    // holds exactly the writes that succeeded.
    let mut tasks = Vec::new();
    for i in 0..40u32 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let expect = if i % 4 == 0 {
                Expect::Absent
            } else {
                Expect::Any
            };
            let key = if i % 4 == 0 {
                "a".to_owned()
            } else {
                format!("k-{i}")
            };
            s.store_if("games", &key, &json!(i), expect)
                .await
                .ok()
                .map(|v| (key, v))
        }));
    }
    let mut written = Vec::new();
    for t in tasks {
        if let Some(w) = t.await? {
            written.push(w);
        }
    }
    assert_eq!(written.len(), 30);
    let changes = s.changes_since(head, 1000).await?;
    let mut logged: Vec<(String, Version)> = shape(head, &changes)
        .into_iter()
        .map(|(_, k, kind, v)| {
            assert_eq!(kind, ChangeKind::Put);
            (k, v)
        })
        .collect();
    logged.sort();
    written.sort();
    assert_eq!(logged, written);
    s.close().await?;
    Ok(())
}

/// The next change of `stream`, failing the test after [`PATIENCE`].
async fn next(stream: &mut bitcraps_storage::ChangeStream) -> Result<Change> {
    match tokio::time::timeout(PATIENCE, stream.next()).await {
        Ok(Some(change)) => Ok(change?),
        Ok(None) => Err("the watch ended".into()),
        Err(_) => Err("no change arrived in time".into()),
    }
}

pub async fn watch_catches_up_then_follows_without_gap_or_duplicate(f: Fixture) -> Result {
    let s = open(&f).await?;
    let start = s.change_head().await?;
    s.store("lobby", "t-1/seat-1", &json!(1)).await?;
    s.store("lobby", "t-2/seat-1", &json!(1)).await?;
    s.store("other", "t-1/seat-1", &json!(1)).await?;
    s.store("lobby", "t-1/seat-2", &json!(2)).await?;
    // From now on: only what commits after the watch starts.
    let mut live = s.watch("lobby", "t-1/").await?;
    let mut caught_up = s.watch_from("lobby", "t-1/", start).await?;
    assert_eq!(next(&mut caught_up).await?.key, "t-1/seat-1");
    assert_eq!(next(&mut caught_up).await?.key, "t-1/seat-2");
    // Writers race the catch-up: each change arrives once, in seq order.
    let writer = {
        let s = s.clone();
        tokio::spawn(async move {
            for i in 3..=40u32 {
                s.store("lobby", &format!("t-1/seat-{i}"), &json!(i))
                    .await?;
                s.store("lobby", &format!("t-2/seat-{i}"), &json!(i))
                    .await?;
            }
            assert!(s.delete("lobby", "t-1/seat-1").await?);
            Ok::<_, StorageError>(())
        })
    };
    for stream in [&mut caught_up, &mut live] {
        let mut last = 0;
        for i in 3..=40u32 {
            let c = next(stream).await?;
            assert!(c.seq > last, "seq order");
            last = c.seq;
            assert_eq!(
                (c.key.as_str(), c.kind),
                (format!("t-1/seat-{i}").as_str(), ChangeKind::Put)
            );
        }
        let c = next(stream).await?;
        assert_eq!((c.key.as_str(), c.kind), ("t-1/seat-1", ChangeKind::Delete));
    }
    writer.await??;
    // Nothing more: a change of another collection does not wake a delivery.
    s.store("other", "t-1/x", &json!(0)).await?;
    s.store("lobby", "t-1/last", &json!(0)).await?;
    assert_eq!(next(&mut live).await?.key, "t-1/last");
    s.close().await?;
    Ok(())
}

pub async fn retention_removes_a_prefix_and_reading_past_it_is_an_error(f: Fixture) -> Result {
    let mut config = manual(f.config.clone());
    config.maintenance.change_retention = Duration::from_secs(24 * 3600);
    let s = f.open(config).await?;
    let head = s.change_head().await?;
    for i in 0..3 {
        s.store("games", &format!("old-{i}"), &json!(i)).await?;
    }
    // Nothing is old enough yet.
    assert_eq!(s.prune_changes().await?, 0);
    s.advance_clock(Duration::from_secs(2 * 24 * 3600));
    s.store("games", "new", &json!(1)).await?;
    assert_eq!(s.prune_changes().await?, head + 3);
    assert_eq!(
        s.prune_changes().await?,
        0,
        "the new change is within retention"
    );
    let pruned = s.changes_since(head, 10).await;
    match pruned {
        Err(StorageError::ChangesPruned {
            after,
            pruned_through,
        }) => {
            assert_eq!((after, pruned_through), (head, head + 3));
        }
        other => panic!("expected ChangesPruned, got {other:?}"),
    }
    let kept = s.changes_since(head + 3, 10).await?;
    assert_eq!(
        kept.iter().map(|c| c.key.as_str()).collect::<Vec<_>>(),
        ["new"]
    );
    // A watch from before retention fails the same way, at once.
    let mut stale = s.watch_from("games", "", head + 1).await?;
    match tokio::time::timeout(PATIENCE, stale.next()).await? {
        Some(Err(StorageError::ChangesPruned { .. })) => {}
        other => panic!("expected ChangesPruned, got {other:?}"),
    }
    assert!(
        stale.next().await.is_none(),
        "the stream ends after the error"
    );
    // Maintenance runs retention.
    s.advance_clock(Duration::from_secs(2 * 24 * 3600));
    let report = s.maintenance().await?;
    assert_eq!(report.changes_pruned, 1, "{report:?}");
    assert_eq!(s.change_head().await?, head + 4, "the head stays");
    s.close().await?;
    Ok(())
}

/// Regression (SQLite schema version 12, which reads both clocks from the change log's
/// newest row): a delete logs the removed record's older version, and retention may remove
/// every row, so in both cases the clocks must be kept elsewhere — else the next put would
/// be given a version already handed out, or the next change a seq already used.
pub async fn versions_and_seqs_never_repeat_after_a_delete_or_pruning_everything(
    f: Fixture,
) -> Result {
    let mut config = manual(f.config.clone());
    config.maintenance.change_retention = Duration::from_secs(24 * 3600);
    let s = f.open(config).await?;
    let v1 = s.store_if("games", "a", &json!(1), Expect::Any).await?;
    let v2 = s.store_if("games", "b", &json!(2), Expect::Any).await?;
    // The newest change is now the delete of `a`, which carries v1.
    assert!(s.delete("games", "a").await?);
    let v3 = s.store_if("games", "c", &json!(3), Expect::Any).await?;
    assert!(v1 < v2 && v2 < v3, "{v1:?} {v2:?} {v3:?}");
    let head = s.change_head().await?;
    s.advance_clock(Duration::from_secs(2 * 24 * 3600));
    assert_eq!(s.prune_changes().await?, head, "everything is old enough");
    assert!(s.changes_since(head, 10).await?.is_empty());
    assert_eq!(s.change_head().await?, head, "the head stays");
    let v4 = s.store_if("games", "d", &json!(4), Expect::Any).await?;
    assert!(v3 < v4, "{v3:?} {v4:?}");
    let after = s.changes_since(head, 10).await?;
    assert_eq!(
        shape(head, &after),
        [row("games", "d", ChangeKind::Put, v4)]
    );
    s.close().await?;
    Ok(())
}

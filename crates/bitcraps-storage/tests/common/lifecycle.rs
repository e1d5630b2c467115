//! The contract of record expiry (TTL), as tests every backend must pass: an expired record
//! is never returned by any read, on any cache tier, even before it is swept; a write to it
//! is the write of an absent key; the sweep removes it and frees its content. Time moves with
//! the store's injected clock (`advance_clock`, feature `testing`), never by sleeping. A
//! backend's test file invokes `lifecycle_suite!(fixture_fn)` beside `conformance_suite!`.

use std::time::Duration;

use bitcraps_storage::testing::BackgroundTask;
use bitcraps_storage::{
    Expect, ListOptions, PersistentStorageManager, StorageConfig, StorageError, WriteBatch,
};
use serde_json::{Value, json};

use super::Fixture;
pub use super::conformance::Result;

const MINUTE: Duration = Duration::from_secs(60);

/// The fixture's store with the background sweep left to the test (it runs only when the
/// test asks for it through `run_background_task`).
async fn open(f: &Fixture) -> Result<PersistentStorageManager> {
    Ok(f.open(manual_sweep(f.config.clone())).await?)
}

fn manual_sweep(mut config: StorageConfig) -> StorageConfig {
    // An hour: the schedule never fires during a test; runs come from the test's requests.
    config.maintenance.expiry_sweep_interval = Duration::from_secs(3600);
    config
}

#[macro_export]
macro_rules! lifecycle_suite {
    ($fixture:path) => {
        $crate::lifecycle_suite!(@tests $fixture;
            expired_records_are_invisible_to_every_read,
            a_write_to_an_expired_key_is_a_write_to_an_absent_key,
            batch_ttls_and_collection_defaults_apply,
            the_sweep_removes_expired_records_and_frees_content,
            expiry_survives_reopen,
            delete_prefix_does_not_count_expired_records);
    };
    (@tests $fixture:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() -> $crate::common::lifecycle::Result {
                match $crate::common::IntoFixture::into_fixture($fixture()) {
                    Some(fixture) => $crate::common::lifecycle::$name(fixture).await,
                    None => Ok(()),
                }
            }
        )*
    };
}

/// Every read call answers as if `collection/key` did not exist.
pub async fn assert_invisible(s: &PersistentStorageManager, c: &str, k: &str) -> Result {
    assert_eq!(s.retrieve::<Value>(c, k).await?, None, "retrieve {c}/{k}");
    assert_eq!(s.retrieve_raw(c, k).await?, None, "retrieve_raw {c}/{k}");
    assert!(
        s.retrieve_shared::<Value>(c, k).await?.is_none(),
        "retrieve_shared {c}/{k}"
    );
    assert!(
        s.retrieve_versioned::<Value>(c, k).await?.is_none(),
        "retrieve_versioned {c}/{k}"
    );
    assert_eq!(
        s.retrieve_many::<Value, _>(c, &[k]).await?,
        vec![None],
        "retrieve_many {c}/{k}"
    );
    assert!(!s.exists(c, k).await?, "exists {c}/{k}");
    assert_eq!(s.metadata(c, k).await?, None, "metadata {c}/{k}");
    let listed = s.list(c, ListOptions::default()).await?;
    assert!(!listed.keys.iter().any(|x| x == k), "list {c}: {listed:?}");
    let scanned = s.scan::<Value>(c, ListOptions::default()).await?;
    assert!(
        !scanned.items.iter().any(|(x, _)| x == k),
        "scan {c}: {:?}",
        scanned.items
    );
    Ok(())
}

/// Every read call returns `collection/key`.
pub async fn assert_visible(s: &PersistentStorageManager, c: &str, k: &str) -> Result {
    assert!(
        s.retrieve::<Value>(c, k).await?.is_some(),
        "retrieve {c}/{k}"
    );
    assert!(s.retrieve_versioned::<Value>(c, k).await?.is_some());
    assert!(s.retrieve_many::<Value, _>(c, &[k]).await?[0].is_some());
    assert!(s.exists(c, k).await?, "exists {c}/{k}");
    assert!(s.metadata(c, k).await?.is_some(), "metadata {c}/{k}");
    let listed = s.list(c, ListOptions::default()).await?;
    assert!(listed.keys.iter().any(|x| x == k), "list {c}: {listed:?}");
    let scanned = s.scan::<Value>(c, ListOptions::default()).await?;
    assert!(scanned.items.iter().any(|(x, _)| x == k));
    Ok(())
}

pub async fn expired_records_are_invisible_to_every_read(f: Fixture) -> Result {
    let s = open(&f).await?;
    s.store_with_ttl("lobbies", "seat-1", &json!({"seat": 1}), MINUTE)
        .await?;
    s.store("lobbies", "seat-2", &json!({"seat": 2})).await?;
    // Warm every tier: the read fills L1 (and L2 with the Redis tier).
    assert_visible(&s, "lobbies", "seat-1").await?;
    let meta = s.metadata("lobbies", "seat-1").await?.ok_or("missing")?;
    let expires = meta.expires_at.ok_or("no expiry")?;
    let lifetime = expires.duration_since(meta.updated_at)?;
    assert_eq!(lifetime, MINUTE, "expires one TTL after the write");
    assert_eq!(
        s.metadata("lobbies", "seat-2")
            .await?
            .ok_or("missing")?
            .expires_at,
        None
    );

    // Real time passes too, so "just before" is half a TTL early, and "after" one TTL later.
    s.advance_clock(MINUTE / 2);
    assert_visible(&s, "lobbies", "seat-1").await?;
    s.advance_clock(MINUTE / 2);
    // Expired, not swept: invisible everywhere, while the record without a TTL stays.
    assert_invisible(&s, "lobbies", "seat-1").await?;
    assert_visible(&s, "lobbies", "seat-2").await?;
    assert_eq!(
        s.list("lobbies", ListOptions::default()).await?.keys,
        ["seat-2"]
    );
    let paged = s.list("lobbies", ListOptions::default().limit(1)).await?;
    assert_eq!(
        paged.keys,
        ["seat-2"],
        "an expired key does not take a page slot"
    );
    assert!(s.statistics().await?.expired_reads > 0);
    s.close().await?;
    Ok(())
}

pub async fn a_write_to_an_expired_key_is_a_write_to_an_absent_key(f: Fixture) -> Result {
    let s = open(&f).await?;
    s.store_with_ttl("seats", "a", &json!(1), MINUTE).await?;
    s.store_with_ttl("seats", "b", &json!(1), MINUTE).await?;
    s.store_with_ttl("seats", "c", &json!(1), MINUTE).await?;
    s.store_with_ttl("seats", "d", &json!(1), MINUTE).await?;
    s.advance_clock(2 * MINUTE);
    // A condition that the key is absent holds.
    s.store_if("seats", "a", &json!(2), Expect::Absent).await?;
    assert_eq!(s.retrieve::<Value>("seats", "a").await?, Some(json!(2)));
    assert_eq!(
        s.metadata("seats", "a").await?.ok_or("missing")?.expires_at,
        None,
        "the new record has no TTL of its own"
    );
    // `update` sees nothing.
    let seen = std::sync::Mutex::new(Vec::new());
    s.update("seats", "b", |old: Option<Value>| {
        seen.lock().expect("lock").push(old.clone());
        Some(json!(3))
    })
    .await?;
    assert_eq!(*seen.lock().expect("lock"), vec![None]);
    // A delete finds nothing to delete.
    assert!(!s.delete("seats", "c").await?);
    // A batch conditioned on absence applies; one on the old version conflicts.
    let mut batch = WriteBatch::new();
    batch.expect("seats", "d", Expect::Absent);
    batch.store("seats", "d", &json!(4))?;
    s.apply(batch).await?;
    s.store_with_ttl("seats", "e", &json!(1), MINUTE).await?;
    let (_, version) = s
        .retrieve_versioned::<Value>("seats", "e")
        .await?
        .ok_or("missing")?;
    s.advance_clock(2 * MINUTE);
    let stale = s
        .store_if("seats", "e", &json!(5), Expect::Version(version))
        .await;
    assert!(
        matches!(stale, Err(StorageError::Conflict { actual: None, .. })),
        "{stale:?}"
    );
    assert_eq!(s.retrieve::<Value>("seats", "e").await?, None);
    s.close().await?;
    Ok(())
}

pub async fn batch_ttls_and_collection_defaults_apply(f: Fixture) -> Result {
    let s = open(&f).await?;
    s.set_default_ttl("rolls", Some(10 * MINUTE)).await?;
    assert_eq!(
        s.default_ttls().await?.get("rolls").copied(),
        Some(10 * MINUTE)
    );
    s.store("rolls", "r-1", &json!({"dice": [3, 4]})).await?;
    let mut batch = WriteBatch::new();
    batch.store("rolls", "r-2", &json!({"dice": [1, 1]}))?;
    batch.store_with_ttl("rolls", "r-3", &json!({"dice": [6, 6]}), MINUTE)?;
    batch.store("games", "g-1", &json!({"open": true}))?;
    s.apply(batch).await?;
    s.advance_clock(2 * MINUTE);
    assert_invisible(&s, "rolls", "r-3").await?;
    assert_visible(&s, "rolls", "r-1").await?;
    s.advance_clock(10 * MINUTE);
    assert_invisible(&s, "rolls", "r-1").await?;
    assert_invisible(&s, "rolls", "r-2").await?;
    assert_visible(&s, "games", "g-1").await?;
    // Cleared: later writes keep their records.
    s.set_default_ttl("rolls", None).await?;
    assert!(s.default_ttls().await?.is_empty());
    s.store("rolls", "r-4", &json!({"dice": [2, 5]})).await?;
    assert_eq!(
        s.metadata("rolls", "r-4")
            .await?
            .ok_or("missing")?
            .expires_at,
        None
    );
    let too_short = s
        .store_with_ttl("rolls", "r-5", &json!(0), Duration::from_micros(1))
        .await;
    assert!(
        matches!(too_short, Err(StorageError::Config(_))),
        "{too_short:?}"
    );
    s.close().await?;
    Ok(())
}

pub async fn the_sweep_removes_expired_records_and_frees_content(f: Fixture) -> Result {
    let s = open(&f).await?;
    // More than one sweep chunk (500), sharing content with a record that stays.
    let doc = json!({"lobby": "shared", "pad": "x".repeat(200)});
    s.store("keep", "k", &doc).await?;
    let items: Vec<(String, Value)> = (0..520)
        .map(|i| (format!("s-{i:04}"), doc.clone()))
        .collect();
    let mut batch = WriteBatch::new();
    for (k, v) in &items {
        batch.store_with_ttl("seats", k, v, MINUTE)?;
    }
    s.apply(batch).await?;
    s.store_with_ttl("seats", "unique", &json!({"only": "here"}), MINUTE)
        .await?;
    let before = s.statistics().await?.database_stats;
    s.advance_clock(MINUTE + Duration::from_millis(1));
    // The background task, driven by the test: every expired record goes, in chunks.
    s.run_background_task(BackgroundTask::ExpirySweep).await?;
    let stats = s.statistics().await?;
    assert_eq!(stats.expired_swept, 521);
    assert_eq!(stats.database_stats.record_count, 1);
    assert_eq!(
        stats.database_stats.blob_count,
        before.blob_count - 1,
        "the unique content is freed, the shared one kept"
    );
    let check = s.check_consistency().await?;
    assert!(check.is_ok(), "{}", check.problems());
    assert_eq!(
        s.metadata("keep", "k").await?.ok_or("missing")?.shared_by,
        1
    );
    // Nothing left to sweep; maintenance sweeps too.
    assert_eq!(s.sweep_expired().await?, 0);
    s.store_with_ttl("seats", "late", &json!(1), MINUTE).await?;
    s.advance_clock(2 * MINUTE);
    let report = s.maintenance().await?;
    assert_eq!(report.expired_swept, 1, "{:?}", report.steps);
    s.close().await?;
    Ok(())
}

pub async fn expiry_survives_reopen(f: Fixture) -> Result {
    let s = open(&f).await?;
    s.set_default_ttl("sessions", Some(MINUTE)).await?;
    s.store("sessions", "a", &json!(1)).await?;
    s.close().await?;
    let s = open(&f).await?;
    assert_eq!(
        s.default_ttls().await?.get("sessions").copied(),
        Some(MINUTE)
    );
    assert!(
        s.metadata("sessions", "a")
            .await?
            .ok_or("missing")?
            .expires_at
            .is_some()
    );
    s.advance_clock(2 * MINUTE);
    assert_invisible(&s, "sessions", "a").await?;
    s.close().await?;
    Ok(())
}

/// Regression (found by the model test): `delete_prefix` removed expired records under the
/// prefix — right — but counted them among the records it deleted, which the caller could
/// not see a moment before.
pub async fn delete_prefix_does_not_count_expired_records(f: Fixture) -> Result {
    let s = open(&f).await?;
    s.store_with_ttl("seats", "t-1", &json!(1), MINUTE).await?;
    s.store("seats", "t-2", &json!(2)).await?;
    s.advance_clock(2 * MINUTE);
    assert_eq!(s.delete_prefix("seats", "t-").await?, 1);
    assert_eq!(s.sweep_expired().await?, 0, "the expired record went too");
    assert_eq!(s.statistics().await?.database_stats.record_count, 0);
    s.close().await?;
    Ok(())
}

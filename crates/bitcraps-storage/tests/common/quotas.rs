//! The contract of collection quotas, as tests every backend must pass: a hard limit of
//! records or logical JSON bytes fails the write that would pass it (the whole unit, nothing
//! written) with `QuotaExceeded`, overwrites and deletes count by their difference, expired
//! records and shared content do not change what counts, the soft limit warns, and writers
//! racing at the limit never take the collection past it. A backend's test file invokes
//! `quota_suite!(fixture_fn)` beside `conformance_suite!`.

use std::sync::Arc;
use std::time::Duration;

use bitcraps_storage::{
    CollectionQuota, PersistentStorageManager, QuotaKind, StorageError, WriteBatch,
};
use serde_json::{Value, json};

use super::Fixture;
pub use super::conformance::Result;

async fn open(f: &Fixture) -> Result<PersistentStorageManager> {
    let mut config = f.config.clone();
    config.maintenance.expiry_sweep_interval = Duration::ZERO;
    Ok(f.open(config).await?)
}

#[macro_export]
macro_rules! quota_suite {
    ($fixture:path) => {
        $crate::quota_suite!(@tests $fixture;
            a_write_past_a_hard_limit_fails_and_writes_nothing,
            a_batch_over_the_limit_writes_nothing,
            bytes_are_logical_and_overwrites_count_by_difference,
            the_soft_limit_warns,
            racing_writers_never_pass_the_limit,
            quotas_are_kept_in_the_store);
    };
    (@tests $fixture:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() -> $crate::common::quotas::Result {
                match $crate::common::IntoFixture::into_fixture($fixture()) {
                    Some(fixture) => $crate::common::quotas::$name(fixture).await,
                    None => Ok(()),
                }
            }
        )*
    };
}

fn over(
    result: &bitcraps_storage::Result<impl std::fmt::Debug>,
    kind: QuotaKind,
    limit: u64,
    current: u64,
) -> bool {
    matches!(result, Err(StorageError::QuotaExceeded { kind: k, limit: l, current: c, .. })
        if *k == kind && *l == limit && *c == current)
}

pub async fn a_write_past_a_hard_limit_fails_and_writes_nothing(f: Fixture) -> Result {
    let s = open(&f).await?;
    s.set_quota("seats", Some(CollectionQuota::new(Some(3), None)))
        .await?;
    for i in 0..3 {
        s.store("seats", &format!("s-{i}"), &json!({"seat": i}))
            .await?;
    }
    let fourth = s.store("seats", "s-3", &json!({"seat": 3})).await;
    assert!(over(&fourth, QuotaKind::Records, 3, 4), "{fourth:?}");
    assert_eq!(
        fourth.err().map(|e| e.to_string()).as_deref(),
        Some("collection seats is over its quota: the write would make 4 records, the limit is 3")
    );
    assert_eq!(s.retrieve::<Value>("seats", "s-3").await?, None);
    assert_eq!(s.usage("seats").await?.records, 3);
    // Overwrites do not add a record; a delete makes room; other collections are free.
    s.store("seats", "s-0", &json!({"seat": "again"})).await?;
    assert!(s.delete("seats", "s-1").await?);
    s.store("seats", "s-3", &json!({"seat": 3})).await?;
    s.store("games", "g-1", &json!({"open": true})).await?;
    // Expired records do not count.
    s.set_quota("lobbies", Some(CollectionQuota::new(Some(1), None)))
        .await?;
    s.store_with_ttl("lobbies", "l-0", &json!(0), Duration::from_secs(60))
        .await?;
    assert!(s.store("lobbies", "l-1", &json!(1)).await.is_err());
    s.advance_clock(Duration::from_secs(120));
    s.store("lobbies", "l-1", &json!(1)).await?;
    // store_batch is one unit too.
    let items: Vec<(String, Value)> = (10..12).map(|i| (format!("s-{i}"), json!(i))).collect();
    assert!(s.store_batch("seats", &items).await.is_err());
    assert_eq!(s.usage("seats").await?.records, 3);
    s.close().await?;
    Ok(())
}

pub async fn a_batch_over_the_limit_writes_nothing(f: Fixture) -> Result {
    let s = open(&f).await?;
    s.set_quota("seats", Some(CollectionQuota::new(Some(2), None)))
        .await?;
    s.store("seats", "s-0", &json!(0)).await?;
    let mut batch = WriteBatch::new();
    batch.store("games", "g-1", &json!({"table": 7}))?;
    batch.store("seats", "s-1", &json!(1))?;
    batch.store("seats", "s-2", &json!(2))?;
    let result = s.apply(batch).await;
    assert!(over(&result, QuotaKind::Records, 2, 3), "{result:?}");
    assert_eq!(
        s.retrieve::<Value>("games", "g-1").await?,
        None,
        "nothing of the batch"
    );
    assert_eq!(s.retrieve::<Value>("seats", "s-1").await?, None);
    // Checked as a whole: a batch that deletes one and adds one fits.
    let mut batch = WriteBatch::new();
    batch.delete("seats", "s-0");
    batch.store("seats", "s-1", &json!(1))?;
    batch.store("seats", "s-2", &json!(2))?;
    s.apply(batch).await?;
    assert_eq!(s.usage("seats").await?.records, 2);
    s.close().await?;
    Ok(())
}

pub async fn bytes_are_logical_and_overwrites_count_by_difference(f: Fixture) -> Result {
    let s = open(&f).await?;
    let doc = json!({"pad": "x".repeat(90)}); // 100 bytes of JSON
    let len = u64::try_from(serde_json::to_vec(&doc)?.len())?;
    s.set_quota("rolls", Some(CollectionQuota::new(None, Some(3 * len))))
        .await?;
    // The same content three times is stored once, but counts three times.
    for i in 0..3 {
        s.store("rolls", &format!("r-{i}"), &doc).await?;
    }
    assert_eq!(s.usage("rolls").await?.bytes, 3 * len);
    let fourth = s.store("rolls", "r-3", &doc).await;
    assert!(
        over(&fourth, QuotaKind::Bytes, 3 * len, 4 * len),
        "{fourth:?}"
    );
    // Growing a record by one byte is over; shrinking it makes room for that byte elsewhere.
    let bigger = json!({"pad": "x".repeat(91)});
    assert!(s.store("rolls", "r-0", &bigger).await.is_err());
    let smaller = json!({"pad": "x".repeat(89)});
    s.store("rolls", "r-0", &smaller).await?;
    s.store("rolls", "r-1", &bigger).await?;
    assert_eq!(s.usage("rolls").await?.bytes, 3 * len);
    s.close().await?;
    Ok(())
}

pub async fn the_soft_limit_warns(f: Fixture) -> Result {
    let s = open(&f).await?;
    s.set_quota(
        "seats",
        Some(CollectionQuota::new(Some(10), None).soft_percent(50)),
    )
    .await?;
    for i in 0..4 {
        s.store("seats", &format!("s-{i}"), &json!(i)).await?;
    }
    assert_eq!(s.statistics().await?.quota_warnings, 0);
    s.store("seats", "s-4", &json!(4)).await?;
    s.store("seats", "s-5", &json!(5)).await?;
    assert_eq!(
        s.statistics().await?.quota_warnings,
        2,
        "every write past 50 %"
    );
    // An overwrite past the soft limit does not grow the collection: no warning.
    s.store("seats", "s-5", &json!(5)).await?;
    assert_eq!(s.statistics().await?.quota_warnings, 2);
    s.close().await?;
    Ok(())
}

pub async fn racing_writers_never_pass_the_limit(f: Fixture) -> Result {
    const LIMIT: u64 = 40;
    let s = open(&f).await?;
    s.set_quota("seats", Some(CollectionQuota::new(Some(LIMIT), None)))
        .await?;
    let barrier = Arc::new(tokio::sync::Barrier::new(6));
    let mut tasks = Vec::new();
    for w in 0..6 {
        let (s, barrier) = (s.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let mut stored = 0u64;
            for i in 0..15 {
                match s.store("seats", &format!("w{w}-{i}"), &json!([w, i])).await {
                    Ok(()) => stored += 1,
                    Err(StorageError::QuotaExceeded { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(stored)
        }));
    }
    let mut stored = 0;
    for t in tasks {
        stored += t.await??;
    }
    assert_eq!(stored, LIMIT, "exactly the limit was accepted");
    assert_eq!(s.usage("seats").await?.records, LIMIT);
    let listed = s
        .list("seats", bitcraps_storage::ListOptions::default())
        .await?;
    assert_eq!(listed.keys.len() as u64, LIMIT);
    s.close().await?;
    Ok(())
}

pub async fn quotas_are_kept_in_the_store(f: Fixture) -> Result {
    let s = open(&f).await?;
    let q = CollectionQuota::new(Some(5), Some(1 << 20)).soft_percent(90);
    s.set_quota("seats", Some(q)).await?;
    let bad = s
        .set_quota("seats", Some(CollectionQuota::new(None, None)))
        .await;
    assert!(matches!(bad, Err(StorageError::Config(_))), "{bad:?}");
    s.close().await?;
    let s = open(&f).await?;
    assert_eq!(s.quotas().await?.get("seats"), Some(&q));
    s.set_quota("seats", None).await?;
    assert!(s.quotas().await?.is_empty());
    for i in 0..8 {
        s.store("seats", &format!("s-{i}"), &json!(i)).await?;
    }
    s.close().await?;
    Ok(())
}

//! The storage contract, as tests any backend must pass. A backend's test file invokes
//! `conformance_suite!(fixture_fn)`, where `fixture_fn() -> Fixture` makes a fresh, empty
//! store configuration.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bitcraps_storage::{Codec, ListOptions, PersistentStorageManager, StorageError};
use serde_json::json;

use super::{Fixture, Game, game, lobby};

pub type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

async fn open(f: &Fixture) -> Result<PersistentStorageManager> {
    Ok(f.open(f.config.clone()).await?)
}

#[macro_export]
macro_rules! conformance_suite {
    ($fixture:path) => {
        $crate::conformance_suite!(@tests $fixture;
            round_trip, overwrite_keeps_created_at, delete_reports_existence,
            collections_are_isolated, prefix_listing_pages_in_order, batch_is_atomic,
            large_batch_reports_first_bad_item,
            dedup_counts_references_exactly, compression_is_per_record, statistics_count_operations,
            bad_input_is_rejected_without_writes, wrong_type_is_a_typed_error,
            concurrent_writers_and_readers, cache_never_serves_stale_values,
            prefetched_reads_are_current,
            shared_reads_are_current, promoted_reads_are_current, reopen_sees_everything,
            access_counts_are_buffered_and_persisted, closed_store_refuses_work,
            dictionaries_are_trained_and_survive_reopen, deep_check_and_scrub_read_every_blob);
    };
    (@tests $fixture:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() -> $crate::common::conformance::Result {
                match $crate::common::IntoFixture::into_fixture($fixture()) {
                    Some(fixture) => $crate::common::conformance::$name(fixture).await,
                    // The fixture printed why (its service is not configured).
                    None => Ok(()),
                }
            }
        )*
    };
}

pub async fn round_trip(f: Fixture) -> Result {
    let s = open(&f).await?;
    let g = game("g-1", 3);
    s.store("games", "g-1", &g).await?;
    assert_eq!(s.retrieve::<Game>("games", "g-1").await?, Some(g.clone()));
    // A second read is a cache hit and returns the same value.
    assert_eq!(s.retrieve::<Game>("games", "g-1").await?, Some(g.clone()));
    let raw = s.retrieve_raw("games", "g-1").await?.expect("raw");
    assert_eq!(serde_json::from_slice::<Game>(&raw)?, g);
    assert_eq!(s.retrieve::<Game>("games", "nope").await?, None);
    assert!(s.exists("games", "g-1").await?);
    assert!(!s.exists("games", "nope").await?);
    let unicode_key = "tísch-🎲-\u{10FFFF}";
    s.store("games", unicode_key, &json!({"ok": true})).await?;
    assert_eq!(
        s.retrieve::<serde_json::Value>("games", unicode_key)
            .await?,
        Some(json!({"ok": true}))
    );
    s.close().await?;
    Ok(())
}

/// Waits until the wall clock is a millisecond (the resolution of stored times) past `t`, so
/// that a later write gets a later time. Paced by the clock, not waiting on background work.
async fn clock_past(t: std::time::SystemTime) {
    let due = t + std::time::Duration::from_millis(1);
    while std::time::SystemTime::now() < due {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
}

pub async fn overwrite_keeps_created_at(f: Fixture) -> Result {
    let s = open(&f).await?;
    s.store("games", "g", &game("g", 1)).await?;
    let first = s.metadata("games", "g").await?.expect("meta");
    clock_past(first.updated_at).await;
    s.store("games", "g", &game("g", 2)).await?;
    assert_eq!(s.retrieve::<Game>("games", "g").await?, Some(game("g", 2)));
    let second = s.metadata("games", "g").await?.expect("meta");
    assert_eq!(second.created_at, first.created_at);
    assert!(second.updated_at > first.updated_at);
    assert_ne!(second.content_hash, first.content_hash);
    let stats = s.statistics().await?;
    assert_eq!(stats.database_stats.record_count, 1);
    assert_eq!(
        stats.database_stats.blob_count, 1,
        "the old content is freed"
    );
    assert!(s.check_consistency().await?.is_ok());
    s.close().await?;
    Ok(())
}

pub async fn delete_reports_existence(f: Fixture) -> Result {
    let s = open(&f).await?;
    s.store("games", "g", &game("g", 1)).await?;
    assert!(s.delete("games", "g").await?);
    assert!(!s.delete("games", "g").await?);
    assert_eq!(s.retrieve::<Game>("games", "g").await?, None);
    assert_eq!(s.metadata("games", "g").await?, None);
    let stats = s.statistics().await?;
    assert_eq!(stats.total_deletes, 1);
    assert_eq!(stats.database_stats.blob_count, 0);
    assert!(s.check_consistency().await?.is_ok());
    s.close().await?;
    Ok(())
}

pub async fn collections_are_isolated(f: Fixture) -> Result {
    let s = open(&f).await?;
    s.store("games", "k", &1).await?;
    s.store("players", "k", &2).await?;
    s.store("games2", "k", &3).await?;
    assert_eq!(s.retrieve::<i32>("games", "k").await?, Some(1));
    assert_eq!(s.retrieve::<i32>("players", "k").await?, Some(2));
    assert!(s.delete("games", "k").await?);
    assert_eq!(s.retrieve::<i32>("players", "k").await?, Some(2));
    assert_eq!(s.retrieve::<i32>("games2", "k").await?, Some(3));
    assert!(
        s.list("games", ListOptions::default())
            .await?
            .keys
            .is_empty()
    );
    assert_eq!(s.list("players", ListOptions::default()).await?.keys, ["k"]);
    s.close().await?;
    Ok(())
}

pub async fn prefix_listing_pages_in_order(f: Fixture) -> Result {
    let s = open(&f).await?;
    let mut all = BTreeSet::new();
    let mut items = Vec::new();
    for i in 0..120 {
        for prefix in ["g-", "g.", "g", "h-", "g-\u{10FFFF}", "é-"] {
            let key = format!("{prefix}{i:03}");
            all.insert(key.clone());
            items.push((key, i));
        }
    }
    s.store_batch("games", &items).await?;
    for (prefix, limit) in [("g-", 7), ("g", 50), ("é-", 1000), ("", 13), ("zz", 5)] {
        let expected: Vec<&String> = all.iter().filter(|k| k.starts_with(prefix)).collect();
        let mut got = Vec::new();
        let mut options = ListOptions::default().prefix(prefix).limit(limit);
        let mut pages = 0;
        loop {
            let page = s.list("games", options.clone()).await?;
            assert!(page.keys.len() <= limit);
            pages += 1;
            got.extend(page.keys);
            match page.next_after {
                Some(after) => options = options.after(&after),
                None => break,
            }
            assert!(pages < 10_000, "pagination does not terminate");
        }
        let got_refs: Vec<&String> = got.iter().collect();
        assert_eq!(got_refs, expected, "prefix {prefix:?} limit {limit}");
    }
    // `after` alone starts strictly after the key.
    let page = s
        .list("games", ListOptions::default().prefix("h-").after("h-117"))
        .await?;
    assert_eq!(page.keys, ["h-118", "h-119"]);
    assert_eq!(page.next_after, None);
    // "Everything": the largest limit lists and scans every key (regression: SQLite refused
    // a LIMIT above i64::MAX written into its SQL).
    let options = ListOptions::default().prefix("h-").limit(usize::MAX);
    let page = s.list("games", options.clone()).await?;
    assert_eq!((page.keys.len(), page.next_after), (120, None));
    let scanned = s.scan::<i32>("games", options).await?;
    assert_eq!(scanned.items.len(), 120);
    s.close().await?;
    Ok(())
}

pub async fn batch_is_atomic(f: Fixture) -> Result {
    let mut config = f.config.clone();
    config.write.max_value_size = 4096;
    let s = f.open(config).await?;
    let items: Vec<(String, Game)> = (0..100).map(|i| (format!("b-{i}"), game("b", i))).collect();
    s.store_batch("games", &items).await?;
    assert_eq!(
        s.list("games", ListOptions::default()).await?.keys.len(),
        100
    );
    // One bad key fails the whole batch before anything is written.
    let bad_key = vec![("ok-1".to_owned(), 1), (String::new(), 2)];
    assert!(matches!(
        s.store_batch("other", &bad_key).await,
        Err(StorageError::InvalidKey { .. })
    ));
    // One oversized value fails the whole batch too.
    let oversized = vec![
        ("ok-1".to_owned(), "x".to_owned()),
        ("ok-2".to_owned(), "y".repeat(5000)),
    ];
    assert!(matches!(
        s.store_batch("other", &oversized).await,
        Err(StorageError::ValueTooLarge { .. })
    ));
    assert!(
        s.list("other", ListOptions::default())
            .await?
            .keys
            .is_empty()
    );
    // Duplicate keys in one batch: the last wins and references stay exact.
    s.store_batch("dups", &[("k", 1), ("k", 2), ("k", 3)])
        .await?;
    assert_eq!(s.retrieve::<i32>("dups", "k").await?, Some(3));
    assert!(s.check_consistency().await?.is_ok());
    s.close().await?;
    Ok(())
}

pub async fn dedup_counts_references_exactly(f: Fixture) -> Result {
    let s = open(&f).await?;
    for i in 0..10 {
        s.store("lobbies", &format!("l-{i}"), &lobby()).await?;
    }
    let stats = s.statistics().await?;
    assert_eq!(stats.deduplicated_writes, 9);
    assert_eq!(stats.database_stats.blob_count, 1);
    assert_eq!(stats.database_stats.record_count, 10);
    let meta = s.metadata("lobbies", "l-0").await?.expect("meta");
    assert_eq!(meta.shared_by, 10);
    // Deleting the first writer of the content does not dangle the others (the original
    // design's reference-to-a-key broke exactly here).
    for i in 0..9 {
        assert!(s.delete("lobbies", &format!("l-{i}")).await?);
    }
    assert_eq!(s.retrieve("lobbies", "l-9").await?, Some(lobby()));
    assert_eq!(
        s.metadata("lobbies", "l-9").await?.expect("meta").shared_by,
        1
    );
    // Overwriting the last reference frees the content.
    s.store("lobbies", "l-9", &"something else").await?;
    let stats = s.statistics().await?;
    assert_eq!(stats.database_stats.blob_count, 1);
    assert_eq!(stats.database_stats.record_count, 1);
    // Same content across collections is shared too — unless the store is encrypted: then
    // content addresses are keyed per collection, and nothing about equality is visible
    // across collections.
    s.store("a", "x", &lobby()).await?;
    s.store("b", "y", &lobby()).await?;
    let shared = if f.config.key.is_set() { 1 } else { 2 };
    assert_eq!(s.metadata("a", "x").await?.expect("meta").shared_by, shared);
    let report = s.check_consistency().await?;
    assert!(report.is_ok(), "{report:?}");
    s.close().await?;
    Ok(())
}

pub async fn compression_is_per_record(f: Fixture) -> Result {
    let mut config = f.config.clone();
    config.compression.codec = Codec::Lz4;
    let s = f.open(config.clone()).await?;
    let big = game("big", 10);
    s.store("games", "lz4", &big).await?;
    s.store("games", "tiny", &7).await?;
    let meta = s.metadata("games", "lz4").await?.expect("meta");
    assert_eq!(meta.codec, Codec::Lz4);
    assert!(
        meta.is_compressed && meta.stored_bytes < meta.size_bytes,
        "{meta:?}"
    );
    let tiny = s.metadata("games", "tiny").await?.expect("meta");
    assert!(
        !tiny.is_compressed,
        "compressed only when smaller: {tiny:?}"
    );
    if config.key.is_set() {
        // Encrypted: a header, a nonce, the content hash and a tag around the document.
        assert!(tiny.stored_bytes > tiny.size_bytes, "{tiny:?}");
    } else {
        assert_eq!(tiny.stored_bytes, tiny.size_bytes);
    }
    s.close().await?;
    drop(s);

    // Reopen with another codec: old records stay readable, new ones use the new codec.
    for codec in [Codec::Gzip, Codec::Zstd, Codec::None] {
        config.compression.codec = codec;
        let s = f.open(config.clone()).await?;
        assert_eq!(s.retrieve::<Game>("games", "lz4").await?, Some(big.clone()));
        let key = format!("k-{codec}");
        let mut other = big.clone();
        other.id = key.clone();
        s.store("games", &key, &other).await?;
        let meta = s.metadata("games", &key).await?.expect("meta");
        assert_eq!(meta.codec, codec);
        assert_eq!(s.retrieve::<Game>("games", &key).await?, Some(other));
        s.close().await?;
    }
    // Compression off stores plainly.
    config.compression.enabled = false;
    let s = f.open(config).await?;
    s.store("games", "plain", &game("plain", 9)).await?;
    assert!(
        !s.metadata("games", "plain")
            .await?
            .expect("meta")
            .is_compressed
    );
    s.close().await?;
    Ok(())
}

pub async fn statistics_count_operations(f: Fixture) -> Result {
    let s = open(&f).await?;
    s.store("games", "a", &game("a", 1)).await?;
    s.store_batch("games", &[("b", game("b", 2)), ("c", game("c", 3))])
        .await?;
    s.delete("games", "c").await?;
    let _: Option<Game> = s.retrieve("games", "a").await?; // hit (written through)
    let _: Option<Game> = s.retrieve("games", "zzz").await?; // miss
    let stats = s.statistics().await?;
    assert_eq!(stats.total_writes, 3);
    assert_eq!(stats.total_deletes, 1);
    assert_eq!(stats.total_reads, 2);
    // A store opened with a cache counts the written-through read as a hit; PostgreSQL runs
    // without the in-process cache unless the Redis tier keeps it coherent across nodes.
    let cached = s.config().cache.size_mb > 0;
    assert_eq!(
        cached,
        stats.database_stats.backend != "postgres" || s.config().redis.url.is_some()
    );
    assert_eq!(stats.cache_hits, u64::from(cached));
    assert_eq!(stats.cache_misses, 2 - u64::from(cached));
    let rate = if cached { 0.5 } else { 0.0 };
    assert!((stats.cache_hit_rate - rate).abs() < 1e-9);
    assert!(stats.bytes_written > 0 && stats.logical_bytes_written >= stats.bytes_written);
    assert!(stats.average_write_time_ms > 0.0);
    assert_eq!(stats.database_stats.record_count, 2);
    assert!(stats.database_stats.file_bytes > 0);
    assert!(stats.group_commits >= 1 && stats.group_commits <= 3);
    s.close().await?;
    Ok(())
}

/// A batch large enough to be encoded in parallel chunks still fails as a whole, with the
/// error of its first bad item, and writes nothing.
pub async fn large_batch_reports_first_bad_item(f: Fixture) -> Result {
    let mut config = f.config.clone();
    config.write.max_value_size = 4096;
    let s = f.open(config).await?;
    let mut items: Vec<(String, String)> = (0..2000)
        .map(|i| (format!("k-{i:04}"), format!("{i}-{}", "v".repeat(500))))
        .collect();
    items[900].1 = "z".repeat(6000);
    items[1100].1 = "z".repeat(7000);
    match s.store_batch("big", &items).await {
        Err(StorageError::ValueTooLarge { key, .. }) => assert_eq!(key, "k-0900"),
        other => panic!("expected ValueTooLarge for k-0900, got {other:?}"),
    }
    assert!(s.list("big", ListOptions::default()).await?.keys.is_empty());
    items[900].1 = "ok".into();
    items[1100].1 = "ok".into();
    s.store_batch("big", &items).await?;
    for i in [0, 999, 1000, 1500, 1999] {
        let (key, value) = &items[i];
        assert_eq!(
            s.retrieve::<String>("big", key).await?.as_ref(),
            Some(value)
        );
    }
    let page = s.list("big", ListOptions::default().limit(5000)).await?;
    assert_eq!(page.keys.len(), 2000);
    s.close().await?;
    Ok(())
}

pub async fn bad_input_is_rejected_without_writes(f: Fixture) -> Result {
    let mut config = f.config.clone();
    config.write.max_value_size = 1000;
    let s = f.open(config).await?;
    let cases: Vec<(&str, String)> = vec![
        ("", "k".into()),
        ("c\0x", "k".into()),
        ("c", String::new()),
        ("c", "k\0".into()),
        ("c", "k".repeat(1025)),
    ];
    for (collection, key) in &cases {
        let err = s.store(collection, key, &1).await.expect_err("must fail");
        assert!(
            matches!(
                err,
                StorageError::InvalidKey { .. } | StorageError::InvalidCollection { .. }
            ),
            "{err}"
        );
        assert!(s.retrieve::<i32>(collection, key).await.is_err());
        assert!(s.delete(collection, key).await.is_err());
    }
    let long_collection = "c".repeat(129);
    assert!(matches!(
        s.list(&long_collection, ListOptions::default()).await,
        Err(StorageError::InvalidCollection { .. })
    ));
    let err = s
        .store("c", "big", &"x".repeat(2000))
        .await
        .expect_err("too big");
    assert_eq!(
        err.to_string(),
        "value for c/big is 2002 bytes serialized, over the limit of 1000 bytes"
    );
    // A value serde_json cannot serialize (non-string map keys).
    let mut bad = std::collections::HashMap::new();
    bad.insert((1, 2), 3);
    assert!(matches!(
        s.store("c", "bad", &bad).await,
        Err(StorageError::Serialize { .. })
    ));
    let stats = s.statistics().await?;
    assert_eq!(stats.database_stats.record_count, 0);
    assert_eq!(stats.total_writes, 0);
    assert!(stats.errors >= 5);
    s.close().await?;
    Ok(())
}

pub async fn wrong_type_is_a_typed_error(f: Fixture) -> Result {
    let s = open(&f).await?;
    s.store("games", "g", &game("g", 1)).await?;
    let err = s
        .retrieve::<u64>("games", "g")
        .await
        .expect_err("wrong type");
    assert_eq!(
        err.to_string(),
        "value at games/g does not deserialize as u64"
    );
    assert!(matches!(err, StorageError::Deserialize { .. }));
    // The record is untouched and still readable as the right type.
    assert_eq!(s.retrieve::<Game>("games", "g").await?, Some(game("g", 1)));
    s.close().await?;
    Ok(())
}

pub async fn concurrent_writers_and_readers(f: Fixture) -> Result {
    let s = open(&f).await?;
    let mut tasks = Vec::new();
    for t in 0..16u32 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..25u32 {
                let key = format!("t{t}-{i}");
                s.store("games", &key, &game(&key, i)).await?;
                if i % 5 == 0 {
                    s.store("lobbies", &key, &lobby()).await?;
                }
                let back: Option<Game> = s.retrieve("games", &key).await?;
                assert_eq!(back, Some(game(&key, i)));
            }
            Ok::<_, StorageError>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let stats = s.statistics().await?;
    assert_eq!(stats.database_stats.record_count, 16 * 25 + 16 * 5);
    assert_eq!(stats.total_writes, 16 * 25 + 16 * 5);
    let report = s.check_consistency().await?;
    assert!(report.is_ok(), "{report:?}");
    s.close().await?;
    Ok(())
}

pub async fn cache_never_serves_stale_values(f: Fixture) -> Result {
    let s = open(&f).await?;
    readers_race_a_writer(
        &s,
        150,
        3,
        |s| async move { s.retrieve::<u64>("c", "k").await },
    )
    .await?;
    assert_eq!(s.retrieve::<u64>("c", "k").await?, Some(150));
    s.close().await?;
    Ok(())
}

/// Prefetching (issue #15) never serves a stale value: readers walk a collection in key order
/// (so readahead keeps starting) after dropping it from the cache, while a writer rewrites
/// every key, deleting and re-storing them every tenth round. A value read must never be
/// older than what was acknowledged before the read; once the writer is done, every key
/// reads its last value. Where the cache is on, the walk is read ahead.
pub async fn prefetched_reads_are_current(f: Fixture) -> Result {
    const KEYS: u64 = 16;
    const ROUNDS: u64 = 40;
    let s = open(&f).await?;
    let key = |n: u64| format!("k-{n:02}");
    let all = move |v: u64| (0..KEYS).map(|n| (key(n), v)).collect::<Vec<_>>();
    s.store_batch("walk", &all(0)).await?;
    let acked = Arc::new(AtomicU64::new(0));
    let writer = {
        let (s, acked) = (s.clone(), Arc::clone(&acked));
        tokio::spawn(async move {
            for v in 1..=ROUNDS {
                s.store_batch("walk", &all(v)).await?;
                acked.store(v, Ordering::SeqCst);
                if v % 10 == 0 {
                    s.delete_prefix("walk", "").await?;
                    s.store_batch("walk", &all(v)).await?;
                }
            }
            Ok::<_, StorageError>(())
        })
    };
    let mut readers = Vec::new();
    for _ in 0..2 {
        let (s, acked) = (s.clone(), Arc::clone(&acked));
        readers.push(tokio::spawn(async move {
            while acked.load(Ordering::SeqCst) < ROUNDS {
                for n in 0..KEYS {
                    s.evict_cached("walk", &key(n));
                }
                for n in 0..KEYS {
                    let floor = acked.load(Ordering::SeqCst);
                    if let Some(v) = s.retrieve::<u64>("walk", &key(n)).await? {
                        assert!(
                            v >= floor,
                            "stale read of {n}: got {v}, {floor} was acknowledged"
                        );
                    }
                }
            }
            Ok::<_, StorageError>(())
        }));
    }
    writer.await??;
    for r in readers {
        r.await??;
    }
    s.prefetch_settled().await;
    for n in 0..KEYS {
        assert_eq!(
            s.retrieve::<u64>("walk", &key(n)).await?,
            Some(ROUNDS),
            "{n}"
        );
    }
    // Once more, alone: the walk is read ahead where the cache is on.
    let before = s.statistics().await?.prefetch_issued;
    for n in 0..KEYS {
        s.evict_cached("walk", &key(n));
    }
    for n in 0..KEYS {
        assert_eq!(s.retrieve::<u64>("walk", &key(n)).await?, Some(ROUNDS));
        s.prefetch_settled().await;
    }
    let after = s.statistics().await?;
    let cached = after.cache_stats.capacity_bytes > 0;
    assert_eq!(
        after.prefetch_issued > before,
        cached && s.config().cache.prefetch,
        "{after:?}"
    );
    s.close().await?;
    Ok(())
}

/// Stores 1..=`rounds` under c/k (deleting and storing again every tenth) while `readers`
/// tasks read it with `read`: during a delete/re-store pair the key may be briefly absent,
/// but a present value must never be older than what was acknowledged before the read.
async fn readers_race_a_writer<F, Fut>(
    s: &PersistentStorageManager,
    rounds: u64,
    readers: usize,
    read: F,
) -> Result
where
    F: Fn(PersistentStorageManager) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = std::result::Result<Option<u64>, StorageError>> + Send,
{
    let acked = Arc::new(AtomicU64::new(0));
    s.store("c", "k", &0u64).await?;
    let writer = {
        let (s, acked) = (s.clone(), Arc::clone(&acked));
        tokio::spawn(async move {
            for v in 1..=rounds {
                s.store("c", "k", &v).await?;
                acked.store(v, Ordering::SeqCst);
                if v % 10 == 0 {
                    s.delete("c", "k").await?;
                    s.store("c", "k", &v).await?;
                }
            }
            Ok::<_, StorageError>(())
        })
    };
    let mut tasks = Vec::new();
    for _ in 0..readers {
        let (s, acked, read) = (s.clone(), Arc::clone(&acked), read.clone());
        tasks.push(tokio::spawn(async move {
            while acked.load(Ordering::SeqCst) < rounds {
                let floor = acked.load(Ordering::SeqCst);
                if let Some(v) = read(s.clone()).await? {
                    assert!(v >= floor, "stale read: got {v}, {floor} was acknowledged");
                }
            }
            Ok::<_, StorageError>(())
        }));
    }
    writer.await??;
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// `retrieve_shared` (the typed tier, issue #15) returns what `retrieve` returns after every
/// write and delete, and never a value older than an acknowledged write under concurrent
/// writers; a hot value is handed out again as the same `Arc` where the in-process cache is on.
pub async fn shared_reads_are_current(f: Fixture) -> Result {
    let mut config = f.config.clone();
    // The typed tier is off by default: this test reads through it.
    config.cache.typed_percent = 25;
    let s = f.open(config).await?;
    assert_eq!(s.retrieve_shared::<Game>("games", "g").await?, None);
    for n in 0..4 {
        let g = game("g", n);
        s.store("games", "g", &g).await?;
        let first = s
            .retrieve_shared::<Game>("games", "g")
            .await?
            .expect("stored");
        assert_eq!(*first, g);
        let again = s
            .retrieve_shared::<Game>("games", "g")
            .await?
            .expect("stored");
        assert_eq!(*again, g, "after write {n}");
        assert_eq!(s.retrieve::<Game>("games", "g").await?, Some(g));
    }
    if s.statistics().await?.cache_stats.capacity_bytes > 0 {
        let a = s
            .retrieve_shared::<Game>("games", "g")
            .await?
            .expect("stored");
        let b = s
            .retrieve_shared::<Game>("games", "g")
            .await?
            .expect("stored");
        assert!(Arc::ptr_eq(&a, &b), "a hot value is decoded once");
    }
    // Read as another type: decoded each time, and right.
    let as_json = s.retrieve_shared::<serde_json::Value>("games", "g").await?;
    assert_eq!(as_json.map(|v| v["id"].clone()), Some(json!("g")));
    assert!(matches!(
        s.retrieve_shared::<u64>("games", "g").await,
        Err(StorageError::Deserialize { .. })
    ));
    s.delete("games", "g").await?;
    assert_eq!(s.retrieve_shared::<Game>("games", "g").await?, None);

    // Concurrent writers: a present value is never older than what was acknowledged.
    readers_race_a_writer(&s, 100, 2, |s| async move {
        Ok(s.retrieve_shared::<u64>("c", "k").await?.map(|v| *v))
    })
    .await?;
    assert_eq!(
        s.retrieve_shared::<u64>("c", "k").await?.as_deref(),
        Some(&100)
    );
    s.close().await?;
    Ok(())
}

/// A compressed document read again is re-stored decompressed in the cache (promoted), and
/// reads of it are exactly as current as any other: after a write, a delete, and through
/// `retrieve`, `retrieve_raw` and `retrieve_shared` alike.
pub async fn promoted_reads_are_current(f: Fixture) -> Result {
    let s = open(&f).await?;
    let cached = s.statistics().await?.cache_stats.capacity_bytes > 0;
    for n in 0..4 {
        let g = game("g", n);
        s.store("games", "g", &g).await?;
        for read in 0..3 {
            assert_eq!(
                s.retrieve::<Game>("games", "g").await?.as_ref(),
                Some(&g),
                "write {n}, read {read}"
            );
        }
        let raw = s.retrieve_raw("games", "g").await?.expect("stored");
        assert_eq!(serde_json::from_slice::<Game>(&raw)?, g);
        assert_eq!(
            *s.retrieve_shared::<Game>("games", "g")
                .await?
                .expect("stored"),
            g
        );
        if cached {
            let promoted = s.statistics().await?.cache_stats.promoted_bytes;
            assert!(promoted > 0, "write {n}: read again, promoted");
        }
    }
    s.delete("games", "g").await?;
    assert_eq!(s.retrieve::<Game>("games", "g").await?, None);
    assert_eq!(s.retrieve_raw("games", "g").await?, None);
    assert_eq!(s.statistics().await?.cache_stats.promoted_bytes, 0);
    // Concurrent writers: a promoted value is never older than what was acknowledged.
    readers_race_a_writer(
        &s,
        100,
        2,
        |s| async move { s.retrieve::<u64>("c", "k").await },
    )
    .await?;
    assert_eq!(s.retrieve::<u64>("c", "k").await?, Some(100));
    s.close().await?;
    Ok(())
}

pub async fn reopen_sees_everything(f: Fixture) -> Result {
    {
        let s = open(&f).await?;
        let items: Vec<(String, Game)> =
            (0..50).map(|i| (format!("r-{i}"), game("r", i))).collect();
        s.store_batch("games", &items).await?;
        s.store("lobbies", "main", &lobby()).await?;
        s.delete("games", "r-0").await?;
        s.close().await?;
    }
    let s = open(&f).await?;
    assert_eq!(s.retrieve::<Game>("games", "r-0").await?, None);
    for i in 1..50 {
        assert_eq!(
            s.retrieve::<Game>("games", &format!("r-{i}")).await?,
            Some(game("r", i))
        );
    }
    assert_eq!(s.retrieve("lobbies", "main").await?, Some(lobby()));
    let stats = s.statistics().await?;
    assert_eq!(stats.database_stats.record_count, 50);
    assert!(s.check_consistency().await?.is_ok());
    s.close().await?;
    Ok(())
}

pub async fn access_counts_are_buffered_and_persisted(f: Fixture) -> Result {
    {
        let s = open(&f).await?;
        s.store("games", "g", &game("g", 1)).await?;
        let before = s.metadata("games", "g").await?.expect("meta");
        assert_eq!(before.access_count, 0);
        assert_eq!(before.last_accessed, None);
        for _ in 0..5 {
            let _: Option<Game> = s.retrieve("games", "g").await?;
        }
        // Not yet flushed, but visible through metadata.
        let meta = s.metadata("games", "g").await?.expect("meta");
        assert_eq!(meta.access_count, 5);
        assert!(meta.last_accessed.is_some());
        s.flush().await?;
        for _ in 0..2 {
            let _: Option<Game> = s.retrieve("games", "g").await?;
        }
        s.close().await?; // flushes the remaining two
    }
    let s = open(&f).await?;
    let meta = s.metadata("games", "g").await?.expect("meta");
    assert_eq!(meta.access_count, 7);
    assert!(meta.last_accessed.is_some());
    s.close().await?;
    Ok(())
}

pub async fn closed_store_refuses_work(f: Fixture) -> Result {
    let s = open(&f).await?;
    let clone = s.clone();
    s.close().await?;
    s.close().await?; // twice is fine
    assert!(matches!(
        clone.store("c", "k", &1).await,
        Err(StorageError::Closed)
    ));
    assert!(matches!(
        clone.retrieve::<i32>("c", "k").await,
        Err(StorageError::Closed)
    ));
    assert!(matches!(
        clone.statistics().await,
        Err(StorageError::Closed)
    ));
    // The database is released: it can be opened again while the old handle lives.
    let again = open(&f).await?;
    again.close().await?;
    Ok(())
}

pub async fn dictionaries_are_trained_and_survive_reopen(f: Fixture) -> Result {
    let mut config = f.config.clone();
    config.compression.dictionary_training_samples = 64;
    let s = f.open(config.clone()).await?;
    let mut i = 0u32;
    // Training runs in the background after 64 samples; keep writing until a new record
    // uses the dictionary (for at most 30 s, so a store that never trains fails the test).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let dict_id = loop {
        let key = format!("g-{i:05}");
        s.store("games", &key, &game(&key, i)).await?;
        if let Some(id) = s
            .metadata("games", &key)
            .await?
            .and_then(|m| m.dictionary_id)
        {
            break id;
        }
        i += 1;
        assert!(
            std::time::Instant::now() < deadline,
            "no dictionary was trained after {i} writes"
        );
    };
    let stats = s.statistics().await?;
    assert_eq!(stats.database_stats.dictionary_count, 1);
    // Records written with and without the dictionary read back; the dictionary shrinks them.
    let with = s
        .metadata("games", &format!("g-{i:05}"))
        .await?
        .expect("meta");
    let without = s.metadata("games", "g-00001").await?.expect("meta");
    assert_eq!(without.dictionary_id, None);
    // Cached as the writer encoded it (compressed with the dictionary), it reads back from
    // the cache, where the cache is on (on PostgreSQL it is on only with Redis).
    let dictionary_key = format!("g-{i:05}");
    let cached = s.statistics().await?.cache_stats.capacity_bytes > 0;
    let hits = s.statistics().await?.cache_stats.hits;
    assert_eq!(
        s.retrieve::<Game>("games", &dictionary_key).await?,
        Some(game(&dictionary_key, i))
    );
    if cached {
        assert_eq!(s.statistics().await?.cache_stats.hits, hits + 1);
    }
    assert!(
        with.stored_bytes < without.stored_bytes,
        "{with:?} vs {without:?}"
    );
    // Other collections are sampled separately.
    s.store("players", "p", &game("p", 1)).await?;
    assert_eq!(
        s.metadata("players", "p")
            .await?
            .expect("meta")
            .dictionary_id,
        None
    );
    s.close().await?;
    drop(s);

    let s = f.open(config).await?;
    // Read from the database (and cached with its dictionary), then from the cache.
    for expect_hits in [0, 1] {
        assert_eq!(
            s.retrieve::<Game>("games", &dictionary_key).await?,
            Some(game(&dictionary_key, i))
        );
        if cached {
            assert_eq!(s.statistics().await?.cache_stats.hits, expect_hits);
        }
    }
    for j in (0..=i).step_by(7) {
        let key = format!("g-{j:05}");
        assert_eq!(
            s.retrieve::<Game>("games", &key).await?,
            Some(game(&key, j))
        );
    }
    s.store("games", "after-reopen", &game("after-reopen", 3))
        .await?;
    let meta = s.metadata("games", "after-reopen").await?.expect("meta");
    assert_eq!(
        meta.dictionary_id,
        Some(dict_id),
        "the dictionary is reloaded on open"
    );
    assert!(s.check_consistency().await?.is_ok());
    // The deep check decodes the dictionary-compressed blobs with their dictionary.
    let deep = s.check_consistency_deep().await?;
    assert!(deep.is_ok() && deep.deep, "{deep:?}");
    assert_eq!(
        deep.blobs_verified,
        s.statistics().await?.database_stats.blob_count
    );
    s.close().await?;
    Ok(())
}

/// The deep check reads every blob; the scrub reads them a budget at a time, resuming where
/// it stopped, and records a complete pass.
pub async fn deep_check_and_scrub_read_every_blob(f: Fixture) -> Result {
    let mut config = f.config.clone();
    config.maintenance.scrub_interval = std::time::Duration::ZERO;
    config.maintenance.scrub_bytes_per_run = 1;
    let s = f.open(config).await?;
    let items: Vec<(String, Game)> = (0..150)
        .map(|i| (format!("g-{i:03}"), game(&format!("g-{i}"), i)))
        .collect();
    s.store_batch("games", &items).await?;
    s.store("copies", "same", &items[0].1).await?;
    let blobs = s.statistics().await?.database_stats.blob_count;
    let deep = s.check_consistency_deep().await?;
    assert!(deep.is_ok() && deep.deep, "{deep:?}");
    assert_eq!(deep.blobs_verified, blobs);
    assert!(deep.bytes_verified > 0);
    assert!(s.statistics().await?.last_scrub.is_none());
    let mut steps = Vec::new();
    loop {
        let step = s.scrub().await?;
        assert!(step.damaged.is_empty(), "{step:?}");
        steps.push(step.blobs_checked);
        if let Some(pass) = step.completed {
            assert_eq!(pass.blobs_checked, blobs);
            assert_eq!(pass.records_checked, 151);
            assert!(pass.is_clean());
            assert!(pass.finished_at_ms >= pass.started_at_ms);
            break;
        }
        assert!(steps.len() < 100, "the scrub never completed: {steps:?}");
    }
    // One page per step, so the pass took several steps, each reading new blobs.
    assert!(steps.len() > 2, "{steps:?}");
    assert_eq!(steps.iter().sum::<u64>(), blobs);
    let last = s.statistics().await?.last_scrub.expect("a completed pass");
    assert_eq!(last.blobs_checked, blobs);
    // The next step starts a new pass.
    assert!(s.scrub().await?.blobs_checked > 0);
    s.close().await?;
    Ok(())
}

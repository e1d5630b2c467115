//! The contract of versions, conditional writes, `update`, `WriteBatch`, `retrieve_many`,
//! `scan` and `delete_prefix`, as tests every backend must pass. A backend's test file invokes
//! `versions_suite!(fixture_fn)` beside `conformance_suite!`.

use std::collections::BTreeMap;

use bitcraps_storage::{
    Expect, ListOptions, PersistentStorageManager, StorageError, Version, WriteBatch,
};
use serde_json::{Value, json};

use super::Fixture;
pub use super::conformance::Result;

async fn open(f: &Fixture) -> Result<PersistentStorageManager> {
    Ok(f.open(f.config.clone()).await?)
}

#[macro_export]
macro_rules! versions_suite {
    ($fixture:path) => {
        $crate::versions_suite!(@tests $fixture;
            versions_increase_on_every_write_and_survive_reopen,
            store_if_checks_the_condition_inside_the_write,
            delete_if_checks_the_condition,
            conflicts_write_nothing_anywhere,
            update_increments_are_never_lost,
            update_creates_and_deletes,
            update_gives_up_after_the_configured_attempts,
            batch_across_collections_applies_together,
            transfers_conserve_the_total,
            retrieve_many_keeps_order_and_mixes_cache_and_database,
            scan_pages_like_list_with_values,
            delete_prefix_deletes_exactly_the_prefix);
    };
    (@tests $fixture:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() -> $crate::common::versions::Result {
                match $crate::common::IntoFixture::into_fixture($fixture()) {
                    Some(fixture) => $crate::common::versions::$name(fixture).await,
                    None => Ok(()),
                }
            }
        )*
    };
}

async fn version_of(s: &PersistentStorageManager, c: &str, k: &str) -> Result<Option<Version>> {
    Ok(s.retrieve_versioned::<Value>(c, k).await?.map(|(_, v)| v))
}

fn is_conflict(e: &StorageError, want_actual: Option<Version>) -> bool {
    matches!(e, StorageError::Conflict { actual, .. } if *actual == want_actual)
}

pub async fn versions_increase_on_every_write_and_survive_reopen(f: Fixture) -> Result {
    let s = open(&f).await?;
    s.store("games", "g-1", &json!({"n": 1})).await?;
    let v1 = version_of(&s, "games", "g-1").await?.ok_or("missing")?;
    s.store("games", "g-1", &json!({"n": 1})).await?;
    let v2 = version_of(&s, "games", "g-1").await?.ok_or("missing")?;
    assert!(
        v2 > v1,
        "rewriting the same content is a write: {v1} -> {v2}"
    );
    s.store_batch("games", &[("g-1", json!({"n": 2})), ("g-2", json!({}))])
        .await?;
    let v3 = version_of(&s, "games", "g-1").await?.ok_or("missing")?;
    assert!(v3 > v2);
    let meta = s.metadata("games", "g-1").await?.ok_or("missing")?;
    assert_eq!(meta.version, v3, "metadata shows the version");
    // Deleted and written again: a version it never had, so an old expectation fails.
    assert!(s.delete("games", "g-1").await?);
    assert_eq!(version_of(&s, "games", "g-1").await?, None);
    s.store("games", "g-1", &json!({"n": 3})).await?;
    let v4 = version_of(&s, "games", "g-1").await?.ok_or("missing")?;
    assert!(v4 > v3, "no version is handed out twice: {v3} then {v4}");
    let stale = s
        .store_if("games", "g-1", &json!({"n": 4}), Expect::Version(v3))
        .await;
    assert!(
        matches!(&stale, Err(e) if is_conflict(e, Some(v4))),
        "{stale:?}"
    );
    s.close().await?;
    let s = open(&f).await?;
    assert_eq!(version_of(&s, "games", "g-1").await?, Some(v4));
    s.store("games", "g-1", &json!({"n": 5})).await?;
    assert!(version_of(&s, "games", "g-1").await?.ok_or("missing")? > v4);
    s.close().await?;
    Ok(())
}

pub async fn store_if_checks_the_condition_inside_the_write(f: Fixture) -> Result {
    let s = open(&f).await?;
    let v1 = s
        .store_if("games", "g-2", &json!({"a": 1}), Expect::Absent)
        .await?;
    assert_eq!(version_of(&s, "games", "g-2").await?, Some(v1));
    let again = s
        .store_if("games", "g-2", &json!({"a": 2}), Expect::Absent)
        .await;
    assert!(
        matches!(&again, Err(e) if is_conflict(e, Some(v1))),
        "{again:?}"
    );
    let v2 = s
        .store_if("games", "g-2", &json!({"a": 2}), Expect::Version(v1))
        .await?;
    assert!(v2 > v1);
    let stale = s
        .store_if("games", "g-2", &json!({"a": 3}), Expect::Version(v1))
        .await
        .err()
        .ok_or("a stale version must conflict")?;
    match &stale {
        StorageError::Conflict {
            collection,
            key,
            expected,
            actual,
        } => {
            assert_eq!((collection.as_str(), key.as_str()), ("games", "g-2"));
            assert_eq!(*expected, Expect::Version(v1));
            assert_eq!(*actual, Some(v2));
        }
        other => return Err(format!("expected a conflict, got {other:?}").into()),
    }
    assert_eq!(
        stale.to_string(),
        format!("write conflict on games/g-2: expected version {v1}, found version {v2}")
    );
    let missing = s
        .store_if("games", "nope", &json!({}), Expect::Exists)
        .await;
    assert!(
        matches!(&missing, Err(e) if is_conflict(e, None)),
        "{missing:?}"
    );
    let v3 = s
        .store_if("games", "g-2", &json!({"a": 4}), Expect::Exists)
        .await?;
    let v4 = s
        .store_if("games", "g-2", &json!({"a": 5}), Expect::Any)
        .await?;
    assert!(v4 > v3 && v3 > v2);
    assert_eq!(
        s.retrieve::<Value>("games", "g-2").await?,
        Some(json!({"a": 5}))
    );
    s.close().await?;
    Ok(())
}

pub async fn delete_if_checks_the_condition(f: Fixture) -> Result {
    let s = open(&f).await?;
    let v1 = s.store_if("lobby", "seat-1", &1, Expect::Absent).await?;
    let v2 = s.store_if("lobby", "seat-1", &2, Expect::Any).await?;
    let stale = s.delete_if("lobby", "seat-1", Expect::Version(v1)).await;
    assert!(
        matches!(&stale, Err(e) if is_conflict(e, Some(v2))),
        "{stale:?}"
    );
    assert_eq!(s.retrieve::<i32>("lobby", "seat-1").await?, Some(2));
    assert!(s.delete_if("lobby", "seat-1", Expect::Version(v2)).await?);
    assert_eq!(s.retrieve::<i32>("lobby", "seat-1").await?, None);
    assert!(!s.delete_if("lobby", "seat-1", Expect::Any).await?);
    assert!(s.delete_if("lobby", "seat-1", Expect::Absent).await.is_ok());
    let gone = s.delete_if("lobby", "seat-1", Expect::Exists).await;
    assert!(matches!(&gone, Err(e) if is_conflict(e, None)), "{gone:?}");
    s.close().await?;
    Ok(())
}

/// A stale `store_if` and a batch of 100 writes across 3 collections with one failing
/// expectation: no key changes, no blob is added, reference counts stay exact.
pub async fn conflicts_write_nothing_anywhere(f: Fixture) -> Result {
    let s = open(&f).await?;
    let mut before = BTreeMap::new();
    for c in ["bets", "players", "games"] {
        for i in 0..10 {
            let key = format!("k-{i}");
            let value = json!({"c": c, "i": i});
            s.store(c, &key, &value).await?;
            let v = version_of(&s, c, &key).await?.ok_or("missing")?;
            before.insert((c.to_owned(), key), (value, v));
        }
    }
    let stats = s.statistics().await?.database_stats;
    let v0 = before[&("games".to_owned(), "k-0".to_owned())].1;
    s.store("games", "k-0", &json!({"c": "games", "i": 0}))
        .await?;
    let v0_now = version_of(&s, "games", "k-0").await?.ok_or("missing")?;
    before.insert(
        ("games".to_owned(), "k-0".to_owned()),
        (json!({"c": "games", "i": 0}), v0_now),
    );
    let stale = s
        .store_if(
            "games",
            "k-0",
            &json!({"new": "content"}),
            Expect::Version(v0),
        )
        .await;
    assert!(matches!(&stale, Err(e) if is_conflict(e, Some(v0_now))));

    let mut batch = WriteBatch::new();
    for i in 0..100 {
        let c = ["bets", "players", "games"][i % 3];
        batch.store(
            c,
            &format!("k-{}", i % 40),
            &json!({"new": i, "unique": format!("{c}{i}")}),
        )?;
    }
    batch.delete("players", "k-3");
    batch.expect("bets", "k-1", Expect::Exists);
    batch.expect("games", "k-0", Expect::Version(v0));
    let failed = s.apply(batch).await;
    assert!(
        matches!(&failed, Err(e) if is_conflict(e, Some(v0_now))),
        "{failed:?}"
    );

    for ((c, key), (value, version)) in &before {
        let got = s.retrieve_versioned::<Value>(c, key).await?;
        assert_eq!(got, Some((value.clone(), *version)), "{c}/{key} changed");
    }
    for c in ["bets", "players", "games"] {
        assert!(
            s.retrieve::<Value>(c, "k-39").await?.is_none(),
            "{c}/k-39 was created"
        );
    }
    let after = s.statistics().await?.database_stats;
    assert_eq!(after.blob_count, stats.blob_count, "no blob added");
    assert_eq!(after.record_count, stats.record_count);
    assert!(
        s.check_consistency().await?.is_ok(),
        "reference counts exact"
    );
    s.close().await?;
    Ok(())
}

/// The lost-update race: N tasks × M increments of one counter end at exactly N×M.
pub async fn update_increments_are_never_lost(f: Fixture) -> Result {
    const TASKS: u64 = 8;
    const EACH: u64 = 25;
    let s = open(&f).await?;
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(TASKS as usize));
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let (s, barrier) = (s.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            for _ in 0..EACH {
                s.update("counters", "bets", |n: Option<u64>| {
                    Some(n.unwrap_or(0) + 1)
                })
                .await?;
            }
            Ok::<_, StorageError>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    assert_eq!(
        s.retrieve::<u64>("counters", "bets").await?,
        Some(TASKS * EACH)
    );
    s.close().await?;
    Ok(())
}

pub async fn update_creates_and_deletes(f: Fixture) -> Result {
    let s = open(&f).await?;
    let created = s
        .update("games", "g-9", |old: Option<Value>| {
            assert!(old.is_none());
            Some(json!({"bets": []}))
        })
        .await?;
    assert_eq!(created, Some(json!({"bets": []})));
    let grown = s
        .update("games", "g-9", |old: Option<Value>| {
            let mut g = old?;
            g["bets"].as_array_mut()?.push(json!(10));
            Some(g)
        })
        .await?;
    assert_eq!(grown, Some(json!({"bets": [10]})));
    assert_eq!(s.retrieve::<Value>("games", "g-9").await?, grown);
    let removed = s.update("games", "g-9", |_: Option<Value>| None).await?;
    assert_eq!(removed, None);
    assert_eq!(s.retrieve::<Value>("games", "g-9").await?, None);
    // Absent and staying absent writes nothing.
    let stats = s.statistics().await?;
    assert_eq!(
        s.update("games", "g-9", |_: Option<Value>| None).await?,
        None
    );
    assert_eq!(
        s.statistics().await?.database_stats.record_count,
        stats.database_stats.record_count
    );
    s.close().await?;
    Ok(())
}

/// A writer that always gets in between: `update` gives up with a conflict after exactly the
/// configured attempts, calling its function once per attempt, and writes nothing of its own.
pub async fn update_gives_up_after_the_configured_attempts(f: Fixture) -> Result {
    let mut config = f.config.clone();
    config.write.update_max_attempts = 3;
    let s = f.open(config).await?;
    s.store("games", "hot", &0i64).await?;
    let handle = tokio::runtime::Handle::current();
    let other = s.clone();
    let mut calls = 0i64;
    let result = s
        .update("games", "hot", |n: Option<i64>| {
            calls += 1;
            // Between this attempt's read and its conditional write, another writer commits.
            let interfered = tokio::task::block_in_place(|| {
                handle.block_on(other.store("games", "hot", &(1000 + calls)))
            });
            assert!(interfered.is_ok(), "{interfered:?}");
            Some(n.unwrap_or(0) - 1)
        })
        .await;
    assert!(
        matches!(&result, Err(StorageError::Conflict { .. })),
        "{result:?}"
    );
    assert_eq!(calls, 3, "one call per attempt");
    assert_eq!(s.retrieve::<i64>("games", "hot").await?, Some(1003));
    s.close().await?;
    Ok(())
}

pub async fn batch_across_collections_applies_together(f: Fixture) -> Result {
    let s = open(&f).await?;
    let v_alice = s
        .store_if("players", "alice", &json!({"balance": 100}), Expect::Absent)
        .await?;
    s.store("lobby", "seat-3", &json!({"player": "alice"}))
        .await?;
    s.store("games", "g-1", &json!({"bets": []})).await?;
    let mut batch = WriteBatch::new();
    batch.store("bets", "b-17", &json!({"amount": 10}))?;
    batch.store("players", "alice", &json!({"balance": 90}))?;
    batch.delete("lobby", "seat-3");
    batch.expect("players", "alice", Expect::Version(v_alice));
    batch.expect("games", "g-1", Expect::Exists);
    let versions = s.apply(batch).await?;
    let names: Vec<(&str, &str)> = versions
        .iter()
        .map(|(c, k, _)| (c.as_str(), k.as_str()))
        .collect();
    assert_eq!(names, [("bets", "b-17"), ("players", "alice")]);
    for (c, k, v) in &versions {
        assert_eq!(version_of(&s, c, k).await?, Some(*v), "{c}/{k}");
    }
    assert_eq!(s.retrieve::<Value>("lobby", "seat-3").await?, None);
    assert_eq!(
        s.retrieve::<Value>("players", "alice").await?,
        Some(json!({"balance": 90}))
    );
    // The same expectation again is stale now.
    let mut again = WriteBatch::new();
    again.store("players", "alice", &json!({"balance": 0}))?;
    again.expect("players", "alice", Expect::Version(v_alice));
    assert!(matches!(
        s.apply(again).await,
        Err(StorageError::Conflict { .. })
    ));
    // A bad key given to delete is reported by apply, which then writes nothing.
    let mut bad = WriteBatch::new();
    bad.store("bets", "b-18", &1)?;
    bad.delete("lobby", "");
    assert!(matches!(
        s.apply(bad).await,
        Err(StorageError::InvalidKey { .. })
    ));
    assert_eq!(s.retrieve::<Value>("bets", "b-18").await?, None);
    assert!(s.apply(WriteBatch::new()).await?.is_empty());
    assert!(s.check_consistency().await?.is_ok());
    s.close().await?;
    Ok(())
}

/// Tasks move random amounts between accounts with `apply` and version expectations, retrying
/// on conflict: the total is conserved.
pub async fn transfers_conserve_the_total(f: Fixture) -> Result {
    const ACCOUNTS: u64 = 6;
    const TASKS: u64 = 4;
    const TRANSFERS: u64 = 30;
    let s = open(&f).await?;
    for a in 0..ACCOUNTS {
        s.store("accounts", &format!("a-{a}"), &1000i64).await?;
    }
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut conflicts = 0u64;
            for i in 0..TRANSFERS {
                let from = format!("a-{}", (t * 7 + i * 3) % ACCOUNTS);
                let to = format!("a-{}", (t * 5 + i * 11 + 1) % ACCOUNTS);
                if from == to {
                    continue;
                }
                let amount = i64::try_from((t * 31 + i * 17) % 50)?;
                loop {
                    let (a, va) = s
                        .retrieve_versioned::<i64>("accounts", &from)
                        .await?
                        .ok_or("from")?;
                    let (b, vb) = s
                        .retrieve_versioned::<i64>("accounts", &to)
                        .await?
                        .ok_or("to")?;
                    let mut batch = WriteBatch::new();
                    batch.store("accounts", &from, &(a - amount))?;
                    batch.store("accounts", &to, &(b + amount))?;
                    batch.expect("accounts", &from, Expect::Version(va));
                    batch.expect("accounts", &to, Expect::Version(vb));
                    match s.apply(batch).await {
                        Ok(_) => break,
                        Err(StorageError::Conflict { .. }) => conflicts += 1,
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(conflicts)
        }));
    }
    for t in tasks {
        t.await??;
    }
    let keys: Vec<String> = (0..ACCOUNTS).map(|a| format!("a-{a}")).collect();
    let balances = s.retrieve_many::<i64, _>("accounts", &keys).await?;
    let total: i64 = balances.iter().map(|b| b.unwrap_or(0)).sum();
    assert_eq!(total, 1000 * i64::try_from(ACCOUNTS)?);
    s.close().await?;
    Ok(())
}

pub async fn retrieve_many_keeps_order_and_mixes_cache_and_database(f: Fixture) -> Result {
    let s = open(&f).await?;
    for i in 0..20 {
        s.store("games", &format!("g-{i:02}"), &json!({"i": i}))
            .await?;
    }
    // Some in the cache (just read), some not (never read since open).
    s.close().await?;
    let s = open(&f).await?;
    for i in [3, 7] {
        s.retrieve::<Value>("games", &format!("g-{i:02}")).await?;
    }
    let keys = ["g-07", "nope", "g-03", "g-19", "g-07", "g-00"];
    let got = s.retrieve_many::<Value, _>("games", &keys).await?;
    let want: Vec<Option<Value>> = vec![
        Some(json!({"i": 7})),
        None,
        Some(json!({"i": 3})),
        Some(json!({"i": 19})),
        Some(json!({"i": 7})),
        Some(json!({"i": 0})),
    ];
    assert_eq!(got, want);
    let owned: Vec<String> = vec!["g-01".into()];
    assert_eq!(
        s.retrieve_many::<Value, _>("games", &owned).await?,
        [Some(json!({"i": 1}))]
    );
    assert!(
        s.retrieve_many::<Value, &str>("games", &[])
            .await?
            .is_empty()
    );
    assert!(matches!(
        s.retrieve_many::<Value, _>("games", &["ok", ""]).await,
        Err(StorageError::InvalidKey { .. })
    ));
    // After an overwrite and a delete, the next batch read sees them.
    s.store("games", "g-00", &json!({"i": "new"})).await?;
    s.delete("games", "g-03").await?;
    let got = s
        .retrieve_many::<Value, _>("games", &["g-00", "g-03"])
        .await?;
    assert_eq!(got, [Some(json!({"i": "new"})), None]);
    s.close().await?;
    Ok(())
}

pub async fn scan_pages_like_list_with_values(f: Fixture) -> Result {
    let s = open(&f).await?;
    let items: Vec<(String, Value)> = (0..250)
        .map(|i| (format!("r-{i:04}"), json!({"round": i})))
        .collect();
    s.store_batch("rounds", &items).await?;
    s.store("rounds", "other", &json!({})).await?;
    s.store("elsewhere", "r-0001", &json!({"no": true})).await?;
    let mut seen = Vec::new();
    let mut options = ListOptions::default().prefix("r-").limit(100);
    let mut pages = 0;
    loop {
        let page = s.scan::<Value>("rounds", options.clone()).await?;
        let listed = s.list("rounds", options.clone()).await?;
        let keys: Vec<&String> = page.items.iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            listed.keys.iter().collect::<Vec<_>>(),
            "same paging as list"
        );
        assert_eq!(page.next_after, listed.next_after);
        seen.extend(page.items);
        pages += 1;
        match page.next_after {
            Some(after) => options = options.after(&after),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, items);
    let empty = s.scan::<Value>("nothing", ListOptions::default()).await?;
    assert!(empty.items.is_empty() && empty.next_after.is_none());
    assert!(matches!(
        s.scan::<u8>("rounds", ListOptions::default().limit(1))
            .await,
        Err(StorageError::Deserialize { .. })
    ));
    s.close().await?;
    Ok(())
}

pub async fn delete_prefix_deletes_exactly_the_prefix(f: Fixture) -> Result {
    let s = open(&f).await?;
    for i in 0..30 {
        s.store("seats", &format!("t-1/{i:02}"), &json!({"shared": true}))
            .await?;
        s.store(
            "seats",
            &format!("t-2/{i:02}"),
            &json!({"table": 2, "i": i}),
        )
        .await?;
    }
    s.store("seats", "t-1", &json!({"not": "under the prefix"}))
        .await?;
    s.store("other", "t-1/00", &json!({"other": true})).await?;
    // Cached before the delete: the cache must not serve them after it.
    assert!(s.retrieve::<Value>("seats", "t-1/05").await?.is_some());
    let deleted = s.delete_prefix("seats", "t-1/").await?;
    assert_eq!(deleted, 30);
    assert_eq!(s.retrieve::<Value>("seats", "t-1/05").await?, None);
    assert!(!s.exists("seats", "t-1/05").await?);
    assert!(s.retrieve::<Value>("seats", "t-1").await?.is_some());
    assert!(s.retrieve::<Value>("other", "t-1/00").await?.is_some());
    assert_eq!(
        s.list("seats", ListOptions::default()).await?.keys.len(),
        31
    );
    assert_eq!(s.delete_prefix("seats", "t-1/").await?, 0);
    assert!(
        s.check_consistency().await?.is_ok(),
        "blobs released exactly"
    );
    assert_eq!(
        s.delete_prefix("seats", "").await?,
        31,
        "an empty prefix is every key"
    );
    assert!(
        s.list("seats", ListOptions::default())
            .await?
            .keys
            .is_empty()
    );
    assert!(s.check_consistency().await?.is_ok());
    s.close().await?;
    Ok(())
}

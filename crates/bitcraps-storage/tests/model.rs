//! Model-based property test: random store/overwrite/delete/batch sequences against a
//! `BTreeMap` oracle. After each sequence every record matches the model, listing matches
//! the model's key order, and no blob is orphaned and no record dangles. Runs on SQLite, and
//! on PostgreSQL when `BITCRAPS_TEST_POSTGRES_URL` is set (fewer cases: each is a new schema).

mod common;

use std::collections::BTreeMap;

use bitcraps_storage::{ListOptions, PersistentStorageManager, StorageConfig};
use proptest::prelude::*;
use serde_json::{Value, json};

const COLLECTIONS: [&str; 2] = ["games", "bets"];

#[derive(Debug, Clone)]
enum Op {
    Store(usize, u8, u8),
    Delete(usize, u8),
    Batch(usize, Vec<(u8, u8)>),
    Reopen,
}

/// A small value space so that identical content (dedup) and overwrites are frequent.
fn value(v: u8) -> Value {
    match v % 4 {
        0 => json!({"lobby": "default", "min_bet": 10}),
        1 => json!({"bet": v, "kind": "pass", "notes": "x".repeat(usize::from(v) * 20)}),
        2 => json!(v),
        _ => json!([v, "hard eight", {"point": 8}]),
    }
}

fn key(k: u8) -> String {
    format!("k-{:02}", k % 12)
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..2usize, any::<u8>(), 0..16u8).prop_map(|(c, k, v)| Op::Store(c, k, v)),
        3 => (0..2usize, any::<u8>()).prop_map(|(c, k)| Op::Delete(c, k)),
        2 => (0..2usize, prop::collection::vec((any::<u8>(), 0..16u8), 0..6))
            .prop_map(|(c, items)| Op::Batch(c, items)),
        1 => Just(Op::Reopen),
    ]
}

type Model = BTreeMap<(usize, String), Value>;

async fn check(s: &PersistentStorageManager, model: &Model) -> Result<(), TestCaseError> {
    for (ci, collection) in COLLECTIONS.iter().enumerate() {
        let expected: Vec<&String> = model
            .keys()
            .filter(|(c, _)| *c == ci)
            .map(|(_, k)| k)
            .collect();
        let page = s
            .list(collection, ListOptions::default().limit(1000))
            .await
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let listed: Vec<&String> = page.keys.iter().collect();
        prop_assert_eq!(listed, expected);
        for k in 0..12u8 {
            let key = key(k);
            let got: Option<Value> = s
                .retrieve(collection, &key)
                .await
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(
                got.as_ref(),
                model.get(&(ci, key.clone())),
                "{}/{}",
                collection,
                key
            );
        }
    }
    let report = s
        .check_consistency()
        .await
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert!(report.is_ok(), "{:?}", report);
    let stats = s
        .statistics()
        .await
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(stats.database_stats.record_count, model.len() as u64);
    let distinct: std::collections::BTreeSet<String> =
        model.values().map(|v| v.to_string()).collect();
    prop_assert_eq!(stats.database_stats.blob_count, distinct.len() as u64);
    Ok(())
}

async fn run(ops: Vec<Op>, config: StorageConfig) -> Result<(), TestCaseError> {
    let fail = |e: bitcraps_storage::StorageError| TestCaseError::fail(e.to_string());
    let mut s = PersistentStorageManager::open(config.clone())
        .await
        .map_err(fail)?;
    let mut model = Model::new();
    for op in ops {
        match op {
            Op::Store(c, k, v) => {
                s.store(COLLECTIONS[c], &key(k), &value(v))
                    .await
                    .map_err(fail)?;
                model.insert((c, key(k)), value(v));
            }
            Op::Delete(c, k) => {
                let existed = s.delete(COLLECTIONS[c], &key(k)).await.map_err(fail)?;
                prop_assert_eq!(existed, model.remove(&(c, key(k))).is_some());
            }
            Op::Batch(c, items) => {
                let items: Vec<(String, Value)> =
                    items.iter().map(|(k, v)| (key(*k), value(*v))).collect();
                s.store_batch(COLLECTIONS[c], &items).await.map_err(fail)?;
                for (k, v) in items {
                    model.insert((c, k), v);
                }
            }
            Op::Reopen => {
                s.close().await.map_err(fail)?;
                s = PersistentStorageManager::open(config.clone())
                    .await
                    .map_err(fail)?;
            }
        }
    }
    check(&s, &model).await?;
    s.close().await.map_err(fail)?;
    Ok(())
}

fn run_on(ops: Vec<Op>, fixture: &common::Fixture) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    rt.block_on(run(ops, fixture.config.clone()))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn storage_matches_btreemap_model(ops in prop::collection::vec(op(), 1..40)) {
        run_on(ops, &common::sqlite_fixture_fast())?;
    }
}

#[cfg(feature = "postgres")]
proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn postgres_matches_btreemap_model(ops in prop::collection::vec(op(), 1..40)) {
        // Without the variable every case passes after printing the skip message.
        // Durability::Normal (synchronous_commit = off) does not change any logic under test.
        if let Some(mut fixture) = common::pg_fixture() {
            fixture.config.write.durability = bitcraps_storage::Durability::Normal;
            run_on(ops, &fixture)?;
        }
    }
}

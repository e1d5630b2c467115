//! Model-based property test: random sequences of every write call — store, delete, batch,
//! `store_if`, `delete_if`, `update`, `apply` across collections, `delete_prefix` — against a
//! `BTreeMap` oracle of (value, version). After each write the versions it produced are
//! checked (each key's versions only grow, and a key deleted and written again never gets an
//! old one back), a condition fails exactly when the model says it must, with the model's
//! version as `actual`; at the end every record, `retrieve_many`, `scan` and listing match the
//! model, no blob is orphaned and no record dangles. Runs on the in-memory backend and SQLite,
//! and on PostgreSQL when `BITCRAPS_TEST_POSTGRES_URL` is set (fewer cases: each is a new
//! schema).

mod common;

use std::collections::BTreeMap;

use bitcraps_storage::{
    Expect, ListOptions, PersistentStorageManager, StorageError, Version, WriteBatch,
};
use proptest::prelude::*;
use serde_json::{Value, json};

const COLLECTIONS: [&str; 2] = ["games", "bets"];

/// Which condition a conditional op uses, relative to the model's state of the key.
#[derive(Debug, Clone, Copy)]
enum Cond {
    Any,
    Absent,
    Exists,
    /// The model's current version (or an old one when the key is absent).
    Current,
    /// A version the key had before (or a made-up one): never the current one.
    Stale,
}

#[derive(Debug, Clone)]
enum Op {
    Store(usize, u8, u8),
    Delete(usize, u8),
    Batch(usize, Vec<(u8, u8)>),
    StoreIf(usize, u8, u8, Cond),
    DeleteIf(usize, u8, Cond),
    /// Add to a counter document (`None` when the delta is 0: delete it).
    Update(usize, u8, u8),
    /// Stores `(collection, key, value)`, deletes, and conditions.
    Apply(
        Vec<(usize, u8, u8)>,
        Vec<(usize, u8)>,
        Vec<(usize, u8, Cond)>,
    ),
    DeletePrefix(usize, u8),
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

fn cond() -> impl Strategy<Value = Cond> {
    prop_oneof![
        1 => Just(Cond::Any),
        1 => Just(Cond::Absent),
        1 => Just(Cond::Exists),
        3 => Just(Cond::Current),
        2 => Just(Cond::Stale),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let c = 0..2usize;
    prop_oneof![
        5 => (c.clone(), any::<u8>(), 0..16u8).prop_map(|(c, k, v)| Op::Store(c, k, v)),
        2 => (c.clone(), any::<u8>()).prop_map(|(c, k)| Op::Delete(c, k)),
        2 => (c.clone(), prop::collection::vec((any::<u8>(), 0..16u8), 0..6))
            .prop_map(|(c, items)| Op::Batch(c, items)),
        3 => (c.clone(), any::<u8>(), 0..16u8, cond()).prop_map(|(c, k, v, e)| Op::StoreIf(c, k, v, e)),
        2 => (c.clone(), any::<u8>(), cond()).prop_map(|(c, k, e)| Op::DeleteIf(c, k, e)),
        2 => (c.clone(), any::<u8>(), 0..4u8).prop_map(|(c, k, d)| Op::Update(c, k, d)),
        3 => (
            prop::collection::vec((c.clone(), any::<u8>(), 0..16u8), 0..5),
            prop::collection::vec((c.clone(), any::<u8>()), 0..3),
            prop::collection::vec((c.clone(), any::<u8>(), cond()), 0..3),
        )
            .prop_map(|(s, d, e)| Op::Apply(s, d, e)),
        1 => (c, 0..3u8).prop_map(|(c, p)| Op::DeletePrefix(c, p)),
        1 => Just(Op::Reopen),
    ]
}

/// The oracle: each key's value and version, and every version each key ever had.
#[derive(Default)]
struct Model {
    records: BTreeMap<(usize, String), (Value, Version)>,
    history: BTreeMap<(usize, String), Vec<Version>>,
}

impl Model {
    fn current(&self, c: usize, k: &str) -> Option<Version> {
        self.records.get(&(c, k.to_owned())).map(|(_, v)| *v)
    }

    /// The expectation a [`Cond`] stands for, and whether the model says it holds.
    fn expect(&self, c: usize, k: &str, cond: Cond) -> (Expect, bool) {
        let now = self.current(c, k);
        let old = self
            .history
            .get(&(c, k.to_owned()))
            .and_then(|h| h.iter().rev().find(|v| Some(**v) != now).copied());
        match cond {
            Cond::Any => (Expect::Any, true),
            Cond::Absent => (Expect::Absent, now.is_none()),
            Cond::Exists => (Expect::Exists, now.is_some()),
            Cond::Current => match now {
                Some(v) => (Expect::Version(v), true),
                None => (Expect::Version(old.unwrap_or(Version::new(1))), false),
            },
            Cond::Stale => (
                Expect::Version(old.unwrap_or(Version::new(u64::MAX / 2))),
                false,
            ),
        }
    }

    /// Records a write of `value` at `version`: it must be newer than every version the key
    /// ever had.
    fn written(
        &mut self,
        c: usize,
        k: &str,
        value: Value,
        version: Version,
    ) -> Result<(), TestCaseError> {
        let history = self.history.entry((c, k.to_owned())).or_default();
        if let Some(last) = history.last() {
            prop_assert!(
                version > *last,
                "{}/{}: version {} after {}",
                c,
                k,
                version,
                last
            );
        }
        history.push(version);
        self.records.insert((c, k.to_owned()), (value, version));
        Ok(())
    }

    fn deleted(&mut self, c: usize, k: &str) -> bool {
        self.records.remove(&(c, k.to_owned())).is_some()
    }
}

fn fail(e: StorageError) -> TestCaseError {
    TestCaseError::fail(e.to_string())
}

async fn version_of(
    s: &PersistentStorageManager,
    c: usize,
    k: &str,
) -> Result<Version, TestCaseError> {
    s.retrieve_versioned::<Value>(COLLECTIONS[c], k)
        .await
        .map_err(fail)?
        .map(|(_, v)| v)
        .ok_or_else(|| TestCaseError::fail(format!("{c}/{k} missing after a write")))
}

/// A conditional write's result against the model: success exactly when the model says the
/// condition holds, else a conflict whose `actual` is the model's version.
fn conflict_as_modelled<T: std::fmt::Debug>(
    result: &Result<T, StorageError>,
    holds: bool,
    actual: Option<Version>,
) -> Result<(), TestCaseError> {
    match result {
        Ok(_) => prop_assert!(
            holds,
            "succeeded although the condition fails: {:?}",
            result
        ),
        Err(StorageError::Conflict { actual: got, .. }) => {
            prop_assert!(!holds, "conflict although the condition holds");
            prop_assert_eq!(*got, actual);
        }
        Err(e) => return Err(TestCaseError::fail(e.to_string())),
    }
    Ok(())
}

async fn check(s: &PersistentStorageManager, model: &Model) -> Result<(), TestCaseError> {
    let keys: Vec<String> = (0..12u8).map(key).collect();
    for (ci, collection) in COLLECTIONS.iter().enumerate() {
        let expected: Vec<(String, Value)> = model
            .records
            .iter()
            .filter(|((c, _), _)| *c == ci)
            .map(|((_, k), (v, _))| (k.clone(), v.clone()))
            .collect();
        let page = s
            .list(collection, ListOptions::default().limit(1000))
            .await
            .map_err(fail)?;
        let listed: Vec<&String> = page.keys.iter().collect();
        prop_assert_eq!(listed, expected.iter().map(|(k, _)| k).collect::<Vec<_>>());
        let scanned = s
            .scan::<Value>(collection, ListOptions::default().limit(5))
            .await
            .map_err(fail)?;
        let first: Vec<(String, Value)> = expected.iter().take(5).cloned().collect();
        prop_assert_eq!(&scanned.items, &first);
        let many = s
            .retrieve_many::<Value, _>(collection, &keys)
            .await
            .map_err(fail)?;
        for (key, got) in keys.iter().zip(many) {
            let want = model.records.get(&(ci, key.clone()));
            prop_assert_eq!(got.as_ref(), want.map(|(v, _)| v), "{}/{}", collection, key);
            let versioned = s
                .retrieve_versioned::<Value>(collection, key)
                .await
                .map_err(fail)?;
            prop_assert_eq!(versioned, want.cloned(), "{}/{}", collection, key);
            let meta = s.metadata(collection, key).await.map_err(fail)?;
            prop_assert_eq!(meta.map(|m| m.version), want.map(|(_, v)| *v));
        }
    }
    let report = s.check_consistency().await.map_err(fail)?;
    prop_assert!(report.is_ok(), "{:?}", report);
    let stats = s.statistics().await.map_err(fail)?;
    prop_assert_eq!(
        stats.database_stats.record_count,
        model.records.len() as u64
    );
    // Encrypted, content addresses are keyed per collection: equal values dedup within a
    // collection only.
    let per_collection = s.config().key.is_set();
    let distinct: std::collections::BTreeSet<(Option<usize>, String)> = model
        .records
        .iter()
        .map(|((c, _), (v, _))| (per_collection.then_some(*c), v.to_string()))
        .collect();
    prop_assert_eq!(stats.database_stats.blob_count, distinct.len() as u64);
    Ok(())
}

async fn step(
    s: &PersistentStorageManager,
    model: &mut Model,
    op: Op,
) -> Result<(), TestCaseError> {
    match op {
        Op::Store(c, k, v) => {
            let k = key(k);
            s.store(COLLECTIONS[c], &k, &value(v)).await.map_err(fail)?;
            let version = version_of(s, c, &k).await?;
            model.written(c, &k, value(v), version)?;
        }
        Op::Delete(c, k) => {
            let k = key(k);
            let existed = s.delete(COLLECTIONS[c], &k).await.map_err(fail)?;
            prop_assert_eq!(existed, model.deleted(c, &k));
        }
        Op::Batch(c, items) => {
            let items: Vec<(String, Value)> =
                items.iter().map(|(k, v)| (key(*k), value(*v))).collect();
            s.store_batch(COLLECTIONS[c], &items).await.map_err(fail)?;
            let last: BTreeMap<String, Value> = items.into_iter().collect();
            for (k, v) in last {
                let version = version_of(s, c, &k).await?;
                model.written(c, &k, v, version)?;
            }
        }
        Op::StoreIf(c, k, v, cond) => {
            let k = key(k);
            let (expect, holds) = model.expect(c, &k, cond);
            let result = s.store_if(COLLECTIONS[c], &k, &value(v), expect).await;
            conflict_as_modelled(&result, holds, model.current(c, &k))?;
            if let Ok(version) = result {
                model.written(c, &k, value(v), version)?;
            }
        }
        Op::DeleteIf(c, k, cond) => {
            let k = key(k);
            let (expect, holds) = model.expect(c, &k, cond);
            let result = s.delete_if(COLLECTIONS[c], &k, expect).await;
            conflict_as_modelled(&result, holds, model.current(c, &k))?;
            if let Ok(existed) = result {
                prop_assert_eq!(existed, model.deleted(c, &k));
            }
        }
        Op::Update(c, k, delta) => {
            let k = key(k);
            let result = s
                .update(COLLECTIONS[c], &k, |old: Option<Value>| {
                    if delta == 0 {
                        return None;
                    }
                    let n = old.and_then(|v| v["n"].as_u64()).unwrap_or(0);
                    Some(json!({"n": n + u64::from(delta)}))
                })
                .await
                .map_err(fail)?;
            let before = model
                .records
                .get(&(c, k.clone()))
                .map(|(v, _)| v["n"].as_u64().unwrap_or(0));
            match result {
                Some(new) => {
                    prop_assert_eq!(&new, &json!({"n": before.unwrap_or(0) + u64::from(delta)}));
                    let version = version_of(s, c, &k).await?;
                    model.written(c, &k, new, version)?;
                }
                None => {
                    prop_assert_eq!(delta, 0);
                    model.deleted(c, &k);
                }
            }
        }
        Op::Apply(stores, deletes, conds) => {
            let mut batch = WriteBatch::new();
            let mut holds = true;
            let mut first_failure = None;
            for (c, k, cond) in &conds {
                let k = key(*k);
                let (expect, ok) = model.expect(*c, &k, *cond);
                batch.expect(COLLECTIONS[*c], &k, expect);
                if !ok && first_failure.is_none() {
                    first_failure = Some(model.current(*c, &k));
                }
                holds &= ok;
            }
            for (c, k, v) in &stores {
                batch
                    .store(COLLECTIONS[*c], &key(*k), &value(*v))
                    .map_err(fail)?;
            }
            for (c, k) in &deletes {
                batch.delete(COLLECTIONS[*c], &key(*k));
            }
            let result = s.apply(batch).await;
            conflict_as_modelled(&result, holds, first_failure.flatten())?;
            if let Ok(versions) = result {
                prop_assert_eq!(versions.len(), stores.len());
                for ((c, k, v), (rc, rk, version)) in stores.iter().zip(versions) {
                    prop_assert_eq!((COLLECTIONS[*c], key(*k)), (rc.as_str(), rk));
                    model.written(*c, &key(*k), value(*v), version)?;
                }
                for (c, k) in &deletes {
                    model.deleted(*c, &key(*k));
                }
            }
        }
        Op::DeletePrefix(c, p) => {
            // "k-0" (k-00..k-09), "k-1" (k-10, k-11), or "k-" (every key).
            let prefix = ["k-0", "k-1", "k-"][usize::from(p)];
            let n = s
                .delete_prefix(COLLECTIONS[c], prefix)
                .await
                .map_err(fail)?;
            let doomed: Vec<String> = model
                .records
                .keys()
                .filter(|(ci, k)| *ci == c && k.starts_with(prefix))
                .map(|(_, k)| k.clone())
                .collect();
            prop_assert_eq!(n, doomed.len() as u64);
            for k in doomed {
                model.deleted(c, &k);
            }
        }
        // `run` reopens; nothing to do against the store here.
        Op::Reopen => {}
    }
    Ok(())
}

async fn run(ops: Vec<Op>, fixture: &common::Fixture) -> Result<(), TestCaseError> {
    let mut s = fixture.open(fixture.config.clone()).await.map_err(fail)?;
    let mut model = Model::default();
    for op in ops {
        if let Op::Reopen = op {
            s.close().await.map_err(fail)?;
            s = fixture.open(fixture.config.clone()).await.map_err(fail)?;
        } else {
            step(&s, &mut model, op).await?;
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
    rt.block_on(run(ops, fixture))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn storage_matches_btreemap_model(ops in prop::collection::vec(op(), 1..40)) {
        run_on(ops, &common::sqlite_fixture_fast())?;
    }

    #[test]
    fn memory_backend_matches_btreemap_model(ops in prop::collection::vec(op(), 1..40)) {
        run_on(ops, &common::memory_fixture())?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// The same model with encryption at rest: sealed blobs, keyed addresses, and reopens
    /// that must find their keys again.
    #[test]
    fn encrypted_storage_matches_btreemap_model(ops in prop::collection::vec(op(), 1..40)) {
        run_on(ops, &common::encrypted(common::sqlite_fixture_fast()))?;
    }

    #[test]
    fn encrypted_memory_backend_matches_btreemap_model(ops in prop::collection::vec(op(), 1..40)) {
        run_on(ops, &common::memory_encrypted_fixture())?;
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

    /// The model on PostgreSQL with encryption at rest.
    #[test]
    fn encrypted_postgres_matches_btreemap_model(ops in prop::collection::vec(op(), 1..40)) {
        if let Some(mut fixture) = common::pg_encrypted_fixture() {
            fixture.config.write.durability = bitcraps_storage::Durability::Normal;
            run_on(ops, &fixture)?;
        }
    }
}

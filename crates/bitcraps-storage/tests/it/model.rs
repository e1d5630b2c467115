//! Model-based property test: random sequences of every write call — store, delete, batch,
//! `store_if`, `delete_if`, `update`, `apply` across collections, `delete_prefix` — against a
//! `BTreeMap` oracle of (value, version). After each write the versions it produced are
//! checked (each key's versions only grow, and a key deleted and written again never gets an
//! old one back), a condition fails exactly when the model says it must, with the model's
//! version as `actual`; at the end every record, `retrieve_many`, `scan` and listing match the
//! model, no blob is orphaned and no record dangles. Records may expire: `store_with_ttl` and
//! batch stores with a TTL of whole minutes, and the store's clock moved by whole minutes
//! (`advance_clock`), with the expiry times in the oracle — an expired record is absent to
//! every read and write, the sweep removes exactly the records the model says expired and
//! were not written since. Runs on the in-memory backend and SQLite,
//! and on PostgreSQL when `BITCRAPS_TEST_POSTGRES_URL` is set (fewer cases: each is a new
//! schema).

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

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
    /// `store_with_ttl` with a TTL of 1–3 minutes.
    StoreTtl(usize, u8, u8, u8),
    /// A batch store with a TTL of 1–3 minutes, beside a plain one.
    BatchTtl(usize, u8, u8, u8),
    /// Moves the store's clock 1–3 minutes on.
    Advance(u8),
    /// `sweep_expired`.
    Sweep,
    Reopen,
}

const MINUTE: Duration = Duration::from_secs(60);

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
        1 => (c.clone(), 0..3u8).prop_map(|(c, p)| Op::DeletePrefix(c, p)),
        3 => (c.clone(), any::<u8>(), 0..16u8, 1..4u8)
            .prop_map(|(c, k, v, t)| Op::StoreTtl(c, k, v, t)),
        1 => (c, any::<u8>(), 0..16u8, 1..4u8).prop_map(|(c, k, v, t)| Op::BatchTtl(c, k, v, t)),
        2 => (1..4u8).prop_map(Op::Advance),
        1 => Just(Op::Sweep),
        1 => Just(Op::Reopen),
    ]
}

/// The oracle: each key's value and version, and every version each key ever had; each
/// record's expiry (in minutes of the store's clock offset), the offset now, and the records
/// that expired and are still in the database until a sweep or a write of their key.
#[derive(Default)]
struct Model {
    records: BTreeMap<(usize, String), (Value, Version)>,
    history: BTreeMap<(usize, String), Vec<Version>>,
    expires: BTreeMap<(usize, String), u64>,
    minutes: u64,
    unswept: BTreeSet<(usize, String)>,
}

impl Model {
    /// Moves the clock: records whose expiry is reached leave the model (they are absent to
    /// every call from then on) and wait for the sweep. The offset moves in whole minutes
    /// while a case takes far less real time, so "reached" is exact.
    fn advance(&mut self, minutes: u64) {
        self.minutes += minutes;
        let now = self.minutes;
        let gone: Vec<(usize, String)> = self
            .expires
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            self.expires.remove(&id);
            self.records.remove(&id);
            self.unswept.insert(id);
        }
    }

    /// A TTL for the record just written at `c/k` (`None`: it never expires).
    fn expiring(&mut self, c: usize, k: &str, ttl_minutes: Option<u64>) {
        let id = (c, k.to_owned());
        match ttl_minutes {
            Some(t) => self.expires.insert(id, self.minutes + t),
            None => self.expires.remove(&id),
        };
    }

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
        // A write replaces an expired record: nothing of it is left to sweep.
        self.unswept.remove(&(c, k.to_owned()));
        self.expires.remove(&(c, k.to_owned()));
        self.records.insert((c, k.to_owned()), (value, version));
        Ok(())
    }

    fn deleted(&mut self, c: usize, k: &str) -> bool {
        self.unswept.remove(&(c, k.to_owned()));
        self.expires.remove(&(c, k.to_owned()));
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
    // Expired records hold their content until swept: sweep, then count.
    let swept = s.sweep_expired().await.map_err(fail)?;
    prop_assert_eq!(swept, model.unswept.len() as u64);
    for (ci, collection) in COLLECTIONS.iter().enumerate() {
        for key in &keys {
            let meta = s.metadata(collection, key).await.map_err(fail)?;
            let want = model.expires.contains_key(&(ci, key.clone()));
            prop_assert_eq!(
                meta.and_then(|m| m.expires_at).is_some(),
                want,
                "{}/{} expires_at",
                collection,
                key
            );
        }
    }
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
                    // Absent (or expired) and staying absent writes nothing.
                    if before.is_some() {
                        model.deleted(c, &k);
                    }
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
            prop_assert_eq!(n, doomed.len() as u64, "expired records are not counted");
            for k in doomed {
                model.deleted(c, &k);
            }
            // Expired records under the prefix go too.
            model
                .unswept
                .retain(|(ci, k)| !(*ci == c && k.starts_with(prefix)));
        }
        Op::StoreTtl(c, k, v, t) => {
            let k = key(k);
            let ttl = MINUTE * u32::from(t);
            s.store_with_ttl(COLLECTIONS[c], &k, &value(v), ttl)
                .await
                .map_err(fail)?;
            let version = version_of(s, c, &k).await?;
            model.written(c, &k, value(v), version)?;
            model.expiring(c, &k, Some(u64::from(t)));
        }
        Op::BatchTtl(c, k, v, t) => {
            let (k, other) = (key(k), key(k.wrapping_add(1)));
            let mut batch = WriteBatch::new();
            batch
                .store_with_ttl(COLLECTIONS[c], &k, &value(v), MINUTE * u32::from(t))
                .map_err(fail)?;
            batch
                .store(COLLECTIONS[c], &other, &value(v.wrapping_add(1)))
                .map_err(fail)?;
            let versions = s.apply(batch).await.map_err(fail)?;
            prop_assert_eq!(versions.len(), 2);
            model.written(c, &k, value(v), versions[0].2)?;
            model.expiring(c, &k, Some(u64::from(t)));
            model.written(c, &other, value(v.wrapping_add(1)), versions[1].2)?;
        }
        Op::Advance(m) => {
            s.advance_clock(MINUTE * u32::from(m));
            model.advance(u64::from(m));
        }
        Op::Sweep => {
            let swept = s.sweep_expired().await.map_err(fail)?;
            prop_assert_eq!(swept, model.unswept.len() as u64);
            model.unswept.clear();
        }
        // `run` reopens; nothing to do against the store here.
        Op::Reopen => {}
    }
    Ok(())
}

async fn run(ops: Vec<Op>, fixture: &common::Fixture) -> Result<(), TestCaseError> {
    // The model decides when sweeps happen: no background sweep.
    let mut config = fixture.config.clone();
    config.maintenance.expiry_sweep_interval = Duration::ZERO;
    let mut s = fixture.open(config.clone()).await.map_err(fail)?;
    let mut model = Model::default();
    for op in ops {
        if let Op::Reopen = op {
            s.close().await.map_err(fail)?;
            s = fixture.open(config.clone()).await.map_err(fail)?;
            // A new handle's clock starts at the system clock: bring it to the model's.
            s.advance_clock(MINUTE * u32::try_from(model.minutes).unwrap_or(u32::MAX));
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

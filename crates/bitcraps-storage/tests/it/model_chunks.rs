//! Model-based property test of chunked documents (issue #16): random stores, overwrites,
//! batches and deletes of large game logs that share most of their content (versions of one
//! log grow by appends; logs of different games share their opening), against a `BTreeMap`
//! oracle of the exact JSON bytes. Every version is read back byte for byte right after it is
//! written and again from a reopened store; at the end the consistency check finds no
//! orphaned or dangling blob or chunk and every reference count exact, the deep check
//! verifies every chunk, and deleting everything leaves no chunk behind. Runs on SQLite and
//! the in-memory backend, encrypted too, and on PostgreSQL when `BITCRAPS_TEST_POSTGRES_URL`
//! is set (a schema per case).

use crate::common;

use std::collections::BTreeMap;

use bitcraps_storage::{PersistentStorageManager, StorageError, WriteBatch};
use proptest::prelude::*;
use serde_json::{Value, json};

const COLLECTIONS: [&str; 2] = ["logs", "archive"];
/// Documents above this are chunked in these tests (production: 64 KiB).
const THRESHOLD: usize = 16 * 1024;

#[derive(Debug, Clone)]
enum Op {
    /// Store game `g`'s log with `rolls` rolls under `(collection, key)`.
    Store(usize, u8, u8, u16),
    Delete(usize, u8),
    /// Store the key's current log with `n` more rolls (a small change: a delta, spliced).
    Append(usize, u8, u8),
    /// Store the key's current log with the roll at `at` and the last one changed: two
    /// edits far apart (a delta in the zstd patch form, when small enough).
    Edit(usize, u8, u16),
    /// Several stores in one atomic batch.
    Batch(usize, Vec<(u8, u8, u16)>),
    Reopen,
}

/// A game log: a shared opening (the table's rules), then `rolls` rolls. Versions of one game
/// differ by appended rolls; games differ in their rolls, not their opening. Few rolls make a
/// document under the threshold, so whole and chunked blobs take turns under one key.
fn log(game: u8, rolls: u16) -> Value {
    let rules: Vec<Value> = (0..300)
        .map(|i| json!({"rule": i, "text": format!("payout table line {i} for the pass line and odds")}))
        .collect();
    let rolls: Vec<Value> = (0..rolls)
        .map(|n| {
            let a = (u32::from(n) * 7 + u32::from(game)) % 6 + 1;
            let b = (u32::from(n) * 13 + u32::from(game) * 3) % 6 + 1;
            json!({"n": n, "dice": [a, b], "game": game, "note": "shooter keeps the dice"})
        })
        .collect();
    json!({"rules": rules, "game": game, "rolls": rolls})
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..2usize, 0..5u8, 0..4u8, 0..1500u16).prop_map(|(c, k, g, r)| Op::Store(c, k, g, r)),
        2 => (0..2usize, 0..5u8).prop_map(|(c, k)| Op::Delete(c, k)),
        4 => (0..2usize, 0..5u8, 1..6u8).prop_map(|(c, k, n)| Op::Append(c, k, n)),
        2 => (0..2usize, 0..5u8, 0..400u16).prop_map(|(c, k, at)| Op::Edit(c, k, at)),
        2 => (0..2usize, prop::collection::vec((0..5u8, 0..4u8, 0..1500u16), 1..4))
            .prop_map(|(c, items)| Op::Batch(c, items)),
        1 => Just(Op::Reopen),
    ]
}

/// Game 3's documents are small (stored whole): a key moves between whole and chunked.
fn document(game: u8, rolls: u16) -> Value {
    if game == 3 {
        json!({"game": game, "rolls": rolls})
    } else {
        log(game, rolls)
    }
}

/// `document(game, rolls)` with the roll at `at` (modulo their number) and the last roll
/// changed.
fn edited(game: u8, rolls: u16, at: u16) -> Value {
    let mut value = document(game, rolls);
    if let Some(list) = value.get_mut("rolls").and_then(Value::as_array_mut) {
        let last = list.len().saturating_sub(1);
        for i in [usize::from(at) % list.len().max(1), last] {
            if let Some(Value::Object(roll)) = list.get_mut(i) {
                roll.insert("note".into(), json!("edited"));
            }
        }
    }
    value
}

fn key(k: u8) -> String {
    format!("game-{k}")
}

fn fail(e: StorageError) -> TestCaseError {
    TestCaseError::fail(e.to_string())
}

type Model = BTreeMap<(usize, String), Vec<u8>>;
/// What each key holds as `(game, rolls)`, for appends.
type Sources = BTreeMap<(usize, String), (u8, u16)>;

async fn read_back(
    s: &PersistentStorageManager,
    c: usize,
    k: &str,
    want: Option<&Vec<u8>>,
) -> Result<(), TestCaseError> {
    let collection = COLLECTIONS[c];
    let got = s.retrieve_raw(collection, k).await.map_err(fail)?;
    prop_assert_eq!(
        got.as_deref(),
        want.map(Vec::as_slice),
        "{}/{}",
        collection,
        k
    );
    Ok(())
}

async fn step(
    s: &PersistentStorageManager,
    model: &mut Model,
    sources: &mut Sources,
    op: Op,
) -> Result<(), TestCaseError> {
    match op {
        Op::Append(c, k, n) => {
            let (g, r) = sources.get(&(c, key(k))).copied().unwrap_or((0, 400));
            let r = r.saturating_add(u16::from(n));
            let value = document(g, r);
            s.store(COLLECTIONS[c], &key(k), &value)
                .await
                .map_err(fail)?;
            let bytes =
                serde_json::to_vec(&value).map_err(|e| TestCaseError::fail(e.to_string()))?;
            model.insert((c, key(k)), bytes);
            sources.insert((c, key(k)), (g, r));
            read_back(s, c, &key(k), model.get(&(c, key(k)))).await?;
        }
        Op::Edit(c, k, at) => {
            let (g, r) = sources.get(&(c, key(k))).copied().unwrap_or((1, 400));
            let value = edited(g, r, at);
            s.store(COLLECTIONS[c], &key(k), &value)
                .await
                .map_err(fail)?;
            let bytes =
                serde_json::to_vec(&value).map_err(|e| TestCaseError::fail(e.to_string()))?;
            model.insert((c, key(k)), bytes);
            sources.insert((c, key(k)), (g, r));
            read_back(s, c, &key(k), model.get(&(c, key(k)))).await?;
        }
        Op::Store(c, k, g, r) => {
            sources.insert((c, key(k)), (g, r));
            let value = document(g, r);
            s.store(COLLECTIONS[c], &key(k), &value)
                .await
                .map_err(fail)?;
            let bytes =
                serde_json::to_vec(&value).map_err(|e| TestCaseError::fail(e.to_string()))?;
            model.insert((c, key(k)), bytes);
            read_back(s, c, &key(k), model.get(&(c, key(k)))).await?;
        }
        Op::Delete(c, k) => {
            s.delete(COLLECTIONS[c], &key(k)).await.map_err(fail)?;
            model.remove(&(c, key(k)));
            sources.remove(&(c, key(k)));
            read_back(s, c, &key(k), None).await?;
        }
        Op::Batch(c, items) => {
            let mut batch = WriteBatch::new();
            for (k, g, r) in &items {
                batch
                    .store(COLLECTIONS[c], &key(*k), &document(*g, *r))
                    .map_err(fail)?;
            }
            s.apply(batch).await.map_err(fail)?;
            for (k, g, r) in items {
                sources.insert((c, key(k)), (g, r));
                let bytes = serde_json::to_vec(&document(g, r))
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                model.insert((c, key(k)), bytes);
            }
            for (c2, k) in model.keys().filter(|(c2, _)| *c2 == c) {
                read_back(s, *c2, k, model.get(&(*c2, k.clone()))).await?;
            }
        }
        Op::Reopen => {}
    }
    Ok(())
}

async fn check_all(s: &PersistentStorageManager, model: &Model) -> Result<(), TestCaseError> {
    for c in 0..COLLECTIONS.len() {
        for k in (0..5u8).map(key) {
            read_back(s, c, &k, model.get(&(c, k.clone()))).await?;
        }
    }
    let report = s.check_consistency_deep().await.map_err(fail)?;
    prop_assert!(report.is_ok(), "{:?}", report);
    prop_assert_eq!(report.dangling_chunks, 0);
    prop_assert_eq!(report.orphaned_chunks, 0);
    prop_assert_eq!(report.chunk_refcount_mismatches, 0);
    Ok(())
}

async fn run(ops: Vec<Op>, fixture: &common::Fixture) -> Result<(), TestCaseError> {
    let mut config = fixture.config.clone();
    config.compression.chunk_threshold = THRESHOLD;
    // Short delta runs: keyframes and deltas take turns often.
    config.compression.keyframe_interval = 3;
    let mut s = fixture.open(config.clone()).await.map_err(fail)?;
    let mut model = Model::new();
    let mut sources = Sources::new();
    for op in ops {
        if let Op::Reopen = op {
            s.close().await.map_err(fail)?;
            s = fixture.open(config.clone()).await.map_err(fail)?;
        } else {
            step(&s, &mut model, &mut sources, op).await?;
        }
    }
    check_all(&s, &model).await?;
    // Every version once more from the database, not the cache.
    s.close().await.map_err(fail)?;
    let s = fixture.open(config.clone()).await.map_err(fail)?;
    check_all(&s, &model).await?;
    let chunked = model.values().any(|v| v.len() > THRESHOLD);
    let stats = s.statistics().await.map_err(fail)?.database_stats;
    prop_assert_eq!(
        stats.chunked_blobs + stats.delta_blobs > 0,
        chunked,
        "{:?}",
        stats
    );
    // Deleting every record leaves no blob and no chunk.
    for (c, k) in model.keys() {
        s.delete(COLLECTIONS[*c], k).await.map_err(fail)?;
    }
    let stats = s.statistics().await.map_err(fail)?.database_stats;
    prop_assert_eq!((stats.blob_count, stats.chunk_count), (0, 0), "{:?}", stats);
    let report = s.check_consistency().await.map_err(fail)?;
    prop_assert!(report.is_ok(), "{:?}", report);
    s.close().await.map_err(fail)?;
    Ok(())
}

/// Appends become deltas against the keyframe for `keyframe_interval` − 1 versions, then a
/// keyframe again; every version reads back exactly, and the patches are small.
async fn deltas_for_appends(fixture: &common::Fixture) -> Result<(), TestCaseError> {
    let mut config = fixture.config.clone();
    config.compression.chunk_threshold = THRESHOLD;
    config.compression.keyframe_interval = 4;
    let s = fixture.open(config.clone()).await.map_err(fail)?;
    let mut kinds = Vec::new();
    for v in 0..10u16 {
        let value = log(1, 800 + v);
        s.store("logs", "game", &value).await.map_err(fail)?;
        let meta = s.metadata("logs", "game").await.map_err(fail)?;
        let meta = meta.ok_or_else(|| TestCaseError::fail("no metadata"))?;
        kinds.push(meta.is_delta);
        if meta.is_delta {
            prop_assert!(
                meta.stored_bytes < 2_000,
                "a patch of {} bytes",
                meta.stored_bytes
            );
            prop_assert!(meta.chunk_count > 1);
        }
        let want = serde_json::to_vec(&value).map_err(|e| TestCaseError::fail(e.to_string()))?;
        read_back(&s, 0, "game", Some(&want)).await?;
    }
    prop_assert_eq!(
        kinds,
        [
            false, true, true, true, false, true, true, true, false, true
        ]
    );
    let stats = s.statistics().await.map_err(fail)?.database_stats;
    prop_assert_eq!(stats.delta_blobs, 1, "{:?}", stats);
    prop_assert!(stats.delta_saved_bytes > 0);
    // The last version once more from the database, and every chunk verified.
    s.close().await.map_err(fail)?;
    let s = fixture.open(config).await.map_err(fail)?;
    let want = serde_json::to_vec(&log(1, 809)).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let got = s.retrieve_raw("logs", "game").await.map_err(fail)?;
    prop_assert_eq!(got.as_deref(), Some(want.as_slice()));
    let report = s.check_consistency_deep().await.map_err(fail)?;
    prop_assert!(report.is_ok(), "{:?}", report);
    s.close().await.map_err(fail)?;
    Ok(())
}

fn block_on<F: std::future::Future<Output = Result<(), TestCaseError>>>(
    f: F,
) -> Result<(), TestCaseError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| TestCaseError::fail(e.to_string()))?
        .block_on(f)
}

#[test]
fn appends_are_deltas_until_the_next_keyframe() -> Result<(), TestCaseError> {
    block_on(deltas_for_appends(&common::sqlite_fixture_fast()))?;
    block_on(deltas_for_appends(&common::memory_fixture()))?;
    block_on(deltas_for_appends(&common::encrypted(
        common::sqlite_fixture_fast(),
    )))
}

#[cfg(feature = "postgres")]
#[test]
fn appends_are_deltas_on_postgres() -> Result<(), TestCaseError> {
    match common::pg_fixture() {
        Some(f) => block_on(deltas_for_appends(&f)),
        None => Ok(()),
    }
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
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn chunked_documents_match_the_model_on_sqlite(ops in prop::collection::vec(op(), 1..24)) {
        run_on(ops, &common::sqlite_fixture_fast())?;
    }

    #[test]
    fn chunked_documents_match_the_model_on_memory(ops in prop::collection::vec(op(), 1..24)) {
        run_on(ops, &common::memory_fixture())?;
    }

    #[test]
    fn encrypted_chunked_documents_match_the_model(ops in prop::collection::vec(op(), 1..24)) {
        run_on(ops, &common::encrypted(common::sqlite_fixture_fast()))?;
    }
}

#[cfg(feature = "postgres")]
proptest! {
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

    #[test]
    fn chunked_documents_match_the_model_on_postgres(ops in prop::collection::vec(op(), 1..24)) {
        if let Some(mut fixture) = common::pg_fixture() {
            fixture.config.write.durability = bitcraps_storage::Durability::Normal;
            run_on(ops, &fixture)?;
        }
    }

    #[test]
    fn encrypted_chunked_documents_match_the_model_on_postgres(
        ops in prop::collection::vec(op(), 1..24),
    ) {
        if let Some(mut fixture) = common::pg_encrypted_fixture() {
            fixture.config.write.durability = bitcraps_storage::Durability::Normal;
            run_on(ops, &fixture)?;
        }
    }
}

//! The change feed's acceptance test: a consumer that reconnects at random points while three
//! writers commit 10,000 changes sees every change exactly once, in seq order — on SQLite
//! (three writers in one store) and on PostgreSQL (two nodes: two writers on node A, one on
//! node B; the consumer resumes alternately on either node). Each reconnect picks, at random,
//! a live `watch_from` or pages of `changes_since`, resuming after the last seq it processed.
//! The seed is printed, so a failure can be replayed with `FEED_TEST_SEED`.

use crate::common;

use std::collections::BTreeMap;
use std::time::Duration;

use bitcraps_storage::{Change, ChangeKind, Durability, Expect, PersistentStorageManager, Version};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

const COLLECTION: &str = "feed";
const CHANGES: usize = 10_000;
const WRITERS: usize = 3;
/// How long the consumer waits for one change before the test fails.
const PATIENCE: Duration = Duration::from_secs(60);

/// xorshift64*: the random points, reproducible from the printed seed.
struct Rng(u64);

impl Rng {
    fn seeded() -> Self {
        let seed = std::env::var("FEED_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| u64::from(d.subsec_nanos()) ^ d.as_secs())
                    .unwrap_or(1)
            })
            | 1;
        eprintln!("FEED_TEST_SEED={seed}");
        Rng(seed)
    }

    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let n = u64::try_from(n.max(1)).unwrap_or(u64::MAX);
        usize::try_from(self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n).unwrap_or(0)
    }
}

/// What a writer was acknowledged: `(key, kind, version)`.
type Acked = Vec<(String, ChangeKind, Version)>;

/// Writer `w` commits `n` changes on keys of its own: puts (new keys and overwrites) and,
/// every fifth step on a key it holds, a delete. Returns what was acknowledged.
async fn writer(store: PersistentStorageManager, w: usize, n: usize) -> Result<Acked> {
    let mut acked = Vec::with_capacity(n);
    let mut held: BTreeMap<String, Version> = BTreeMap::new();
    for i in 0..n {
        let key = format!("w{w}/k{:03}", i % 300);
        match held.get(&key) {
            Some(v) if i % 5 == 4 => {
                let v = *v;
                assert!(store.delete(COLLECTION, &key).await?);
                held.remove(&key);
                acked.push((key, ChangeKind::Delete, v));
            }
            _ => {
                let v = store
                    .store_if(
                        COLLECTION,
                        &key,
                        &serde_json::json!({"w": w, "i": i}),
                        Expect::Any,
                    )
                    .await?;
                held.insert(key.clone(), v);
                acked.push((key, ChangeKind::Put, v));
            }
        }
    }
    Ok(acked)
}

/// Reads `total` changes after `start`, reconnecting at random points (each time on the next
/// of `nodes`, by `watch_from` or by `changes_since`).
async fn consumer(
    nodes: Vec<PersistentStorageManager>,
    start: u64,
    total: usize,
    mut rng: Rng,
) -> Result<(Vec<Change>, usize)> {
    let mut seen: Vec<Change> = Vec::with_capacity(total);
    let mut reconnects = 0usize;
    let mut last = start;
    while seen.len() < total {
        let node = nodes
            .get(reconnects % nodes.len())
            .ok_or("no node")?
            .clone();
        reconnects += 1;
        let budget = 1 + rng.below(700);
        if rng.below(2) == 0 {
            let mut stream = node.watch_from(COLLECTION, "", last).await?;
            for _ in 0..budget {
                if seen.len() >= total {
                    break;
                }
                let change = tokio::time::timeout(PATIENCE, stream.next())
                    .await
                    .map_err(|_| "no change arrived in time")?
                    .ok_or("the watch ended")??;
                last = change.seq;
                seen.push(change);
            }
            // Dropped mid-stream: the reconnect.
        } else {
            let deadline = tokio::time::Instant::now() + PATIENCE;
            let mut taken = 0;
            while taken < budget && seen.len() < total {
                let limit = 1 + rng.below(300);
                let page = node.changes_since(last, limit.min(budget - taken)).await?;
                if page.is_empty() {
                    if tokio::time::Instant::now() > deadline {
                        return Err("no change arrived in time".into());
                    }
                    // Waiting for writers through the live path instead of a sleep.
                    let mut probe = node.watch_from(COLLECTION, "", last).await?;
                    let _ = tokio::time::timeout(PATIENCE, probe.next()).await;
                    continue;
                }
                taken += page.len();
                if let Some(c) = page.last() {
                    last = c.seq;
                }
                seen.extend(page);
            }
        }
    }
    Ok((seen, reconnects))
}

/// Runs the writers (writer `w` on `writers[w]`) and the consumer, then checks: seqs dense
/// and increasing from `start`, and the changes exactly the acknowledged writes.
async fn run(
    writers: Vec<PersistentStorageManager>,
    readers: Vec<PersistentStorageManager>,
) -> Result {
    let rng = Rng::seeded();
    let start = readers.first().ok_or("no reader")?.change_head().await?;
    let consumer = tokio::spawn(consumer(readers, start, CHANGES, rng));
    let mut tasks = Vec::new();
    for (w, store) in writers.into_iter().enumerate() {
        let n = CHANGES / WRITERS + usize::from(w < CHANGES % WRITERS);
        tasks.push(tokio::spawn(writer(store, w, n)));
    }
    let mut acked: Acked = Vec::new();
    for t in tasks {
        acked.extend(t.await??);
    }
    assert_eq!(acked.len(), CHANGES);
    let (seen, reconnects) = consumer.await??;
    assert!(
        reconnects > 10,
        "the consumer reconnected {reconnects} times"
    );
    for (i, c) in seen.iter().enumerate() {
        assert_eq!(
            c.seq,
            start + 1 + i as u64,
            "change {i}: every seq once, in order"
        );
        assert_eq!(c.collection, COLLECTION);
    }
    let mut logged: Acked = seen
        .into_iter()
        .map(|c| (c.key, c.kind, c.version))
        .collect();
    logged.sort();
    acked.sort();
    assert!(
        logged == acked,
        "the log holds exactly the acknowledged writes"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_consumer_reconnecting_at_random_sees_every_change_once() -> Result {
    let mut f = common::sqlite_fixture();
    f.config.write.durability = Durability::Normal;
    f.config.maintenance.background_tasks = false;
    let store = f.open(f.config.clone()).await?;
    let result = run(vec![store.clone(); WRITERS], vec![store.clone()]).await;
    store.close().await?;
    result
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_nodes_consumer_reconnecting_at_random_sees_every_change_once() -> Result {
    let Some(mut f) = common::pg_fixture() else {
        return Ok(());
    };
    f.config.write.durability = Durability::Normal;
    f.config.maintenance.background_tasks = false;
    // Two nodes: each its own pool, writer thread and cache over one schema.
    let a = PersistentStorageManager::open(f.config.clone()).await?;
    let b = PersistentStorageManager::open(f.config.clone()).await?;
    let result = run(
        vec![a.clone(), a.clone(), b.clone()],
        vec![a.clone(), b.clone()],
    )
    .await;
    a.close().await?;
    b.close().await?;
    result
}

//! The metrics the library exports, observed through a recorder installed for this test: every
//! operation is recorded with the names in `bitcraps_storage::METRICS` (and no other), with
//! bounded collection labels, and every metric the shipped Grafana dashboard
//! (`dashboards/bitcraps-storage.json`) queries is one the library really records.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use bitcraps_storage::testing::BackgroundTask;
use bitcraps_storage::{METRICS, MetricKind, PersistentStorageManager};
use common::faulty::{Method, faulty_sqlite};
use common::{game, sqlite_fixture};
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// A metric's labels, as (key, value) pairs.
type Labels = Vec<(String, String)>;

/// Every metric registered: name → the label sets it was registered with.
#[derive(Default, Clone)]
struct Seen(Arc<Mutex<BTreeMap<String, BTreeSet<Labels>>>>);

impl Seen {
    fn note(&self, key: &Key) {
        let labels = key
            .labels()
            .map(|l| (l.key().to_owned(), l.value().to_owned()))
            .collect();
        if let Ok(mut seen) = self.0.lock() {
            seen.entry(key.name().to_owned())
                .or_default()
                .insert(labels);
        }
    }

    fn names(&self) -> BTreeSet<String> {
        self.0
            .lock()
            .map(|s| s.keys().cloned().collect())
            .unwrap_or_default()
    }

    fn label_values(&self, name: &str, label: &str) -> BTreeSet<String> {
        let seen = self.0.lock().map(|s| s.get(name).cloned()).ok().flatten();
        seen.unwrap_or_default()
            .into_iter()
            .flat_map(|labels| {
                labels
                    .into_iter()
                    .filter(|(k, _)| k == label)
                    .map(|(_, v)| v)
            })
            .collect()
    }
}

impl Recorder for Seen {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        self.note(key);
        Counter::noop()
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        self.note(key);
        Gauge::noop()
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        self.note(key);
        Histogram::noop()
    }
}

/// The metric names the dashboard's queries reference, with the exposition suffixes of
/// histograms (`_bucket`, `_sum`, `_count`) removed.
fn dashboard_metrics() -> Result<BTreeSet<String>> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../dashboards/bitcraps-storage.json"
    );
    let dashboard: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path)?)?;
    let mut exprs = Vec::new();
    collect_exprs(&dashboard, &mut exprs);
    assert!(
        exprs.len() >= 10,
        "the dashboard has its queries: {exprs:?}"
    );
    let histograms: BTreeSet<&str> = METRICS
        .iter()
        .filter(|m| m.kind == MetricKind::Histogram)
        .map(|m| m.name)
        .collect();
    let mut names = BTreeSet::new();
    for expr in exprs {
        let mut rest = expr.as_str();
        while let Some(at) = rest.find("bitcraps_storage_") {
            let tail = rest.get(at..).unwrap_or_default();
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            let name = tail.get(..end).unwrap_or_default();
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|b| histograms.contains(b)))
                .unwrap_or(name);
            names.insert(base.to_owned());
            rest = tail.get(end..).unwrap_or_default();
        }
    }
    Ok(names)
}

fn collect_exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr" | "query", serde_json::Value::String(s)) => out.push(s.clone()),
                    _ => collect_exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_record_the_listed_metrics_and_the_dashboard_queries_only_those() -> Result {
    let seen = Seen::default();
    metrics::set_global_recorder(seen.clone())?;

    let f = sqlite_fixture();
    let mut config = f.config.clone();
    config.maintenance.background_tasks = false;
    config.metrics.max_collection_labels = 2;
    let backend = faulty_sqlite(&config)?;
    let s = PersistentStorageManager::with_backend(config, backend.clone())?;

    s.store("games", "g-1", &game("g-1", 1)).await?;
    s.store_batch("players", &[("p-1", game("p", 1)), ("p-2", game("p", 2))])
        .await?;
    s.store("lobby", "l-1", &game("l-1", 1)).await?;
    s.store("chat", "c-1", &game("c-1", 1)).await?;
    s.store("games", "g-same", &game("g-1", 1)).await?; // deduplicated
    let _: Option<common::Game> = s.retrieve("games", "g-1").await?; // L1 hit
    let _: Option<common::Game> = s.retrieve("games", "missing").await?; // L1 miss
    s.retrieve_raw("players", "p-1").await?;
    s.exists("games", "g-1").await?;
    s.metadata("games", "g-1").await?;
    s.list("games", bitcraps_storage::ListOptions::default())
        .await?;
    s.collections().await?;
    s.delete("chat", "c-1").await?;
    // The versioned and multi-record operations are timed too.
    let _: Option<(common::Game, bitcraps_storage::Version)> =
        s.retrieve_versioned("games", "g-1").await?;
    let _: Vec<Option<common::Game>> = s.retrieve_many("games", &["g-1", "missing"]).await?;
    let _: bitcraps_storage::ScanPage<common::Game> = s
        .scan("games", bitcraps_storage::ListOptions::default())
        .await?;
    s.store_if(
        "games",
        "g-new",
        &game("g-new", 1),
        bitcraps_storage::Expect::Absent,
    )
    .await?;
    s.delete_if("games", "g-new", bitcraps_storage::Expect::Exists)
        .await?;
    s.delete_prefix("lobby", "l-").await?;
    // A write past the soft limit of a quota.
    s.set_quota(
        "seats",
        Some(bitcraps_storage::CollectionQuota::new(Some(1), None)),
    )
    .await?;
    s.store("seats", "s-1", &game("s-1", 1)).await?;
    // One group commit fails as a whole; one background run fails.
    backend.fail_nth(Method::Apply, 1);
    assert!(s.store("games", "g-2", &game("g-2", 2)).await.is_err());
    backend.fail_nth(Method::Statistics, 1);
    assert!(
        s.run_background_task(BackgroundTask::Statistics)
            .await
            .is_err()
    );
    s.maintenance().await?;
    let backup = s.backups().create_backup().await?;
    s.backups().verify_backup(&backup.id).await?;
    while s.scrub().await?.completed.is_none() {}
    s.statistics().await?;
    s.close().await?;

    let recorded = seen.names();
    let listed: BTreeSet<String> = METRICS.iter().map(|m| m.name.to_owned()).collect();
    let unlisted: Vec<_> = recorded.difference(&listed).collect();
    assert!(
        unlisted.is_empty(),
        "recorded but not in METRICS: {unlisted:?}"
    );
    // Everything listed was recorded, except the Redis tier's (no Redis here).
    let unrecorded: Vec<_> = listed
        .difference(&recorded)
        .filter(|n| !n.starts_with("bitcraps_storage_remote_"))
        .collect();
    assert!(
        unrecorded.is_empty(),
        "listed but never recorded: {unrecorded:?}"
    );

    let queried = dashboard_metrics()?;
    let unknown: Vec<_> = queried.difference(&listed).collect();
    assert!(
        unknown.is_empty(),
        "the dashboard queries metrics the library does not export: {unknown:?}"
    );
    for m in [
        "bitcraps_storage_operation_duration_seconds",
        "bitcraps_storage_cache_requests_total",
    ] {
        assert!(queried.contains(m), "the dashboard shows {m}");
    }

    // Bounded cardinality: two collections are named, the others are `other`.
    let collections = seen.label_values("bitcraps_storage_operations_total", "collection");
    let expected: BTreeSet<String> = ["", "games", "players", "other"].map(String::from).into();
    assert_eq!(collections, expected);
    let operations = seen.label_values("bitcraps_storage_operation_duration_seconds", "operation");
    for op in [
        "store",
        "store_batch",
        "retrieve",
        "delete",
        "list",
        "maintenance",
        "backup",
        "verify_backup",
        "scrub",
        "retrieve_versioned",
        "retrieve_many",
        "scan",
        "store_if",
        "delete_if",
        "delete_prefix",
    ] {
        assert!(operations.contains(op), "{op} is timed: {operations:?}");
    }
    let tiers = seen.label_values("bitcraps_storage_cache_requests_total", "result");
    assert_eq!(tiers, ["hit", "miss"].map(String::from).into());
    Ok(())
}

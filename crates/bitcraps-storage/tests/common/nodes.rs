//! "Two nodes": two `PersistentStorageManager`s over ONE shared backend instance, each with
//! its own in-process cache and writer thread — the multi-node situation of a shared database
//! (PostgreSQL), reproduced on SQLite. To run the same tests on another backend, change
//! [`shared_backend`] only.
//!
//! Also: the Redis URL of the environment (tests skip without it), unique key namespaces, and
//! a gated, counting backend wrapper for deterministic races.

use std::any::Any;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use bitcraps_storage::testing::{
    Backend, CollectionSetting, Maintenance, OpOutcome, RecordPage, StoreIdentity,
    StoredDictionary, StoredRecord, WriteUnit,
};
use bitcraps_storage::{
    DatabaseStatistics, Durability, ListOptions, ListPage, PersistentStorageManager,
    RecordMetadata, RemoteCacheStatistics, StorageConfig,
};

pub type TestResult<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// How long a test waits for something that should happen promptly before it fails.
pub const DEADLINE: Duration = Duration::from_secs(5);

/// `BITCRAPS_TEST_REDIS_URL`, or `None` after printing the skip notice.
pub fn redis_url() -> Option<String> {
    match std::env::var("BITCRAPS_TEST_REDIS_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            super::skip("BITCRAPS_TEST_REDIS_URL is not set");
            None
        }
    }
}

/// A Redis key namespace no other test (or run) uses: the process, a counter (tests of one
/// binary run at the same time, and share a process) and the time (runs reuse process ids).
pub fn unique_namespace(test: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("bitcraps-test:{test}:{}:{n}:{nanos}", std::process::id())
}

/// The backend both nodes share. The one place to change for another backend.
pub fn shared_backend(config: &StorageConfig) -> TestResult<Arc<dyn Backend>> {
    Ok(Arc::new(super::sqlite_backend(config)?))
}

/// Two nodes and what keeps them alive; dropping it deletes the test's Redis keys.
pub struct Nodes {
    pub a: PersistentStorageManager,
    pub b: PersistentStorageManager,
    pub redis_url: String,
    pub namespace: String,
    _guard: Box<dyn Any + Send>,
}

/// A node configuration for tests: the Redis tier on, no background tasks.
pub fn node_config(data_path: &std::path::Path, redis_url: &str, namespace: &str) -> StorageConfig {
    let mut config = StorageConfig::with_data_path(data_path);
    config.cache.size_mb = 4;
    config.database.max_connections = 2;
    config.write.durability = Durability::Normal;
    config.maintenance.background_tasks = false;
    // Generous, so a loaded CI machine does not turn slow answers into counted failures.
    config.redis.timeout = Duration::from_secs(2);
    config.redis.url = Some(redis_url.to_owned());
    config.redis.namespace = Some(namespace.to_owned());
    config
}

/// Two nodes over one shared backend; `wrap` may wrap the backend (fault injection, gates) and
/// `tweak` adjusts each node's configuration (`true` for node A).
pub fn two_nodes_with(
    redis_url: &str,
    test: &str,
    wrap: impl FnOnce(Arc<dyn Backend>) -> Arc<dyn Backend>,
    tweak: impl Fn(&mut StorageConfig, bool),
) -> TestResult<Nodes> {
    let dir = tempfile::tempdir()?;
    let namespace = unique_namespace(test);
    let base = node_config(dir.path(), redis_url, &namespace);
    let backend = wrap(shared_backend(&base)?);
    let mut config_a = base.clone();
    tweak(&mut config_a, true);
    let mut config_b = base;
    tweak(&mut config_b, false);
    let a = PersistentStorageManager::with_backend(config_a, Arc::clone(&backend))?;
    let b = PersistentStorageManager::with_backend(config_b, backend)?;
    Ok(Nodes {
        a,
        b,
        redis_url: redis_url.to_owned(),
        namespace,
        _guard: Box::new(dir),
    })
}

/// Two real nodes on PostgreSQL: two managers opened from the same `postgres://` URL (a fresh
/// schema), each with its own connection pool, writer, L1 cache and Redis subscription — the
/// deployment the tier is for. `None` (after the skip notice) without
/// `BITCRAPS_TEST_POSTGRES_URL`.
pub async fn two_pg_nodes(
    redis_url: &str,
    test: &str,
    tweak: impl Fn(&mut StorageConfig, bool),
) -> TestResult<Option<Nodes>> {
    let Some(pg) = super::postgres_url() else {
        return Ok(None);
    };
    let schema = super::PgSchema::create(&pg);
    let namespace = unique_namespace(test);
    let (dir_a, dir_b) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let mut nodes = Vec::new();
    for (dir, is_a) in [(&dir_a, true), (&dir_b, false)] {
        let mut config = node_config(dir.path(), redis_url, &namespace);
        config.database.url = Some(schema.url());
        tweak(&mut config, is_a);
        nodes.push(PersistentStorageManager::open(config).await?);
    }
    let b = nodes.pop().ok_or("node B")?;
    let a = nodes.pop().ok_or("node A")?;
    Ok(Some(Nodes {
        a,
        b,
        redis_url: redis_url.to_owned(),
        namespace,
        _guard: Box::new((schema, dir_a, dir_b)),
    }))
}

/// Two nodes with the default test configuration.
pub fn two_nodes(redis_url: &str, test: &str) -> TestResult<Nodes> {
    two_nodes_with(redis_url, test, |b| b, |_, _| {})
}

impl Drop for Nodes {
    fn drop(&mut self) {
        delete_namespace(&self.redis_url, &self.namespace);
    }
}

/// Deletes a test's Redis namespace when dropped (keep it beside the fixture's guard).
pub struct NamespaceGuard {
    pub redis_url: String,
    pub namespace: String,
}

impl Drop for NamespaceGuard {
    fn drop(&mut self) {
        delete_namespace(&self.redis_url, &self.namespace);
    }
}

/// Puts `fixture` on the Redis tier at `redis_url` in a namespace of its own, deleted with
/// the fixture's guard.
pub fn with_redis(mut fixture: super::Fixture, redis_url: String, test: &str) -> super::Fixture {
    let namespace = unique_namespace(test);
    fixture.config.redis.url = Some(redis_url.clone());
    fixture.config.redis.namespace = Some(namespace.clone());
    fixture.config.redis.timeout = Duration::from_secs(2);
    let guard = NamespaceGuard {
        redis_url,
        namespace,
    };
    fixture.guard = Box::new((fixture.guard, guard));
    fixture
}

/// Deletes every key of a test namespace (best effort).
pub fn delete_namespace(redis_url: &str, namespace: &str) {
    let Ok(client) = redis::Client::open(redis_url) else {
        return;
    };
    let Ok(mut conn) = client.get_connection_with_timeout(Duration::from_secs(1)) else {
        return;
    };
    // The namespace literally: glob characters in it escaped.
    let mut pattern = String::new();
    for c in namespace.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    let keys: Vec<Vec<u8>> = redis::cmd("KEYS")
        .arg(format!("{pattern}:*"))
        .query(&mut conn)
        .unwrap_or_default();
    if !keys.is_empty() {
        let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query(&mut conn);
    }
}

/// A node's Redis tier statistics (panics when the tier is off: a test bug).
pub async fn remote_stats(node: &PersistentStorageManager) -> TestResult<RemoteCacheStatistics> {
    Ok(node
        .statistics()
        .await?
        .remote_cache
        .expect("the Redis tier is configured"))
}

/// Polls `condition` every 10 ms until it holds; fails after [`DEADLINE`]. For state with no
/// event to wait on (the Redis tier's connection, statistics counters); a [`Gated`] backend's
/// counts are waited on without polling by [`Gated::wait_for`].
pub async fn wait_until<F, Fut>(what: &str, mut condition: F) -> TestResult
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = TestResult<bool>>,
{
    let started = Instant::now();
    loop {
        if condition().await? {
            return Ok(());
        }
        if started.elapsed() > DEADLINE {
            return Err(format!("timed out after {DEADLINE:?} waiting until {what}").into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until the node's invalidation subscription is up (its L1 is trusted).
pub async fn wait_connected(node: &PersistentStorageManager) -> TestResult {
    wait_until("the Redis tier is connected", || async {
        Ok(remote_stats(node).await?.connected)
    })
    .await
}

/// Delegates to another backend; counts `get`s and, while armed, holds each `get` *after* it
/// read the database until the gate opens (so a test can commit a write between a reader's
/// database read and its cache fill) — or, with `gate_before_read`, before it reads. With
/// [`Gated::hold_next_apply`], the next `apply` is held after it committed (between a
/// writer's commit and its cache update).
pub struct Gated {
    pub inner: Arc<dyn Backend>,
    pub gets: AtomicUsize,
    pub waiting: AtomicUsize,
    pub armed: AtomicBool,
    pub gate_before_read: AtomicBool,
    pub applies_held: AtomicUsize,
    hold_apply: AtomicBool,
    open: Mutex<bool>,
    opened: Condvar,
}

impl Gated {
    pub fn new(inner: Arc<dyn Backend>) -> Self {
        Gated {
            inner,
            gets: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            armed: AtomicBool::new(false),
            gate_before_read: AtomicBool::new(false),
            applies_held: AtomicUsize::new(0),
            hold_apply: AtomicBool::new(false),
            open: Mutex::new(false),
            opened: Condvar::new(),
        }
    }

    /// Holds the next `get`s at the gate until [`Gated::open`].
    pub fn arm(&self) {
        *self.open.lock().unwrap() = false;
        self.armed.store(true, Ordering::SeqCst);
    }

    /// Holds the next `apply`, after it committed, until [`Gated::open`].
    pub fn hold_next_apply(&self) {
        *self.open.lock().unwrap() = false;
        self.hold_apply.store(true, Ordering::SeqCst);
    }

    pub fn open(&self) {
        self.armed.store(false, Ordering::SeqCst);
        *self.open.lock().unwrap() = true;
        self.opened.notify_all();
    }

    fn wait_at_gate(&self) {
        if !self.armed.load(Ordering::SeqCst) {
            return;
        }
        self.waiting.fetch_add(1, Ordering::SeqCst);
        self.changed();
        self.hold();
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        self.changed();
    }

    /// Wakes [`Gated::wait_for`]. Taking the lock first means a waiter that just found its
    /// condition false is already waiting, so the wake-up is never lost.
    fn changed(&self) {
        drop(self.open.lock().unwrap());
        self.opened.notify_all();
    }

    /// Waits until `count(self)` is `n` — e.g. `|g| g.waiting.load(SeqCst)` — woken by every
    /// change of the gate's counts instead of polling; fails after [`DEADLINE`].
    pub async fn wait_for(
        self: &Arc<Self>,
        what: &str,
        count: fn(&Gated) -> usize,
        n: usize,
    ) -> TestResult {
        let this = Arc::clone(self);
        let reached = tokio::task::spawn_blocking(move || {
            let guard = this.open.lock().unwrap();
            let (_guard, _) = this
                .opened
                .wait_timeout_while(guard, DEADLINE, |_| count(&this) != n)
                .unwrap();
            count(&this) == n
        })
        .await?;
        if reached {
            Ok(())
        } else {
            Err(format!("timed out after {DEADLINE:?} waiting until {what}").into())
        }
    }

    fn hold(&self) {
        let guard = self.open.lock().unwrap();
        // Bounded: a test that never opens the gate fails instead of hanging.
        let _ = self
            .opened
            .wait_timeout_while(guard, Duration::from_secs(10), |open| !*open)
            .unwrap();
    }
}

impl Backend for Gated {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn apply(
        &self,
        units: &[WriteUnit],
    ) -> bitcraps_storage::Result<Vec<bitcraps_storage::Result<Vec<OpOutcome>>>> {
        let applied = self.inner.apply(units);
        if self.hold_apply.swap(false, Ordering::SeqCst) {
            self.applies_held.fetch_add(1, Ordering::SeqCst);
            self.changed();
            self.hold();
            self.applies_held.fetch_sub(1, Ordering::SeqCst);
            self.changed();
        }
        applied
    }
    fn get(&self, c: &str, k: &str) -> bitcraps_storage::Result<Option<StoredRecord>> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        if self.gate_before_read.load(Ordering::SeqCst) {
            self.wait_at_gate();
            return self.inner.get(c, k);
        }
        let blob = self.inner.get(c, k);
        self.wait_at_gate();
        blob
    }
    fn get_many(
        &self,
        c: &str,
        keys: &[String],
    ) -> bitcraps_storage::Result<Vec<Option<StoredRecord>>> {
        self.inner.get_many(c, keys)
    }
    fn scan(&self, c: &str, o: &ListOptions) -> bitcraps_storage::Result<RecordPage> {
        self.inner.scan(c, o)
    }
    fn dictionaries(&self) -> bitcraps_storage::Result<Vec<StoredDictionary>> {
        self.inner.dictionaries()
    }
    fn settings(&self) -> bitcraps_storage::Result<Vec<CollectionSetting>> {
        self.inner.settings()
    }
    fn usage(
        &self,
        c: &str,
        now_ms: i64,
    ) -> bitcraps_storage::Result<bitcraps_storage::CollectionUsage> {
        self.inner.usage(c, now_ms)
    }
    fn metadata(&self, c: &str, k: &str) -> bitcraps_storage::Result<Option<RecordMetadata>> {
        self.inner.metadata(c, k)
    }
    fn list(&self, c: &str, o: &ListOptions) -> bitcraps_storage::Result<ListPage> {
        self.inner.list(c, o)
    }
    fn identity(&self) -> bitcraps_storage::Result<StoreIdentity> {
        self.inner.identity()
    }
    fn record_redis_tier(&self) -> bitcraps_storage::Result<()> {
        self.inner.record_redis_tier()
    }
    fn data_keys(&self) -> bitcraps_storage::Result<Vec<bitcraps_storage::testing::WrappedKey>> {
        self.inner.data_keys()
    }
    fn write_keys(
        &self,
        change: &bitcraps_storage::testing::KeyChange,
    ) -> bitcraps_storage::Result<()> {
        self.inner.write_keys(change)
    }
    fn collections(&self) -> bitcraps_storage::Result<Vec<String>> {
        self.inner.collections()
    }
    fn statistics(&self) -> bitcraps_storage::Result<DatabaseStatistics> {
        self.inner.statistics()
    }
    fn close(&self) -> bitcraps_storage::Result<()> {
        self.inner.close()
    }
    fn maintenance(&self) -> &dyn Maintenance {
        self.inner.maintenance()
    }
    fn changes_since(
        &self,
        after: u64,
        limit: usize,
    ) -> bitcraps_storage::Result<Vec<bitcraps_storage::Change>> {
        self.inner.changes_since(after, limit)
    }
    fn change_head(&self) -> bitcraps_storage::Result<u64> {
        self.inner.change_head()
    }
    fn notify_changes(&self, wake: Arc<dyn Fn() + Send + Sync>) -> bitcraps_storage::Result<()> {
        self.inner.notify_changes(wake)
    }
}

//! PostgreSQL, shared by many nodes: connection pools, the bridge from the blocking
//! [`Backend`] trait to the async driver, and the trait implementation.
//!
//! The driver (tokio-postgres through deadpool-postgres) is async; the [`Backend`] trait is
//! blocking. The backend owns a small private Tokio runtime that drives every connection. A
//! blocking call spawns its future on that runtime and waits on a std channel, so it works from
//! any thread — a `spawn_blocking` thread, the writer thread, or even an async worker of the
//! caller's runtime (opening a store over a backend reads the dictionaries there): nothing calls
//! `Handle::block_on`, which panics inside a runtime, and the future never depends on the
//! caller's runtime making progress.

mod chunks;
mod copy;
mod fast_hash;
mod feed;
mod group;
mod lifecycle;
mod listen;
mod locks;
mod maintain;
mod plan;
mod prefix;
mod quota;
mod read;
mod restore;
mod schema;
mod shredded;
mod snapshot;
mod tls;
mod write;

/// How the backend reaches the server, for a client that must reach it alike (the
/// benchmark's PostgreSQL peer, through `testing::postgres`).
#[cfg(feature = "testing")]
pub use tls::{Handshake, MakeRustls, RustlsConnect, RustlsStream, transport};

use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};

use crate::backend::{
    Backend, BlobEntry, BlobReference, CollectionSetting, ConsistencyReport, DatabaseStatistics,
    KeyChange, Maintenance, OpOutcome, RecordMetadata, RecordPage, RepairOutcome, SnapshotInfo,
    StoreIdentity, StoredDictionary, StoredRecord, WrappedKey, WriteOp, WriteUnit,
};
use crate::config::Durability;
use crate::error::{Result, StorageError};
use crate::list::{ListOptions, ListPage};

/// Worker threads of the private runtime that drives the connections. The work on them is
/// I/O-bound (the blocking callers do the CPU work), so two are plenty.
const RUNTIME_WORKERS: usize = 2;

/// Settings of the PostgreSQL backend.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// The primary's URL.
    pub url: String,
    /// An optional read replica's URL.
    pub replica_url: Option<String>,
    /// Connections per pool.
    pub pool_size: usize,
    /// How long an operation waits for a pooled connection (and for a new connection).
    pub connection_timeout: Duration,
    /// Share identical content between records.
    pub deduplicate: bool,
    /// [`Durability::Normal`] commits writes with `synchronous_commit = off` (a server crash
    /// may lose the last acknowledged transactions; never corrupts); `Full` waits for the
    /// server's WAL flush as usual.
    pub durability: Durability,
}

/// The backend's private runtime (the crate's one bridge from blocking callers to async I/O).
pub(crate) type Bridge = crate::rt::PrivateRuntime;

/// The PostgreSQL backend.
pub struct PostgresBackend {
    bridge: Bridge,
    primary: Pool,
    replica: Option<Pool>,
    options: PostgresOptions,
    /// The schema the tables live in (the first existing entry of the `search_path`).
    schema: String,
    schema_version: i64,
    closed: AtomicBool,
    /// The change listener (`listen.rs`), once a watch asked for it; aborted on close.
    listener: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Puts committed by this process, and the count at which it analyzes the tables next
    /// (see [`ANALYZE_AFTER_PUTS`]).
    puts: std::sync::atomic::AtomicU64,
    next_analyze: std::sync::atomic::AtomicU64,
}

/// After this many puts from this process the tables are analyzed, right after the commit
/// that passed it, and again each time the puts since open double (so a load of n documents
/// costs O(log n) analyses). PostgreSQL's autovacuum analyzes only when it gets to it: until
/// then a freshly bulk-loaded table keeps the statistics of an empty one, and the planner
/// reads a page of a listing with a bitmap scan and a sort of the whole key range instead of
/// the primary key's index (5.6 ms against 0.09 ms a page at 200,000 records).
pub const ANALYZE_AFTER_PUTS: u64 = 10_000;

/// Every column of the three tables (`optimize`).
const ANALYZE_ALL: &str = "ANALYZE blobs, records, dictionaries";

/// After a large load: only the columns the backend's statements filter, join or sort on,
/// and every table's size (which a column list still updates), from a small sample. Sampling
/// the other columns (a blob's bytes above all) was ~45 % of the cost (0.25 s against 0.14 s
/// at 120,000 blobs and 100,000 records), paid on the writer thread inside the batch that
/// crossed the threshold; no plan reads their statistics, and `optimize` or autovacuum still
/// gathers them. The sample is that of a statistics target of 10 (3,000 rows a table, not the
/// default 30,000): the five analyses of a 200,000-document load took 0.36 s of its ~4.5 s
/// with the default and 0.08 s with this, and what the plans need after a load — the tables'
/// sizes, the columns' distinct counts — comes from it as well. `SET LOCAL` keeps the pooled
/// connection's own setting (and `optimize`'s analysis) untouched: the statements go in one
/// simple query, which the server runs as one implicit transaction (rolled back whole on a
/// failure, so no open transaction goes back to the pool).
const ANALYZE_FILTERED: &str = "SET LOCAL default_statistics_target = 10;
     ANALYZE blobs (id, hash, codec, dict_id, refcount),
     records (collection, key, blob_id, expires_at), dictionaries";

impl std::fmt::Debug for PostgresBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresBackend")
            .field("replica", &self.replica.is_some())
            .field("schema", &self.schema)
            .field("pool_size", &self.options.pool_size)
            .field("schema_version", &self.schema_version)
            .finish_non_exhaustive()
    }
}

pub(crate) fn db_err(context: &'static str) -> impl Fn(tokio_postgres::Error) -> StorageError {
    move |e| StorageError::database(context, e)
}

/// A pool over `url`, with TLS as its `sslmode` and `sslrootcert` say (`tls.rs`). Creating
/// it connects nothing yet; it reads the root-certificate file.
fn pool(url: &str, options: &PostgresOptions, bridge: &Bridge) -> Result<Pool> {
    let (mut config, tls) = tls::transport(url)?;
    config.connect_timeout(options.connection_timeout);
    if config.get_application_name().is_none() {
        config.application_name("bitcraps-storage");
    }
    let manager = Manager::from_config(
        config,
        tls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    // The pool spawns connection tasks on the runtime current at build time.
    let _entered = bridge.handle().enter();
    Pool::builder(manager)
        .max_size(options.pool_size.max(1))
        .wait_timeout(Some(options.connection_timeout))
        .create_timeout(Some(options.connection_timeout))
        .recycle_timeout(Some(options.connection_timeout))
        .runtime(Runtime::Tokio1)
        .build()
        .map_err(|e| StorageError::Config(format!("cannot build the PostgreSQL pool: {e}")))
}

/// Takes a connection from `pool`, turning exhaustion into [`StorageError::PoolTimeout`].
pub(crate) async fn connect(pool: &Pool) -> Result<deadpool_postgres::Client> {
    let started = std::time::Instant::now();
    let client = pool.get().await;
    let outcome = match &client {
        Ok(_) => "ok",
        Err(PoolError::Timeout(_)) => "timeout",
        Err(_) => "error",
    };
    crate::observe::pool_wait("postgres", started.elapsed(), outcome);
    client.map_err(|e| match e {
        PoolError::Timeout(_) => {
            let waited = pool.timeouts().wait.unwrap_or_default();
            StorageError::PoolTimeout {
                waited_ms: u64::try_from(waited.as_millis()).unwrap_or(u64::MAX),
                pool_size: pool.status().max_size,
            }
        }
        PoolError::Closed => StorageError::Closed,
        PoolError::Backend(e) => tls::storage_error(&e)
            .unwrap_or_else(|| StorageError::database("connecting to PostgreSQL", e)),
        other => StorageError::database("connecting to PostgreSQL", other.to_string()),
    })
}

/// SQLSTATEs after which a whole transaction is worth retrying: deadlock detected and
/// serialization failure.
pub(crate) fn is_retryable(e: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    e.code().is_some_and(|c| {
        *c == SqlState::T_R_DEADLOCK_DETECTED || *c == SqlState::T_R_SERIALIZATION_FAILURE
    })
}

impl PostgresBackend {
    /// Counts `puts` just committed, and analyzes the tables when the count reaches the next
    /// threshold ([`ANALYZE_AFTER_PUTS`], then each doubling). Best effort: statistics only
    /// guide plans, so a failure is logged, not returned (the writes are committed).
    fn analyze_after(&self, puts: u64) {
        if puts == 0 {
            return;
        }
        let total = self
            .puts
            .fetch_add(puts, Ordering::Relaxed)
            .saturating_add(puts);
        let next = self.next_analyze.load(Ordering::Relaxed);
        if total < next
            || self
                .next_analyze
                .compare_exchange(
                    next,
                    total.saturating_mul(2),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_err()
        {
            return;
        }
        if let Err(e) = self.analyze(ANALYZE_FILTERED) {
            tracing::warn!(error = %e, "analyzing the tables after a large load failed");
        }
    }

    /// `ANALYZE` as `sql` says ([`ANALYZE_ALL`] or [`ANALYZE_FILTERED`]).
    fn analyze(&self, sql: &'static str) -> Result<()> {
        self.with_client(self.primary.clone(), move |client| async move {
            client.batch_execute(sql).await.map_err(db_err("analyzing"))
        })
    }

    /// Connects, and migrates the schema in the connection's `search_path` to the latest
    /// version (once, even when many nodes start together).
    pub fn open(options: &PostgresOptions) -> Result<Self> {
        let bridge = Bridge::new("postgres", RUNTIME_WORKERS)?;
        let primary = pool(&options.url, options, &bridge)?;
        let replica = options
            .replica_url
            .as_deref()
            .map(|url| pool(url, options, &bridge))
            .transpose()?;
        let migrate_pool = primary.clone();
        let (schema_version, schema) = bridge.block_on(async move {
            let mut client = connect(&migrate_pool).await?;
            schema::migrate(&mut client).await
        })?;
        Ok(PostgresBackend {
            bridge,
            primary,
            replica,
            options: options.clone(),
            schema,
            schema_version,
            closed: AtomicBool::new(false),
            listener: std::sync::Mutex::new(None),
            puts: std::sync::atomic::AtomicU64::new(0),
            next_analyze: std::sync::atomic::AtomicU64::new(ANALYZE_AFTER_PUTS),
        })
    }

    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            Err(StorageError::Closed)
        } else {
            Ok(())
        }
    }

    /// The pool reads other than `get` use: the replica when there is one.
    fn read_pool(&self) -> Pool {
        self.replica.clone().unwrap_or_else(|| self.primary.clone())
    }

    /// Runs `f` with a connection from `pool` on the private runtime.
    fn with_client<T, F, Fut>(&self, pool: Pool, f: F) -> Result<T>
    where
        F: FnOnce(deadpool_postgres::Client) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T>> + Send,
        T: Send + 'static,
    {
        self.check_open()?;
        self.bridge.block_on(async move {
            let client = connect(&pool).await?;
            f(client).await
        })
    }
}

impl Backend for PostgresBackend {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn apply(&self, units: &[WriteUnit]) -> Result<Vec<Result<Vec<OpOutcome>>>> {
        self.check_open()?;
        let units = units.to_vec();
        let pool = self.primary.clone();
        let settings = write::Settings {
            scope: self.schema.clone(),
            deduplicate: self.options.deduplicate,
            synchronous: self.options.durability == Durability::Full,
        };
        let puts = units
            .iter()
            .flatten()
            .filter(|op| matches!(op, WriteOp::Put { .. }))
            .count();
        let results = self
            .bridge
            .block_on(async move { write::apply(&pool, &settings, &units).await })?;
        self.analyze_after(u64::try_from(puts).unwrap_or(u64::MAX));
        Ok(results)
    }

    fn get(&self, collection: &str, key: &str) -> Result<Option<StoredRecord>> {
        let (c, k) = (collection.to_owned(), key.to_owned());
        // Always the primary: a lagging replica must never feed a read-your-writes path.
        self.with_client(self.primary.clone(), move |client| async move {
            read::get(&client, &c, &k).await
        })
    }

    fn get_many(&self, collection: &str, keys: &[String]) -> Result<Vec<Option<StoredRecord>>> {
        let (c, k) = (collection.to_owned(), keys.to_vec());
        // The primary, like `get`.
        self.with_client(self.primary.clone(), move |client| async move {
            read::get_many(&client, &c, &k).await
        })
    }

    fn scan(&self, collection: &str, options: &ListOptions) -> Result<RecordPage> {
        let (c, o) = (collection.to_owned(), options.clone());
        // The primary: values come with the page and must be current, like `get`.
        self.with_client(self.primary.clone(), move |client| async move {
            read::scan(&client, &c, &o).await
        })
    }

    fn metadata(&self, collection: &str, key: &str) -> Result<Option<RecordMetadata>> {
        let (c, k) = (collection.to_owned(), key.to_owned());
        self.with_client(self.read_pool(), move |client| async move {
            read::metadata(&client, &c, &k).await
        })
    }

    fn dictionaries(&self) -> Result<Vec<StoredDictionary>> {
        // The primary: a node that meets an unknown dictionary id must find it here.
        self.with_client(self.primary.clone(), |client| async move {
            read::dictionaries(&client).await
        })
    }

    fn list(&self, collection: &str, options: &ListOptions) -> Result<ListPage> {
        let (c, o) = (collection.to_owned(), options.clone());
        self.with_client(self.read_pool(), move |client| async move {
            read::list(&client, &c, &o).await
        })
    }

    fn collections(&self) -> Result<Vec<String>> {
        self.with_client(self.read_pool(), |client| async move {
            read::collections(&client).await
        })
    }

    fn usage(&self, collection: &str, now_ms: i64) -> Result<crate::CollectionUsage> {
        let c = collection.to_owned();
        self.with_client(self.primary.clone(), move |client| async move {
            read::usage(&client, &c, now_ms).await
        })
    }

    fn settings(&self) -> Result<Vec<CollectionSetting>> {
        // The primary: a setting just written must be what the next write applies.
        self.with_client(self.primary.clone(), |client| async move {
            read::settings(&client).await
        })
    }

    fn statistics(&self) -> Result<DatabaseStatistics> {
        let version = self.schema_version;
        self.with_client(self.read_pool(), move |client| async move {
            let mut stats = read::statistics(&client).await?;
            stats.schema_version = version;
            Ok(stats)
        })
    }

    /// Closes both pools; later calls fail with [`StorageError::Closed`]. There is no lock to
    /// release: many nodes share the database by design.
    fn close(&self) -> Result<()> {
        self.closed.store(true, Ordering::Release);
        if let Some(listener) = self.listener.lock().ok().and_then(|mut l| l.take()) {
            listener.abort();
        }
        self.primary.close();
        if let Some(replica) = &self.replica {
            replica.close();
        }
        Ok(())
    }

    fn maintenance(&self) -> &dyn Maintenance {
        self
    }

    fn identity(&self) -> Result<StoreIdentity> {
        // The primary: the identity is created there, and a replica may lag behind it.
        self.with_client(self.primary.clone(), |client| async move {
            schema::read_identity(&client).await
        })
    }

    fn record_redis_tier(&self) -> Result<()> {
        self.with_client(self.primary.clone(), |client| async move {
            schema::record_redis_tier(&client).await
        })
    }

    fn data_keys(&self) -> Result<Vec<WrappedKey>> {
        // The primary: a key another node just created must be found.
        self.with_client(self.primary.clone(), |client| async move {
            schema::read_data_keys(&client).await
        })
    }

    fn write_keys(&self, change: &KeyChange) -> Result<()> {
        let (change, scope) = (change.clone(), self.schema.clone());
        self.with_client(self.primary.clone(), move |mut client| async move {
            schema::write_keys(&mut client, &scope, &change).await
        })
    }

    fn changes_since(&self, after: u64, limit: usize) -> Result<Vec<crate::Change>> {
        // The primary: a consumer resumes where any node left off.
        self.with_client(self.primary.clone(), move |client| async move {
            feed::since(&client, after, limit).await
        })
    }

    fn change_head(&self) -> Result<u64> {
        self.with_client(self.primary.clone(), move |client| async move {
            feed::head(&client).await
        })
    }

    fn notify_changes(&self, wake: std::sync::Arc<dyn Fn() + Send + Sync>) -> Result<()> {
        self.check_open()?;
        let mut slot = self
            .listener
            .lock()
            .map_err(|_| StorageError::Task("the change listener slot was poisoned".into()))?;
        if slot.is_none() {
            let task = listen::listen(
                self.options.url.clone(),
                self.options.connection_timeout,
                listen::channel(&self.schema),
                wake,
            );
            *slot = Some(self.bridge.handle().spawn(task));
        }
        Ok(())
    }
}

impl Maintenance for PostgresBackend {
    fn check(&self) -> Result<ConsistencyReport> {
        self.with_client(self.read_pool(), |client| async move {
            read::check(&client).await
        })
    }

    /// On the primary (a replica's lag is no health question): the reference checks, which
    /// read every record and blob row, so a page the server cannot read fails them.
    fn quick_check(&self) -> Result<ConsistencyReport> {
        self.with_client(self.primary.clone(), |client| async move {
            read::check(&client).await
        })
    }

    fn blobs_after(&self, after: i64, limit: usize) -> Result<Vec<BlobEntry>> {
        self.with_client(self.read_pool(), move |client| async move {
            read::blobs_after(&client, after, limit).await
        })
    }

    fn records_naming(&self, blob_ids: &[i64]) -> Result<Vec<BlobReference>> {
        let ids = blob_ids.to_vec();
        self.with_client(self.read_pool(), move |client| async move {
            read::records_naming(&client, &ids).await
        })
    }

    fn snapshot(&self, dest: &Path) -> Result<SnapshotInfo> {
        self.check_open()?;
        snapshot::snapshot(&self.bridge, self.primary.clone(), dest)
    }

    /// Loads a verified snapshot into this (empty) database, in one transaction; id sequences
    /// continue after the restored ids.
    fn restore(&self, snapshot: &Path) -> Result<SnapshotInfo> {
        self.check_open()?;
        restore::load_snapshot(&self.bridge, self.primary.clone(), snapshot)
    }

    /// A no-op: PostgreSQL checkpoints its own write-ahead log.
    fn checkpoint(&self) -> Result<()> {
        self.check_open()
    }

    /// `ANALYZE` of the three tables, every column.
    fn optimize(&self) -> Result<()> {
        self.analyze(ANALYZE_ALL)
    }

    /// `VACUUM` of the three tables (returns space for reuse; it does not shrink files).
    fn vacuum(&self) -> Result<()> {
        self.with_client(self.primary.clone(), |client| async move {
            client
                .batch_execute("VACUUM blobs, records, dictionaries")
                .await
                .map_err(db_err("vacuuming"))
        })
    }

    fn repair_references(&self) -> Result<RepairOutcome> {
        self.with_client(self.primary.clone(), |mut client| async move {
            maintain::repair(&mut client).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            crate::redact_url("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(crate::redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(crate::redact_url("postgres://h/db"), "postgres://h/db");
    }

    #[test]
    fn bad_urls_are_typed_errors() {
        let options = PostgresOptions {
            url: "postgres://u:pw@h:notaport/db".into(),
            replica_url: None,
            pool_size: 1,
            connection_timeout: Duration::from_secs(1),
            deduplicate: true,
            durability: Durability::Full,
        };
        let err = PostgresBackend::open(&options).err();
        assert!(
            matches!(err, Some(StorageError::UnsupportedUrl { ref url, .. }) if !url.contains("pw")),
            "{err:?}"
        );
    }
}

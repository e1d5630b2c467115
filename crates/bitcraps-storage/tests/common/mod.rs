//! Shared test support: fixtures, sample BitCraps documents, and the conformance suite.

#![allow(
    dead_code,
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation
)]

// `#[macro_use]`: the suites' macros reach the modules after `common` in `it/main.rs`.
#[macro_use]
pub mod conformance;
pub mod damage;
pub mod faulty;
#[macro_use]
pub mod feed;
#[macro_use]
pub mod lifecycle;
pub mod nodes;
#[macro_use]
pub mod quotas;
pub mod sentinel;
pub mod tls;
#[macro_use]
pub mod versions;

use std::any::Any;
use std::sync::Arc;

use bitcraps_storage::testing::MemoryDatabase;
use bitcraps_storage::{Durability, PersistentStorageManager, StorageConfig};
use serde::{Deserialize, Serialize};

/// Opens a store for a configuration over a backend the fixture owns.
pub type Opener =
    Arc<dyn Fn(StorageConfig) -> bitcraps_storage::Result<PersistentStorageManager> + Send + Sync>;

/// A fresh, empty store's configuration plus whatever keeps it alive (a temp dir, a schema).
pub struct Fixture {
    pub config: StorageConfig,
    pub guard: Box<dyn Any + Send>,
    /// How to open the store when it is not reachable from `config` alone (the in-memory
    /// backend); `None` opens it with `PersistentStorageManager::open`.
    pub opener: Option<Opener>,
}

impl Fixture {
    /// Opens the fixture's store with `config` (the fixture's, possibly adjusted).
    pub async fn open(
        &self,
        config: StorageConfig,
    ) -> bitcraps_storage::Result<PersistentStorageManager> {
        match &self.opener {
            Some(open) => open(config),
            None => PersistentStorageManager::open(config).await,
        }
    }
}

/// A fixture on the in-memory backend (feature `testing`): every open of the store opens the
/// same `MemoryDatabase`, so closing and reopening sees everything, as with a file.
pub fn memory_fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = StorageConfig::with_data_path(dir.path());
    config.cache.size_mb = 4;
    // Off by default; the suites run with it, so prefetched entries are checked everywhere.
    config.cache.prefetch = true;
    config.database.max_connections = 2;
    let db = MemoryDatabase::new();
    Fixture {
        config,
        guard: Box::new(dir),
        opener: Some(Arc::new(move |config: StorageConfig| {
            let backend = db.open(config.compression.deduplication)?;
            PersistentStorageManager::with_backend(config, Arc::new(backend))
        })),
    }
}

/// A fixture on embedded SQLite in a temporary directory.
pub fn sqlite_fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = StorageConfig::with_data_path(dir.path());
    config.cache.size_mb = 4;
    // Off by default; the suites run with it, so prefetched entries are checked everywhere.
    config.cache.prefetch = true;
    config.database.max_connections = 2;
    Fixture {
        config,
        guard: Box::new(dir),
        opener: None,
    }
}

/// What a fixture function may return: a fixture, or `None` when its service is not configured
/// (the test then prints why and passes).
pub trait IntoFixture {
    fn into_fixture(self) -> Option<Fixture>;
}

impl IntoFixture for Fixture {
    fn into_fixture(self) -> Option<Fixture> {
        Some(self)
    }
}

impl IntoFixture for Option<Fixture> {
    fn into_fixture(self) -> Option<Fixture> {
        self
    }
}

/// Says why a test is skipped — or fails it when `BITCRAPS_TEST_REQUIRE_SERVICES` is set (CI
/// sets it, so a service test can never pass there by skipping).
pub fn skip(why: &str) {
    if std::env::var_os("BITCRAPS_TEST_REQUIRE_SERVICES").is_some_and(|v| !v.is_empty()) {
        panic!("{why}, and BITCRAPS_TEST_REQUIRE_SERVICES forbids skipping");
    }
    eprintln!("skipped: {why}");
}

/// The PostgreSQL URL tests use, or `None` (after printing the skip message) when unset.
pub fn postgres_url() -> Option<String> {
    match std::env::var("BITCRAPS_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            skip("BITCRAPS_TEST_POSTGRES_URL is not set");
            None
        }
    }
}

/// Runs `f` on a fresh current-thread runtime in its own thread, so it works from sync code
/// and from inside a test's runtime alike.
pub fn on_own_runtime<T: Send + 'static>(
    f: impl FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>> + Send + 'static,
) -> T {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(f())
    })
    .join()
    .expect("helper thread")
}

/// Runs `sql` on the test database (outside any test schema).
pub fn postgres_execute(url: &str, sql: String) {
    let url = url.to_owned();
    on_own_runtime(move || {
        Box::pin(async move {
            let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .expect("connect to BITCRAPS_TEST_POSTGRES_URL");
            let task = tokio::spawn(conn);
            // A deadlock aborts this statement, never the other session's: a `DROP SCHEMA`
            // takes its tables' locks one by one, and a session of the dropped store that
            // the server is still finishing (a write connection dropped mid-pipeline after a
            // failed statement ends when the server notices) can hold one of them while it
            // waits for another. Retried, the statement waits for that session instead.
            let mut attempts = 0;
            loop {
                match client.batch_execute(&sql).await {
                    Ok(()) => break,
                    Err(e)
                        if attempts < 5
                            && e.code()
                                == Some(
                                    &tokio_postgres::error::SqlState::T_R_DEADLOCK_DETECTED,
                                ) =>
                    {
                        attempts += 1;
                    }
                    Err(e) => panic!("setup SQL: {e:?}"),
                }
            }
            drop(client);
            let _ = task.await;
        })
    })
}

/// A fresh PostgreSQL schema, dropped (with everything in it) when this is dropped.
pub struct PgSchema {
    pub base_url: String,
    pub name: String,
}

impl PgSchema {
    pub fn create(base_url: &str) -> PgSchema {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let salt = format!(
            "{}:{}:{:?}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            std::time::SystemTime::now()
        );
        let hash = blake3::hash(salt.as_bytes()).to_hex();
        let name = format!("bcs_{}", &hash[..16]);
        postgres_execute(base_url, format!("CREATE SCHEMA {name}"));
        PgSchema {
            base_url: base_url.to_owned(),
            name,
        }
    }

    /// The base URL with this schema as the only `search_path` entry.
    pub fn url(&self) -> String {
        let sep = if self.base_url.contains('?') {
            '&'
        } else {
            '?'
        };
        format!(
            "{}{sep}options=-csearch_path%3D{}",
            self.base_url, self.name
        )
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        postgres_execute(
            &self.base_url,
            format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name),
        );
    }
}

/// A fixture on PostgreSQL in a schema of its own (dropped with the guard), or `None` when
/// `BITCRAPS_TEST_POSTGRES_URL` is not set.
pub fn pg_fixture() -> Option<Fixture> {
    let url = postgres_url()?;
    let schema = PgSchema::create(&url);
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = StorageConfig::with_data_path(dir.path());
    config.database.url = Some(schema.url());
    config.cache.size_mb = 4;
    config.cache.prefetch = true;
    config.database.max_connections = 4;
    Some(Fixture {
        config,
        guard: Box::new((schema, dir)),
        opener: None,
    })
}

/// A key file (64 hex characters) in a directory of its own, kept alive by the returned guard.
pub fn key_file() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("master.key");
    let key = bitcraps_storage::MasterKey::generate().expect("random key");
    std::fs::write(&path, key.to_hex().as_bytes()).expect("key file");
    (dir, path)
}

/// A store in `dir` encrypted with the key file at `key`, background tasks off.
pub fn keyed_config(
    dir: &std::path::Path,
    key: &std::path::Path,
) -> bitcraps_storage::StorageConfig {
    let mut config = bitcraps_storage::StorageConfig::with_data_path(dir);
    config.maintenance.background_tasks = false;
    config.key = bitcraps_storage::KeyConfig::default().file(key);
    config
}

/// `fixture` with encryption at rest: a fresh key file as its `key.file`.
pub fn encrypted(mut fixture: Fixture) -> Fixture {
    let (dir, path) = key_file();
    fixture.config.key = bitcraps_storage::KeyConfig::default().file(path);
    fixture.guard = Box::new((fixture.guard, dir));
    fixture
}

/// [`sqlite_fixture`], encrypted.
pub fn sqlite_encrypted_fixture() -> Fixture {
    encrypted(sqlite_fixture())
}

/// [`memory_fixture`], encrypted.
pub fn memory_encrypted_fixture() -> Fixture {
    encrypted(memory_fixture())
}

/// [`pg_fixture`], encrypted.
pub fn pg_encrypted_fixture() -> Option<Fixture> {
    pg_fixture().map(encrypted)
}

/// Like [`sqlite_fixture`], without fsync per commit (for tests that write a lot; durability
/// policy does not change any logic under test).
pub fn sqlite_fixture_fast() -> Fixture {
    let mut f = sqlite_fixture();
    f.config.write.durability = Durability::Normal;
    f
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Game {
    pub id: String,
    pub table: u32,
    pub point: Option<u8>,
    pub players: Vec<String>,
    pub rolls: Vec<(u8, u8)>,
    pub notes: String,
}

/// A large document: a game log of `rolls` rolls (~130 bytes each; 800 is about 100 KiB,
/// 8,000 about 1 MiB), grown one roll at a time like a BitCraps game's.
pub fn game_log(rolls: u64) -> serde_json::Value {
    let rolls: Vec<serde_json::Value> = (0..rolls)
        .map(|n| {
            serde_json::json!({"n": n, "dice": [n % 6 + 1, (n * 7 + 1) % 6 + 1],
                   "shooter": format!("p-{}", n % 7),
                   "bets": [{"kind": "pass", "amount": 10 + n % 90}], "point": 4 + n % 7})
        })
        .collect();
    serde_json::json!({"game": 1, "rolls": rolls})
}

/// Asserts `result` is `Corruption` at `location` naming a data key (an encrypted blob that
/// does not open).
pub fn expect_key_corruption<T: std::fmt::Debug>(
    result: bitcraps_storage::Result<T>,
    location: &str,
) {
    match result {
        Err(bitcraps_storage::StorageError::Corruption {
            location: at,
            detail,
        }) => {
            assert_eq!(at, location);
            assert!(detail.contains("data key"), "names the key: {detail}");
        }
        other => panic!("expected corruption at {location}, got {other:?}"),
    }
}

pub fn game(id: &str, n: u32) -> Game {
    Game {
        id: id.to_owned(),
        table: n % 7,
        point: [None, Some(4), Some(5), Some(6), Some(8), Some(9), Some(10)][(n % 7) as usize],
        players: (0..(n % 5 + 1)).map(|p| format!("player-{p}")).collect(),
        rolls: (0..(n % 11))
            .map(|r| ((r % 6 + 1) as u8, ((r * 5) % 6 + 1) as u8))
            .collect(),
        notes: "come out roll; pass line and don't pass bets settled at the table".repeat(3),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lobby {
    pub name: String,
    pub min_bet: u64,
}

pub fn lobby() -> Lobby {
    Lobby {
        name: "default lobby".into(),
        min_bet: 10,
    }
}

/// The SQLite backend of a fixture, opened directly (for wrapping in fault injectors).
pub fn sqlite_backend(
    config: &StorageConfig,
) -> bitcraps_storage::Result<bitcraps_storage::testing::sqlite::SqliteBackend> {
    bitcraps_storage::testing::sqlite::SqliteBackend::open(&sqlite_options(
        config.database.data_path.join("bitcraps.db"),
        2,
    ))
}

/// Options of a SQLite backend opened directly by a test: `readers` read connections,
/// `Durability::Normal`, deduplication, a 5 s connection timeout and a 4 MiB page cache.
pub fn sqlite_options(
    path: impl Into<std::path::PathBuf>,
    readers: usize,
) -> bitcraps_storage::testing::sqlite::SqliteOptions {
    bitcraps_storage::testing::sqlite::SqliteOptions {
        path: path.into(),
        readers,
        durability: Durability::Normal,
        deduplicate: true,
        connection_timeout: std::time::Duration::from_secs(5),
        page_cache_bytes: 4 << 20,
    }
}

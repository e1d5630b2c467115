//! Shared test support: fixtures, sample BitCraps documents, and the conformance suite.

#![allow(
    dead_code,
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation
)]

pub mod conformance;
pub mod faulty;
pub mod nodes;

use std::any::Any;

use bitcraps_storage::{Durability, StorageConfig};
use serde::{Deserialize, Serialize};

/// A fresh, empty store's configuration plus whatever keeps it alive (a temp dir, a schema).
pub struct Fixture {
    pub config: StorageConfig,
    pub guard: Box<dyn Any + Send>,
}

/// A fixture on embedded SQLite in a temporary directory.
pub fn sqlite_fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = StorageConfig::with_data_path(dir.path());
    config.cache_size_mb = 4;
    config.max_connections = 2;
    Fixture {
        config,
        guard: Box::new(dir),
    }
}

/// Like [`sqlite_fixture`], without fsync per commit (for tests that write a lot; durability
/// policy does not change any logic under test).
pub fn sqlite_fixture_fast() -> Fixture {
    let mut f = sqlite_fixture();
    f.config.durability = Durability::Normal;
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
) -> bitcraps_storage::Result<bitcraps_storage::backend::sqlite::SqliteBackend> {
    bitcraps_storage::backend::sqlite::SqliteBackend::open(
        &bitcraps_storage::backend::sqlite::SqliteOptions {
            path: config.data_path.join("bitcraps.db"),
            readers: 2,
            durability: Durability::Normal,
            deduplicate: true,
            connection_timeout: std::time::Duration::from_secs(5),
        },
    )
}

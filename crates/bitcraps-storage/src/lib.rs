//! # bitcraps-storage
//!
//! Typed, durable, compact storage for BitCraps, with nothing to install: serde values stored
//! by collection and key in an embedded SQLite database (WAL mode, one writer, pooled
//! readers). Every write is compressed when that helps (zstd by default), deduplicated by
//! content (blake3, reference-counted blobs), group-committed (concurrent writers share one
//! fsync) and acknowledged only once durable. Reads go through a byte-bounded cache kept
//! exactly coherent with the database, and are verified against their content hash.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> bitcraps_storage::Result<()> {
//! use bitcraps_storage::{ListOptions, PersistentStorageManager, StorageConfig};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize, Debug, PartialEq)]
//! struct Game { point: Option<u8>, players: Vec<String> }
//!
//! let dir = tempfile::tempdir().map_err(|e| bitcraps_storage::StorageError::Task(e.to_string()))?;
//! let storage = PersistentStorageManager::open(StorageConfig::with_data_path(dir.path())).await?;
//!
//! let game = Game { point: Some(6), players: vec!["alice".into(), "bob".into()] };
//! storage.store("games", "g-1", &game).await?;
//! assert_eq!(storage.retrieve::<Game>("games", "g-1").await?, Some(game));
//!
//! let page = storage.list("games", ListOptions::default().prefix("g-")).await?;
//! assert_eq!(page.keys, ["g-1"]);
//! assert!(storage.delete("games", "g-1").await?);
//! storage.close().await?;
//! # Ok(()) }
//! ```
//!
//! See `ARCHITECTURE.md` for how the pieces fit and `docs/design.md` for the record format.

#![deny(clippy::unwrap_used, clippy::expect_used)]

mod access;
pub mod backend;
mod background;
pub mod backup;
mod cache;
pub mod codec;
pub mod config;
mod dictionary;
mod error;
mod fs;
mod list;
mod maintenance;
mod remote;
mod rt;
mod stats;
mod store;
pub mod validate;
mod value;
mod writer;
mod zstd_ctx;

/// Test support: the in-memory backend, fault injection, `with_backend` (feature `testing`).
#[cfg(feature = "testing")]
pub use backend::testing;
pub use backend::{ConsistencyReport, DatabaseStatistics, RecordMetadata};
/// Test hooks (`testing` feature, not a stable API).
#[cfg(feature = "testing")]
pub use background::BackgroundTask;
pub use backup::{
    BackupInfo, BackupListing, BackupManager, BackupVerification, ForeignManifest,
    IncompleteBackup, RestoreReport, RetentionOutcome, RetentionPolicy, SweepReport,
};
pub use cache::CacheStatistics;
pub use codec::Codec;
pub use config::{
    BackupConfig, CacheConfig, CompressionConfig, DatabaseConfig, Durability, MaintenanceConfig,
    RedisConfig, StorageConfig, StorageConfigBuilder, WriteConfig,
};
pub use error::{BoxError, Result, StorageError};
pub use list::{DEFAULT_LIST_LIMIT, ListOptions, ListPage};
pub use maintenance::{MaintenanceReport, MaintenanceStep, SpaceDebt};
pub use remote::RemoteCacheStatistics;
pub use stats::StorageStatistics;
pub use store::PersistentStorageManager;
pub use value::{ContentHash, EncodedValue, Pipeline};

/// The README's examples, compiled as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;

/// The examples of docs/configuration.md, compiled as doctests too.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/configuration.md")]
pub struct ConfigurationDoctests;

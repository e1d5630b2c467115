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
#![warn(unnameable_types)]

// Every module is private; the `pub use` lists below are the whole public surface, so each
// public item has one path. Test support lives behind the `testing` feature.
mod access;
mod backend;
mod background;
mod backup;
mod batch;
mod cache;
mod chunk;
mod clock;
mod codec;
mod config;
mod crypto;
mod dictionary;
mod error;
mod expiry;
mod feed;
mod fs;
mod json;
mod list;
mod maintenance;
mod observe;
mod prefetch;
mod quota;
mod redact;
mod reencrypt;
mod remote;
mod rt;
mod scrub;
mod settings;
mod stats;
mod store;
mod striped;
mod timefmt;
mod tls;
mod validate;
mod value;
mod verify;
mod version;
mod writer;
mod zstd_ctx;

pub use backend::{
    ConsistencyReport, DamagedDocument, DatabaseStatistics, RecordMetadata, RepairOutcome,
    SnapshotInfo,
};
pub use backup::{
    BackupInfo, BackupListing, BackupManager, BackupVerification, ForeignManifest,
    IncompleteBackup, RestoreReport, RetentionOutcome, RetentionPolicy, StoreRestoreReport,
    SweepReport,
};
pub use batch::WriteBatch;
pub use cache::{CacheStatistics, TYPED_BYTES_PER_JSON_BYTE, TYPED_FIXED_CHARGE};
pub use codec::Codec;
pub use config::{
    BackendTarget, BackupConfig, CacheConfig, CompressionConfig, DEFAULT_DATABASE_FILE,
    DatabaseConfig, Durability, KeyConfig, MaintenanceConfig, MetricsConfig, RedisConfig,
    StorageConfig, StorageConfigBuilder, WriteConfig,
};
pub use crypto::{EncryptionReport, KeyProvider, KeySource, MasterKey};
pub use error::{BoxError, Result, StorageError};
pub use feed::{Change, ChangeKind, ChangeStream, DEFAULT_CHANGE_RETENTION};
pub use json::MAX_DEPTH as MAX_JSON_DEPTH;
pub use list::{DEFAULT_LIST_LIMIT, ListOptions, ListPage, ScanPage};
pub use maintenance::{MaintenanceReport, MaintenanceStep, SpaceDebt};
pub use observe::{LatencyPercentiles, METRICS, MetricKind, MetricName, describe_metrics};
pub use quota::{CollectionQuota, CollectionUsage, DEFAULT_SOFT_PERCENT, QuotaKind, QuotaWarning};
pub use redact::redact_url;
pub use reencrypt::ReencryptStep;
pub use remote::RemoteCacheStatistics;
pub use scrub::{ScrubPass, ScrubStep};
pub use stats::StorageStatistics;
pub use store::PersistentStorageManager;
pub use tls::TlsFailure;
pub use validate::{MAX_COLLECTION_LEN, MAX_KEY_LEN};
pub use version::{Expect, Version};

/// Test support (feature `testing`; not a stable API): the backend seam and its test backends
/// (in-memory, fault-injecting), opening a store over a backend built by the caller
/// (`PersistentStorageManager::with_backend`), the value pipeline, and the background-task
/// hooks.
#[cfg(feature = "testing")]
pub mod testing {
    pub use crate::backend::testing::*;
    pub use crate::backend::{
        Backend, BlobEntry, BlobReference, CollectionSetting, InlineDeltaEntry, KeyChange,
        Maintenance, OpOutcome, RecordCursor, RecordPage, ResealedBlob, ResealedChunk,
        ResealedInline, StoreIdentity, StoredBlob, StoredDictionary, StoredRecord, WrappedKey,
        WriteOp, WriteUnit,
    };
    pub use crate::background::BackgroundTask;
    pub use crate::cache::{ENTRY_OVERHEAD, FilledCache};
    pub use crate::crypto::{force_xchacha, seal_documents_v1};
    pub use crate::value::{ContentHash, EncodedValue, Pipeline, Presealed};

    /// The embedded backend, opened directly.
    pub mod sqlite {
        pub use crate::backend::sqlite::{SqliteBackend, SqliteOptions};
    }

    /// The PostgreSQL backend, opened directly.
    #[cfg(feature = "postgres")]
    pub mod postgres {
        pub use crate::backend::postgres::{
            ANALYZE_AFTER_PUTS, Handshake, MakeRustls, PostgresBackend, PostgresOptions,
            RustlsConnect, RustlsStream, transport,
        };
    }
}

/// The README's examples, compiled as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;

/// The examples of docs/configuration.md, compiled as doctests too.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/configuration.md")]
pub struct ConfigurationDoctests;

//! The backend seam: everything backend-specific lives below this module, and everything
//! above it — the value pipeline, group commit, the cache, access tracking, backups — is
//! backend-independent.
//!
//! - `open::open` turns a configuration into a running backend: the one place that
//!   knows which URL means which engine and which settings each engine takes.
//! - [`Backend`] is what every request needs; [`Maintenance`] is what the maintenance run and
//!   the backup manager need. Both are blocking and in this crate's own types: no driver type
//!   crosses this boundary.
//! - [`snapshot`] owns the snapshot format (the SQLite file a backup archives): inspecting and
//!   verifying a copy, bringing a copy to the current schema, and the row stream that
//!   backends without SQLite files write and read snapshots through.
//!
//! # Why two traits
//!
//! A request touches ten operations (write, read, read many, scan, metadata, dictionaries, list, collections,
//! statistics, close). Checks, snapshots, restores, checkpoints, optimizing, vacuuming and
//! reference repair are a different concern with different callers (the maintenance run,
//! backups) and a different cost (they may scan or rewrite the whole database). Keeping them
//! in [`Maintenance`] keeps each trait small enough to read at once, lets a test wrapper that
//! only cares about requests forward all of maintenance in one line
//! (`fn maintenance(&self) -> &dyn Maintenance { self.inner.maintenance() }`), and lets a
//! reviewer see from a call site whether it may rewrite the database.
//!
//! Maintenance is reached from an `Arc<dyn Backend>` through the required
//! [`Backend::maintenance`] accessor rather than a supertrait or a downcast: a supertrait would
//! merge the two traits again for every implementor, and a downcast would need `Any` and a
//! list of concrete types — exactly what the seam is there to hide. Every backend here
//! supports maintenance, so the accessor is not optional; a backend that could not snapshot
//! would answer its `snapshot` with a typed error, where the caller already handles errors.
//!
//! The only defaulted methods are shortcuts whose default is the general path
//! ([`Backend::get_at_once`], [`Maintenance::inline_deltas_after`]): a backend's identity
//! ([`Backend::name`]) lands in backup manifests and statistics, so each backend states it.

pub(crate) mod identity;
pub(crate) mod open;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod snapshot;
pub mod sqlite;
mod types;

#[cfg(feature = "testing")]
mod fault;
#[cfg(feature = "testing")]
mod memory;
#[cfg(feature = "testing")]
pub mod testing;

use std::path::Path;

pub use crate::dictionary::StoredDictionary;
use crate::error::Result;
use crate::list::{ListOptions, ListPage};
pub use identity::StoreIdentity;
pub use types::{
    BlobEntry, BlobReference, CollectionSetting, ConsistencyReport, DamagedDocument,
    DatabaseStatistics, InlineDeltaEntry, KeyChange, OpOutcome, RecordCursor, RecordMetadata,
    RecordPage, RepairOutcome, ResealedBlob, ResealedChunk, ResealedInline, SnapshotInfo,
    StoredBlob, StoredRecord, WrappedKey, WriteOp, WriteUnit, is_expired, now_ms, time_from_ms,
};

/// What every request needs from a storage engine. Blocking; called from dedicated threads.
pub trait Backend: Send + Sync + 'static {
    /// The backend's name as statistics and backup manifests report it (`"sqlite"`,
    /// `"postgres"`, `"memory"`). Wrappers report the backend they wrap.
    fn name(&self) -> &'static str;

    /// Applies `units` in one durable transaction. Each unit is atomic on its own: a unit that
    /// fails is rolled back and reported in its slot while the others still commit. The outer
    /// error means nothing was committed.
    fn apply(&self, units: &[WriteUnit]) -> Result<Vec<Result<Vec<OpOutcome>>>>;

    /// Reads a record's blob and version.
    fn get(&self, collection: &str, key: &str) -> Result<Option<StoredRecord>>;

    /// Reads a record like [`get`](Self::get) when that is quick and waits for nothing: a
    /// read connection free at once, and a document that is one stored row (one indexed
    /// lookup, no chunk list or delta to read beside it). `None` when it cannot answer so,
    /// and the caller then calls `get` on a blocking thread. Called on the async runtime's
    /// threads, so an implementation must stay that bounded. The default answers `None`:
    /// right for a backend whose reads are round trips (PostgreSQL) and for a wrapper that
    /// cannot answer without waiting (its reads then keep going through its own `get`). The
    /// encrypting wrapper forwards it when the record's data key is already in memory.
    fn get_at_once(&self, collection: &str, key: &str) -> Option<Result<Option<StoredRecord>>> {
        let _ = (collection, key);
        None
    }

    /// Reads several records of one collection in one read (one round trip, one snapshot
    /// where the engine has them), in the order of `keys`.
    fn get_many(&self, collection: &str, keys: &[String]) -> Result<Vec<Option<StoredRecord>>>;

    /// Reads a page of records with their blobs, paged exactly like [`Backend::list`].
    fn scan(&self, collection: &str, options: &ListOptions) -> Result<RecordPage>;

    /// Reads a record's metadata (access statistics as flushed).
    fn metadata(&self, collection: &str, key: &str) -> Result<Option<RecordMetadata>>;

    /// Every stored dictionary.
    fn dictionaries(&self) -> Result<Vec<StoredDictionary>>;

    /// Lists keys in order.
    fn list(&self, collection: &str, options: &ListOptions) -> Result<ListPage>;

    /// Names of the collections that hold at least one record, in order.
    fn collections(&self) -> Result<Vec<String>>;

    /// Every stored collection setting (`collection_settings`), in collection and name order.
    fn settings(&self) -> Result<Vec<CollectionSetting>>;

    /// What `collection` holds as its quota counts it: records unexpired at `now_ms` and
    /// their logical JSON bytes (`quota.rs`).
    fn usage(&self, collection: &str, now_ms: i64) -> Result<crate::CollectionUsage>;

    /// Reports sizes and counts.
    fn statistics(&self) -> Result<DatabaseStatistics>;

    /// Releases the database for other processes; later writes fail with
    /// [`StorageError::Closed`](crate::StorageError::Closed).
    fn close(&self) -> Result<()>;

    /// The maintenance side of this backend (usually `self`).
    fn maintenance(&self) -> &dyn Maintenance;

    /// The store's identity, created with the schema (`backend/identity.rs`).
    fn identity(&self) -> Result<StoreIdentity>;

    /// Records durably that the store runs with a Redis tier (idempotent; writes nothing when
    /// already recorded).
    fn record_redis_tier(&self) -> Result<()>;

    /// The wrapped data keys of an encrypted store (the `data_keys` table), in id order.
    fn data_keys(&self) -> Result<Vec<WrappedKey>>;

    /// Writes key material (the key check value, data keys) in one transaction; see
    /// [`KeyChange`].
    fn write_keys(&self, change: &KeyChange) -> Result<()>;

    /// Up to `limit` changes of the change log with a seq above `after`, in seq order.
    /// [`StorageError::ChangesPruned`](crate::StorageError::ChangesPruned) when retention
    /// removed changes above `after` (checked after the rows are read, so the answer is never
    /// a silent gap).
    fn changes_since(&self, after: u64, limit: usize) -> Result<Vec<crate::Change>>;

    /// The seq of the last committed change (0 when none was).
    fn change_head(&self) -> Result<u64>;

    /// From now on, calls `wake` whenever another node may have committed changes, where the
    /// engine can tell (PostgreSQL: `LISTEN`/`NOTIFY`); an engine that cannot does nothing
    /// (watches find other processes' changes by polling). Called once per store, by its
    /// first watch.
    fn notify_changes(&self, wake: std::sync::Arc<dyn Fn() + Send + Sync>) -> Result<()>;
}

/// What maintenance and backups need from a storage engine: whole-database work. Blocking.
pub trait Maintenance: Send + Sync {
    /// Checks the engine's integrity and that every reference count is exact.
    fn check(&self) -> Result<ConsistencyReport>;

    /// The health check that runs before destructive maintenance: the engine's quick
    /// integrity check where it has one (SQLite `quick_check`, which finds the same damaged
    /// pages as `integrity_check` without cross-checking indexes) and the reference checks.
    fn quick_check(&self) -> Result<ConsistencyReport>;

    /// Up to `limit` blobs with an id above `after`, in id order: the page the deep check
    /// and the scrub read every stored byte through.
    fn blobs_after(&self, after: i64, limit: usize) -> Result<Vec<BlobEntry>>;

    /// The records that name any of `blob_ids`, as `(blob id, collection, key)` in
    /// collection and key order. A scan of every record: called only for blobs found damaged.
    fn records_naming(&self, blob_ids: &[i64]) -> Result<Vec<BlobReference>>;

    /// Up to `limit` records after `after` (collection, key) that keep a delta in their own
    /// row, in collection and key order, each with the blob it reads as: the page the deep
    /// check and the scrub verify those deltas through (a scan of `records`, no index). A
    /// backend that keeps every delta as a blob of its own has none.
    fn inline_deltas_after(
        &self,
        after: Option<&RecordCursor>,
        limit: usize,
    ) -> Result<Vec<InlineDeltaEntry>> {
        let _ = (after, limit);
        Ok(Vec::new())
    }

    /// Writes a consistent copy of the whole database in the `snapshot` format to `dest`
    /// (which must not exist) while writers keep writing, and describes it.
    fn snapshot(&self, dest: &Path) -> Result<SnapshotInfo>;

    /// Loads the snapshot at `snapshot` (verified, at the current schema version; see
    /// `snapshot::upgrade`) into this database, which must be empty: a database holding any
    /// record, blob or dictionary is refused with [`StorageError::Config`](crate::StorageError::Config).
    /// Ids, hashes, reference counts, times and access statistics are kept. All or nothing.
    fn restore(&self, snapshot: &Path) -> Result<SnapshotInfo>;

    /// Folds the write-ahead log into the database and truncates it.
    fn checkpoint(&self) -> Result<()>;

    /// Lets the engine refresh its query-planner statistics.
    fn optimize(&self) -> Result<()>;

    /// Rebuilds the database file to return free pages to the file system.
    fn vacuum(&self) -> Result<()>;

    /// Recomputes every blob's reference count and removes blobs nothing refers to. Refuses
    /// (with [`StorageError::Corruption`](crate::StorageError::Corruption), deleting nothing)
    /// when the record table cannot be read in full, since a record it cannot see may still
    /// name a blob.
    fn repair_references(&self) -> Result<RepairOutcome>;
}

/// The refusal every backend gives a restore into a database that holds data.
pub(crate) fn restore_target_not_empty() -> crate::StorageError {
    crate::StorageError::Config(
        "the restore target is not empty: it holds records, blobs or dictionaries; restore \
         into a new schema or database"
            .into(),
    )
}

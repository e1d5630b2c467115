//! The data that crosses the backend seam: write operations and their outcomes, stored blobs,
//! metadata, statistics and the reports of checks, snapshots and repairs. Plain structs in
//! this crate's own types; no driver type appears here.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::codec::Codec;
use crate::value::EncodedValue;
use crate::version::{Expect, Version};

/// One change inside a write unit.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum WriteOp {
    /// Insert or overwrite a record.
    Put {
        /// Collection name (validated).
        collection: String,
        /// Key (validated).
        key: String,
        /// The encoded value.
        value: EncodedValue,
        /// Write time, milliseconds since the Unix epoch.
        now_ms: i64,
        /// The version to give the record, when it is newer than the key's current one (a
        /// migration keeps the source's versions); otherwise, and when `None`, the next
        /// version of the clock. The clock moves past a kept version.
        keep_version: Option<Version>,
        /// When the record expires, milliseconds since the Unix epoch; `None`: the
        /// collection's default TTL (read inside the transaction) from `now_ms`, or never.
        expires_ms: Option<i64>,
    },
    /// Remove a record if it exists.
    Delete {
        /// Collection name.
        collection: String,
        /// Key.
        key: String,
        /// The store's clock: a record that expired by then counts as absent.
        now_ms: i64,
    },
    /// Fail the unit with [`StorageError::Conflict`](crate::StorageError::Conflict) unless
    /// the record's state satisfies `expect` (read inside the transaction, before the unit's
    /// later operations; writes nothing).
    Check {
        /// Collection name.
        collection: String,
        /// Key.
        key: String,
        /// The condition.
        expect: Expect,
        /// The store's clock: a record that expired by then counts as absent.
        now_ms: i64,
    },
    /// Remove every record of `collection` whose key starts with `prefix` (non-empty).
    DeletePrefix {
        /// Collection name.
        collection: String,
        /// The key prefix.
        prefix: String,
        /// The store's clock: records expired by then are removed too but not reported.
        now_ms: i64,
    },
    /// Store a trained zstd dictionary; the outcome carries its id.
    PutDictionary {
        /// The collection it was trained for.
        collection: String,
        /// The dictionary bytes.
        data: Arc<[u8]>,
        /// Training time, milliseconds since the Unix epoch.
        now_ms: i64,
    },
    /// Remove up to `limit` records that expired by `now_ms`, oldest expiry first.
    SweepExpired {
        /// The store's clock.
        now_ms: i64,
        /// The most records to remove.
        limit: usize,
    },
    /// Remove up to `limit` of the oldest changes of the change log written before
    /// `before_ms`: always a prefix of the log (`feed/retention.rs`).
    PruneChanges {
        /// Changes written before this time (milliseconds since the Unix epoch) may go.
        before_ms: i64,
        /// The most changes to remove.
        limit: usize,
    },
    /// Set (`Some`) or clear (`None`) one setting of a collection (see [`CollectionSetting`]).
    Setting {
        /// Collection name.
        collection: String,
        /// The setting's name.
        name: &'static str,
        /// The value.
        value: Option<i64>,
    },
    /// Add buffered reads to a record's access statistics (no-op if the record is gone).
    Touch {
        /// Collection name.
        collection: String,
        /// Key.
        key: String,
        /// Reads to add.
        count: u64,
        /// Time of the latest read, milliseconds since the Unix epoch.
        last_ms: i64,
    },
}

/// What one [`WriteOp`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OpOutcome {
    /// A put.
    Put {
        /// The content was already stored; only a reference was added.
        deduplicated: bool,
        /// An existing record was overwritten.
        replaced: bool,
        /// The record's new version (see [`Version`]).
        version: Version,
        /// When the record expires (milliseconds since the Unix epoch), if it does.
        expires_ms: Option<i64>,
        /// Set on the unit's last put into a collection the unit took past a soft limit of
        /// its quota.
        quota_warning: Option<crate::QuotaWarning>,
    },
    /// A condition that held.
    Check,
    /// A prefix delete.
    DeletePrefix {
        /// The keys deleted that had not expired, in order.
        deleted: Vec<String>,
    },
    /// A delete.
    Delete {
        /// The record existed.
        existed: bool,
    },
    /// A stored dictionary.
    Dictionary {
        /// Its id.
        id: i64,
    },
    /// A sweep of expired records.
    Swept {
        /// The records removed, as `(collection, key)`.
        removed: Vec<(String, String)>,
    },
    /// A retention sweep of the change log.
    Pruned {
        /// Changes removed.
        removed: u64,
        /// The highest seq removed so far (0: none ever was).
        pruned_through: u64,
    },
    /// A setting written.
    Setting,
    /// A touch.
    Touch,
}

/// One stored setting of a collection (`collection_settings`): `(collection, name, value)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectionSetting {
    /// Collection name.
    pub collection: String,
    /// The setting's name (see `settings.rs`).
    pub name: String,
    /// Its value.
    pub value: i64,
}

/// Whether a record that expires at `expires_ms` is expired at `now_ms`: it is from its
/// expiry time on.
pub fn is_expired(expires_ms: Option<i64>, now_ms: i64) -> bool {
    expires_ms.is_some_and(|e| e <= now_ms)
}

/// A group of operations that succeed or fail together.
pub type WriteUnit = Vec<WriteOp>;

/// A stored blob as read back, not yet verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBlob {
    /// Codec id as stored.
    pub codec_id: i64,
    /// Length of the serialized document as stored.
    pub raw_len: i64,
    /// blake3 of the serialized document as stored (see `keyed`).
    pub hash: Vec<u8>,
    /// The stored bytes.
    pub data: Vec<u8>,
    /// The zstd dictionary the bytes need, if any.
    pub dict_id: Option<i64>,
    /// A chunk list's chunks in order (codec id 16, `chunk::CHUNKED`), each a
    /// whole blob of its own; empty for every other blob.
    pub chunks: Vec<StoredBlob>,
    /// Set on an encrypted store's opened blob of layout v2 (`crypto/blob.rs`), which holds
    /// no plain content hash: `hash` is then the row's keyed content address, and decoding
    /// verifies blake3 of the document under this key against it. `None` everywhere else,
    /// where `hash` is blake3 of the document.
    pub(crate) keyed: Option<crate::crypto::ContentKey>,
}

impl StoredBlob {
    /// Whether the blob is small enough to be opened and decoded on an async runtime's
    /// thread (a cache miss read in place): one whole document of at most the default
    /// chunking threshold, whatever the store's threshold was when it was written, its
    /// stored bytes at most that plus `overhead` (an encrypted blob's envelope; 0 for a
    /// plain one). Checked before any decryption or decompression.
    pub(crate) fn decodes_at_once(&self, overhead: usize) -> bool {
        let limit = crate::chunk::DEFAULT_THRESHOLD;
        self.chunks.is_empty()
            && usize::try_from(self.raw_len).is_ok_and(|n| n <= limit)
            && self.data.len() <= limit.saturating_add(overhead)
    }
}

/// A record as read back: its blob (not yet verified) and its version.
#[derive(Debug, Clone)]
pub struct StoredRecord {
    /// The record's blob.
    pub blob: StoredBlob,
    /// The record's version.
    pub version: Version,
    /// When the record expires, milliseconds since the Unix epoch.
    pub expires_ms: Option<i64>,
}

/// One page of a scan: records with their blobs, in key order.
#[derive(Debug, Clone, Default)]
pub struct RecordPage {
    /// `(key, record)` in key order.
    pub items: Vec<(String, StoredRecord)>,
    /// `Some(last key)` when more records follow (as [`ListPage::next_after`](crate::ListPage)).
    pub next_after: Option<String>,
}

impl RecordPage {
    /// Builds a page from up to `limit + 1` records fetched in order.
    pub(crate) fn from_fetched(mut items: Vec<(String, StoredRecord)>, limit: usize) -> Self {
        let more = items.len() > limit;
        items.truncate(limit);
        let next_after = if more {
            items.last().map(|(k, _)| k.clone())
        } else {
            None
        };
        RecordPage { items, next_after }
    }
}

/// A record's metadata (`Serialize`: times as RFC 3339 UTC, the codec by name).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct RecordMetadata {
    /// Collection name.
    pub collection: String,
    /// Key.
    pub key: String,
    /// Size of the serialized JSON document.
    pub size_bytes: u64,
    /// Size of the stored (possibly compressed) form; of a chunked document, the stored
    /// bytes of its chunks, counting each listed chunk (shared or not).
    pub stored_bytes: u64,
    /// How many chunks the document is stored in (a delta: its keyframe's); 0 when it is
    /// stored whole.
    pub chunk_count: u64,
    /// The document is a zstd patch against its key's keyframe (whose chunks it lists).
    pub is_delta: bool,
    /// Codec of the stored form.
    pub codec: Codec,
    /// Whether the stored form is compressed.
    pub is_compressed: bool,
    /// The zstd dictionary of the stored form, if one was used.
    pub dictionary_id: Option<i64>,
    /// blake3 of the serialized document, lower-case hex.
    pub content_hash: String,
    /// How many records share this content (1 when not deduplicated).
    pub shared_by: u64,
    /// When the record was first created.
    #[serde(serialize_with = "crate::timefmt::serialize")]
    pub created_at: SystemTime,
    /// When the record was last written.
    #[serde(serialize_with = "crate::timefmt::serialize")]
    pub updated_at: SystemTime,
    /// How many times the record was read (including reads not yet flushed to disk).
    pub access_count: u64,
    /// When the record was last read, if ever.
    #[serde(serialize_with = "crate::timefmt::serialize_option")]
    pub last_accessed: Option<SystemTime>,
    /// The record's version: it increases on every write of the key (see [`Version`]).
    pub version: Version,
    /// When the record expires, if it has a TTL; it is never returned from then on.
    #[serde(serialize_with = "crate::timefmt::serialize_option")]
    pub expires_at: Option<SystemTime>,
}

/// Sizes and counts the database reports.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct DatabaseStatistics {
    /// Which backend this is ([`Backend::name`](crate::backend::Backend::name)).
    pub backend: &'static str,
    /// Schema version of the database.
    pub schema_version: i64,
    /// Number of records.
    pub record_count: u64,
    /// Number of distinct stored blobs.
    pub blob_count: u64,
    /// Serialized bytes of all records, as if nothing were shared or compressed.
    pub logical_bytes: u64,
    /// Serialized bytes of the distinct blobs (after dedup, before compression).
    pub unique_bytes: u64,
    /// Stored bytes of the distinct blobs and chunks (after dedup and compression).
    pub stored_bytes: u64,
    /// Documents stored as chunk lists (distinct blobs).
    pub chunked_blobs: u64,
    /// Distinct stored chunks.
    pub chunk_count: u64,
    /// Serialized bytes chunk sharing saves: every chunk's length for each list entry
    /// beyond its first (documents and versions that share content).
    pub chunk_dedup_saved_bytes: u64,
    /// Documents stored as deltas against their key's keyframe (distinct blobs; the chain is
    /// always one patch long).
    pub delta_blobs: u64,
    /// Serialized bytes the deltas save: each delta document's length less its patch's.
    pub delta_saved_bytes: u64,
    /// Stored zstd dictionaries.
    pub dictionary_count: u64,
    /// Bytes of stored zstd dictionaries.
    pub dictionary_bytes: u64,
    /// Size of the database file(s) on disk, including the WAL.
    pub file_bytes: u64,
    /// Size of the write-ahead log.
    pub wal_bytes: u64,
    /// Pages in the database.
    pub page_count: u64,
    /// Unused pages (reclaimable by vacuum).
    pub free_pages: u64,
    /// Page size in bytes.
    pub page_size: u64,
}

/// The result of a consistency check.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct ConsistencyReport {
    /// Messages of the engine's integrity check; `["ok"]` when it passes.
    pub integrity: Vec<String>,
    /// Records whose blob does not exist.
    pub dangling_records: u64,
    /// Blobs that no record refers to.
    pub orphaned_blobs: u64,
    /// Blobs whose reference count differs from the number of records referring to them.
    pub refcount_mismatches: u64,
    /// Blobs (or chunks) that name a zstd dictionary that does not exist.
    pub missing_dictionaries: u64,
    /// Entries of chunk lists that name a chunk that does not exist, and chunk-list blobs
    /// without any entry: documents that cannot be read.
    pub dangling_chunks: u64,
    /// Chunks that no chunk list names, and chunk lists whose blob is gone (the reference
    /// repair removes both).
    pub orphaned_chunks: u64,
    /// Chunks whose reference count differs from the number of list entries naming them.
    pub chunk_refcount_mismatches: u64,
    /// Whether every blob was read, decoded and hashed (the deep check); the fields below
    /// are zero and empty otherwise.
    pub deep: bool,
    /// Blobs decoded and hashed by the deep check.
    pub blobs_verified: u64,
    /// Stored bytes those blobs hold.
    pub bytes_verified: u64,
    /// Blobs that failed to decode or whose content hash does not match.
    pub damaged_blobs: u64,
    /// Deltas kept in their record's row (SQLite schema 13) that the deep check decoded over
    /// their keyframe and hashed; their stored bytes are in `bytes_verified`, and a damaged
    /// one is in `damaged` by its record.
    pub inline_deltas_verified: u64,
    /// Every record whose document is damaged, by collection and key.
    pub damaged: Vec<DamagedDocument>,
}

impl ConsistencyReport {
    /// True when the engine check passed, every reference is exact and (after a deep check)
    /// every blob decoded to its content hash.
    pub fn is_ok(&self) -> bool {
        self.is_sound()
            && self.orphaned_blobs == 0
            && self.refcount_mismatches == 0
            && self.orphaned_chunks == 0
            && self.chunk_refcount_mismatches == 0
            && self.damaged_blobs == 0
            && self.damaged.is_empty()
    }

    /// True when the store is healthy enough for destructive maintenance: the engine check
    /// passed, every record's blob exists and every blob's dictionary exists. Orphaned blobs
    /// and wrong reference counts are what the reference repair corrects, so they do not
    /// count against it.
    pub fn is_sound(&self) -> bool {
        self.integrity == ["ok"]
            && self.dangling_records == 0
            && self.missing_dictionaries == 0
            && self.dangling_chunks == 0
    }

    /// One line naming what failed (empty when [`is_ok`](Self::is_ok)).
    pub fn problems(&self) -> String {
        let mut parts = Vec::new();
        if self.integrity != ["ok"] {
            let shown: Vec<&str> = self.integrity.iter().take(5).map(String::as_str).collect();
            let more = self.integrity.len().saturating_sub(shown.len());
            let mut text = format!("integrity check: {}", shown.join("; "));
            if more > 0 {
                text.push_str(&format!(" (and {more} more)"));
            }
            parts.push(text);
        }
        for (n, what) in [
            (self.dangling_records, "records whose blob is missing"),
            (self.orphaned_blobs, "orphaned blobs"),
            (self.refcount_mismatches, "wrong reference counts"),
            (
                self.missing_dictionaries,
                "blobs whose dictionary is missing",
            ),
            (
                self.dangling_chunks,
                "chunk list entries whose chunk or blob is missing",
            ),
            (self.orphaned_chunks, "orphaned chunks"),
            (
                self.chunk_refcount_mismatches,
                "wrong chunk reference counts",
            ),
            (self.damaged_blobs, "damaged blobs"),
        ] {
            if n > 0 {
                parts.push(format!("{n} {what}"));
            }
        }
        if !self.damaged.is_empty() {
            let keys: Vec<String> = self
                .damaged
                .iter()
                .take(10)
                .map(|d| format!("{}/{}", d.collection, d.key))
                .collect();
            let more = self.damaged.len().saturating_sub(keys.len());
            let mut text = format!("damaged documents: {}", keys.join(", "));
            if more > 0 {
                text.push_str(&format!(" (and {more} more)"));
            }
            parts.push(text);
        }
        parts.join("; ")
    }
}

/// A record whose stored document failed verification (found by the deep check or scrub).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct DamagedDocument {
    /// Collection name.
    pub collection: String,
    /// Key.
    pub key: String,
    /// The id of the damaged blob.
    pub blob_id: i64,
    /// What did not verify (hash mismatch, codec error, missing dictionary).
    pub detail: String,
}

/// A delta kept in its record's row, as the deep check and the scrub read them page by page:
/// the record and the blob it reads as (codec 17 over its keyframe's chunks).
#[derive(Debug, Clone)]
pub struct InlineDeltaEntry {
    /// Collection name.
    pub collection: String,
    /// Key.
    pub key: String,
    /// The keyframe blob the record names.
    pub keyframe_id: i64,
    /// The delta over the keyframe's chunks, as a read sees it.
    pub blob: StoredBlob,
}

/// A stored blob with its id, as the deep check and the scrub read them page by page.
#[derive(Debug, Clone)]
pub struct BlobEntry {
    /// The blob's id.
    pub id: i64,
    /// The blob.
    pub blob: StoredBlob,
}

/// A data key of an encrypted store as the `data_keys` table holds it: sealed under the
/// master key (`crypto/keyring.rs`); the engines store and return it as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedKey {
    /// Random and positive; every ciphertext under the key names it.
    pub id: i64,
    /// The collection it encrypts.
    pub collection: String,
    /// Its version within the collection (1, 2, …; unique per collection).
    pub version: i64,
    /// The key material sealed under the master key.
    pub wrapped: Vec<u8>,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_at_ms: i64,
}

impl WrappedKey {
    /// A destroyed key (`key shred`): its row stays, with no material, so every node and
    /// every later open knows the collection was shredded.
    pub fn is_destroyed(&self) -> bool {
        self.wrapped.is_empty()
    }
}

/// Key material to write in one transaction ([`Backend::write_keys`](crate::backend::Backend::write_keys)).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyChange {
    /// The key check value (the `meta` row `key_check`).
    pub check: Option<String>,
    /// Data keys.
    pub keys: Vec<WrappedKey>,
    /// `false`: insert what is absent and keep what exists (a key with the same id, or the
    /// same collection and version, or an existing check, wins). `true` (rotation): replace
    /// the check and the `wrapped` bytes of the keys with these ids.
    pub replace: bool,
    /// Crypto-shred this collection in the same transaction: delete its records, their
    /// blobs and its dictionaries, and destroy its keys (their `wrapped` emptied). SQLite
    /// overwrites the freed content (`secure_delete`).
    pub shred: Option<String>,
    /// `Some(true)`: mark the store as being encrypted in place (the `meta` row
    /// `encrypting`); `Some(false)`: clear the mark (`key enable` finished).
    pub encrypting: Option<bool>,
    /// Dictionaries to replace in place by their sealed form: `(id, data)`.
    pub dictionaries: Vec<(i64, Vec<u8>)>,
    /// Blobs sealed again under a newer key: each replaced only while it still holds the
    /// bytes it was read with (a blob deleted or replaced meanwhile is left alone).
    pub resealed: Vec<ResealedBlob>,
    /// Chunks of chunk lists sealed again under a newer key, found by content address and
    /// replaced only while they still hold the bytes they were read with.
    pub resealed_chunks: Vec<ResealedChunk>,
    /// Deltas kept in their record's row (SQLite) sealed again under a newer key, each
    /// replaced only while the record still holds the bytes it was read with.
    pub resealed_inline: Vec<ResealedInline>,
}

/// A delta kept in its record's row, sealed again under a newer data key of its collection
/// (`KeyChange::resealed_inline`): same length, content address and codec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResealedInline {
    /// The record's collection.
    pub collection: String,
    /// The record's key.
    pub key: String,
    /// The bytes it was read with.
    pub before: Vec<u8>,
    /// The bytes sealed under the newer key.
    pub after: Vec<u8>,
}

/// A chunk's stored bytes sealed again under a newer data key of its collection
/// (`KeyChange::resealed_chunks`): same length, content address, codec and dictionary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResealedChunk {
    /// The chunk's content address (its `hash`).
    pub hash: Vec<u8>,
    /// The bytes it was read with.
    pub before: Vec<u8>,
    /// The bytes to store instead.
    pub after: Vec<u8>,
}

/// A blob's stored bytes sealed again under a newer data key of its collection
/// (`KeyChange::resealed`): same length, content address, codec and dictionary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResealedBlob {
    /// The blob's id.
    pub id: i64,
    /// The bytes it was read with.
    pub before: Vec<u8>,
    /// The bytes to store instead.
    pub after: Vec<u8>,
}

impl KeyChange {
    /// Adds `keys` where absent.
    pub fn add(keys: Vec<WrappedKey>) -> Self {
        KeyChange {
            keys,
            ..KeyChange::default()
        }
    }

    /// Sets the key check value where absent.
    pub fn check(check: String) -> Self {
        KeyChange {
            check: Some(check),
            ..KeyChange::default()
        }
    }
}

/// A record that names a blob: `(blob id, collection, key)`.
pub type BlobReference = (i64, String, String);

/// A record's place in collection and key order: `(collection, key)`.
pub type RecordCursor = (String, String);

/// Facts about a consistent copy of a database (a snapshot or a backup).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct SnapshotInfo {
    /// Schema version of the copy.
    pub schema_version: i64,
    /// Records in the copy.
    pub record_count: u64,
    /// Distinct blobs in the copy.
    pub blob_count: u64,
    /// Serialized bytes of all records.
    pub logical_bytes: u64,
    /// Stored bytes of all blobs.
    pub stored_bytes: u64,
}

/// What a reference repair did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct RepairOutcome {
    /// Blobs whose reference count was corrected.
    pub refcounts_fixed: u64,
    /// Blobs removed because nothing referred to them.
    pub orphans_removed: u64,
    /// Stored bytes of the removed blobs.
    pub orphan_bytes_removed: u64,
    /// Chunks whose reference count was corrected.
    pub chunk_refcounts_fixed: u64,
    /// Chunks removed because no chunk list named them.
    pub orphan_chunks_removed: u64,
    /// Stored bytes of the removed chunks.
    pub orphan_chunk_bytes_removed: u64,
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The `SystemTime` of a millisecond timestamp (negative values clamp to the epoch).
pub fn time_from_ms(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

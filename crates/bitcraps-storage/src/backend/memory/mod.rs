//! An in-memory backend (feature `testing`): the same records, content-addressed blobs,
//! reference counts and dictionaries as SQLite, in `BTreeMap`s behind one mutex. It runs the
//! conformance suite, so it is a second, independent statement of the backend contract, and
//! it is fast and file-free for tests that wrap it in a [`FaultInjector`](super::fault::FaultInjector).
//!
//! A [`MemoryDatabase`] is the "file": it outlives the backends opened on it, so a test can
//! close a store and open it again. Like a SQLite file it is held by one open backend at a
//! time (a second [`MemoryDatabase::open`] is refused with [`StorageError::Locked`]).

mod feed;
mod read;
mod state;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use state::{Blob, Dictionary, Record, Tables};

use crate::backend::snapshot::{self, BLOB_CHUNK, Chunk, ROW_CHUNK, SnapshotWriter};
use crate::backend::{
    Backend, BlobEntry, BlobReference, CollectionSetting, ConsistencyReport, DatabaseStatistics,
    KeyChange, Maintenance, OpOutcome, RecordMetadata, RecordPage, RepairOutcome, SnapshotInfo,
    StoreIdentity, StoredBlob, StoredDictionary, StoredRecord, WrappedKey, WriteUnit,
    restore_target_not_empty,
};
use crate::error::{Result, StorageError};
use crate::list::{ListOptions, ListPage};

/// What a memory database holds, and whether a backend has it open.
#[derive(Debug, Default)]
struct Database {
    tables: Tables,
    open: bool,
    /// Created on first use, like a schema's `meta` rows.
    identity: Option<StoreIdentity>,
    /// The `data_keys` table, by id.
    data_keys: std::collections::BTreeMap<i64, WrappedKey>,
}

/// An in-memory database that backends open and close; cheap to clone (clones share it).
#[derive(Debug, Clone, Default)]
pub struct MemoryDatabase {
    inner: Arc<Mutex<Database>>,
}

impl MemoryDatabase {
    /// A new, empty database.
    pub fn new() -> Self {
        MemoryDatabase::default()
    }

    /// Opens a backend on this database; `deduplicate` shares identical content between
    /// records (the configuration's `enable_deduplication`).
    pub fn open(&self, deduplicate: bool) -> Result<MemoryBackend> {
        let mut db = lock(&self.inner)?;
        if db.open {
            return Err(StorageError::Locked {
                path: PathBuf::from("memory"),
                holder: "another backend of this process".into(),
            });
        }
        db.open = true;
        Ok(MemoryBackend {
            db: Arc::clone(&self.inner),
            deduplicate,
            closed: AtomicBool::new(false),
        })
    }
}

fn lock(db: &Mutex<Database>) -> Result<MutexGuard<'_, Database>> {
    db.lock()
        .map_err(|_| StorageError::Task("the memory database was poisoned by a panic".into()))
}

/// A backend over a [`MemoryDatabase`].
#[derive(Debug)]
pub struct MemoryBackend {
    db: Arc<Mutex<Database>>,
    deduplicate: bool,
    closed: AtomicBool,
}

impl MemoryBackend {
    /// The tables, unless this backend was closed.
    fn tables(&self) -> Result<MutexGuard<'_, Database>> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StorageError::Closed);
        }
        lock(&self.db)
    }
}

impl Drop for MemoryBackend {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

impl Backend for MemoryBackend {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn apply(&self, units: &[WriteUnit]) -> Result<Vec<Result<Vec<OpOutcome>>>> {
        let mut db = self.tables()?;
        Ok(units
            .iter()
            .map(|unit| db.tables.apply_unit(unit, self.deduplicate))
            .collect())
    }

    fn get(&self, collection: &str, key: &str) -> Result<Option<StoredRecord>> {
        read::get(&self.tables()?.tables, collection, key)
    }

    fn get_many(&self, collection: &str, keys: &[String]) -> Result<Vec<Option<StoredRecord>>> {
        let db = self.tables()?;
        keys.iter()
            .map(|key| read::get(&db.tables, collection, key))
            .collect()
    }

    fn scan(&self, collection: &str, options: &ListOptions) -> Result<RecordPage> {
        read::scan(&self.tables()?.tables, collection, options)
    }

    fn metadata(&self, collection: &str, key: &str) -> Result<Option<RecordMetadata>> {
        read::metadata(&self.tables()?.tables, collection, key)
    }

    fn dictionaries(&self) -> Result<Vec<StoredDictionary>> {
        Ok(read::dictionaries(&self.tables()?.tables))
    }

    fn list(&self, collection: &str, options: &ListOptions) -> Result<ListPage> {
        Ok(read::list(&self.tables()?.tables, collection, options))
    }

    fn collections(&self) -> Result<Vec<String>> {
        Ok(read::collections(&self.tables()?.tables))
    }

    fn usage(&self, collection: &str, now_ms: i64) -> Result<crate::CollectionUsage> {
        Ok(self.tables()?.tables.usage(collection, now_ms))
    }

    fn settings(&self) -> Result<Vec<CollectionSetting>> {
        Ok(self
            .tables()?
            .tables
            .settings
            .iter()
            .map(|((collection, name), value)| CollectionSetting {
                collection: collection.clone(),
                name: name.clone(),
                value: *value,
            })
            .collect())
    }

    fn statistics(&self) -> Result<DatabaseStatistics> {
        Ok(read::statistics(&self.tables()?.tables))
    }

    /// Releases the database for the next [`MemoryDatabase::open`]; its content stays.
    fn close(&self) -> Result<()> {
        if !self.closed.swap(true, Ordering::AcqRel) {
            lock(&self.db)?.open = false;
        }
        Ok(())
    }

    fn maintenance(&self) -> &dyn Maintenance {
        self
    }

    fn identity(&self) -> Result<StoreIdentity> {
        let mut db = self.tables()?;
        if let Some(identity) = &db.identity {
            return Ok(identity.clone());
        }
        let identity = StoreIdentity::random()?;
        db.identity = Some(identity.clone());
        Ok(identity)
    }

    fn record_redis_tier(&self) -> Result<()> {
        self.identity()?;
        if let Some(identity) = self.tables()?.identity.as_mut() {
            identity.redis_tier = true;
        }
        Ok(())
    }

    fn data_keys(&self) -> Result<Vec<WrappedKey>> {
        Ok(self.tables()?.data_keys.values().cloned().collect())
    }

    fn changes_since(&self, after: u64, limit: usize) -> Result<Vec<crate::Change>> {
        self.tables()?.tables.log.since(after, limit)
    }

    fn change_head(&self) -> Result<u64> {
        Ok(self.tables()?.tables.log.head())
    }

    fn notify_changes(&self, _wake: Arc<dyn Fn() + Send + Sync>) -> Result<()> {
        Ok(())
    }

    fn write_keys(&self, change: &KeyChange) -> Result<()> {
        self.identity()?;
        let mut db = self.tables()?;
        // Checked first, so the change is all or nothing as in a transaction.
        if change.replace
            && change
                .keys
                .iter()
                .any(|k| !db.data_keys.contains_key(&k.id))
        {
            return Err(StorageError::Config(
                "a data key is not in the store".into(),
            ));
        }
        if let (Some(check), Some(identity)) = (&change.check, db.identity.as_mut())
            && (change.replace || identity.key_check.is_none())
        {
            identity.key_check = Some(check.clone());
        }
        if let (Some(encrypting), Some(identity)) = (change.encrypting, db.identity.as_mut()) {
            identity.encrypting = encrypting;
        }
        for (id, data) in &change.dictionaries {
            if let Some(d) = db.tables.dictionaries.get_mut(id) {
                d.data = data.clone();
            }
        }
        for resealed in &change.resealed {
            if let Some(b) = db.tables.blobs.get_mut(&resealed.id)
                && *b.data == *resealed.before
            {
                b.data = resealed.after.as_slice().into();
            }
        }
        if !change.resealed_chunks.is_empty() {
            for blob in db.tables.blobs.values_mut() {
                if blob.chunks.is_empty() {
                    continue;
                }
                let mut chunks = blob.chunks.to_vec();
                for chunk in &mut chunks {
                    if let Some(r) = change
                        .resealed_chunks
                        .iter()
                        .find(|r| r.hash == chunk.hash && r.before == chunk.data)
                    {
                        chunk.data.clone_from(&r.after);
                    }
                }
                blob.chunks = chunks.into();
            }
        }
        if let Some(collection) = &change.shred {
            db.tables.shred(collection)?;
            for key in db.data_keys.values_mut() {
                if &key.collection == collection {
                    key.wrapped.clear();
                }
            }
        }
        for key in &change.keys {
            if change.replace {
                if let Some(stored) = db.data_keys.get_mut(&key.id) {
                    stored.wrapped = key.wrapped.clone();
                }
            } else if !db.data_keys.values().any(|k| {
                k.id == key.id || (k.collection == key.collection && k.version == key.version)
            }) {
                db.data_keys.insert(key.id, key.clone());
            }
        }
        Ok(())
    }
}

impl Maintenance for MemoryBackend {
    fn check(&self) -> Result<ConsistencyReport> {
        Ok(read::check(&self.tables()?.tables))
    }

    /// The same as [`check`](Self::check): there are no pages to damage, and the reference
    /// accounting is a walk over the maps.
    fn quick_check(&self) -> Result<ConsistencyReport> {
        Ok(read::check(&self.tables()?.tables))
    }

    fn blobs_after(&self, after: i64, limit: usize) -> Result<Vec<BlobEntry>> {
        Ok(read::blobs_after(&self.tables()?.tables, after, limit))
    }

    fn records_naming(&self, blob_ids: &[i64]) -> Result<Vec<BlobReference>> {
        Ok(read::records_naming(&self.tables()?.tables, blob_ids))
    }

    /// Writes the rows, copied under the lock (a consistent view), through the snapshot
    /// format's writer.
    fn snapshot(&self, dest: &Path) -> Result<SnapshotInfo> {
        let identity = self.identity()?;
        let (tables, keys) = {
            let db = self.tables()?;
            (db.tables.clone(), db.data_keys.clone())
        };
        let writer = SnapshotWriter::create(dest)?;
        let written = writer
            .write(Chunk::Meta(identity.to_rows()))
            .and_then(|()| {
                let keys = keys.into_values();
                writer.write(Chunk::DataKeys(
                    keys.map(|k| (k.id, k.collection, k.version, k.wrapped, k.created_at_ms))
                        .collect(),
                ))
            })
            .and_then(|()| write_rows(&tables, &writer))
            .and_then(|()| writer.finish());
        if written.is_err() {
            let _ = std::fs::remove_file(dest);
        }
        written?;
        let (info, _) = snapshot::inspect(dest, false)?;
        Ok(info)
    }

    /// Reads the whole snapshot into new tables, then installs them if this database is
    /// still empty: all or nothing.
    fn restore(&self, path: &Path) -> Result<SnapshotInfo> {
        let info = snapshot::require_current(path)?;
        if !self.tables()?.tables.is_empty() {
            return Err(restore_target_not_empty());
        }
        let mut loaded = Tables::default();
        let (mut meta, mut keys) = (Vec::new(), Vec::new());
        let mut chunks = BTreeMap::new();
        snapshot::read_rows(path, |chunk| match chunk {
            Chunk::Meta(rows) => {
                meta.extend(rows);
                Ok(())
            }
            Chunk::DataKeys(rows) => {
                keys.extend(rows);
                Ok(())
            }
            chunk => load_rows(&mut loaded, &mut chunks, chunk),
        })?;
        let target = self.identity()?;
        let mut db = self.tables()?;
        if !db.tables.is_empty() {
            return Err(restore_target_not_empty());
        }
        let rows = crate::backend::identity::restored_rows(meta, &target, db.data_keys.len())?;
        let mut identity = target.to_rows();
        identity.extend(rows);
        db.identity = Some(StoreIdentity::from_rows(identity)?);
        for (id, collection, version, wrapped, created_at_ms) in keys {
            let key = WrappedKey {
                id,
                collection,
                version,
                wrapped,
                created_at_ms,
            };
            db.data_keys.insert(id, key);
        }
        db.tables = loaded;
        Ok(info)
    }

    /// Nothing to fold: there is no log.
    fn checkpoint(&self) -> Result<()> {
        self.tables().map(drop)
    }

    /// Nothing to refresh: there is no planner.
    fn optimize(&self) -> Result<()> {
        self.tables().map(drop)
    }

    /// Nothing to return: memory is freed as rows go.
    fn vacuum(&self) -> Result<()> {
        self.tables().map(drop)
    }

    fn repair_references(&self) -> Result<RepairOutcome> {
        Ok(read::repair(&mut self.tables()?.tables))
    }
}

fn write_rows(tables: &Tables, writer: &SnapshotWriter) -> Result<()> {
    let dictionaries: Vec<_> = tables
        .dictionaries
        .iter()
        .map(|(id, d)| (*id, d.collection.clone(), d.created_at, d.data.clone()))
        .collect();
    for rows in dictionaries.chunks(ROW_CHUNK) {
        writer.write(Chunk::Dictionaries(rows.to_vec()))?;
    }
    let blobs: Vec<_> = tables.blobs.iter().collect();
    for rows in blobs.chunks(BLOB_CHUNK) {
        let rows = rows
            .iter()
            .map(|(id, b)| {
                (
                    **id,
                    b.hash.clone(),
                    b.codec,
                    b.raw_len,
                    b.stored_len(),
                    b.refcount,
                    b.data.to_vec(),
                    b.dict_id,
                )
            })
            .collect();
        writer.write(Chunk::Blobs(rows))?;
    }
    // Chunks are kept with their blob here: each becomes a chunk of its own in the file.
    let mut chunk_rows = Vec::new();
    let mut list_rows = Vec::new();
    for (blob_id, b) in &tables.blobs {
        for (seq, c) in b.chunks.iter().enumerate() {
            let id = i64::try_from(chunk_rows.len())
                .unwrap_or(i64::MAX)
                .saturating_add(1);
            let stored_len = i64::try_from(c.data.len()).unwrap_or(i64::MAX);
            chunk_rows.push((
                id,
                c.hash.clone(),
                c.codec_id,
                c.raw_len,
                stored_len,
                1,
                c.data.clone(),
                c.dict_id,
            ));
            list_rows.push((*blob_id, i64::try_from(seq).unwrap_or(i64::MAX), id));
        }
    }
    for rows in chunk_rows.chunks(BLOB_CHUNK) {
        writer.write(Chunk::Chunks(rows.to_vec()))?;
    }
    for rows in list_rows.chunks(ROW_CHUNK) {
        writer.write(Chunk::Lists(rows.to_vec()))?;
    }
    let records: Vec<_> = tables
        .records
        .iter()
        .map(|((c, k), r)| {
            (
                c.clone(),
                k.clone(),
                r.blob_id,
                r.created_at,
                r.updated_at,
                r.access_count,
                r.last_accessed,
                r.version,
                r.expires_at,
            )
        })
        .collect();
    for rows in records.chunks(ROW_CHUNK) {
        writer.write(Chunk::Records(rows.to_vec()))?;
    }
    let settings: Vec<_> = tables
        .settings
        .iter()
        .map(|((c, n), v)| (c.clone(), n.clone(), *v))
        .collect();
    for rows in settings.chunks(ROW_CHUNK) {
        writer.write(Chunk::Settings(rows.to_vec()))?;
    }
    writer.write(Chunk::Clock(tables.clock.max(1)))?;
    Ok(())
}

fn load_rows(
    tables: &mut Tables,
    chunks: &mut BTreeMap<i64, StoredBlob>,
    chunk: Chunk,
) -> Result<()> {
    match chunk {
        Chunk::Chunks(rows) => {
            for (id, hash, codec_id, raw_len, _stored_len, _refcount, data, dict_id) in rows {
                let blob = StoredBlob {
                    codec_id,
                    raw_len,
                    hash,
                    data,
                    dict_id,
                    chunks: Vec::new(),
                    keyed: None,
                };
                chunks.insert(id, blob);
            }
        }
        Chunk::Lists(rows) => {
            for (blob_id, _seq, chunk_id) in rows {
                let chunk = chunks.get(&chunk_id).cloned().ok_or_else(|| {
                    StorageError::corruption(
                        format!("blob {blob_id}"),
                        format!("its chunk list names chunk {chunk_id}, which does not exist"),
                    )
                })?;
                if let Some(blob) = tables.blobs.get_mut(&blob_id) {
                    let mut list = blob.chunks.to_vec();
                    list.push(chunk);
                    blob.chunks = list.into();
                }
            }
        }
        Chunk::Dictionaries(rows) => {
            for (id, collection, created_at, data) in rows {
                tables.dictionaries.insert(
                    id,
                    Dictionary {
                        collection,
                        created_at,
                        data,
                    },
                );
            }
        }
        Chunk::Blobs(rows) => {
            for (id, hash, codec, raw_len, _stored_len, refcount, data, dict_id) in rows {
                tables.insert_blob(
                    id,
                    Blob {
                        hash,
                        codec,
                        raw_len,
                        refcount,
                        data: data.into(),
                        dict_id,
                        chunks: Arc::from([]),
                    },
                );
            }
        }
        Chunk::Records(rows) => {
            for (
                collection,
                key,
                blob_id,
                created_at,
                updated_at,
                access_count,
                last_accessed,
                version,
                expires_at,
            ) in rows
            {
                tables.clock = tables.clock.max(version);
                tables.records.insert(
                    (collection, key),
                    Record {
                        blob_id,
                        created_at,
                        updated_at,
                        access_count,
                        last_accessed,
                        version,
                        expires_at,
                    },
                );
            }
        }
        Chunk::Settings(rows) => {
            for (collection, name, value) in rows {
                tables.settings.insert((collection, name), value);
            }
        }
        Chunk::Clock(last) => tables.clock = tables.clock.max(last),
        // The identity and keys live beside the tables (`MemoryBackend::restore`).
        Chunk::Meta(_) | Chunk::DataKeys(_) | Chunk::Done => {}
    }
    Ok(())
}

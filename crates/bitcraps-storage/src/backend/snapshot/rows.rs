//! The row stream of a snapshot: the three tables as batches of plain tuples, written into a
//! fresh snapshot file by [`SnapshotWriter`] and read back by [`read_rows`]. Backends that
//! are not SQLite files (PostgreSQL, the in-memory backend) take and load snapshots through it.

use std::path::Path;

use rusqlite::Connection;
#[cfg(any(feature = "postgres", feature = "testing"))]
use rusqlite::params;

use super::open_read_only;
use crate::backend::sqlite::db_err;
#[cfg(any(feature = "postgres", feature = "testing"))]
use crate::backend::sqlite::schema;
use crate::error::Result;
#[cfg(any(feature = "postgres", feature = "testing"))]
use crate::error::StorageError;

/// Rows per batch of records and dictionaries.
pub const ROW_CHUNK: usize = 1000;
/// Rows per batch of blobs (each may be large).
pub const BLOB_CHUNK: usize = 64;

/// The rows of each table, in the column order of [`DictionaryRow`], [`BlobRow`] and
/// [`RecordRow`]; the same statements read a PostgreSQL database and a snapshot.
pub const SELECT_DICTIONARIES: &str =
    "SELECT id, collection, created_at, data FROM dictionaries ORDER BY id";
/// See [`SELECT_DICTIONARIES`].
pub const SELECT_BLOBS: &str =
    "SELECT id, hash, codec, raw_len, coalesce(stored_len, length(data)), refcount, data,
            dict_id
     FROM blobs ORDER BY id";
/// See [`SELECT_DICTIONARIES`] (chunks have the columns of blobs, [`BlobRow`]; the count
/// comes from `chunk_refs`, schema version 10, and is 0 where its row is missing).
pub const SELECT_CHUNKS: &str =
    "SELECT c.id, c.hash, c.codec, c.raw_len, c.stored_len, coalesce(r.refcount, 0), c.data,
            c.dict_id
     FROM chunks c LEFT JOIN chunk_refs r ON r.chunk_id = c.id ORDER BY c.id";
/// See [`SELECT_DICTIONARIES`].
pub const SELECT_CHUNK_LISTS: &str =
    "SELECT blob_id, seq, chunk_id FROM blob_chunks ORDER BY blob_id, seq";
/// See [`SELECT_DICTIONARIES`].
pub const SELECT_RECORDS: &str =
    "SELECT collection, key, blob_id, created_at, coalesce(updated_at, created_at),
            access_count, last_accessed, version, expires_at
     FROM records ORDER BY collection, key";
/// See [`SELECT_DICTIONARIES`].
pub const SELECT_SETTINGS: &str =
    "SELECT collection, name, value FROM collection_settings ORDER BY collection, name";

/// The store's identity rows (`backend/identity.rs`).
pub const SELECT_META: &str = "SELECT name, value FROM meta ORDER BY name";
/// The wrapped data keys of an encrypted store.
pub const SELECT_DATA_KEYS: &str =
    "SELECT id, collection, version, wrapped, created_at FROM data_keys ORDER BY id";

/// The last version the snapshot's clock handed out.
pub const SELECT_CLOCK: &str = "SELECT last FROM version_clock";

/// `(id, hash, codec, raw_len, stored_len, refcount, data, dict_id)`.
pub type BlobRow = (i64, Vec<u8>, i64, i64, i64, i64, Vec<u8>, Option<i64>);
/// `(collection, key, blob_id, created_at, updated_at, access_count, last_accessed, version,
/// expires_at)`.
pub type RecordRow = (
    String,
    String,
    i64,
    i64,
    i64,
    i64,
    Option<i64>,
    i64,
    Option<i64>,
);
/// `(blob_id, seq, chunk_id)`: one entry of a chunk list.
pub type ChunkListRow = (i64, i64, i64);
/// `(collection, name, value)`.
pub type SettingRow = (String, String, i64);
/// `(id, collection, created_at, data)`.
pub type DictionaryRow = (i64, String, i64, Vec<u8>);
/// `(name, value)` of the `meta` table.
pub type MetaRow = (String, String);
/// `(id, collection, version, wrapped, created_at)`.
pub type DataKeyRow = (i64, String, i64, Vec<u8>, i64);

/// A batch of rows of one table.
#[derive(Debug)]
pub enum Chunk {
    /// The store's identity (sent first): a snapshot is of one store, and an encrypted
    /// store's ciphertext is bound to it (`restore_identity`).
    Meta(Vec<MetaRow>),
    /// The wrapped data keys of an encrypted store.
    DataKeys(Vec<DataKeyRow>),
    /// Dictionaries.
    Dictionaries(Vec<DictionaryRow>),
    /// Blobs.
    Blobs(Vec<BlobRow>),
    /// Chunks of chunked blobs (sent before the blobs).
    Chunks(Vec<BlobRow>),
    /// Chunk lists (sent after the blobs).
    Lists(Vec<ChunkListRow>),
    /// Records.
    Records(Vec<RecordRow>),
    /// Collection settings.
    Settings(Vec<SettingRow>),
    /// The version clock: the last version handed out (sent after the records).
    Clock(i64),
    /// Everything was sent (a restore commits only after this).
    Done,
}

/// A snapshot file being written: created at the current schema, filled in one transaction,
/// committed by [`SnapshotWriter::finish`]. Dropped unfinished, nothing is committed. (Only
/// the backends that are not SQLite files write snapshots this way.)
#[cfg(any(feature = "postgres", feature = "testing"))]
pub struct SnapshotWriter {
    conn: Connection,
}

#[cfg(any(feature = "postgres", feature = "testing"))]
impl std::fmt::Debug for SnapshotWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotWriter").finish_non_exhaustive()
    }
}

#[cfg(any(feature = "postgres", feature = "testing"))]
impl SnapshotWriter {
    /// Creates the snapshot file `dest` (which must not exist).
    pub fn create(dest: &Path) -> Result<Self> {
        if dest.exists() {
            return Err(StorageError::Config(format!(
                "snapshot destination {} already exists",
                dest.display()
            )));
        }
        let mut conn = Connection::open(dest).map_err(db_err("creating the snapshot file"))?;
        schema::migrate(&mut conn)?;
        conn.execute_batch("BEGIN")
            .map_err(db_err("starting the snapshot write"))?;
        Ok(SnapshotWriter { conn })
    }

    /// Writes one batch of rows.
    pub fn write(&self, chunk: Chunk) -> Result<()> {
        let conn = &self.conn;
        let err = db_err("writing the snapshot");
        match chunk {
            Chunk::Meta(rows) => {
                // The source's rows replace the fresh identity the schema was created with.
                let mut stmt = conn
                    .prepare_cached("INSERT OR REPLACE INTO meta (name, value) VALUES (?1, ?2)")
                    .map_err(&err)?;
                for (name, value) in rows {
                    stmt.execute(params![name, value]).map_err(&err)?;
                }
            }
            Chunk::DataKeys(rows) => {
                let mut stmt = conn
                    .prepare_cached(
                        "INSERT INTO data_keys (id, collection, version, wrapped, created_at)
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                    )
                    .map_err(&err)?;
                for (id, collection, version, wrapped, created_at) in rows {
                    stmt.execute(params![id, collection, version, wrapped, created_at])
                        .map_err(&err)?;
                }
            }
            Chunk::Dictionaries(rows) => {
                let mut stmt = conn
                    .prepare_cached(
                        "INSERT INTO dictionaries (id, collection, created_at, data)
                         VALUES (?1, ?2, ?3, ?4)",
                    )
                    .map_err(&err)?;
                for (id, collection, created_at, data) in rows {
                    stmt.execute(params![id, collection, created_at, data])
                        .map_err(&err)?;
                }
            }
            Chunk::Blobs(rows) => insert_blob_rows(conn, "blobs", rows)?,
            Chunk::Chunks(rows) => insert_blob_rows(conn, "chunks", rows)?,
            Chunk::Lists(rows) => {
                let mut stmt = conn
                    .prepare_cached(
                        "INSERT INTO blob_chunks (blob_id, seq, chunk_id) VALUES (?1, ?2, ?3)",
                    )
                    .map_err(&err)?;
                for (blob_id, seq, chunk_id) in rows {
                    stmt.execute(params![blob_id, seq, chunk_id])
                        .map_err(&err)?;
                }
            }
            Chunk::Records(rows) => {
                let mut stmt = conn
                    .prepare_cached(
                        "INSERT INTO records (collection, key, blob_id, created_at, updated_at,
                                              access_count, last_accessed, version, expires_at)
                         VALUES (?1, ?2, ?3, ?4, nullif(?5, ?4), ?6, ?7, ?8, ?9)",
                    )
                    .map_err(&err)?;
                for (c, key, blob_id, created_at, updated_at, count, last, version, expires) in rows
                {
                    stmt.execute(params![
                        c, key, blob_id, created_at, updated_at, count, last, version, expires
                    ])
                    .map_err(&err)?;
                }
            }
            Chunk::Settings(rows) => {
                let mut stmt = conn
                    .prepare_cached(
                        "INSERT INTO collection_settings (collection, name, value)
                         VALUES (?1, ?2, ?3)",
                    )
                    .map_err(&err)?;
                for (collection, name, value) in rows {
                    stmt.execute(params![collection, name, value])
                        .map_err(&err)?;
                }
            }
            Chunk::Clock(last) => {
                conn.execute(
                    "UPDATE version_clock SET last = max(last, ?1)",
                    params![last],
                )
                .map_err(&err)?;
            }
            Chunk::Done => {}
        }
        Ok(())
    }

    /// Commits and closes the file.
    pub fn finish(self) -> Result<()> {
        self.conn
            .execute_batch("COMMIT")
            .map_err(db_err("committing the snapshot"))?;
        self.conn
            .close()
            .map_err(|(_, e)| StorageError::database("closing the snapshot", e))
    }
}

/// Inserts rows of `blobs`, or of `chunks` with their counts into `chunk_refs`.
#[cfg(any(feature = "postgres", feature = "testing"))]
fn insert_blob_rows(conn: &Connection, table: &str, rows: Vec<BlobRow>) -> Result<()> {
    let err = db_err("writing the snapshot");
    if table == "chunks" {
        let mut chunk = conn
            .prepare_cached(
                "INSERT INTO chunks (id, hash, codec, raw_len, stored_len, data, dict_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .map_err(&err)?;
        let mut count = conn
            .prepare_cached("INSERT INTO chunk_refs (chunk_id, refcount) VALUES (?1, ?2)")
            .map_err(&err)?;
        for (id, hash, codec, raw_len, stored_len, refcount, data, dict_id) in rows {
            chunk
                .execute(params![id, hash, codec, raw_len, stored_len, data, dict_id])
                .map_err(&err)?;
            count.execute(params![id, refcount]).map_err(&err)?;
        }
        return Ok(());
    }
    let mut stmt = conn
        .prepare_cached(&format!(
            "INSERT INTO {table} (id, hash, codec, raw_len, stored_len, refcount, data, dict_id)
             VALUES (?1, ?2, ?3, ?4, nullif(?5, length(?7)), ?6, ?7, ?8)"
        ))
        .map_err(&err)?;
    for (id, hash, codec, raw_len, stored_len, refcount, data, dict_id) in rows {
        stmt.execute(params![
            id, hash, codec, raw_len, stored_len, refcount, data, dict_id
        ])
        .map_err(&err)?;
    }
    Ok(())
}

/// Reads the snapshot at `path` table by table (identity, data keys, dictionaries, chunks,
/// blobs, chunk lists, records, settings) in batches, handing each to `send`, and ends with
/// [`Chunk::Done`]. The first error of `send` stops it.
pub fn read_rows(path: &Path, mut send: impl FnMut(Chunk) -> Result<()>) -> Result<()> {
    let conn = open_read_only(path)?;
    // Inline deltas (SQLite schema version 13) are read as the blobs other backends store.
    let spilled = super::spill::has_inline(&conn)?;
    if spilled {
        super::spill::prepare(&conn)?;
    }
    let pick = |plain: &'static str, spill: &'static str| if spilled { spill } else { plain };
    read_table(&conn, SELECT_META, ROW_CHUNK, Chunk::Meta, &mut send)?;
    read_table(
        &conn,
        SELECT_DATA_KEYS,
        ROW_CHUNK,
        Chunk::DataKeys,
        &mut send,
    )?;
    read_table(
        &conn,
        SELECT_DICTIONARIES,
        ROW_CHUNK,
        Chunk::Dictionaries,
        &mut send,
    )?;
    read_table(
        &conn,
        pick(SELECT_CHUNKS, super::spill::SPILLED_CHUNKS),
        BLOB_CHUNK,
        Chunk::Chunks,
        &mut send,
    )?;
    read_table(
        &conn,
        pick(SELECT_BLOBS, super::spill::SPILLED_BLOBS),
        BLOB_CHUNK,
        Chunk::Blobs,
        &mut send,
    )?;
    read_table(
        &conn,
        pick(SELECT_CHUNK_LISTS, super::spill::SPILLED_LISTS),
        ROW_CHUNK,
        Chunk::Lists,
        &mut send,
    )?;
    read_table(
        &conn,
        pick(SELECT_RECORDS, super::spill::SPILLED_RECORDS),
        ROW_CHUNK,
        Chunk::Records,
        &mut send,
    )?;
    read_table(
        &conn,
        SELECT_SETTINGS,
        ROW_CHUNK,
        Chunk::Settings,
        &mut send,
    )?;
    let clock: i64 = conn
        .query_row(SELECT_CLOCK, [], |r| r.get(0))
        .map_err(db_err("reading the snapshot"))?;
    send(Chunk::Clock(clock))?;
    send(Chunk::Done)
}

/// Reads one table, `size` rows at a time, each batch wrapped by `wrap`. A row is read as the
/// tuple of its columns, in the order the statement selects them.
fn read_table<T>(
    conn: &Connection,
    sql: &str,
    size: usize,
    wrap: fn(Vec<T>) -> Chunk,
    send: &mut impl FnMut(Chunk) -> Result<()>,
) -> Result<()>
where
    T: for<'r> TryFrom<&'r rusqlite::Row<'r>, Error = rusqlite::Error>,
{
    let err = db_err("reading the snapshot");
    let mut stmt = conn.prepare(sql).map_err(&err)?;
    let mut rows = stmt.query([]).map_err(&err)?;
    let mut chunk = Vec::new();
    while let Some(r) = rows.next().map_err(&err)? {
        chunk.push(T::try_from(r).map_err(&err)?);
        if chunk.len() >= size {
            send(wrap(std::mem::take(&mut chunk)))?;
        }
    }
    if !chunk.is_empty() {
        send(wrap(chunk))?;
    }
    Ok(())
}

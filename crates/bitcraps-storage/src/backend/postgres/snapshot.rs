//! Snapshots: a portable SQLite database copied from PostgreSQL at one point in time.
//!
//! The copy is read inside one `REPEATABLE READ READ ONLY` transaction (a consistent view while
//! writers keep writing) through portals with a row limit, so only a chunk at a time is in
//! memory. The async side streams chunks over a bounded channel; the calling thread writes them
//! into a fresh SQLite file migrated to the latest SQLite schema. Ids, hashes, codecs,
//! dictionary ids, reference counts, times and access statistics are preserved, so the file is
//! exactly what a SQLite store would hold and the backup manager treats it as any snapshot.

use std::path::Path;

use deadpool_postgres::Pool;
use rusqlite::{Connection, params};
use tokio::sync::mpsc;
use tokio_postgres::IsolationLevel;

use super::{Bridge, connect, db_err};
use crate::backend::SnapshotInfo;
use crate::backend::sqlite::{db_err as sqlite_err, inspect, schema as sqlite_schema};
use crate::error::{Result, StorageError};

/// Rows per fetch of records and dictionaries.
pub const ROW_CHUNK: usize = 1000;
/// Rows per fetch of blobs (each may be large).
pub const BLOB_CHUNK: usize = 64;

/// The rows of each table, in the column order of [`DictionaryRow`], [`BlobRow`] and
/// [`RecordRow`]; the same statements read a PostgreSQL database and a SQLite snapshot.
pub const SELECT_DICTIONARIES: &str =
    "SELECT id, collection, created_at, data FROM dictionaries ORDER BY id";
/// See [`SELECT_DICTIONARIES`].
pub const SELECT_BLOBS: &str =
    "SELECT id, hash, codec, raw_len, stored_len, refcount, data, dict_id
     FROM blobs ORDER BY id";
/// See [`SELECT_DICTIONARIES`].
pub const SELECT_RECORDS: &str =
    "SELECT collection, key, blob_id, created_at, updated_at, access_count, last_accessed
     FROM records ORDER BY collection, key";

/// `(id, hash, codec, raw_len, stored_len, refcount, data, dict_id)`.
pub type BlobRow = (i64, Vec<u8>, i64, i64, i64, i64, Vec<u8>, Option<i64>);
/// `(collection, key, blob_id, created_at, updated_at, access_count, last_accessed)`.
pub type RecordRow = (String, String, i64, i64, i64, i64, Option<i64>);
/// `(id, collection, created_at, data)`.
pub type DictionaryRow = (i64, String, i64, Vec<u8>);

/// A batch of rows of one table.
pub enum Chunk {
    /// Dictionaries.
    Dictionaries(Vec<DictionaryRow>),
    /// Blobs.
    Blobs(Vec<BlobRow>),
    /// Records.
    Records(Vec<RecordRow>),
    /// Everything was sent (a restore commits only after this).
    Done,
}

/// Writes a consistent SQLite copy of the database to `dest` (which must not exist).
pub fn snapshot(bridge: &Bridge, pool: Pool, dest: &Path) -> Result<SnapshotInfo> {
    if dest.exists() {
        return Err(StorageError::Config(format!(
            "snapshot destination {} already exists",
            dest.display()
        )));
    }
    let result = copy_into(bridge, pool, dest);
    if result.is_err() {
        let _ = std::fs::remove_file(dest);
    }
    result?;
    let (info, _) = inspect(dest, false)?;
    Ok(info)
}

fn copy_into(bridge: &Bridge, pool: Pool, dest: &Path) -> Result<()> {
    let mut conn = Connection::open(dest).map_err(sqlite_err("creating the snapshot file"))?;
    sqlite_schema::migrate(&mut conn)?;
    let (tx, rx) = mpsc::channel::<Chunk>(2);
    let (done_tx, done_rx) = std::sync::mpsc::sync_channel(1);
    bridge.handle.spawn(async move {
        let _ = done_tx.send(stream(pool, tx).await);
    });
    let sqlite = conn
        .transaction()
        .map_err(sqlite_err("starting the snapshot write"))?;
    let mut rx = Some(rx);
    while let Some(mut receiver) = rx.take() {
        // Waiting through the bridge, never `blocking_recv`, so this is safe on any thread.
        let (receiver, chunk) = bridge.run(async move {
            let chunk = receiver.recv().await;
            Ok((receiver, chunk))
        })?;
        let Some(chunk) = chunk else { break };
        write_chunk(&sqlite, chunk)?;
        rx = Some(receiver);
    }
    done_rx
        .recv()
        .map_err(|_| StorageError::Task("the snapshot reader stopped unexpectedly".into()))??;
    sqlite
        .commit()
        .map_err(sqlite_err("committing the snapshot"))?;
    conn.close()
        .map_err(|(_, e)| StorageError::database("closing the snapshot", e))
}

fn write_chunk(conn: &Connection, chunk: Chunk) -> Result<()> {
    let err = sqlite_err("writing the snapshot");
    match chunk {
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
        Chunk::Blobs(rows) => {
            let mut stmt = conn
                .prepare_cached(
                    "INSERT INTO blobs (id, hash, codec, raw_len, stored_len, refcount, data, dict_id)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )
                .map_err(&err)?;
            for (id, hash, codec, raw_len, stored_len, refcount, data, dict_id) in rows {
                stmt.execute(params![
                    id, hash, codec, raw_len, stored_len, refcount, data, dict_id
                ])
                .map_err(&err)?;
            }
        }
        Chunk::Records(rows) => {
            let mut stmt = conn
                .prepare_cached(
                    "INSERT INTO records (collection, key, blob_id, created_at, updated_at,
                                          access_count, last_accessed)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .map_err(&err)?;
            for (collection, key, blob_id, created_at, updated_at, count, last) in rows {
                stmt.execute(params![
                    collection, key, blob_id, created_at, updated_at, count, last
                ])
                .map_err(&err)?;
            }
        }
        Chunk::Done => {}
    }
    Ok(())
}

/// Streams one table through a portal, `size` rows at a time, each batch wrapped by `wrap`.
async fn stream_table<T>(
    tx: &tokio_postgres::Transaction<'_>,
    sql: &str,
    size: usize,
    wrap: fn(Vec<T>) -> Chunk,
    out: &mpsc::Sender<Chunk>,
    row: impl Fn(&tokio_postgres::Row) -> std::result::Result<T, tokio_postgres::Error>,
) -> Result<()> {
    let err = db_err("reading a consistent snapshot");
    let portal = tx.bind(sql, &[]).await.map_err(&err)?;
    let size = i32::try_from(size).unwrap_or(i32::MAX);
    loop {
        let rows = tx.query_portal(&portal, size).await.map_err(&err)?;
        if rows.is_empty() {
            return Ok(());
        }
        let chunk = rows
            .iter()
            .map(&row)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(&err)?;
        out.send(wrap(chunk))
            .await
            .map_err(|_| StorageError::Task("the snapshot writer stopped".into()))?;
    }
}

/// Reads every table inside one read-only repeatable-read transaction, in chunks.
async fn stream(pool: Pool, out: mpsc::Sender<Chunk>) -> Result<()> {
    let err = db_err("reading a consistent snapshot");
    let mut client = connect(&pool).await?;
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(&err)?;

    stream_table(
        &tx,
        SELECT_DICTIONARIES,
        ROW_CHUNK,
        Chunk::Dictionaries,
        &out,
        |r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?)),
    )
    .await?;
    stream_table(&tx, SELECT_BLOBS, BLOB_CHUNK, Chunk::Blobs, &out, |r| {
        Ok((
            r.try_get(0)?,
            r.try_get(1)?,
            r.try_get(2)?,
            r.try_get(3)?,
            r.try_get(4)?,
            r.try_get(5)?,
            r.try_get(6)?,
            r.try_get(7)?,
        ))
    })
    .await?;
    stream_table(&tx, SELECT_RECORDS, ROW_CHUNK, Chunk::Records, &out, |r| {
        Ok((
            r.try_get(0)?,
            r.try_get(1)?,
            r.try_get(2)?,
            r.try_get(3)?,
            r.try_get(4)?,
            r.try_get(5)?,
            r.try_get(6)?,
        ))
    })
    .await?;
    tx.commit().await.map_err(&err)
}

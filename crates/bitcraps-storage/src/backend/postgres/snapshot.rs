//! Snapshots: a portable SQLite database copied from PostgreSQL at one point in time.
//!
//! The copy is read inside one `REPEATABLE READ READ ONLY` transaction (a consistent view while
//! writers keep writing) through portals with a row limit, so only a chunk at a time is in
//! memory. The async side streams chunks over a bounded channel; the calling thread writes them
//! through the [`SnapshotWriter`] of the snapshot format, so the backup manager treats the file
//! as any snapshot.

use std::path::Path;

use deadpool_postgres::Pool;
use tokio::sync::mpsc;
use tokio_postgres::IsolationLevel;

use super::{Bridge, connect, db_err};
use crate::backend::SnapshotInfo;
use crate::backend::snapshot::{
    self, BLOB_CHUNK, BlobRow, Chunk, ROW_CHUNK, SELECT_BLOBS, SELECT_CHUNK_LISTS, SELECT_CHUNKS,
    SELECT_DATA_KEYS, SELECT_DICTIONARIES, SELECT_META, SELECT_RECORDS, SELECT_SETTINGS,
    SnapshotWriter,
};
use crate::error::{Result, StorageError};

/// The last version PostgreSQL's clock (a sequence) handed out; the snapshot format's
/// `SELECT_CLOCK` reads a table of the same name.
const SELECT_CLOCK_PG: &str = "SELECT last_value FROM version_clock";

/// Writes a consistent snapshot of the database to `dest` (which must not exist).
pub fn snapshot(bridge: &Bridge, pool: Pool, dest: &Path) -> Result<SnapshotInfo> {
    let writer = SnapshotWriter::create(dest)?;
    let result = copy_into(bridge, pool, writer);
    if result.is_err() {
        let _ = std::fs::remove_file(dest);
    }
    result?;
    let (info, _) = snapshot::inspect(dest, false)?;
    Ok(info)
}

fn copy_into(bridge: &Bridge, pool: Pool, writer: SnapshotWriter) -> Result<()> {
    let (tx, rx) = mpsc::channel::<Chunk>(2);
    let (done_tx, done_rx) = std::sync::mpsc::sync_channel(1);
    bridge.handle().spawn(async move {
        let _ = done_tx.send(stream(pool, tx).await);
    });
    let mut rx = Some(rx);
    while let Some(mut receiver) = rx.take() {
        // Waiting through the bridge, never `blocking_recv`, so this is safe on any thread.
        let (receiver, chunk) = bridge.block_on(async move {
            let chunk = receiver.recv().await;
            Ok((receiver, chunk))
        })?;
        let Some(chunk) = chunk else { break };
        writer.write(chunk)?;
        rx = Some(receiver);
    }
    done_rx
        .recv()
        .map_err(|_| StorageError::Task("the snapshot reader stopped unexpectedly".into()))??;
    writer.finish()
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

/// A row of `blobs` or `chunks` (the same columns, `SELECT_BLOBS` / `SELECT_CHUNKS`).
fn blob_row(r: &tokio_postgres::Row) -> std::result::Result<BlobRow, tokio_postgres::Error> {
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

    // The identity first: an encrypted store's ciphertext is bound to it, and its data keys
    // travel with it.
    stream_table(&tx, SELECT_META, ROW_CHUNK, Chunk::Meta, &out, |r| {
        Ok((r.try_get(0)?, r.try_get(1)?))
    })
    .await?;
    stream_table(
        &tx,
        SELECT_DATA_KEYS,
        ROW_CHUNK,
        Chunk::DataKeys,
        &out,
        |r| {
            Ok((
                r.try_get(0)?,
                r.try_get(1)?,
                r.try_get(2)?,
                r.try_get(3)?,
                r.try_get(4)?,
            ))
        },
    )
    .await?;
    stream_table(
        &tx,
        SELECT_DICTIONARIES,
        ROW_CHUNK,
        Chunk::Dictionaries,
        &out,
        |r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?)),
    )
    .await?;
    stream_table(
        &tx,
        SELECT_CHUNKS,
        BLOB_CHUNK,
        Chunk::Chunks,
        &out,
        blob_row,
    )
    .await?;
    stream_table(
        &tx,
        SELECT_CHUNK_LISTS,
        ROW_CHUNK,
        Chunk::Lists,
        &out,
        |r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)),
    )
    .await?;
    stream_table(&tx, SELECT_BLOBS, BLOB_CHUNK, Chunk::Blobs, &out, blob_row).await?;
    stream_table(&tx, SELECT_RECORDS, ROW_CHUNK, Chunk::Records, &out, |r| {
        Ok((
            r.try_get(0)?,
            r.try_get(1)?,
            r.try_get(2)?,
            r.try_get(3)?,
            r.try_get(4)?,
            r.try_get(5)?,
            r.try_get(6)?,
            r.try_get(7)?,
            r.try_get(8)?,
        ))
    })
    .await?;
    stream_table(
        &tx,
        SELECT_SETTINGS,
        ROW_CHUNK,
        Chunk::Settings,
        &out,
        |r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)),
    )
    .await?;
    // The sequence's `last_value` is outside the transaction's snapshot; it is at least every
    // version the snapshot's records hold, which is all a restore needs.
    let clock: i64 = tx
        .query_one(SELECT_CLOCK_PG, &[])
        .await
        .and_then(|r| r.try_get(0))
        .map_err(&err)?;
    out.send(Chunk::Clock(clock))
        .await
        .map_err(|_| StorageError::Task("the snapshot writer stopped".into()))?;
    tx.commit().await.map_err(&err)
}

//! Loading a SQLite snapshot (a verified backup) into an empty PostgreSQL schema.
//!
//! The calling thread reads the snapshot in chunks and hands them over a bounded channel to
//! one async task that inserts them in a single transaction (a failed restore leaves the
//! target empty), then moves the id sequences past the restored ids.

use std::path::Path;

use deadpool_postgres::Pool;
use rusqlite::{Connection, OpenFlags};
use tokio::sync::mpsc;

use super::snapshot::{
    BLOB_CHUNK, Chunk, ROW_CHUNK, SELECT_BLOBS, SELECT_DICTIONARIES, SELECT_RECORDS,
};
use super::{Bridge, connect, db_err};
use crate::backend::SnapshotInfo;
use crate::backend::sqlite::{db_err as sqlite_err, inspect, schema as sqlite_schema};
use crate::error::{Result, StorageError};

/// Loads the SQLite database at `snapshot` (at the latest SQLite schema version) into the
/// empty database behind `pool`. A target holding any record, blob or dictionary is refused.
pub fn load_snapshot(bridge: &Bridge, pool: Pool, snapshot: &Path) -> Result<SnapshotInfo> {
    let (info, _) = inspect(snapshot, false)?;
    if info.schema_version != sqlite_schema::latest_version() {
        return Err(StorageError::Config(format!(
            "the snapshot is at schema version {}, expected {}; migrate it first",
            info.schema_version,
            sqlite_schema::latest_version()
        )));
    }
    let conn = Connection::open_with_flags(
        snapshot,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sqlite_err("opening the snapshot"))?;
    let (tx, rx) = mpsc::channel::<Chunk>(2);
    let (done_tx, done_rx) = std::sync::mpsc::sync_channel(1);
    bridge.handle.spawn(async move {
        let _ = done_tx.send(insert_all(pool, rx).await);
    });
    let sent = read_chunks(&conn, |chunk| {
        let sender = tx.clone();
        bridge.run(async move {
            sender
                .send(chunk)
                .await
                .map_err(|_| StorageError::Task("the restore writer stopped".into()))
        })
    });
    drop(tx);
    let inserted = done_rx
        .recv()
        .map_err(|_| StorageError::Task("the restore writer stopped unexpectedly".into()))?;
    // The writer's error (e.g. "not empty") explains a failed send better than the send does.
    inserted?;
    sent?;
    Ok(info)
}

fn read_chunks(conn: &Connection, mut send: impl FnMut(Chunk) -> Result<()>) -> Result<()> {
    read_table(
        conn,
        SELECT_DICTIONARIES,
        ROW_CHUNK,
        Chunk::Dictionaries,
        &mut send,
    )?;
    read_table(conn, SELECT_BLOBS, BLOB_CHUNK, Chunk::Blobs, &mut send)?;
    read_table(conn, SELECT_RECORDS, ROW_CHUNK, Chunk::Records, &mut send)?;
    send(Chunk::Done)
}

/// Reads one table of the snapshot, `size` rows at a time, each batch wrapped by `wrap`. A row
/// is read as the tuple of its columns, in the order the statement selects them.
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
    let err = sqlite_err("reading the snapshot");
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

async fn insert_all(pool: Pool, mut chunks: mpsc::Receiver<Chunk>) -> Result<()> {
    let err = db_err("restoring a backup into PostgreSQL");
    let mut client = connect(&pool).await?;
    let tx = client.transaction().await.map_err(&err)?;
    // Nobody may write while the target is checked and filled.
    tx.batch_execute("LOCK TABLE records, blobs, dictionaries IN EXCLUSIVE MODE")
        .await
        .map_err(&err)?;
    let occupied: bool = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM records) OR EXISTS (SELECT 1 FROM blobs)
                 OR EXISTS (SELECT 1 FROM dictionaries)",
            &[],
        )
        .await
        .and_then(|r| r.try_get(0))
        .map_err(&err)?;
    if occupied {
        return Err(StorageError::Config(
            "the restore target is not empty: it holds records, blobs or dictionaries; \
             restore into a new schema or database"
                .into(),
        ));
    }
    loop {
        let Some(chunk) = chunks.recv().await else {
            // The reader failed part-way: roll everything back.
            return Err(StorageError::Task(
                "the snapshot reader stopped before the end; nothing was restored".into(),
            ));
        };
        match chunk {
            Chunk::Done => break,
            Chunk::Dictionaries(rows) => {
                let mut cols: (Vec<i64>, Vec<String>, Vec<i64>, Vec<Vec<u8>>) = Default::default();
                for (id, collection, created_at, data) in rows {
                    cols.0.push(id);
                    cols.1.push(collection);
                    cols.2.push(created_at);
                    cols.3.push(data);
                }
                tx.execute(
                    "INSERT INTO dictionaries (id, collection, created_at, data)
                     SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::bytea[])",
                    &[&cols.0, &cols.1, &cols.2, &cols.3],
                )
                .await
                .map_err(&err)?;
            }
            Chunk::Blobs(rows) => {
                let mut ids = Vec::new();
                let mut hashes: Vec<Vec<u8>> = Vec::new();
                let (mut codecs, mut raw, mut stored, mut refs) =
                    (Vec::new(), Vec::new(), Vec::new(), Vec::new());
                let mut data: Vec<Vec<u8>> = Vec::new();
                let mut dicts: Vec<Option<i64>> = Vec::new();
                for row in rows {
                    ids.push(row.0);
                    hashes.push(row.1);
                    codecs.push(row.2);
                    raw.push(row.3);
                    stored.push(row.4);
                    refs.push(row.5);
                    data.push(row.6);
                    dicts.push(row.7);
                }
                tx.execute(
                    "INSERT INTO blobs (id, hash, codec, raw_len, stored_len, refcount, data, dict_id)
                     SELECT * FROM unnest($1::bigint[], $2::bytea[], $3::bigint[], $4::bigint[],
                                          $5::bigint[], $6::bigint[], $7::bytea[], $8::bigint[])",
                    &[&ids, &hashes, &codecs, &raw, &stored, &refs, &data, &dicts],
                )
                .await
                .map_err(&err)?;
            }
            Chunk::Records(rows) => {
                let (mut cs, mut ks): (Vec<String>, Vec<String>) = (Vec::new(), Vec::new());
                let (mut blob, mut created, mut updated, mut count) =
                    (Vec::new(), Vec::new(), Vec::new(), Vec::new());
                let mut last: Vec<Option<i64>> = Vec::new();
                for row in rows {
                    cs.push(row.0);
                    ks.push(row.1);
                    blob.push(row.2);
                    created.push(row.3);
                    updated.push(row.4);
                    count.push(row.5);
                    last.push(row.6);
                }
                tx.execute(
                    "INSERT INTO records (collection, key, blob_id, created_at, updated_at,
                                          access_count, last_accessed)
                     SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[],
                                          $5::bigint[], $6::bigint[], $7::bigint[])",
                    &[&cs, &ks, &blob, &created, &updated, &count, &last],
                )
                .await
                .map_err(&err)?;
            }
        }
    }
    // Identity columns continue after the restored ids.
    tx.batch_execute(
        "SELECT setval(pg_get_serial_sequence('blobs', 'id'),
                       (SELECT coalesce(max(id), 0) + 1 FROM blobs), false);
         SELECT setval(pg_get_serial_sequence('dictionaries', 'id'),
                       (SELECT coalesce(max(id), 0) + 1 FROM dictionaries), false);",
    )
    .await
    .map_err(&err)?;
    tx.commit().await.map_err(&err)
}

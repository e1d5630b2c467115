//! Loading a SQLite snapshot (a verified backup) into an empty PostgreSQL schema.
//!
//! The calling thread reads the snapshot in chunks and hands them over a bounded channel to
//! one async task that inserts them in a single transaction (a failed restore leaves the
//! target empty), then moves the id sequences past the restored ids.

use std::path::Path;

use deadpool_postgres::Pool;
use tokio::sync::mpsc;

use super::{Bridge, connect, db_err};
use crate::backend::snapshot::{self, Chunk};
use crate::backend::{SnapshotInfo, restore_target_not_empty};
use crate::error::{Result, StorageError};

/// Loads the snapshot at `path` (at the current schema version) into the empty database
/// behind `pool`. A target holding any record, blob or dictionary is refused.
pub fn load_snapshot(bridge: &Bridge, pool: Pool, path: &Path) -> Result<SnapshotInfo> {
    let info = snapshot::require_current(path)?;
    let (tx, rx) = mpsc::channel::<Chunk>(2);
    let (done_tx, done_rx) = std::sync::mpsc::sync_channel(1);
    bridge.handle().spawn(async move {
        let _ = done_tx.send(insert_all(pool, rx).await);
    });
    let sent = snapshot::read_rows(path, |chunk| {
        let sender = tx.clone();
        bridge.block_on(async move {
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

async fn insert_all(pool: Pool, mut chunks: mpsc::Receiver<Chunk>) -> Result<()> {
    let err = db_err("restoring a backup into PostgreSQL");
    let mut client = connect(&pool).await?;
    let tx = client.transaction().await.map_err(&err)?;
    // Nobody may write while the target is checked and filled.
    tx.batch_execute(
        "LOCK TABLE records, blobs, dictionaries, chunks, chunk_refs, blob_chunks, data_keys, meta
         IN EXCLUSIVE MODE",
    )
    .await
    .map_err(&err)?;
    let occupied: bool = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM records) OR EXISTS (SELECT 1 FROM blobs)
                 OR EXISTS (SELECT 1 FROM dictionaries) OR EXISTS (SELECT 1 FROM chunks)",
            &[],
        )
        .await
        .and_then(|r| r.try_get(0))
        .map_err(&err)?;
    if occupied {
        return Err(restore_target_not_empty());
    }
    let mut clock = 1i64;
    loop {
        let Some(chunk) = chunks.recv().await else {
            // The reader failed part-way: roll everything back.
            return Err(StorageError::Task(
                "the snapshot reader stopped before the end; nothing was restored".into(),
            ));
        };
        match chunk {
            Chunk::Done => break,
            Chunk::Meta(rows) => {
                let target = super::schema::read_identity(&tx).await?;
                let keys: i64 = tx
                    .query_one("SELECT count(*) FROM data_keys", &[])
                    .await
                    .and_then(|r| r.try_get(0))
                    .map_err(&err)?;
                let keys = usize::try_from(keys).unwrap_or(usize::MAX);
                for (name, value) in crate::backend::identity::restored_rows(rows, &target, keys)? {
                    tx.execute(
                        "INSERT INTO meta (name, value) VALUES ($1, $2)
                         ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                        &[&name, &value],
                    )
                    .await
                    .map_err(&err)?;
                }
            }
            Chunk::DataKeys(rows) => {
                for (id, collection, version, wrapped, created_at) in rows {
                    tx.execute(
                        "INSERT INTO data_keys (id, collection, version, wrapped, created_at)
                         VALUES ($1, $2, $3, $4, $5)",
                        &[&id, &collection, &version, &wrapped, &created_at],
                    )
                    .await
                    .map_err(&err)?;
                }
            }
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
            Chunk::Lists(rows) => {
                let mut cols: (Vec<i64>, Vec<i64>, Vec<i64>) = Default::default();
                for (blob_id, seq, chunk_id) in rows {
                    cols.0.push(blob_id);
                    cols.1.push(seq);
                    cols.2.push(chunk_id);
                }
                tx.execute(
                    "INSERT INTO blob_chunks (blob_id, seq, chunk_id)
                     SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[])",
                    &[&cols.0, &cols.1, &cols.2],
                )
                .await
                .map_err(&err)?;
            }
            Chunk::Blobs(rows) => insert_blobs(&tx, "blobs", rows).await?,
            Chunk::Chunks(rows) => insert_blobs(&tx, "chunks", rows).await?,
            Chunk::Records(rows) => {
                let (mut cs, mut ks): (Vec<String>, Vec<String>) = (Vec::new(), Vec::new());
                let (mut blob, mut created, mut updated, mut count) =
                    (Vec::new(), Vec::new(), Vec::new(), Vec::new());
                let mut last: Vec<Option<i64>> = Vec::new();
                let mut versions: Vec<i64> = Vec::new();
                let mut expires: Vec<Option<i64>> = Vec::new();
                for row in rows {
                    cs.push(row.0);
                    ks.push(row.1);
                    blob.push(row.2);
                    created.push(row.3);
                    updated.push(row.4);
                    count.push(row.5);
                    last.push(row.6);
                    versions.push(row.7);
                    expires.push(row.8);
                }
                tx.execute(
                    "INSERT INTO records (collection, key, blob_id, created_at, updated_at,
                                          access_count, last_accessed, version, expires_at)
                     SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[],
                                          $5::bigint[], $6::bigint[], $7::bigint[], $8::bigint[],
                                          $9::bigint[])",
                    &[
                        &cs, &ks, &blob, &created, &updated, &count, &last, &versions, &expires,
                    ],
                )
                .await
                .map_err(&err)?;
            }
            Chunk::Settings(rows) => {
                for (collection, name, value) in rows {
                    tx.execute(
                        "INSERT INTO collection_settings (collection, name, value)
                         VALUES ($1, $2, $3)
                         ON CONFLICT (collection, name) DO UPDATE SET value = excluded.value",
                        &[&collection, &name, &value],
                    )
                    .await
                    .map_err(&err)?;
                }
            }
            Chunk::Clock(last) => {
                clock = clock.max(last);
            }
        }
    }
    // The version clock continues after the snapshot's clock and every restored version (it
    // never moves back: this database may have handed out versions before).
    tx.execute(
        "SELECT setval('version_clock', greatest(
             $1::bigint,
             (SELECT last_value FROM version_clock),
             (SELECT coalesce(max(version), 1) FROM records)))",
        &[&clock],
    )
    .await
    .map_err(&err)?;
    // Identity columns continue after the restored ids.
    tx.batch_execute(
        "SELECT setval(pg_get_serial_sequence('blobs', 'id'),
                       (SELECT coalesce(max(id), 0) + 1 FROM blobs), false);
         SELECT setval(pg_get_serial_sequence('chunks', 'id'),
                       (SELECT coalesce(max(id), 0) + 1 FROM chunks), false);
         SELECT setval(pg_get_serial_sequence('dictionaries', 'id'),
                       (SELECT coalesce(max(id), 0) + 1 FROM dictionaries), false);",
    )
    .await
    .map_err(&err)?;
    tx.commit().await.map_err(&err)
}

/// Inserts rows of `blobs`, or of `chunks` with their counts into `chunk_refs`.
async fn insert_blobs(
    tx: &deadpool_postgres::Transaction<'_>,
    table: &'static str,
    rows: Vec<snapshot::BlobRow>,
) -> Result<()> {
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
    let sql = if table == "chunks" {
        "WITH c AS (
             INSERT INTO chunks (id, hash, codec, raw_len, stored_len, data, dict_id)
             SELECT i, h, k, r, s, d, x FROM unnest($1::bigint[], $2::bytea[], $3::bigint[],
                 $4::bigint[], $5::bigint[], $6::bigint[], $7::bytea[], $8::bigint[])
                 AS t(i, h, k, r, s, n, d, x))
         INSERT INTO chunk_refs (chunk_id, refcount) SELECT * FROM unnest($1::bigint[], $6::bigint[])"
            .to_owned()
    } else {
        format!(
            "INSERT INTO {table} (id, hash, codec, raw_len, stored_len, refcount, data, dict_id)
             SELECT * FROM unnest($1::bigint[], $2::bytea[], $3::bigint[], $4::bigint[],
                                  $5::bigint[], $6::bigint[], $7::bytea[], $8::bigint[])"
        )
    };
    tx.execute(
        &sql,
        &[&ids, &hashes, &codecs, &raw, &stored, &refs, &data, &dicts],
    )
    .await
    .map_err(db_err("restoring a backup into PostgreSQL"))?;
    Ok(())
}

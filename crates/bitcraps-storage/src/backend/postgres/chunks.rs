//! Chunk lists on PostgreSQL (`chunk/`, schema version 9), as in SQLite: `chunks` rows,
//! content-addressed and reference-counted, listed in order by `blob_chunks`. The counts
//! are rows of `chunk_refs` (schema version 10), so changing one writes a narrow tuple,
//! never a new version of the chunk's row with its bytes.
//!
//! Nodes share chunks without advisory locks: taking a reference is one
//! `UPDATE chunk_refs … refcount + 1` of the count of the chunk found by hash, which waits
//! on a node that is dropping the same chunk's last reference and then finds the row gone
//! (no row updated: a new chunk is inserted). Two nodes inserting the same new chunk at once store it twice, each with
//! exact counts; that costs space, never correctness. Row-lock deadlocks between nodes
//! taking chunks in different orders are retried like any other (`write.rs`).

use deadpool_postgres::Transaction;

use super::write::{Fail, cached, db};
use crate::backend::StoredBlob;
use crate::error::StorageError;
use crate::value::EncodedValue;

/// Lists `value`'s chunks under the new blob `blob_id`, taking a reference to each.
pub(super) async fn acquire(
    tx: &Transaction<'_>,
    blob_id: i64,
    value: &EncodedValue,
    deduplicate: bool,
) -> Result<(), Fail> {
    for (seq, chunk) in value.chunks.iter().enumerate() {
        let seq = i64::try_from(seq).unwrap_or(i64::MAX);
        let chunk_id = acquire_one(tx, chunk, deduplicate).await?;
        tx.execute(
            &cached(
                tx,
                "INSERT INTO blob_chunks (blob_id, seq, chunk_id) VALUES ($1, $2, $3)",
            )
            .await?,
            &[&blob_id, &seq, &chunk_id],
        )
        .await
        .map_err(db("listing a chunk"))?;
    }
    Ok(())
}

async fn acquire_one(
    tx: &Transaction<'_>,
    chunk: &EncodedValue,
    deduplicate: bool,
) -> Result<i64, Fail> {
    let raw_len = i64::try_from(chunk.raw_len()).unwrap_or(i64::MAX);
    let hash = &chunk.hash[..];
    if deduplicate {
        let found = tx
            .query_opt(
                &cached(
                    tx,
                    "UPDATE chunk_refs SET refcount = refcount + 1
                     WHERE chunk_id = (SELECT id FROM chunks WHERE hash = $1 LIMIT 1)
                     RETURNING chunk_id,
                               (SELECT c.raw_len FROM chunks c WHERE c.id = chunk_id)",
                )
                .await?,
                &[&hash],
            )
            .await
            .map_err(db("adding a chunk reference"))?;
        if let Some(row) = found {
            let id: i64 = row.try_get(0).map_err(db("adding a chunk reference"))?;
            let len: Option<i64> = row.try_get(1).map_err(db("adding a chunk reference"))?;
            let len = len.unwrap_or(-1);
            if len != raw_len {
                return Err(Fail::Final(StorageError::corruption(
                    format!("chunk {id}"),
                    format!("same content hash but length {len}, expected {raw_len}"),
                )));
            }
            return Ok(id);
        }
    }
    let stored_len = i64::try_from(chunk.stored.len()).unwrap_or(i64::MAX);
    tx.query_one(
        &cached(
            tx,
            "WITH c AS (
                 INSERT INTO chunks (hash, codec, raw_len, stored_len, data, dict_id)
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING id)
             INSERT INTO chunk_refs (chunk_id, refcount) SELECT id, 1 FROM c
             RETURNING chunk_id",
        )
        .await?,
        &[
            &hash,
            &chunk.codec_id(),
            &raw_len,
            &stored_len,
            &&chunk.stored[..],
            &chunk.dict_id,
        ],
    )
    .await
    .and_then(|r| r.try_get(0))
    .map_err(db("storing a chunk"))
}

/// Drops the chunk list of the deleted blob `blob_id`, deleting chunks no list names.
pub(super) async fn release(tx: &Transaction<'_>, blob_id: i64) -> Result<(), Fail> {
    let rows = tx
        .query(
            &cached(
                tx,
                "DELETE FROM blob_chunks WHERE blob_id = $1 RETURNING chunk_id",
            )
            .await?,
            &[&blob_id],
        )
        .await
        .map_err(db("dropping a chunk list"))?;
    let mut ids = rows
        .iter()
        .map(|r| r.try_get::<_, i64>(0))
        .collect::<Result<Vec<_>, _>>()
        .map_err(db("dropping a chunk list"))?;
    // In id order, so two nodes releasing overlapping lists lock rows in the same order.
    ids.sort_unstable();
    for id in ids {
        // No count row (damage): the chunk stays, for the check to report and repair.
        let left = tx
            .query_opt(
                &cached(
                    tx,
                    "UPDATE chunk_refs SET refcount = greatest(refcount - 1, 0)
                     WHERE chunk_id = $1 RETURNING refcount",
                )
                .await?,
                &[&id],
            )
            .await
            .map_err(db("dropping a chunk reference"))?
            .map(|r| r.try_get::<_, i64>(0))
            .transpose()
            .map_err(db("dropping a chunk reference"))?;
        if left == Some(0) {
            tx.execute(
                &cached(
                    tx,
                    "WITH gone AS (DELETE FROM chunk_refs WHERE chunk_id = $1 RETURNING chunk_id)
                     DELETE FROM chunks WHERE id IN (SELECT chunk_id FROM gone)",
                )
                .await?,
                &[&id],
            )
            .await
            .map_err(db("deleting an unreferenced chunk"))?;
        }
    }
    Ok(())
}

/// The chunks of the record `collection/key` while it names blob `$3`, in order, read in one
/// statement (one snapshot). No row: the record no longer names that blob (a writer replaced
/// it meanwhile). A row with a NULL position: the list is empty.
const LOAD_FOR_RECORD: &str =
    "SELECT bc.seq, bc.chunk_id, c.codec, c.raw_len, c.hash, c.data, c.dict_id
     FROM records r LEFT JOIN blob_chunks bc ON bc.blob_id = r.blob_id
     LEFT JOIN chunks c ON c.id = bc.chunk_id
     WHERE r.collection = $1 AND r.key = $2 AND r.blob_id = $3 ORDER BY bc.seq";

/// The same for a blob read without its record (the deep check): no row, the blob is gone.
const LOAD_FOR_BLOB: &str =
    "SELECT bc.seq, bc.chunk_id, c.codec, c.raw_len, c.hash, c.data, c.dict_id
     FROM blobs b LEFT JOIN blob_chunks bc ON bc.blob_id = b.id
     LEFT JOIN chunks c ON c.id = bc.chunk_id
     WHERE b.id = $1 ORDER BY bc.seq";

/// The chunks of `collection/key`'s blob `blob_id`; `None` when the record was rewritten
/// since it was read (the caller reads it again).
pub(super) async fn load_for_record(
    client: &deadpool_postgres::Client,
    collection: &str,
    key: &str,
    blob_id: i64,
) -> crate::error::Result<Option<Vec<StoredBlob>>> {
    let err = |e| StorageError::database("reading a chunk list", e);
    let stmt = client.prepare_cached(LOAD_FOR_RECORD).await.map_err(err)?;
    let rows = client
        .query(&stmt, &[&collection, &key, &blob_id])
        .await
        .map_err(err)?;
    if rows.is_empty() {
        return Ok(None);
    }
    from_rows(&rows, &format!("{collection}/{key}")).map(Some)
}

/// The chunks of blob `blob_id`; `None` when it was deleted meanwhile.
pub(super) async fn load_for_blob(
    client: &deadpool_postgres::Client,
    blob_id: i64,
) -> crate::error::Result<Option<Vec<StoredBlob>>> {
    let err = |e| StorageError::database("reading a chunk list", e);
    let stmt = client.prepare_cached(LOAD_FOR_BLOB).await.map_err(err)?;
    let rows = client.query(&stmt, &[&blob_id]).await.map_err(err)?;
    if rows.is_empty() {
        return Ok(None);
    }
    from_rows(&rows, &format!("blob {blob_id}")).map(Some)
}

/// The chunks of a list from the rows of a load; a gap, a missing chunk or an empty list is
/// corruption at `location`.
fn from_rows(
    rows: &[tokio_postgres::Row],
    location: &str,
) -> crate::error::Result<Vec<StoredBlob>> {
    let err = |e: tokio_postgres::Error| StorageError::database("reading a chunk list", e);
    let mut chunks = Vec::with_capacity(rows.len());
    for (expected, row) in rows.iter().enumerate() {
        let Some(seq) = row.try_get::<_, Option<i64>>(0).map_err(err)? else {
            return Err(StorageError::corruption(
                location,
                "a chunked document has no chunks",
            ));
        };
        let chunk_id: i64 = row.try_get(1).map_err(err)?;
        if i64::try_from(expected).ok() != Some(seq) {
            return Err(StorageError::corruption(
                location,
                format!("its chunk list skips from position {expected} to {seq}"),
            ));
        }
        let (Some(codec_id), Some(raw_len), Some(hash), Some(data)) = (
            row.try_get::<_, Option<i64>>(2).map_err(err)?,
            row.try_get::<_, Option<i64>>(3).map_err(err)?,
            row.try_get::<_, Option<Vec<u8>>>(4).map_err(err)?,
            row.try_get::<_, Option<Vec<u8>>>(5).map_err(err)?,
        ) else {
            return Err(StorageError::corruption(
                location,
                format!("chunk {seq} names chunk id {chunk_id}, which does not exist"),
            ));
        };
        chunks.push(StoredBlob {
            codec_id,
            raw_len,
            hash,
            data,
            dict_id: row.try_get(6).map_err(err)?,
            chunks: Vec::new(),
            keyed: None,
        });
    }
    Ok(chunks)
}

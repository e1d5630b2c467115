//! Reference repair: recount every blob's references and remove blobs nothing refers to, with
//! writers of every node kept out by table locks. (`ANALYZE`, `VACUUM` and the checkpoint
//! no-op are one statement each and live with the trait implementation in `mod.rs`.)

use deadpool_postgres::Client;

use super::write::{Fail, Retry, db};
use crate::backend::RepairOutcome;
use crate::error::Result;

/// Recomputes reference counts and deletes unreferenced blobs, in one transaction that keeps
/// writers out (orphans first, like SQLite's repair, so a removed blob is not also "fixed").
///
/// It never deletes a blob a record it could not read still names: PostgreSQL raises an
/// error on a page it cannot read (a bad page header or checksum) instead of skipping it,
/// unless an operator salvaging the database set `zero_damaged_pages`. So the `NOT EXISTS`
/// scan sees every record or the transaction fails and nothing is deleted.
pub async fn repair(client: &mut Client) -> Result<RepairOutcome> {
    let mut retry = Retry::default();
    loop {
        match repair_once(client).await {
            Ok(outcome) => return Ok(outcome),
            Err(fail) => {
                if !retry.again(&fail).await {
                    return Err(fail.into_error());
                }
            }
        }
    }
}

async fn repair_once(client: &mut Client) -> Result<RepairOutcome, Fail> {
    let to_u64 = |v: i64| u64::try_from(v).unwrap_or(0);
    let tx = client
        .transaction()
        .await
        .map_err(db("starting a reference repair"))?;
    tx.batch_execute(
        "LOCK TABLE records, blobs, blob_chunks, chunks, chunk_refs IN SHARE ROW EXCLUSIVE MODE",
    )
    .await
    .map_err(db("locking the tables for a reference repair"))?;
    let orphan = "NOT EXISTS (SELECT 1 FROM records r WHERE r.blob_id = blobs.id)";
    let row = tx
        .query_one(
            &format!(
                "SELECT count(*), coalesce(sum(stored_len), 0)::bigint FROM blobs WHERE {orphan}"
            ),
            &[],
        )
        .await
        .map_err(db("counting unreferenced blobs"))?;
    let orphans: i64 = row.try_get(0).map_err(db("counting unreferenced blobs"))?;
    let bytes: i64 = row.try_get(1).map_err(db("counting unreferenced blobs"))?;
    tx.execute(&format!("DELETE FROM blobs WHERE {orphan}"), &[])
        .await
        .map_err(db("removing unreferenced blobs"))?;
    let fixed = tx
        .execute(
            "UPDATE blobs SET refcount = c.n FROM (
                 SELECT b.id, (SELECT count(*) FROM records r WHERE r.blob_id = b.id) AS n
                 FROM blobs b
             ) c
             WHERE c.id = blobs.id AND blobs.refcount <> c.n",
            &[],
        )
        .await
        .map_err(db("recounting references"))?;
    // Chunks: the lists of removed blobs go, then chunks no list names (removed, not also
    // "fixed"), then every other chunk's count.
    tx.execute(
        "DELETE FROM blob_chunks bc WHERE NOT EXISTS (SELECT 1 FROM blobs b WHERE b.id = bc.blob_id)",
        &[],
    )
    .await
    .map_err(db("removing stray chunk lists"))?;
    let chunk_orphan = "NOT EXISTS (SELECT 1 FROM blob_chunks bc WHERE bc.chunk_id = chunks.id)";
    let row = tx
        .query_one(
            &format!(
                "SELECT count(*), coalesce(sum(stored_len), 0)::bigint FROM chunks WHERE {chunk_orphan}"
            ),
            &[],
        )
        .await
        .map_err(db("counting unreferenced chunks"))?;
    let chunk_orphans: i64 = row.try_get(0).map_err(db("counting unreferenced chunks"))?;
    let chunk_bytes: i64 = row.try_get(1).map_err(db("counting unreferenced chunks"))?;
    tx.execute(
        &format!(
            "DELETE FROM chunk_refs WHERE chunk_id IN (SELECT id FROM chunks WHERE {chunk_orphan})"
        ),
        &[],
    )
    .await
    .map_err(db("removing unreferenced chunks"))?;
    tx.execute(&format!("DELETE FROM chunks WHERE {chunk_orphan}"), &[])
        .await
        .map_err(db("removing unreferenced chunks"))?;
    // Count rows of chunks that do not exist, then every other count set to its lists.
    let stray = tx
        .execute(
            "DELETE FROM chunk_refs r WHERE NOT EXISTS (SELECT 1 FROM chunks c WHERE c.id = r.chunk_id)",
            &[],
        )
        .await
        .map_err(db("recounting chunk references"))?;
    let chunks_fixed = tx
        .execute(
            "INSERT INTO chunk_refs (chunk_id, refcount)
             SELECT bc.chunk_id, count(*) FROM blob_chunks bc GROUP BY bc.chunk_id
             ON CONFLICT (chunk_id) DO UPDATE SET refcount = excluded.refcount
             WHERE chunk_refs.refcount <> excluded.refcount",
            &[],
        )
        .await
        .map_err(db("recounting chunk references"))?
        .saturating_add(stray);
    tx.commit()
        .await
        .map_err(db("committing a reference repair"))?;
    Ok(RepairOutcome {
        refcounts_fixed: fixed,
        orphans_removed: to_u64(orphans),
        orphan_bytes_removed: to_u64(bytes),
        chunk_refcounts_fixed: chunks_fixed,
        orphan_chunks_removed: to_u64(chunk_orphans),
        orphan_chunk_bytes_removed: to_u64(chunk_bytes),
    })
}

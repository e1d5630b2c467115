//! Regression (issue #16): chunk reference counts must not live beside the chunks' bytes.
//!
//! Schema version 9 kept each chunk's `refcount` in its `chunks` row, so a rewrite of a large
//! document — which takes a reference to every chunk it shares with the version it replaces
//! and drops the old version's — rewrote every page holding chunk data: the whole compressed
//! document went through the WAL and the checkpoint again (~75 KB per version of a 1 MiB log).
//!
//! The test reads the WAL frames one durable rewrite appends and maps their page numbers to
//! tables through SQLite's `dbstat`: a delta rewrite (which shares all its keyframe's chunks)
//! must write no page of `chunks`, a chunked rewrite only the pages of its one new chunk,
//! and a delta over a delta three pages in all. Pages and bytes are counted, never time.

use crate::common;

use std::collections::BTreeSet;
use std::path::Path;

use bitcraps_storage::{PersistentStorageManager, StorageConfig};
use serde_json::Value;

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

use common::game_log as log;

/// The salts of the WAL at `path` and the page number of each of its valid frames, in order
/// (frames left over from before the last reset carry other salts and are not listed).
fn wal_frames(path: &Path) -> Result<(Option<[u8; 8]>, Vec<u32>)> {
    let Ok(wal) = std::fs::read(path) else {
        return Ok((None, Vec::new()));
    };
    let header = |at: usize| -> Result<u32> {
        let bytes: [u8; 4] = wal.get(at..at + 4).ok_or("short WAL")?.try_into()?;
        Ok(u32::from_be_bytes(bytes))
    };
    if wal.len() < 32 {
        return Ok((None, Vec::new()));
    }
    let page_size = usize::try_from(header(8)?)?;
    let salts: [u8; 8] = wal.get(16..24).ok_or("short WAL")?.try_into()?;
    let mut pages = Vec::new();
    let mut at = 32;
    while at + 24 + page_size <= wal.len() {
        if wal.get(at + 8..at + 16) != Some(&salts[..]) {
            break;
        }
        pages.push(header(at)?);
        at += 24 + page_size;
    }
    Ok((Some(salts), pages))
}

/// The pages one `store` appends to the WAL (the store stays open: no checkpoint between).
async fn pages_written(s: &PersistentStorageManager, db: &Path, doc: &Value) -> Result<Vec<u32>> {
    let wal = db.with_extension("db-wal");
    let (salts, before) = wal_frames(&wal)?;
    s.store("logs", "game-1", doc).await?;
    let (after_salts, after) = wal_frames(&wal)?;
    // The same salts: the WAL grew; new salts: it was reset before this write's frames.
    let skip = if salts == after_salts {
        before.len()
    } else {
        0
    };
    let written: Vec<u32> = after.into_iter().skip(skip).collect();
    assert!(!written.is_empty(), "the rewrite wrote no WAL frame");
    Ok(written)
}

/// The pages of the `chunks` table (its b-tree and overflow pages), and of those the ones
/// holding chunk rows.
fn chunk_pages(db: &Path) -> Result<(BTreeSet<u32>, usize)> {
    let conn = rusqlite::Connection::open(db)?;
    let mut stmt = conn.prepare("SELECT pageno, pagetype FROM dbstat WHERE name = 'chunks'")?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, u32>(0)?, r.get::<_, String>(1)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let leaves = rows.iter().filter(|(_, kind)| kind == "leaf").count();
    Ok((rows.into_iter().map(|(p, _)| p).collect(), leaves))
}

/// Writes the 1 MiB log (`rewrites` times, one more roll each), closes, reopens and rewrites
/// it once more; returns the pages the last rewrite wrote to `chunks` and to any table, and
/// how many leaf pages hold chunks.
async fn rewrite(keyframe_interval: u32, rewrites: u64) -> Result<(Vec<u32>, Vec<String>, usize)> {
    let f = common::sqlite_fixture();
    let mut config: StorageConfig = f.config.clone();
    config.maintenance.background_tasks = false;
    config.compression.keyframe_interval = keyframe_interval;
    let db = config.database.data_path.join("bitcraps.db");
    let s = PersistentStorageManager::open(config.clone()).await?;
    for n in 0..rewrites {
        s.store("logs", "game-1", &log(8_000 + n)).await?;
    }
    s.close().await?;
    let s = PersistentStorageManager::open(config).await?;
    let written = pages_written(&s, &db, &log(8_000 + rewrites)).await?;
    let (chunks, leaves) = chunk_pages(&db)?;
    let tables = tables_of(&db, &written)?;
    let stats = s.statistics().await?.database_stats;
    assert!(stats.chunk_count >= 32, "{stats:?}");
    s.close().await?;
    let hits = written.into_iter().filter(|p| chunks.contains(p)).collect();
    Ok((hits, tables, leaves))
}

/// The table (or index) each of `pages` belongs to now.
fn tables_of(db: &Path, pages: &[u32]) -> Result<Vec<String>> {
    let conn = rusqlite::Connection::open(db)?;
    let mut stmt = conn.prepare("SELECT name FROM dbstat WHERE pageno = ?1")?;
    let mut names = Vec::new();
    for p in pages {
        let name: Option<String> =
            stmt.query_row([p], |r| r.get(0))
                .map(Some)
                .or_else(|e| match e {
                    rusqlite::Error::QueryReturnedNoRows => Ok(None),
                    other => Err(other),
                })?;
        names.push(name.unwrap_or_else(|| format!("page {p}")));
    }
    Ok(names)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delta_rewrite_writes_no_chunk_page() -> Result {
    let (hits, _, leaves) = rewrite(16, 1).await?;
    // Without this the test could not fail: the chunks span many pages.
    assert!(leaves >= 8, "only {leaves} leaf pages of chunks");
    assert!(hits.is_empty(), "the rewrite wrote chunk pages {hits:?}");
    Ok(())
}

/// A delta replacing a delta of the same keyframe is written over it (`sqlite/delta.rs`):
/// its chunk list and the chunks' counts are not written at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delta_over_a_delta_writes_no_list_and_no_count() -> Result {
    // The first write is the keyframe, the second a delta; the measured one replaces it.
    let (hits, tables, _) = rewrite(16, 2).await?;
    assert!(hits.is_empty(), "the rewrite wrote chunk pages {hits:?}");
    for table in ["blob_chunks", "chunk_refs", "chunks_by_hash_prefix"] {
        assert!(
            !tables.iter().any(|t| t == table),
            "the rewrite wrote {table}: {tables:?}"
        );
    }
    Ok(())
}

/// Regression (schema versions 11, 12 and 13): a delta over a delta wrote six pages, two of
/// them only for the two clocks (`version_clock`, `change_clock`, each its own table) and
/// one for the delta's entry in `blobs_by_hash_prefix`, which nothing looks deltas up by;
/// version 11 left four, one of them the `change_clock` page; version 12 three: the record,
/// the delta's `blobs` row and the change log — three WAL frames, four file-system pages
/// (16 KiB) per commit. Since version 13 a small delta is kept in its record's row
/// (`sqlite/inline.rs`): the record and the change log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delta_over_a_delta_writes_two_pages() -> Result {
    let (_, tables, _) = rewrite(16, 2).await?;
    let mut written = tables.clone();
    written.sort();
    written.dedup();
    assert_eq!(written, ["changes", "records"], "{tables:?}");
    assert_eq!(tables.len(), 2, "{tables:?}");
    Ok(())
}

/// The first delta after a keyframe keeps the keyframe's blob and its reference (schema
/// version 13): no list, no count, no blob page either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_delta_after_a_keyframe_writes_two_pages() -> Result {
    let (_, tables, _) = rewrite(16, 1).await?;
    let mut written = tables.clone();
    written.sort();
    written.dedup();
    assert_eq!(written, ["changes", "records"], "{tables:?}");
    assert_eq!(tables.len(), 2, "{tables:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_rewrite_writes_only_its_new_chunk() -> Result {
    let (hits, _, leaves) = rewrite(0, 1).await?;
    assert!(leaves >= 8, "only {leaves} leaf pages of chunks");
    // The new last chunk goes into the last leaf (and the old last one leaves it); a split
    // may add a leaf and an interior page.
    assert!(hits.len() <= 3, "the rewrite wrote chunk pages {hits:?}");
    Ok(())
}

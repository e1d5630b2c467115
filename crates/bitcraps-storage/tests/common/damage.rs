//! Damaging a closed SQLite store's file on purpose: the page-level corruption tests.

use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Writes garbage over the second leaf page of `table` (found through `dbstat`) of the
/// closed database at `db`; returns the page number.
pub fn damage_a_leaf(db: &Path, table: &str) -> Result<i64> {
    let (page, page_size): (i64, i64) = {
        let conn = rusqlite::Connection::open(db)?;
        let page = conn.query_row(
            "SELECT pageno FROM dbstat WHERE name = ?1 AND pagetype = 'leaf'
             ORDER BY pageno LIMIT 1 OFFSET 1",
            [table],
            |r| r.get(0),
        )?;
        let size = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        (page, size)
    };
    let garbage: Vec<u8> = (0..=255u8)
        .cycle()
        .map(|b| b.wrapping_mul(7).wrapping_add(13))
        .take(usize::try_from(page_size)?)
        .collect();
    let mut file = std::fs::OpenOptions::new().write(true).open(db)?;
    file.seek(SeekFrom::Start(u64::try_from((page - 1) * page_size)?))?;
    file.write_all(&garbage)?;
    file.sync_all()?;
    Ok(page)
}

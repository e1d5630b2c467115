//! `maintenance` on a store with a damaged page of its records table (garbage written over
//! the table's root page while the store is closed): exit 1 with a message that says what was
//! found and what the operator does next; no blob deleted, no backup taken or removed.

use crate::common;

use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use common::Scratch;
use predicates::prelude::*;

#[expect(clippy::expect_used, reason = "test setup")]
fn blob_count(db: &Path) -> i64 {
    let conn = rusqlite::Connection::open(db).expect("open");
    conn.query_row("SELECT count(*) FROM blobs", [], |r| r.get(0))
        .expect("count")
}

#[expect(clippy::expect_used, reason = "test setup")]
fn damage_records_root(db: &Path) {
    let (root, page_size): (i64, i64) = {
        let conn = rusqlite::Connection::open(db).expect("open");
        let root = conn
            .query_row(
                "SELECT rootpage FROM sqlite_master WHERE type = 'table' AND name = 'records'",
                [],
                |r| r.get(0),
            )
            .expect("records root page");
        let size = conn
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .expect("page size");
        (root, size)
    };
    let offset = u64::try_from((root - 1) * page_size).expect("offset");
    let len = usize::try_from(page_size).expect("page size");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(db)
        .expect("db file");
    file.seek(SeekFrom::Start(offset)).expect("seek");
    file.write_all(&vec![0xA5; len]).expect("garbage");
    file.sync_all().expect("sync");
}

fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn maintenance_refuses_a_damaged_store_and_says_what_to_do() {
    let s = Scratch::new();
    for i in 0..5 {
        s.ok(&[
            "put",
            "games",
            &format!("g-{i}"),
            &format!(r#"{{"point":{i}}}"#),
        ]);
    }
    s.ok(&["backup", "create"]);
    let db = s.path("data").join("bitcraps.db");
    let backups = s.path("data").join("backups");
    let before = files(&backups);
    assert_eq!(before.len(), 2, "one archive and its manifest: {before:?}");
    let blobs = blob_count(&db);
    damage_records_root(&db);

    s.cli()
        .arg("maintenance")
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "maintenance refused to run on a damaged store",
        ))
        .stderr(predicate::str::contains(
            "bitcraps-storage backup verify <id>",
        ))
        .stderr(predicate::str::contains("every existing backup was kept"));
    assert_eq!(blob_count(&db), blobs, "no blob deleted");
    assert_eq!(files(&backups), before, "no backup taken or removed");
}

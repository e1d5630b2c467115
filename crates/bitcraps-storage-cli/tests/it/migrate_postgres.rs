//! `migrate` SQLite → PostgreSQL → SQLite keeps every record byte for byte. Needs
//! `BITCRAPS_TEST_POSTGRES_URL`; skipped (and passing) without it. The PostgreSQL store lives
//! in a schema of its own, created here and dropped at the end.

#![allow(clippy::expect_used, reason = "tests: a failed step is a failed test")]

use crate::common;

use std::path::PathBuf;

use common::Scratch;
use common::migration::{GAMES, LOBBY, PLAYERS, assert_documents, build_source, export, versions};
use common::postgres::{Schema, server};
use predicates::prelude::*;

#[test]
fn sqlite_to_postgres_and_back_keeps_every_record() {
    let Some(server) = server() else {
        return;
    };
    let s = Scratch::new();
    let source = build_source(&s);
    let schema = Schema::create(&server, "bcs_migrate");
    let postgres = schema.url();
    let total = GAMES + LOBBY + PLAYERS.len();

    s.bare()
        .arg("migrate")
        .arg("--from")
        .arg(&source)
        .args(["--to", &postgres])
        .assert()
        .success()
        .stdout(predicate::function(|out: &str| {
            common::has_row(out, &format!("total (3 collections) {total} {total} 0 ok"))
        }))
        .stderr(predicate::str::contains(format!(
            "copied {total} records in 3 collection(s)"
        )));
    // Read back from PostgreSQL directly.
    assert_documents(&s, &["--url", &postgres]);
    let source_arg = source.display().to_string();
    let source_versions = versions(&s, &["--data", &source_arg]);
    assert_eq!(source_versions, versions(&s, &["--url", &postgres]));
    assert_eq!(export(&s, &source), export(&s, &PathBuf::from(&postgres)));

    // A second copy into the same schema is refused: it holds records now.
    s.bare()
        .arg("migrate")
        .arg("--from")
        .arg(&source)
        .args(["--to", &postgres])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("already holds"));

    let back = s.path("back");
    s.bare()
        .args(["migrate", "--from", &postgres, "--to"])
        .arg(&back)
        .args(["--batch-size", "500"])
        .assert()
        .success()
        .stdout(predicate::str::contains("MISMATCH").not());
    assert_eq!(export(&s, &source), export(&s, &back));
    assert_documents(&s, &["--data", &back.to_string_lossy()]);
    assert_eq!(
        versions(&s, &["--data", &back.to_string_lossy()]),
        source_versions,
        "versions survive SQLite -> PostgreSQL -> SQLite"
    );
    drop(schema);
}

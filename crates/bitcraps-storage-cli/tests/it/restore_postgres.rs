//! `backup restore ID --to postgres://…` loads the backup into that database (an empty schema
//! of this test's own), and creates nothing local. Regression: the URL used to be taken as a
//! directory name, so the restore went into `./postgres:/…` and the database stayed empty.
//! Needs `BITCRAPS_TEST_POSTGRES_URL`; skipped (and passing) without it.

#![allow(clippy::expect_used, reason = "tests: a failed step is a failed test")]

use crate::common;

use common::Scratch;
use common::postgres::{Schema, server};
use predicates::prelude::*;

#[test]
fn restore_to_a_postgres_url_fills_that_database() {
    let Some(server) = server() else {
        return;
    };
    let s = Scratch::new();
    let doc = r#"{"players":["alice","bob"],"point":6}"#;
    s.ok(&["put", "games", "g-1", doc]);
    s.ok(&["put", "lobbies", "main", r#"{"min_bet":10}"#]);
    let created: serde_json::Value =
        serde_json::from_str(&s.ok(&["backup", "create", "--json"])).expect("manifest json");
    let id = created["id"].as_str().expect("id").to_owned();

    let schema = Schema::create(&server, "bcs_restore");
    let url = schema.url();
    let before: Vec<_> = std::fs::read_dir(s.dir.path())
        .expect("scratch dir")
        .filter_map(|e| e.ok().map(|e| e.file_name()))
        .collect();
    s.cli()
        .args(["backup", "restore", &id, "--to", &url])
        .assert()
        .success()
        .stdout(predicate::str::contains("(2 records)"))
        .stdout(predicate::str::contains("--url"));
    let after: Vec<_> = std::fs::read_dir(s.dir.path())
        .expect("scratch dir")
        .filter_map(|e| e.ok().map(|e| e.file_name()))
        .collect();
    assert_eq!(before, after, "nothing local was created for the URL");
    assert!(!s.path("postgres:").exists());

    let got = s
        .bare()
        .args(["--url", &url, "get", "games", "g-1"])
        .assert()
        .success();
    assert_eq!(
        String::from_utf8_lossy(&got.get_output().stdout),
        format!("{doc}\n")
    );

    // The schema holds records now: a second restore into it is refused.
    s.cli()
        .args(["backup", "restore", &id, "--to", &url])
        .assert()
        .failure();
    drop(schema);
}

#[test]
fn restore_to_another_kind_of_url_is_a_usage_error() {
    let s = Scratch::new();
    s.ok(&["put", "games", "g-1", "1"]);
    let created: serde_json::Value =
        serde_json::from_str(&s.ok(&["backup", "create", "--json"])).expect("manifest json");
    let id = created["id"].as_str().expect("id").to_owned();
    s.cli()
        .args([
            "backup",
            "restore",
            &id,
            "--to",
            "sqlite://restored/bitcraps.db",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("postgres://"));
    assert!(
        !s.path("sqlite:").exists(),
        "no directory named after the URL"
    );
}

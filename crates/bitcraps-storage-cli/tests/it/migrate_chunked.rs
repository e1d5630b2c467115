//! Chunked and delta-encoded documents (issue #16) through the real binary: a store holding
//! large game logs (three versions of one log, the last a delta against the first, and logs
//! sharing most of their content) is backed up,
//! verified and restored, and migrated SQLite → PostgreSQL → SQLite; every copy exports the
//! same bytes, `get` returns each document exactly as written, and `info` says each large
//! record is stored in chunks. The PostgreSQL leg needs `BITCRAPS_TEST_POSTGRES_URL`.

#![allow(clippy::expect_used, reason = "tests: a failed step is a failed test")]

use crate::common;

use std::path::{Path, PathBuf};

use common::Scratch;
use common::migration::export;
use predicates::prelude::*;

/// A game log of `rolls` rolls in a non-canonical form (spaces, exponents) that any
/// re-serialization would change; ~100 bytes a roll.
fn log(game: usize, rolls: usize) -> String {
    let rolls: Vec<String> = (0..rolls)
        .map(|n| {
            format!(
                r#"{{"n": {n}, "dice":[{},{}], "stake": 1.5e1, "shooter": "p-{}", "game": {game}}}"#,
                n % 6 + 1,
                (n * 7 + game) % 6 + 1,
                n % 5
            )
        })
        .collect();
    format!(r#"{{"table": "craps-1", "rolls": [{}]}}"#, rolls.join(", "))
}

/// The records: key → document, as finally stored.
fn documents() -> Vec<(String, String)> {
    vec![
        ("game-1".into(), log(1, 1500)),
        ("game-2".into(), log(1, 1480)),
        ("game-3".into(), log(3, 2000)),
        ("small".into(), r#"{"lobby": "open"}"#.into()),
    ]
}

/// Imports `records` (`(key, document)`) into the `logs` collection of `source`.
fn import(s: &Scratch, source: &Path, name: &str, records: &[(String, String)]) {
    let lines: String = records
        .iter()
        .map(|(key, doc)| {
            format!("{{\"collection\":\"logs\",\"key\":\"{key}\",\"value\":{doc}}}\n")
        })
        .collect();
    let file = s.path(name);
    std::fs::write(&file, lines).expect("write the records");
    s.cli_at(source).arg("import").arg(&file).assert().success();
}

/// Builds the source store: `game-1` put in three growing versions (the last two stored as
/// deltas against the first), the others imported once.
fn build(s: &Scratch) -> PathBuf {
    let source = s.path("source");
    for rolls in [1400, 1450, 1500] {
        s.cli_at(&source)
            .args(["put", "logs", "game-1", "-"])
            .write_stdin(log(1, rolls))
            .assert()
            .success();
    }
    let rest: Vec<(String, String)> = documents()
        .into_iter()
        .filter(|(key, _)| key != "game-1")
        .collect();
    import(s, &source, "rest.jsonl", &rest);
    source
}

/// Whether `logs/game-1` at `data` is stored as a delta.
fn is_delta(s: &Scratch, data: &Path) -> bool {
    let out = s
        .bare()
        .args(location(data))
        .args(["info", "--json", "logs", "game-1"])
        .assert()
        .success();
    let info: serde_json::Value =
        serde_json::from_slice(&out.get_output().stdout).expect("info --json");
    info["is_delta"].as_bool().expect("is_delta")
}

fn location(data: &Path) -> [String; 2] {
    let text = data.to_string_lossy().into_owned();
    if text.contains("://") {
        ["--url".into(), text]
    } else {
        ["--data".into(), text]
    }
}

/// Every document byte for byte, and how each is stored.
fn assert_documents(s: &Scratch, data: &Path) {
    for (key, doc) in documents() {
        let out = s
            .bare()
            .args(location(data))
            .args(["get", "logs", &key])
            .assert()
            .success();
        assert_eq!(
            String::from_utf8_lossy(&out.get_output().stdout),
            format!("{doc}\n"),
            "logs/{key} at {}",
            data.display()
        );
        let out = s
            .bare()
            .args(location(data))
            .args(["info", "--json", "logs", &key])
            .assert()
            .success();
        let info: serde_json::Value =
            serde_json::from_slice(&out.get_output().stdout).expect("info --json");
        let chunks = info["chunk_count"].as_u64().expect("chunk_count");
        if key == "small" {
            assert_eq!(chunks, 0, "{info}");
        } else {
            assert!(chunks > 1, "logs/{key} is stored in chunks: {info}");
        }
    }
}

#[test]
fn chunked_records_survive_backup_verify_restore() {
    let s = Scratch::new();
    let source = build(&s);
    assert_documents(&s, &source);
    assert!(
        is_delta(&s, &source),
        "the last version of game-1 is a delta"
    );
    let created: serde_json::Value = serde_json::from_str(&String::from_utf8_lossy(
        &s.cli_at(&source)
            .args(["backup", "create", "--json"])
            .assert()
            .success()
            .get_output()
            .stdout,
    ))
    .expect("manifest json");
    let id = created["id"].as_str().expect("id").to_owned();
    s.cli_at(&source)
        .args(["backup", "verify", &id])
        .assert()
        .success()
        .stdout(predicate::str::contains("verified: 4 records"));
    let restored = s.path("restored");
    s.cli_at(&source)
        .args(["backup", "restore", &id, "--to"])
        .arg(&restored)
        .assert()
        .success();
    assert_eq!(export(&s, &source), export(&s, &restored));
    assert_documents(&s, &restored);
    assert!(is_delta(&s, &restored), "the restored copy keeps the delta");
}

#[test]
fn chunked_records_migrate_sqlite_postgres_sqlite() {
    let Some(server) = common::postgres::server() else {
        return;
    };
    let s = Scratch::new();
    let source = build(&s);
    let schema = common::postgres::Schema::create(&server, "bcs_migrate_chunked");
    let postgres = schema.url();
    s.bare()
        .arg("migrate")
        .arg("--from")
        .arg(&source)
        .args(["--to", &postgres])
        .assert()
        .success()
        .stdout(predicate::str::contains("MISMATCH").not());
    let pg_path = PathBuf::from(&postgres);
    assert_eq!(export(&s, &source), export(&s, &pg_path));
    assert_documents(&s, &pg_path);
    let back = s.path("back");
    s.bare()
        .args(["migrate", "--from", &postgres, "--to"])
        .arg(&back)
        .assert()
        .success()
        .stdout(predicate::str::contains("MISMATCH").not());
    assert_eq!(export(&s, &source), export(&s, &back));
    assert_documents(&s, &back);
    drop(schema);
}

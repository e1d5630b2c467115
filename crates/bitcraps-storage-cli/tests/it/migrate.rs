//! `migrate` between two SQLite stores: an exact copy with a verified summary, a refused
//! non-empty target, a tampered target found by `--verify-only`, and bad endpoints.

#![allow(clippy::expect_used, reason = "tests: a failed step is a failed test")]

use crate::common;

use common::migration::{GAMES, LOBBY, PLAYERS, assert_documents, build_source, export, versions};
use common::{Scratch, has_row};
use predicates::prelude::*;

#[test]
fn copies_every_record_byte_for_byte_and_verifies() {
    let s = Scratch::new();
    let source = build_source(&s);
    let target = s.path("target/copy.db");
    let url = format!("sqlite://{}", target.display());
    let total = GAMES + LOBBY + PLAYERS.len();
    let out = s
        .bare()
        .arg("migrate")
        .arg("--from")
        .arg(&source)
        .args(["--to", &url])
        .assert()
        .success()
        .stderr(predicate::str::contains(format!(
            "copied {total} records in 3 collection(s)"
        )));
    let summary = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    for row in [
        format!("games {GAMES} {GAMES} 0 ok"),
        format!("total (3 collections) {total} {total} 0 ok"),
    ] {
        assert!(has_row(&summary, &row), "missing {row:?} in\n{summary}");
    }
    assert!(!summary.contains("MISMATCH"), "{summary}");

    // Every record, byte for byte (export passes stored documents through unchanged).
    let url_path = std::path::PathBuf::from(&url);
    assert_eq!(export(&s, &source), export(&s, &url_path));
    assert_eq!(export(&s, &url_path).len(), total);
    assert_documents(&s, &["--url", &url]);
    // Versions are copied: a version read from the source is valid against the copy.
    let source_arg = source.display().to_string();
    assert_eq!(
        versions(&s, &["--data", &source_arg]),
        versions(&s, &["--url", &url])
    );

    // The identical lobby documents are stored once in the target too.
    let out = s
        .bare()
        .args(["--url", &url, "info", "lobby", "seat-0", "--json"])
        .assert()
        .success();
    let info: serde_json::Value =
        serde_json::from_slice(&out.get_output().stdout).expect("info --json");
    assert_eq!(info["shared_by"], LOBBY);

    // Small batches give the same copy.
    let small = s.path("small");
    s.bare()
        .arg("migrate")
        .arg("--from")
        .arg(&source)
        .arg("--to")
        .arg(&small)
        .args(["--batch-size", "7"])
        .assert()
        .success();
    assert_eq!(export(&s, &source), export(&s, &small));
}

#[test]
fn refuses_a_target_that_holds_records() {
    let s = Scratch::new();
    let source = build_source(&s);
    let target = s.path("target");
    s.cli_at(&target)
        .args(["put", "games", "g-00001", r#"{"mine":true}"#])
        .assert()
        .success();
    s.bare()
        .arg("migrate")
        .arg("--from")
        .arg(&source)
        .arg("--to")
        .arg(&target)
        .assert()
        .code(1)
        .stderr(
            predicate::str::contains("already holds 1 records in 1 collection(s) (games)")
                .and(predicate::str::contains("--allow-nonempty")),
        );
    // Nothing was copied.
    assert_eq!(export(&s, &target).len(), 1);

    // With --allow-nonempty the copy replaces the record and the target equals the source.
    s.bare()
        .arg("migrate")
        .arg("--from")
        .arg(&source)
        .arg("--to")
        .arg(&target)
        .arg("--allow-nonempty")
        .assert()
        .success();
    assert_eq!(export(&s, &source), export(&s, &target));
}

#[test]
fn verify_only_reports_a_tampered_target() {
    let s = Scratch::new();
    let source = build_source(&s);
    let target = s.path("target");
    let migrate = || {
        let mut cmd = s.bare();
        cmd.arg("migrate")
            .arg("--from")
            .arg(&source)
            .arg("--to")
            .arg(&target);
        cmd
    };
    migrate().assert().success();
    migrate().arg("--verify-only").assert().success();

    // One changed document, one deleted record, one record the source does not have.
    s.cli_at(&target)
        .args(["put", "players", "é", r#"{"b":2,"a":1,"esc":"é\n"}"#])
        .assert()
        .success();
    s.cli_at(&target)
        .args(["delete", "games", "g-01000"])
        .assert()
        .success();
    s.cli_at(&target)
        .args(["put", "lobby", "seat-99", r#"{"status":"open"}"#])
        .assert()
        .success();
    let out = migrate().arg("--verify-only").assert().code(1).stderr(
        predicate::str::contains("verification failed: 3 record(s) differ")
            .and(predicate::str::contains(
                "games/g-01000: missing in the target",
            ))
            .and(predicate::str::contains(
                "lobby/seat-99: only in the target",
            ))
            .and(predicate::str::contains(
                "players/é: content differs (blake3 ",
            )),
    );
    let summary = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    for row in [
        format!("games {GAMES} {} 1 MISMATCH", GAMES - 1),
        "lobby 5 6 1 MISMATCH".to_owned(),
        "players 4 4 1 MISMATCH".to_owned(),
    ] {
        assert!(has_row(&summary, &row), "missing {row:?} in\n{summary}");
    }
}

#[test]
fn refuses_the_same_store_and_a_missing_source() {
    let s = Scratch::new();
    let source = build_source(&s);
    let url = format!("sqlite://{}/bitcraps.db", source.display());
    s.bare()
        .arg("migrate")
        .arg("--from")
        .arg(&source)
        .args(["--to", &url])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("name the same store"));
    s.bare()
        .args(["migrate", "--from", "nowhere", "--to", "copy"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "the source nowhere/bitcraps.db does not exist",
        ));
    assert!(!s.path("copy").exists(), "no target is created");
    s.bare()
        .args(["--data", "x", "migrate", "--from", "a", "--to", "b"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("migrate does not take --data"));
}

/// `migrate --help` used to list the global --data, --url and --read-only, which migrate
/// ignored or refused; now it lists only what it accepts, and each of those, given after
/// `migrate` or before it, is a usage error naming the option.
#[test]
fn migrate_help_lists_only_what_it_accepts() {
    let s = Scratch::new();
    let help = s.bare().args(["migrate", "--help"]).assert().success();
    let help = String::from_utf8_lossy(&help.get_output().stdout).into_owned();
    for accepted in [
        "--from",
        "--to",
        "--batch-size",
        "--allow-nonempty",
        "--verify-only",
        "--json",
        "--config",
        "--quiet",
    ] {
        assert!(help.contains(accepted), "{accepted} missing from:\n{help}");
    }
    for refused in ["--data", "--url", "--read-only"] {
        assert!(!help.contains(refused), "{refused} listed in:\n{help}");
    }
    for (args, option) in [
        (&["migrate", "--data", "x"][..], "--data"),
        (&["migrate", "--url", "sqlite://x.db"][..], "--url"),
        (&["migrate", "--read-only"][..], "--read-only"),
        (&["--read-only", "migrate"][..], "--read-only"),
    ] {
        s.bare()
            .args(args)
            .args(["--from", "a", "--to", "b"])
            .assert()
            .code(2)
            .stderr(predicate::str::contains(format!(
                "migrate does not take {option}"
            )));
    }
    assert!(!s.path("b").exists(), "no target is created");
}

#[test]
fn migrate_json_is_the_verification_summary() {
    let s = Scratch::new();
    let source = build_source(&s);
    let url = format!("sqlite://{}", s.path("target/copy.db").display());
    let out = s
        .bare()
        .arg("migrate")
        .arg("--from")
        .arg(&source)
        .args(["--to", &url, "--json"])
        .assert()
        .success();
    let summary: serde_json::Value =
        serde_json::from_slice(&out.get_output().stdout).expect("migrate --json is JSON");
    assert_eq!(summary["mismatches"], 0);
    let games = summary["collections"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["collection"] == "games"))
        .expect("a row for games");
    assert_eq!(games["source_records"], GAMES);
    assert_eq!(games["target_records"], GAMES);
}

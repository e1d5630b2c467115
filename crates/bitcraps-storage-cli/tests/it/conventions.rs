//! The CLI's conventions (issue #17) not covered by a file of their own: one table style,
//! plain when stdout is not a terminal; flat `BITCRAPS_STORAGE_<FIELD>` variables; PostgreSQL
//! wording in `stats` and `maintenance`; progress bars that never pass their total.

use crate::common;

use common::Scratch;
use predicates::prelude::*;

/// Box-drawing and ASCII-table characters a plain table never prints.
fn assert_plain(what: &str, text: &str) {
    let framed = text
        .chars()
        .any(|c| matches!(c, '│' | '─' | '┌' | '└' | '╞' | '═' | '|'));
    assert!(!framed, "{what} printed a framed table to a pipe:\n{text}");
    assert!(
        !text.contains('\u{1b}'),
        "{what} printed escape sequences:\n{text}"
    );
}

#[test]
fn every_table_is_plain_in_a_pipe() {
    let s = Scratch::new();
    s.ok(&["put", "games", "g-1", r#"{"round":1}"#]);
    for args in [
        &["stats"][..],
        &["info", "games", "g-1"],
        &["maintenance"],
        &["backup", "list"],
    ] {
        let out = s.ok(args);
        assert_plain(&args.join(" "), &out);
        assert!(out.lines().count() >= 2, "{args:?}: {out}");
    }
    // Each row is one line, its name and value separated by spaces: greppable.
    let stats = s.ok(&["stats"]);
    let records = stats
        .lines()
        .find(|l| l.trim_start().starts_with("records "))
        .unwrap_or_default();
    assert_eq!(
        records.split_whitespace().collect::<Vec<_>>(),
        ["records", "1"],
        "{stats}"
    );
    let copy = s.path("copy");
    let out = s
        .bare()
        .args(["migrate", "--from"])
        .arg(s.path("data"))
        .arg("--to")
        .arg(&copy)
        .assert()
        .success();
    assert_plain(
        "migrate",
        &String::from_utf8_lossy(&out.get_output().stdout),
    );
}

/// Every setting can be given as `BITCRAPS_STORAGE_<FIELD>`: DATA_PATH and DATABASE_URL
/// included. The two spellings of one setting must agree.
#[test]
fn flat_variables_set_the_store() {
    let s = Scratch::new();
    s.bare()
        .env("BITCRAPS_STORAGE_DATA_PATH", "flat")
        .args(["put", "c", "k", "1"])
        .assert()
        .success();
    assert!(s.path("flat/bitcraps.db").exists());
    s.bare()
        .env("BITCRAPS_STORAGE_DATABASE_URL", "sqlite://by-url/x.db")
        .args(["put", "c", "k", "2"])
        .assert()
        .success();
    assert!(s.path("by-url/x.db").exists());
    let out = s
        .bare()
        .env("BITCRAPS_STORAGE_DATA_PATH", "flat")
        .env("BITCRAPS_STORAGE_CODEC", "lz4")
        .env("BITCRAPS_STORAGE_ENABLE_DICTIONARIES", "false")
        .args(["get", "c", "k"])
        .assert()
        .success();
    assert_eq!(
        String::from_utf8_lossy(&out.get_output().stdout).trim(),
        "1"
    );
    s.bare()
        .env("BITCRAPS_STORAGE_DATA_PATH", "flat")
        .env("BITCRAPS_STORAGE_DATABASE_DATA_PATH", "other")
        .args(["get", "c", "k"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("to different values"));
    assert!(!s.path("other").exists());
}

/// On PostgreSQL, `stats` and `maintenance` speak of the server's tables, not of a WAL the
/// store does not own or free pages it does not count.
#[test]
fn postgres_wording_in_stats_and_maintenance() {
    let Some(server) = common::postgres::server() else {
        return;
    };
    let schema = common::postgres::Schema::create(&server, "cli_wording");
    let s = Scratch::new();
    let url = schema.url();
    s.bare()
        .args(["--url", &url, "put", "games", "g-1", r#"{"round":1}"#])
        .assert()
        .success();
    for args in [&["stats"][..], &["maintenance"]] {
        let out = s.bare().args(["--url", &url]).args(args).assert().success();
        let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
        for word in ["WAL", "free pages", "truncated"] {
            assert!(!text.contains(word), "{args:?} says {word:?}:\n{text}");
        }
        assert!(text.contains("postgres server"), "{args:?}:\n{text}");
    }
    let out = s
        .bare()
        .args(["--url", &url, "maintenance", "--json"])
        .assert()
        .success();
    let report: serde_json::Value =
        serde_json::from_slice(&out.get_output().stdout).unwrap_or_default();
    assert_eq!(report["backend"], "postgres", "{report}");
    assert!(
        report["backup"].is_null(),
        "no backup by default on PostgreSQL: {report}"
    );
}

//! Invalid input: exit 4 and nothing stored.

use crate::common;

use common::Scratch;
use predicates::prelude::*;

#[test]
fn invalid_json_is_rejected_and_not_stored() {
    let s = Scratch::new();
    for bad in ["{bad", "", "{\"a\":1} trailing", "[1,2"] {
        s.cli()
            .args(["put", "games", "g-1", bad])
            .assert()
            .code(4)
            .stderr(predicate::str::contains("not valid JSON"));
    }
    s.cli()
        .args(["put", "games", "g-1"])
        .write_stdin("not json")
        .assert()
        .code(4);
    assert_eq!(s.ok(&["list", "games"]), "", "nothing was stored");
    s.cli().args(["get", "games", "g-1"]).assert().code(3);
    let stats: serde_json::Value =
        serde_json::from_str(&s.ok(&["stats", "--json"])).expect("stats JSON");
    assert_eq!(stats["database_stats"]["record_count"], 0);
}

#[test]
fn invalid_names_are_invalid_input() {
    let s = Scratch::new();
    s.cli()
        .args(["put", "", "k", "1"])
        .assert()
        .code(4)
        .stderr(predicate::str::contains("invalid collection name"));
    s.cli()
        .args(["get", "games", ""])
        .assert()
        .code(4)
        .stderr(predicate::str::contains("invalid key"));
    let long_key = "k".repeat(1025);
    s.cli()
        .args(["put", "games", &long_key, "1"])
        .assert()
        .code(4);
}

#[test]
fn usage_errors_exit_2() {
    let s = Scratch::new();
    s.cli().args(["get", "games"]).assert().code(2);
    s.cli().arg("frobnicate").assert().code(2);
    s.bare()
        .args(["--data", "a", "--url", "sqlite://b.db", "stats"])
        .assert()
        .code(2);
}

//! export → import into a fresh store → export again gives the same JSON Lines.

use crate::common;

use common::{Scratch, sorted_lines};
use predicates::prelude::*;

#[test]
fn export_then_import_reproduces_the_store() {
    let s = Scratch::new();
    s.ok(&[
        "put",
        "games",
        "g-1",
        r#"{"point":6,"players":["alice","bob"]}"#,
    ]);
    s.ok(&[
        "put",
        "games",
        "g 2 \"quoted\"",
        r#"{"note":"tab\there, é, 🎲, line\nbreak"}"#,
    ]);
    s.ok(&[
        "put",
        "players",
        "p-1",
        r#"{"name":"alice","balance":1000}"#,
    ]);
    s.ok(&["put", "lobby", "seat-1", r#"{"status":"open"}"#]);
    s.ok(&["put", "lobby", "seat-2", r#"{"status":"open"}"#]);
    let big = format!(r#"{{"history":"{}"}}"#, "roll 7 seven-out ".repeat(500));
    s.ok(&["put", "archive", "g-0", &big]);

    let file = s.path("export.jsonl");
    s.cli()
        .args(["export", "-o"])
        .arg(&file)
        .assert()
        .success()
        .stderr(predicate::str::contains(
            "exported 6 records from 4 collection(s)",
        ));
    let original = std::fs::read_to_string(&file).expect("export file");
    assert_eq!(original.lines().count(), 6);
    for line in original.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("each line is JSON");
        assert!(v["collection"].is_string() && v["key"].is_string() && !v["value"].is_null());
    }
    assert_eq!(s.ok(&["export"]), original, "stdout and -o agree");

    // Into a fresh store, from a file and (separately) from stdin.
    let copy = s.path("copy");
    s.cli_at(&copy)
        .args(["import", "--batch-size", "2"])
        .arg(&file)
        .assert()
        .success()
        .stderr(predicate::str::contains("imported 6 records"));
    let again = s.cli_at(&copy).arg("export").assert().success();
    let again = String::from_utf8(again.get_output().stdout.clone()).expect("utf-8");
    assert_eq!(sorted_lines(&again), sorted_lines(&original));

    let piped = s.path("piped");
    s.cli_at(&piped)
        .arg("import")
        .write_stdin(original.clone())
        .assert()
        .success();
    let piped_export = s.cli_at(&piped).arg("export").assert().success();
    let piped_export = String::from_utf8(piped_export.get_output().stdout.clone()).expect("utf-8");
    assert_eq!(sorted_lines(&piped_export), sorted_lines(&original));

    // One collection only.
    let games = s.ok(&["export", "--collection", "games"]);
    assert_eq!(games.lines().count(), 2);
    assert!(
        games
            .lines()
            .all(|l| l.starts_with(r#"{"collection":"games","#))
    );
}

#[test]
fn import_stops_at_a_malformed_line_with_exit_4() {
    let s = Scratch::new();
    let input = concat!(
        r#"{"collection":"games","key":"g-1","value":1}"#,
        "\n\n",
        r#"{"collection":"games","key":"g-2"}"#,
        "\n",
    );
    s.cli()
        .args(["import", "-"])
        .write_stdin(input)
        .assert()
        .code(4)
        .stderr(predicate::str::contains("line 3"));
    s.cli()
        .args(["import"])
        .write_stdin("{\"collection\":\"games\",\"key\":\"g-3\",\"value\":{oops}}\n")
        .assert()
        .code(4);
    assert_eq!(s.ok(&["list", "games"]), "", "no batch was stored");
}

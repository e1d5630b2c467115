//! put → get → list → info → delete through the real binary.

use crate::common;

use common::Scratch;
use predicates::prelude::*;

#[test]
fn put_get_list_info_delete() {
    let s = Scratch::new();
    s.cli()
        .args([
            "put",
            "games",
            "g-1",
            r#"{"point": 6, "players": ["alice", "bob"]}"#,
        ])
        .assert()
        .success()
        .stdout("");
    // From stdin, both with "-" and with the argument left out.
    s.cli()
        .args(["put", "games", "g-2", "-"])
        .write_stdin(r#"{"point":null}"#)
        .assert()
        .success();
    s.cli()
        .args(["put", "players", "p-1"])
        .write_stdin("\"alice\"\n")
        .assert()
        .success();

    // Documents come back as they were given (see put_bytes.rs).
    assert_eq!(
        s.ok(&["get", "games", "g-1"]),
        "{\"point\": 6, \"players\": [\"alice\", \"bob\"]}\n"
    );
    assert_eq!(s.ok(&["get", "games", "g-2"]), "{\"point\":null}\n");
    assert_eq!(s.ok(&["get", "players", "p-1"]), "\"alice\"\n");
    let pretty = s.ok(&["get", "games", "g-1", "--pretty"]);
    assert!(pretty.contains("\n  \"point\": 6"), "{pretty}");

    assert_eq!(s.ok(&["list", "games"]), "g-1\ng-2\n");
    assert_eq!(s.ok(&["list", "games", "--prefix", "g-2"]), "g-2\n");
    assert_eq!(s.ok(&["list", "games", "--after", "g-1"]), "g-2\n");
    assert_eq!(s.ok(&["list", "nothing-here"]), "");
    s.cli()
        .args(["list", "games", "--limit", "1"])
        .assert()
        .success()
        .stdout("g-1\n")
        .stderr(predicate::str::contains("--after \"g-1\""));

    let info: serde_json::Value =
        serde_json::from_str(&s.ok(&["info", "games", "g-1", "--json"])).expect("info is JSON");
    assert_eq!(info["collection"], "games");
    assert_eq!(info["key"], "g-1");
    let given = r#"{"point": 6, "players": ["alice", "bob"]}"#;
    assert_eq!(
        info["size_bytes"],
        given.len(),
        "the document's length as given"
    );
    assert_eq!(info["shared_by"], 1);
    assert_eq!(info["content_hash"].as_str().map(str::len), Some(64));
    // The two reads above (get, get --pretty) were counted and flushed on close.
    assert_eq!(info["access_count"], 2);
    let table = s.ok(&["info", "games", "g-1"]);
    assert!(
        table.contains("content hash") && table.contains("games"),
        "{table}"
    );

    s.cli().args(["delete", "games", "g-1"]).assert().success();
    assert_eq!(s.ok(&["list", "games"]), "g-2\n");
    s.cli().args(["get", "games", "g-1"]).assert().code(3);
}

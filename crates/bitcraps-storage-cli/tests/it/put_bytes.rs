//! `put` stores the document's bytes as given. Regression: it used to parse the document into
//! a `serde_json::Value` and store that re-serialized, which sorted the keys and turned
//! integers beyond 64 bits into floats (`1.2345678901234568e22`).

use crate::common;

use common::Scratch;

#[test]
fn put_keeps_key_order_and_big_integers_byte_for_byte() {
    let s = Scratch::new();
    let doc = r#"{"b":1,"a":12345678901234567890123}"#;
    s.ok(&["put", "games", "g-1", doc]);
    assert_eq!(s.ok(&["get", "games", "g-1"]), format!("{doc}\n"));

    // From stdin the trailing newline (whitespace around the document) is not part of it.
    s.cli()
        .args(["put", "games", "g-2", "-"])
        .write_stdin(format!("{doc}\n"))
        .assert()
        .success();
    assert_eq!(s.ok(&["get", "games", "g-2"]), format!("{doc}\n"));

    // Spacing and number spelling inside the document are kept too, as import keeps them.
    let spaced = r#"{ "z" : [1.50, 1e2], "a": "\u00e9" }"#;
    s.ok(&["put", "games", "g-3", spaced]);
    assert_eq!(s.ok(&["get", "games", "g-3"]), format!("{spaced}\n"));

    // export passes them through: the value in the line is the document.
    let export = s.ok(&["export", "--collection", "games"]);
    assert!(
        export.contains(&format!(r#""key":"g-1","value":{doc}}}"#)),
        "{export}"
    );
}

#[test]
fn a_pretty_printed_document_exports_as_one_line_in_its_own_key_order() {
    let s = Scratch::new();
    let pretty = "{\n  \"b\": 1,\n  \"a\": 12345678901234567890123\n}";
    s.cli()
        .args(["put", "games", "g-1"])
        .write_stdin(pretty)
        .assert()
        .success();
    assert_eq!(s.ok(&["get", "games", "g-1"]), format!("{pretty}\n"));
    let export = s.ok(&["export"]);
    assert_eq!(
        export,
        "{\"collection\":\"games\",\"key\":\"g-1\",\"value\":{\"b\":1,\"a\":12345678901234567890123}}\n"
    );
}

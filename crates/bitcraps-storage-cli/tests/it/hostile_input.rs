//! Input meant to break the output or slip past the checks.
//!
//! Regressions: `list` printed keys raw, so a key holding `\n` became two "keys" and one
//! holding ESC drove the terminal; input that was not UTF-8 was an I/O error (exit 1) instead
//! of invalid input; `import` stored values nested deeper than `put` accepts.

use crate::common;

use common::Scratch;
use predicates::prelude::*;

fn nested(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

#[test]
fn list_escapes_control_characters_one_key_per_line() {
    let s = Scratch::new();
    for key in ["a\nb", "esc\u{1b}[2J", "plain \\n", "tab\tkey"] {
        s.ok(&["put", "games", key, "1"]);
    }
    s.cli()
        .args(["list", "games"])
        .assert()
        .success()
        .stdout("a\\nb\nesc\\u{1b}[2J\nplain \\n\ntab\\tkey\n")
        .stderr(predicate::str::contains(
            "3 key(s) hold control characters and are shown escaped",
        ));
    // Without control characters nothing is said.
    s.cli()
        .args(["list", "games", "--prefix", "plain"])
        .assert()
        .success()
        .stdout("plain \\n\n")
        .stderr("");
    let table = s.ok(&["info", "games", "esc\u{1b}[2J"]);
    assert!(table.contains("esc\\u{1b}[2J"), "{table}");
    assert!(!table.contains('\u{1b}'), "{table}");
}

#[test]
fn input_that_is_not_utf8_is_invalid_input() {
    let s = Scratch::new();
    s.cli()
        .args(["put", "games", "g-1"])
        .write_stdin(b"{\"a\":\"\xff\"}".to_vec())
        .assert()
        .code(4)
        .stderr(predicate::str::contains("not valid UTF-8"));
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStringExt;
        s.cli()
            .args(["put", "games", "g-1"])
            .arg(std::ffi::OsString::from_vec(b"\"\xc3\x28\"".to_vec()))
            .assert()
            .code(4)
            .stderr(predicate::str::contains("not valid UTF-8"));
    }
    let mut lines = b"{\"collection\":\"games\",\"key\":\"g-2\",\"value\":1}\n".to_vec();
    lines.extend_from_slice(b"{\"collection\":\"games\",\"key\":\"g-3\",\"value\":\"\xfe\"}\n");
    s.cli()
        .arg("import")
        .write_stdin(lines)
        .assert()
        .code(4)
        .stderr(predicate::str::contains(
            "line 2: the line is not valid UTF-8",
        ));
    assert_eq!(s.ok(&["list", "games"]), "", "nothing was stored");
}

#[test]
fn import_applies_the_nesting_limit_of_put() {
    let s = Scratch::new();
    let line = |key: &str, value: &str| {
        format!("{{\"collection\":\"deep\",\"key\":\"{key}\",\"value\":{value}}}\n")
    };
    // 127 levels are accepted by both, 128 by neither.
    s.ok(&["put", "deep", "put-127", &nested(127)]);
    s.cli()
        .arg("import")
        .write_stdin(line("import-127", &nested(127)))
        .assert()
        .success();
    s.cli()
        .args(["put", "deep", "put-128", &nested(128)])
        .assert()
        .code(4)
        .stderr(predicate::str::contains("nests 128"));
    s.cli()
        .arg("import")
        .write_stdin(line("import-128", &nested(128)))
        .assert()
        .code(4)
        .stderr(predicate::str::contains("line 1: the value nests 128"));
    assert_eq!(s.ok(&["list", "deep"]), "import-127\nput-127\n");
}

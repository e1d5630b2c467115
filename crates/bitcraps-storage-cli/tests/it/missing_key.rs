//! A missing key: exit 3 and "not found" on stderr, for get, info and delete (unless --force).

use crate::common;

use common::Scratch;
use predicates::prelude::*;

#[test]
fn missing_keys_exit_3_with_not_found() {
    let s = Scratch::new();
    s.ok(&["put", "games", "present", "1"]);
    for command in ["get", "info", "delete"] {
        s.cli()
            .args([command, "games", "absent"])
            .assert()
            .code(3)
            .stdout("")
            .stderr(predicate::str::contains("not found: games/absent"));
    }
    s.cli()
        .args(["delete", "--force", "games", "absent"])
        .assert()
        .success();
    // The present key was not disturbed.
    assert_eq!(s.ok(&["get", "games", "present"]), "1\n");
}

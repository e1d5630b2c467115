//! Logs on stderr carry no ANSI escape sequences when stderr is not a terminal (a pipe, a
//! log file).

use crate::common;

use common::Scratch;

#[test]
fn logs_to_a_pipe_have_no_colour() {
    let s = Scratch::new();
    s.ok(&["put", "games", "g-1", "{}"]);
    let out = s
        .cli()
        .env("RUST_LOG", "debug")
        .args(["get", "games", "g-1"])
        .assert()
        .success();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        stderr.contains("DEBUG"),
        "debug logs were written: {stderr}"
    );
    assert!(
        !stderr.contains('\u{1b}'),
        "no escape sequences: {stderr:?}"
    );
}

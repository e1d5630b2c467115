//! `--quiet` prints no notes on stderr — only errors — and changes nothing on stdout.

use crate::common;

use common::Scratch;

#[test]
fn quiet_silences_notes_but_not_errors() {
    let s = Scratch::new();
    s.ok(&["put", "games", "a\nb", "{}"]);
    s.ok(&["put", "games", "c", "{}"]);

    // Without --quiet: a note about the escaped key and one about the limit.
    let loud = s
        .cli()
        .args(["list", "games", "--limit", "1"])
        .assert()
        .success();
    assert!(!loud.get_output().stderr.is_empty());

    let quiet = s
        .cli()
        .args(["--quiet", "list", "games", "--limit", "1"])
        .assert()
        .success();
    assert!(
        quiet.get_output().stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&quiet.get_output().stderr)
    );
    assert_eq!(
        quiet.get_output().stdout,
        loud.get_output().stdout,
        "stdout is unchanged"
    );

    let demo = s
        .bare()
        .args(["-q", "demo", "--records", "200", "--tasks", "2"])
        .assert()
        .success();
    assert!(
        demo.get_output().stderr.is_empty(),
        "the demo's notes are silenced"
    );

    let failed = s
        .cli()
        .args(["--quiet", "get", "games", "missing"])
        .assert()
        .code(3);
    assert!(
        String::from_utf8_lossy(&failed.get_output().stderr).contains("error:"),
        "errors are still printed"
    );
}

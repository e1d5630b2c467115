//! `completions SHELL` prints a completion script naming the commands, with no store and no
//! settings needed.

use crate::common;

use common::Scratch;

#[test]
fn completion_scripts_name_the_commands() {
    let s = Scratch::new();
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef bitcraps-storage"),
        ("fish", "complete -c bitcraps-storage"),
    ] {
        let out = s.bare().args(["completions", shell]).assert().success();
        let script = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
        assert!(script.contains(marker), "{shell}: {script}");
        for command in ["serve-metrics", "collections", "backup", "prune"] {
            assert!(script.contains(command), "{shell} completes {command}");
        }
    }
    assert!(!s.path("bitcraps-data").exists(), "no store was created");
    s.bare().args(["completions", "tcsh"]).assert().code(2);
}

//! Runs the real `bitcraps-storage` binary against a store in a temporary directory, with the
//! caller's `BITCRAPS_STORAGE_*` and `RUST_LOG` variables removed so they cannot leak in.

#![allow(dead_code, reason = "each test file uses a different part")]
#![allow(
    clippy::expect_used,
    reason = "test helpers: a failed setup is a failed test"
)]

use std::path::{Path, PathBuf};

pub mod migration;
pub mod postgres;
pub mod process;
pub mod scrape;

use assert_cmd::Command;
use tempfile::TempDir;

/// A scratch directory; the store lives in `<dir>/data` unless a test says otherwise.
pub struct Scratch {
    pub dir: TempDir,
}

impl Scratch {
    pub fn new() -> Self {
        Scratch {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The binary, run in the scratch directory, with no settings from the environment.
    pub fn bare(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_bitcraps-storage"));
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("BITCRAPS_STORAGE_") {
                cmd.env_remove(name);
            }
        }
        cmd.env_remove("RUST_LOG").current_dir(self.dir.path());
        cmd
    }

    /// The binary with `--data <dir>/data`.
    pub fn cli(&self) -> Command {
        self.cli_at(&self.path("data"))
    }

    /// The binary with `--data <data>`.
    pub fn cli_at(&self, data: &Path) -> Command {
        let mut cmd = self.bare();
        cmd.arg("--data").arg(data);
        cmd
    }

    /// Runs `args` against the default store with the variables `env` set and returns
    /// stdout; panics unless it succeeds.
    pub fn ok_with_env(&self, env: &[(&str, &str)], args: &[&str]) -> String {
        let mut cmd = self.cli();
        for (name, value) in env {
            cmd.env(name, value);
        }
        let out = cmd.args(args).assert().success();
        String::from_utf8(out.get_output().stdout.clone()).expect("utf-8 stdout")
    }

    /// Runs `args` against the default store and returns stdout; panics unless it succeeds.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cli().args(args).assert().success();
        String::from_utf8(out.get_output().stdout.clone()).expect("utf-8 stdout")
    }
}

/// Sorted lines of a text.
pub fn sorted_lines(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines.sort();
    lines
}

/// Whether `text` (a table as printed to a pipe: plain columns) has a line whose cells,
/// split at whitespace, are `row`'s words.
pub fn has_row(text: &str, row: &str) -> bool {
    let want: Vec<&str> = row.split_whitespace().collect();
    text.lines()
        .any(|line| line.split_whitespace().collect::<Vec<_>>() == want)
}

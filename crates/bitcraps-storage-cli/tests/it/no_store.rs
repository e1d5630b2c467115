//! Read-only commands on a data directory that holds no store say so (exit 3) and create
//! nothing. Regression: opening the store for `get`, `list`, `stats`, … created the directory,
//! an empty database (with its WAL and lock files) and, for backups, the backup directory, so
//! a mistyped `--data` left a fresh empty store behind and answered "no records".

use crate::common;

use std::path::{Path, PathBuf};

use common::Scratch;
use predicates::prelude::*;

/// Every command that only reads.
const READ_ONLY: [&[&str]; 8] = [
    &["get", "games", "g-1"],
    &["list", "games"],
    &["info", "games", "g-1"],
    &["stats"],
    &["export"],
    &["export", "-o", "out.jsonl"],
    &["backup", "list"],
    &["backup", "verify", "20261123T025842860Z-5dea39"],
];

/// Every path under `dir`, sorted.
fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut paths = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(next) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&next) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                todo.push(path.clone());
            }
            paths.push(path);
        }
    }
    paths.sort();
    paths
}

fn assert_refused(s: &Scratch, location: &[&str], shown: &str) {
    for args in READ_ONLY {
        let before = tree(s.dir.path());
        s.bare()
            .args(location)
            .args(args)
            .assert()
            .code(3)
            .stderr(predicate::str::contains(format!("no store at {shown}")));
        assert_eq!(tree(s.dir.path()), before, "{args:?} created something");
    }
}

#[test]
fn read_only_commands_on_a_missing_directory_create_nothing() {
    let s = Scratch::new();
    assert_refused(&s, &["--data", "missing"], "missing/bitcraps.db");
    assert!(!s.path("missing").exists());
}

#[test]
fn read_only_commands_on_an_empty_directory_create_nothing() {
    let s = Scratch::new();
    std::fs::create_dir(s.path("empty")).expect("mkdir");
    assert_refused(&s, &["--data", "empty"], "empty/bitcraps.db");
    assert_eq!(tree(&s.path("empty")), Vec::<PathBuf>::new());
}

#[test]
fn a_sqlite_url_to_a_missing_file_is_no_store_either() {
    let s = Scratch::new();
    std::fs::create_dir(s.path("dir")).expect("mkdir");
    assert_refused(&s, &["--url", "sqlite://dir/other.db"], "dir/other.db");
}

#[test]
fn writing_commands_still_create_the_store() {
    let s = Scratch::new();
    s.ok(&["put", "games", "g-1", "1"]);
    assert!(s.path("data/bitcraps.db").exists());
    assert_eq!(s.ok(&["list", "games"]), "g-1\n");
}

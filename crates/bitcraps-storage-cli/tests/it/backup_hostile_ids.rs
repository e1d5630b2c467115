//! `backup verify` and `backup restore` with ids that are paths: refused (exit 4) before
//! anything is touched; the whole scratch directory (store, backups, everything beside
//! them) is byte-for-byte unchanged. Regression: `backup verify /..` removed directories
//! (with some ids the data directory and the live database) before saying "not a backup id".

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::Scratch;
use predicates::prelude::*;

/// Every path under `dir` with each file's bytes (empty for a directory). SQLite's `-shm`
/// (the WAL index every open rewrites, no data) and the lock file (every open writes its
/// pid into it) are listed without their bytes.
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(next) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&next) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let what = if path.is_dir() {
                todo.push(path.clone());
                Vec::new()
            } else if path.to_string_lossy().ends_with("-shm") {
                b"wal index".to_vec()
            } else if path.to_string_lossy().ends_with(".lock") {
                b"lock holder".to_vec()
            } else {
                std::fs::read(&path).unwrap_or_default()
            };
            out.insert(path, what);
        }
    }
    out
}

#[test]
fn path_ids_are_refused_and_nothing_changes() {
    let s = Scratch::new();
    s.ok(&["put", "games", "g-1", r#"{"point":6}"#]);
    let created: serde_json::Value =
        serde_json::from_str(&s.ok(&["backup", "create", "--json"])).expect("manifest json");
    let id = created["id"].as_str().expect("id").to_owned();
    std::fs::create_dir_all(s.path("outside/nested")).expect("outside");
    std::fs::write(s.path("outside/nested/canary"), b"canary").expect("canary");
    // Decoys named like the old work-directory prefixes, so the old unchecked paths resolve.
    for decoy in [".verify-", ".restore-into-", ".tmp-"] {
        std::fs::create_dir_all(s.path("data/backups").join(decoy)).expect("decoy");
    }
    let before = tree(s.dir.path());
    let data = s.path("data").display().to_string();
    let hostile = [
        "/..",
        "../..",
        "..",
        "/",
        "../../..",
        "/../..",
        "./",
        "data",
        data.as_str(),
        &format!("{id}/../.."),
        "",
    ];
    for bad in hostile {
        s.cli()
            .args(["backup", "verify", bad])
            .assert()
            .code(4)
            .stderr(predicate::str::contains("is not a backup id"));
        s.cli()
            .args(["backup", "restore", bad, "--to"])
            .arg(s.path("restored"))
            .assert()
            .code(4);
        assert_eq!(tree(s.dir.path()), before, "{bad:?} changed something");
    }
    assert!(!s.path("restored").exists());
    // A well-formed id that does not exist: not found (exit 3), not "failed verification".
    s.cli()
        .args(["backup", "verify", "20261123T025842860Z-5dea39"])
        .assert()
        .code(3)
        .stderr(predicate::str::contains("not found"))
        .stderr(predicate::str::contains("failed verification").not());
    // The live store as a restore target: exists and is not empty (exit 4).
    s.cli()
        .args(["backup", "restore", &id, "--to"])
        .arg(s.path("data"))
        .assert()
        .code(4);
    assert_eq!(tree(s.dir.path()), before);
    s.cli().args(["backup", "verify", &id]).assert().success();
}

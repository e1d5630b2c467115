//! The backup cycle through the real binary: create, list, verify, restore, read back;
//! a damaged archive fails verification; maintenance reports its steps as JSON.

use crate::common;

use common::Scratch;
use predicates::prelude::*;

#[test]
fn backup_create_list_verify_restore() {
    let s = Scratch::new();
    s.ok(&[
        "put",
        "games",
        "g-1",
        r#"{"point":6,"players":["alice","bob"]}"#,
    ]);
    s.ok(&["put", "lobbies", "main", r#"{"min_bet":10}"#]);
    let created: serde_json::Value =
        serde_json::from_str(&s.ok(&["backup", "create", "--json"])).expect("manifest json");
    let id = created["id"].as_str().expect("id").to_owned();
    assert_eq!(created["snapshot"]["record_count"], 2);

    let listed: serde_json::Value =
        serde_json::from_str(&s.ok(&["backup", "list", "--json"])).expect("list json");
    assert_eq!(listed[0]["id"], id.as_str());
    assert!(s.ok(&["backup", "list"]).contains(&id));

    s.cli()
        .args(["backup", "verify", &id])
        .assert()
        .success()
        .stdout(predicate::str::contains("verified: 2 records"));

    let target = s.path("restored");
    s.cli()
        .args(["backup", "restore", &id, "--to"])
        .arg(&target)
        .assert()
        .success();
    let got = s
        .cli_at(&target)
        .args(["get", "games", "g-1"])
        .assert()
        .success();
    let doc: serde_json::Value =
        serde_json::from_slice(&got.get_output().stdout).expect("restored json");
    assert_eq!(doc["players"][1], "bob");

    // Restoring again onto the now non-empty directory is refused.
    s.cli()
        .args(["backup", "restore", &id, "--to"])
        .arg(&target)
        .assert()
        .failure()
        .stderr(predicate::str::contains("not empty"));
}

#[test]
fn damaged_backup_fails_verification() {
    let s = Scratch::new();
    s.ok(&["put", "games", "g-1", r#"{"point":6}"#]);
    let created: serde_json::Value =
        serde_json::from_str(&s.ok(&["backup", "create", "--json"])).expect("manifest json");
    let id = created["id"].as_str().expect("id").to_owned();
    let archive = s.path("data/backups").join(format!("{id}.db.zst"));
    let mut bytes = std::fs::read(&archive).expect("archive");
    bytes.truncate(bytes.len() / 2);
    std::fs::write(&archive, bytes).expect("truncate");
    s.cli()
        .args(["backup", "verify", &id])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("truncated"));
    s.cli()
        .args(["backup", "restore", &id, "--to"])
        .arg(s.path("never"))
        .assert()
        .failure();
    assert!(!s.path("never").exists());
}

#[test]
fn maintenance_reports_its_steps() {
    let s = Scratch::new();
    s.ok(&["put", "games", "g-1", r#"{"point":6}"#]);
    let report: serde_json::Value =
        serde_json::from_str(&s.ok(&["maintenance", "--json"])).expect("report json");
    let steps: Vec<&str> = report["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert!(
        steps.contains(&"checkpoint") && steps.contains(&"backup"),
        "{steps:?}"
    );
    assert_eq!(report["errors"].as_array().map(Vec::len), Some(0));
    assert_eq!(report["after"]["wal_bytes"], 0);
    let table = s.ok(&["maintenance"]);
    assert!(table.contains("repair references"), "{table}");
}

//! `put`/`delete` with `--if-version V` / `--if-absent`: a failed condition is exit 5 with a
//! message naming the versions, and writes nothing; `info` shows the version.
#![allow(clippy::expect_used, reason = "tests: a failed step is a failed test")]

use crate::common;

use common::Scratch;

fn version_in_info(s: &Scratch, key: &str) -> u64 {
    let info = s.ok(&["info", "--json", "games", key]);
    let v: serde_json::Value = serde_json::from_str(&info).expect("info --json is JSON");
    v["version"].as_u64().expect("info has a numeric version")
}

#[test]
fn conditional_put_and_delete_write_only_when_the_condition_holds() {
    let s = Scratch::new();
    let v1: u64 = s
        .ok(&[
            "put",
            "--if-absent",
            "--print-version",
            "games",
            "g-1",
            r#"{"n":1}"#,
        ])
        .trim()
        .parse()
        .expect("put --print-version prints a number");
    assert_eq!(version_in_info(&s, "g-1"), v1);
    let table = s.ok(&["info", "games", "g-1"]);
    assert!(
        table
            .lines()
            .any(|l| l.contains("version") && l.contains(&v1.to_string())),
        "{table}"
    );

    // Already there: --if-absent conflicts, nothing written.
    let out = s
        .cli()
        .args(["put", "--if-absent", "games", "g-1", r#"{"n":2}"#])
        .assert()
        .code(5);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(
        stderr.contains(&format!("expected no record, found version {v1}")),
        "{stderr}"
    );
    assert_eq!(s.ok(&["get", "games", "g-1"]), "{\"n\":1}\n");

    let v2: u64 = s
        .ok(&[
            "put",
            "--if-version",
            &v1.to_string(),
            "--print-version",
            "games",
            "g-1",
            r#"{"n":2}"#,
        ])
        .trim()
        .parse()
        .expect("a number");
    assert!(v2 > v1);

    // Stale version: exit 5 for put and delete, the record is unchanged.
    s.cli()
        .args(["put", "--if-version", &v1.to_string(), "games", "g-1", "{}"])
        .assert()
        .code(5);
    s.cli()
        .args(["delete", "--if-version", &v1.to_string(), "games", "g-1"])
        .assert()
        .code(5);
    assert_eq!(s.ok(&["get", "games", "g-1"]), "{\"n\":2}\n");
    s.cli()
        .args(["delete", "--if-absent", "games", "g-1"])
        .assert()
        .code(5);

    s.ok(&["delete", "--if-version", &v2.to_string(), "games", "g-1"]);
    s.cli().args(["get", "games", "g-1"]).assert().code(3);
    // Absent was the condition: success.
    s.ok(&["delete", "--if-absent", "games", "g-1"]);
    // Both conditions at once are a usage error.
    s.cli()
        .args([
            "put",
            "--if-absent",
            "--if-version",
            "3",
            "games",
            "g-1",
            "{}",
        ])
        .assert()
        .code(2);
}

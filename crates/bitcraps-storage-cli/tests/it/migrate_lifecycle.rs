//! `migrate` keeps the data lifecycle: each record's expiry time (a record with none stays
//! without one, even in a collection whose default TTL is copied), every collection's default
//! TTL and quota — also of collections that hold no records.
#![allow(clippy::expect_used, reason = "tests: a failed step is a failed test")]

use crate::common;

use common::Scratch;
use serde_json::Value;

fn info(s: &Scratch, location: &[&str], collection: &str, key: &str) -> Value {
    let mut args = location.to_vec();
    args.extend(["info", "--json", collection, key]);
    let out = s.bare().args(&args).assert().success();
    serde_json::from_slice(&out.get_output().stdout).expect("info is JSON")
}

#[test]
fn migrate_copies_expiry_times_default_ttls_and_quotas() {
    let s = Scratch::new();
    s.ok(&["put", "sessions", "forever", r#"{"user":1}"#]);
    s.ok(&["put", "--ttl", "1h", "sessions", "hour", r#"{"user":2}"#]);
    s.ok(&["ttl", "set", "sessions", "10m"]);
    s.ok(&["ttl", "set", "empty", "5m"]);
    s.ok(&["quota", "set", "sessions", "--max-records", "100"]);
    let data = s.path("data").display().to_string();
    let source = ["--data", data.as_str()];
    let before = info(&s, &source, "sessions", "hour");

    let target = s.path("copy/copy.db");
    let url = format!("sqlite://{}", target.display());
    s.bare()
        .args(["migrate", "--from", &data, "--to", &url])
        .assert()
        .success();
    let copy = ["--url", url.as_str()];
    let after = info(&s, &copy, "sessions", "hour");
    assert_eq!(
        after["expires_at"], before["expires_at"],
        "the expiry time is kept"
    );
    assert_eq!(after["version"], before["version"]);
    assert_eq!(
        info(&s, &copy, "sessions", "forever")["expires_at"],
        Value::Null,
        "a record without expiry does not get the copied default TTL"
    );
    let show = |location: &[&str], what: &[&str]| {
        let mut args = location.to_vec();
        args.extend(what);
        let out = s.bare().args(&args).assert().success();
        String::from_utf8(out.get_output().stdout.clone()).expect("utf-8")
    };
    assert_eq!(
        show(&copy, &["ttl", "show"]),
        show(&source, &["ttl", "show"])
    );
    assert!(show(&copy, &["ttl", "show"]).contains("empty"));
    assert_eq!(
        show(&copy, &["quota", "show"]),
        show(&source, &["quota", "show"])
    );
    assert!(show(&copy, &["quota", "show"]).contains("100"));
}

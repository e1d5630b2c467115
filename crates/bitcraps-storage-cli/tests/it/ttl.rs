//! `put --ttl`, `ttl set/clear/show` and the expiry in `info`: a TTL is kept with the record,
//! a collection's default TTL is kept in the store and applies to later puts, and an expired
//! record is gone for `get`, `info` and `list`.
#![allow(clippy::expect_used, reason = "tests: a failed step is a failed test")]

use crate::common;

use common::Scratch;
use serde_json::Value;

fn info(s: &Scratch, collection: &str, key: &str) -> Value {
    serde_json::from_str(&s.ok(&["info", "--json", collection, key])).expect("info is JSON")
}

fn millis(v: &Value, field: &str) -> i64 {
    let text = v[field].as_str().expect("an RFC 3339 time");
    let t = humantime::parse_rfc3339(text).expect("RFC 3339");
    let d = t.duration_since(std::time::UNIX_EPOCH).expect("after 1970");
    i64::try_from(d.as_millis()).expect("fits")
}

#[test]
fn put_with_a_ttl_records_the_expiry_and_it_is_enforced() {
    let s = Scratch::new();
    s.ok(&["put", "--ttl", "30s", "seats", "s-1", r#"{"seat":1}"#]);
    let meta = info(&s, "seats", "s-1");
    assert_eq!(
        millis(&meta, "expires_at") - millis(&meta, "updated_at"),
        30_000
    );
    let table = s.ok(&["info", "seats", "s-1"]);
    assert!(
        table
            .lines()
            .any(|l| l.contains("expires") && !l.contains("never")),
        "{table}"
    );
    s.ok(&["put", "seats", "s-2", r#"{"seat":2}"#]);
    assert_eq!(info(&s, "seats", "s-2")["expires_at"], Value::Null);

    // A TTL of one millisecond has passed by the next command.
    s.ok(&["put", "--ttl", "1ms", "seats", "s-3", r#"{"seat":3}"#]);
    s.cli().args(["get", "seats", "s-3"]).assert().code(3);
    s.cli().args(["info", "seats", "s-3"]).assert().code(3);
    assert_eq!(s.ok(&["list", "seats"]), "s-1\ns-2\n");
    // The expired key is absent to a conditional put too.
    s.ok(&[
        "put",
        "--if-absent",
        "--ttl",
        "1h",
        "seats",
        "s-3",
        r#"{"seat":4}"#,
    ]);
    assert_eq!(s.ok(&["get", "seats", "s-3"]), "{\"seat\":4}\n");
    // The condition still holds the write back.
    s.cli()
        .args(["put", "--if-absent", "--ttl", "1h", "seats", "s-1", "{}"])
        .assert()
        .code(5);
    s.cli()
        .args(["put", "--ttl", "soon", "seats", "s-9", "{}"])
        .assert()
        .code(2);
}

#[test]
fn default_ttls_are_kept_in_the_store() {
    let s = Scratch::new();
    s.ok(&["put", "games", "g-0", "{}"]);
    assert_eq!(s.ok(&["ttl", "show", "--json"]), "{}\n");
    s.ok(&["ttl", "set", "rolls", "10m"]);
    s.ok(&["ttl", "set", "lobbies", "1h 30m"]);
    assert_eq!(
        s.ok(&["ttl", "show", "--json"]),
        "{\"lobbies\":5400000,\"rolls\":600000}\n"
    );
    let table = s.ok(&["ttl", "show"]);
    assert!(
        table
            .lines()
            .any(|l| l.contains("rolls") && l.contains("10m")),
        "{table}"
    );
    s.ok(&["put", "rolls", "r-1", "[3,4]"]);
    let meta = info(&s, "rolls", "r-1");
    assert_eq!(
        millis(&meta, "expires_at") - millis(&meta, "updated_at"),
        600_000
    );
    // Its own TTL wins over the default.
    s.ok(&["put", "--ttl", "1m", "rolls", "r-2", "[1,1]"]);
    let meta = info(&s, "rolls", "r-2");
    assert_eq!(
        millis(&meta, "expires_at") - millis(&meta, "updated_at"),
        60_000
    );
    s.ok(&["ttl", "clear", "rolls"]);
    assert_eq!(s.ok(&["ttl", "show", "--json"]), "{\"lobbies\":5400000}\n");
    s.ok(&["put", "rolls", "r-3", "[6,6]"]);
    assert_eq!(info(&s, "rolls", "r-3")["expires_at"], Value::Null);
}

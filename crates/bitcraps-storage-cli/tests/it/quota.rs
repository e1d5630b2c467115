//! `quota set/clear/show` and the quota in `stats`: a put past a hard limit is exit 4 with a
//! message naming the limit, and writes nothing.
#![allow(clippy::expect_used, reason = "tests: a failed step is a failed test")]

use crate::common;

use common::Scratch;

#[test]
fn a_put_past_a_quota_is_exit_4_and_writes_nothing() {
    let s = Scratch::new();
    s.ok(&[
        "quota",
        "set",
        "seats",
        "--max-records",
        "2",
        "--max-bytes",
        "1KiB",
        "--soft-percent",
        "50",
    ]);
    assert_eq!(
        s.ok(&["quota", "show", "--json"]),
        "{\"seats\":{\"quota\":{\"max_bytes\":1024,\"max_records\":2,\"soft_percent\":50},\
         \"usage\":{\"bytes\":0,\"records\":0}}}\n"
    );
    s.ok(&["put", "seats", "s-1", r#"{"seat":1}"#]);
    s.ok(&["put", "seats", "s-2", r#"{"seat":2}"#]);
    let out = s
        .cli()
        .args(["put", "seats", "s-3", r#"{"seat":3}"#])
        .assert()
        .code(4);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(
        stderr.contains(
            "collection seats is over its quota: the write would make 3 records, the limit is 2"
        ),
        "{stderr}"
    );
    s.cli().args(["get", "seats", "s-3"]).assert().code(3);
    // An overwrite fits.
    s.ok(&["put", "seats", "s-2", r#"{"seat":"two"}"#]);
    let stats = s.ok(&["stats"]);
    assert!(
        stats
            .lines()
            .any(|l| l.contains("quota seats") && l.contains("2 / 2 records")),
        "{stats}"
    );
    let table = s.ok(&["quota", "show"]);
    assert!(table.contains("warns at 50 %"), "{table}");

    s.ok(&["quota", "set", "rolls", "--max-bytes", "10"]);
    s.cli()
        .args(["put", "rolls", "r-1", r#""0123456789ab""#])
        .assert()
        .code(4);
    s.ok(&["put", "rolls", "r-1", r#""0123""#]);

    s.ok(&["quota", "clear", "seats"]);
    s.ok(&["put", "seats", "s-3", r#"{"seat":3}"#]);
    assert!(s.ok(&["quota", "show", "--json"]).starts_with("{\"rolls\""));
}

#[test]
fn bad_quota_arguments_are_usage_errors() {
    let s = Scratch::new();
    s.cli().args(["quota", "set", "seats"]).assert().code(2);
    s.cli()
        .args(["quota", "set", "seats", "--max-bytes", "12 parsecs"])
        .assert()
        .code(2);
    s.cli()
        .args([
            "quota",
            "set",
            "seats",
            "--max-records",
            "3",
            "--soft-percent",
            "0",
        ])
        .assert()
        .code(2);
}

//! `--read-only` inspects a store while another process (a running `demo`) owns and writes
//! it: get, list, info, stats, export, collections, backup create and serve-metrics succeed
//! and see committed data; every write through `--read-only` is refused (exit 2) and changes
//! nothing; without `--read-only` the store is "in use".

use crate::common;

use std::time::Instant;

use common::Scratch;
use common::process::{DEADLINE, serving};
use common::scrape::{gauge, get, parse};
use predicates::prelude::*;

fn read_only(s: &Scratch, args: &[&str]) -> String {
    let mut all = vec!["--read-only"];
    all.extend_from_slice(args);
    s.ok(&all)
}

/// The record count `--read-only stats --json` reports (0 if it is not JSON: the caller's
/// wait then runs into its deadline).
fn record_count(s: &Scratch) -> u64 {
    serde_json::from_str::<serde_json::Value>(&read_only(s, &["stats", "--json"]))
        .ok()
        .and_then(|stats| stats["database_stats"]["record_count"].as_u64())
        .unwrap_or(0)
}

#[test]
fn read_only_commands_inspect_a_store_a_running_demo_writes() {
    let s = Scratch::new();
    let note = r#"{"note":"before the demo"}"#;
    s.ok(&["put", "notes", "n-1", note]);
    // A closed store opens read-only too.
    assert_eq!(read_only(&s, &["get", "notes", "n-1"]).trim(), note);

    let (_demo, _) = serving(
        &s,
        &[
            "demo",
            "--force",
            "--records",
            "100000000",
            "--tasks",
            "2",
            "--metrics-addr",
            "127.0.0.1:0",
        ],
    );
    // The demo's commits become visible to read-only invocations.
    let started = Instant::now();
    while record_count(&s) < 10 {
        assert!(
            started.elapsed() < DEADLINE,
            "the demo's records never appeared"
        );
    }

    // The demo holds the store: a read-write invocation is refused.
    s.cli()
        .args(["get", "notes", "n-1"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("in use"));

    assert_eq!(read_only(&s, &["get", "notes", "n-1"]).trim(), note);
    assert_eq!(read_only(&s, &["list", "notes"]), "n-1\n");
    assert!(read_only(&s, &["info", "notes", "n-1"]).contains("content hash"));
    let collections = read_only(&s, &["collections"]);
    assert!(
        collections.lines().any(|l| l == "notes") && collections.lines().count() > 1,
        "the note's collection and the demo's: {collections}"
    );
    let exported = read_only(&s, &["export", "--collection", "notes"]);
    assert!(exported.contains(r#""key":"n-1""#), "{exported}");
    let backup: serde_json::Value =
        serde_json::from_str(&read_only(&s, &["backup", "create", "--json"])).expect("JSON");
    assert!(
        backup["snapshot"]["record_count"]
            .as_u64()
            .is_some_and(|n| n >= 10),
        "{backup}"
    );
    let text = read_only(&s, &["stats", "--format", "prometheus"]);
    assert!(gauge(&parse(&text), "bitcraps_storage_records").is_some_and(|n| n >= 10.0));

    // serve-metrics is always read-only: it serves the store the demo writes.
    let (_server, addr) = serving(&s, &["serve-metrics", "--metrics-addr", "127.0.0.1:0"]);
    let (status, body) = get(&addr, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
    assert!(gauge(&parse(&body), "bitcraps_storage_records").is_some_and(|n| n >= 10.0));

    // Writes through --read-only are refused with the typed error, and change nothing.
    for args in [
        &["put", "notes", "n-2", "{}"][..],
        &["delete", "notes", "n-1"],
        &["maintenance"],
    ] {
        let mut all = vec!["--read-only"];
        all.extend_from_slice(args);
        s.cli()
            .args(&all)
            .assert()
            .code(2)
            .stderr(predicate::str::contains("read-only"));
    }
    assert_eq!(read_only(&s, &["list", "notes"]), "n-1\n");
}

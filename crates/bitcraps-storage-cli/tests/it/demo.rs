//! A small demo finishes, prints its report (with the chip invariant held after play and in
//! the restored backup) and cleans up after itself.

use crate::common;

use common::Scratch;
use predicates::prelude::*;

#[test]
fn small_demo_reports_and_removes_its_temporary_store() {
    let s = Scratch::new();
    let out = s
        .bare()
        .args(["demo", "--records", "300", "--tasks", "3", "--seed", "7"])
        .assert()
        .success()
        .stderr(predicate::str::contains("demo store: "));
    let stdout = String::from_utf8(out.get_output().stdout.clone()).expect("utf-8");
    for needle in [
        "records written",
        "throughput",
        "p50",
        "p99",
        "cache hit rate",
        "after deduplication",
        "after compression",
        "on disk",
        "backup → verify → restore",
        "conflicts retried",
        "expired records swept at the end",
        "change feed: lobby",
    ] {
        assert!(
            stdout.contains(needle),
            "report lacks {needle:?}:\n{stdout}"
        );
    }
    assert!(
        stdout
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["consistency", "check", "ok"]),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.contains("backup → verify → restore") && l.contains("records identical")),
        "the backup round trip did not complete:\n{stdout}"
    );
    for line in [
        "chips (balances + house bank)",
        "chips in the restored copy",
    ] {
        let found = stdout.lines().find(|l| l.contains(line));
        assert!(
            found.is_some_and(|l| l.contains("held: ") && l.contains("= opening total")),
            "the chip invariant {line:?} is not reported as held:\n{stdout}"
        );
    }
    let stderr = String::from_utf8(out.get_output().stderr.clone()).expect("utf-8");
    let db = stderr
        .lines()
        .find_map(|l| l.strip_prefix("demo store: "))
        .expect("the store is named");
    assert!(!std::path::Path::new(db).exists(), "{db} was removed");
    assert!(
        !s.path("bitcraps-data").exists(),
        "the default data dir was not touched"
    );
}

#[test]
fn demo_with_data_writes_there() {
    let s = Scratch::new();
    // Listings that outlive the demo, so they are there to share blobs.
    s.cli()
        .args([
            "demo",
            "--records",
            "100",
            "--tasks",
            "2",
            "--lobby-ttl",
            "1h",
        ])
        .assert()
        .success();
    assert!(s.path("data/bitcraps.db").exists());
    let games = s.ok(&["list", "archive"]);
    assert!(
        games.lines().count() >= 2,
        "each table archived a game: {games}"
    );
    let stats: serde_json::Value =
        serde_json::from_str(&s.ok(&["stats", "--json"])).expect("stats JSON");
    let db = &stats["database_stats"];
    assert!(
        db["blob_count"].as_u64() < db["record_count"].as_u64(),
        "identical lobby listings share blobs: {db}"
    );
}

/// Regression: `demo --data DIR` used to play into whatever store DIR held, replacing records
/// under the demo's keys and adding tens of thousands of its own.
#[test]
fn demo_refuses_a_store_that_holds_records_unless_forced() {
    let s = Scratch::new();
    s.ok(&["put", "games", "g-1", r#"{"mine":true}"#]);
    s.cli()
        .args(["demo", "--records", "100", "--tasks", "2"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("already holds 1 record"))
        .stderr(predicate::str::contains("--force"));
    let stats: serde_json::Value =
        serde_json::from_str(&s.ok(&["stats", "--json"])).expect("stats JSON");
    assert_eq!(
        stats["database_stats"]["record_count"], 1,
        "nothing written"
    );
    assert_eq!(s.ok(&["get", "games", "g-1"]), "{\"mine\":true}\n");

    s.cli()
        .args(["demo", "--records", "100", "--tasks", "2", "--force"])
        .assert()
        .success();
    let stats: serde_json::Value =
        serde_json::from_str(&s.ok(&["stats", "--json"])).expect("stats JSON");
    assert!(stats["database_stats"]["record_count"].as_u64() > Some(1));
}

#[test]
fn demo_json_reports_the_run_and_the_library_statistics() {
    let s = Scratch::new();
    let out = s
        .bare()
        .args(["demo", "--records", "300", "--tasks", "2", "--json"])
        .assert()
        .success();
    let report: serde_json::Value =
        serde_json::from_slice(&out.get_output().stdout).expect("demo --json is JSON");
    assert!(
        report["records_written"].as_u64().is_some_and(|n| n >= 300),
        "{report}"
    );
    assert_eq!(report["consistency_ok"], true);
    assert_eq!(
        report["consistency"]["integrity"],
        serde_json::json!(["ok"])
    );
    assert!(report["latency"]["store"]["p99_ms"].is_number(), "{report}");
    let stats = &report["statistics"];
    assert!(
        stats["total_writes"].as_u64().is_some_and(|n| n > 0),
        "{report}"
    );
    assert!(stats["write_latency"]["p99_ms"].is_number(), "{report}");
    assert!(
        report["backup"]["records_compared"]
            .as_u64()
            .is_some_and(|n| n > 0)
    );
}

/// Lobby seats and rolls get their TTLs; the demo waits out the (short) lobby TTL, sweeps,
/// and reports the expirations the change feed logged.
#[test]
fn demo_expires_lobby_seats_and_reports_it() {
    let s = Scratch::new();
    let out = s
        .cli()
        .args([
            "demo",
            "--records",
            "300",
            "--tasks",
            "2",
            "--json",
            "--lobby-ttl",
            "20ms",
            "--roll-ttl",
            "1h",
        ])
        .assert()
        .success();
    let report: serde_json::Value =
        serde_json::from_slice(&out.get_output().stdout).expect("demo --json is JSON");
    let e = &report["expirations"];
    assert_eq!(e["lobby_ttl_ms"], 20, "{e}");
    assert_eq!(e["roll_ttl_ms"], 3_600_000, "{e}");
    assert_eq!(e["waited_for_lobby"], true, "{e}");
    assert_eq!(e["lobby_listings_left"], 0, "every listing expired: {e}");
    let swept = e["swept"].as_u64().expect("swept");
    assert!(swept > 0, "the closing sweep removed expired listings: {e}");
    let lobby = &e["by_collection"]["lobby"];
    let (puts, expired) = (lobby[0].as_u64(), lobby[2].as_u64());
    assert!(
        expired.is_some_and(|x| x >= swept && Some(x) <= puts),
        "every listing put expired once at most, and the feed logged each swept one: {e}"
    );
    assert_eq!(
        e["by_collection"]["rolls"][2], 0,
        "rolls live an hour: none expired: {e}"
    );
    assert!(e["by_collection"]["rolls"][0].as_u64() > Some(0), "{e}");
    // The TTLs are the collections' defaults, kept in the store.
    let ttls = s.ok(&["ttl", "show"]);
    assert!(ttls.contains("lobby") && ttls.contains("rolls"), "{ttls}");
    assert_eq!(
        s.ok(&["list", "lobby"]),
        "",
        "no listing is returned after its TTL"
    );
}

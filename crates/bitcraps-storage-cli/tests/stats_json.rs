//! `stats --json` is JSON with the statistics' fields; `stats` is a table.

mod common;

use common::Scratch;

#[test]
fn stats_json_parses_and_counts_records() {
    let s = Scratch::new();
    let same = r#"{"status":"open","rules":"same document in every seat"}"#;
    s.ok(&["put", "lobby", "seat-1", same]);
    s.ok(&["put", "lobby", "seat-2", same]);
    s.ok(&["put", "games", "g-1", r#"{"point":4}"#]);

    let stats: serde_json::Value =
        serde_json::from_str(&s.ok(&["stats", "--json"])).expect("stats --json is JSON");
    // Per-process counters: this invocation wrote nothing.
    assert_eq!(stats["total_writes"], 0);
    assert!(stats["cache_hit_rate"].is_number());
    let db = &stats["database_stats"];
    assert_eq!(db["backend"], "sqlite");
    assert_eq!(db["record_count"], 3);
    assert_eq!(
        db["blob_count"], 2,
        "the two identical seats share one blob"
    );
    assert!(db["file_bytes"].as_u64().is_some_and(|n| n > 0));
    // The whole structure, through serde: percentiles next to the means, every tier.
    for field in ["p50_ms", "p90_ms", "p99_ms", "max_ms", "count"] {
        assert!(
            stats["read_latency"][field].is_number(),
            "read_latency.{field}"
        );
        assert!(
            stats["write_latency"][field].is_number(),
            "write_latency.{field}"
        );
    }
    assert!(stats["cache_stats"]["coalesced"].is_number());
    assert!(
        stats
            .get("remote_cache")
            .is_some_and(serde_json::Value::is_null),
        "no Redis tier"
    );
    assert!(
        stats
            .get("last_backup_at_ms")
            .is_some_and(serde_json::Value::is_null),
        "no backup yet"
    );

    let table = s.ok(&["stats"]);
    assert!(
        table.contains("records") && table.contains("cache hit rate"),
        "{table}"
    );
}

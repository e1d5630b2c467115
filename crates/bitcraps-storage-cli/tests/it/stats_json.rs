//! `stats --json` is JSON with the statistics' fields; `stats` is a table.

use crate::common;

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

/// Issue #17: `stats` shows the Redis tier in one place with the rest, its entries in Redis
/// counted: the JSON has them under `remote_cache`, the table in its own rows.
#[test]
fn stats_show_the_redis_tier_and_what_it_holds() {
    let Ok(redis) = std::env::var("BITCRAPS_TEST_REDIS_URL") else {
        assert!(
            std::env::var_os("BITCRAPS_TEST_REQUIRE_SERVICES").is_none_or(|v| v.is_empty()),
            "BITCRAPS_TEST_REDIS_URL is not set and BITCRAPS_TEST_REQUIRE_SERVICES forbids skipping"
        );
        return;
    };
    let s = Scratch::new();
    let namespace = format!("bitcraps-test:cli-stats:{}", std::process::id());
    let env = [
        ("BITCRAPS_STORAGE_REDIS_URL", redis.as_str()),
        ("BITCRAPS_STORAGE_REDIS_NAMESPACE", namespace.as_str()),
    ];
    s.ok_with_env(&env, &["put", "games", "g-1", r#"{"point":4}"#]);
    s.ok_with_env(&env, &["put", "games", "g-2", r#"{"point":5}"#]);
    // Each `get` is a new process with an empty L1: the first read fills L2.
    s.ok_with_env(&env, &["get", "games", "g-1"]);
    s.ok_with_env(&env, &["get", "games", "g-2"]);

    let stats: serde_json::Value = serde_json::from_str(&s.ok_with_env(&env, &["stats", "--json"]))
        .expect("stats --json is JSON");
    let remote = &stats["remote_cache"];
    assert_eq!(remote["namespace"], namespace.as_str(), "{stats}");
    assert_eq!(remote["entries"], 2, "{remote}");
    assert!(remote["bytes"].as_u64().is_some_and(|b| b > 0), "{remote}");
    let table = s.ok_with_env(&env, &["stats"]);
    assert!(table.contains("Redis tier (L2)"), "{table}");
    assert!(table.contains("2 entries"), "{table}");

    // Clean up this test's keys in the shared Redis.
    let _ = std::process::Command::new("redis-cli")
        .args(["-u", &redis, "--no-raw", "EVAL"])
        .arg("for _, k in ipairs(redis.call('KEYS', ARGV[1])) do redis.call('DEL', k) end")
        .arg("0")
        .arg(format!("{namespace}:*"))
        .output();
}

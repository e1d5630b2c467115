//! `stats --format prometheus` prints the text exposition format (for node_exporter's textfile
//! collector): it parses with a real parser, and its gauges describe the store.

use crate::common;

use common::Scratch;
use common::scrape::{gauge, parse};

#[test]
fn stats_prometheus_parses_and_reports_the_store() {
    let s = Scratch::new();
    let same = r#"{"seat":"open"}"#;
    s.ok(&["put", "lobby", "seat-1", same]);
    s.ok(&["put", "lobby", "seat-2", same]);
    s.ok(&["put", "games", "g-1", r#"{"point":4}"#]);

    let text = s.ok(&["stats", "--format", "prometheus"]);
    let scrape = parse(&text);
    assert_eq!(
        gauge(&scrape, "bitcraps_storage_records"),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        gauge(&scrape, "bitcraps_storage_blobs"),
        Some(2.0),
        "{text}"
    );
    assert!(
        gauge(&scrape, "bitcraps_storage_file_bytes").is_some_and(|b| b > 0.0),
        "{text}"
    );
    assert!(
        scrape.docs.contains_key("bitcraps_storage_records"),
        "metrics carry their help text: {text}"
    );
    let debt: Vec<_> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "bitcraps_storage_space_debt_bytes")
        .filter_map(|s| s.labels.get("kind"))
        .collect();
    assert!(
        debt.contains(&"wal") && debt.contains(&"free_pages"),
        "{text}"
    );
}

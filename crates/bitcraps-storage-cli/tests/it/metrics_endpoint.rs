//! `demo --metrics-addr` serves `/metrics` while it plays: a scrape of the running process
//! parses, and its latency histograms count more operations as the demo goes on.

use crate::common;

use std::time::Instant;

use common::Scratch;
use common::process::{DEADLINE, serving};
use common::scrape::{get, histogram_count, parse};

const HISTOGRAM: &str = "bitcraps_storage_operation_duration_seconds";

/// Scrapes until `done` accepts the histogram's count, or the deadline passes.
fn scrape_until(addr: &str, done: impl Fn(f64) -> bool) -> f64 {
    let started = Instant::now();
    loop {
        let (status, body) = get(addr, "/metrics");
        assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
        let count = histogram_count(&parse(&body), HISTOGRAM).unwrap_or(0.0);
        if done(count) {
            return count;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "the histogram stayed at {count}"
        );
        std::thread::yield_now();
    }
}

#[test]
fn a_running_demo_serves_histograms_that_move_with_its_operations() {
    let s = Scratch::new();
    // In the scratch directory (--data), so that the killed demo leaves nothing behind.
    let (_demo, addr) = serving(
        &s,
        &[
            "demo",
            "--records",
            "100000000",
            "--tasks",
            "2",
            "--metrics-addr",
            "127.0.0.1:0",
        ],
    );

    let first = scrape_until(&addr, |n| n > 0.0);
    scrape_until(&addr, |n| n > first);

    let (status, _) = get(&addr, "/other");
    assert_eq!(status, "HTTP/1.1 404 Not Found");
}

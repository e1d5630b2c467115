//! `demo --metrics-addr` serves `/metrics` while it plays: a scrape of the running process
//! parses, and its latency histograms count more operations as the demo goes on.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::Scratch;
use common::scrape::{get, histogram_count, parse};

/// Generous: only a stuck demo runs into it.
const DEADLINE: Duration = Duration::from_secs(120);
const HISTOGRAM: &str = "bitcraps_storage_operation_duration_seconds";

/// Kills the demo when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

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
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bitcraps-storage"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("BITCRAPS_STORAGE_") {
            cmd.env_remove(name);
        }
    }
    let child = cmd
        .env_remove("RUST_LOG")
        .current_dir(s.dir.path())
        // In the scratch directory, so that the killed demo leaves nothing behind.
        .arg("--data")
        .arg(s.path("data"))
        .args(["demo", "--records", "100000000", "--tasks", "2"])
        .args(["--metrics-addr", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the demo");
    let mut demo = Running(child);
    let stderr = demo.0.stderr.take().expect("stderr is piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let addr = loop {
        let line = rx
            .recv_timeout(DEADLINE)
            .expect("the demo names its metrics address");
        if let Some(rest) = line.strip_prefix("serving metrics on http://") {
            break rest.trim_end_matches("/metrics").to_owned();
        }
    };

    let first = scrape_until(&addr, |n| n > 0.0);
    scrape_until(&addr, |n| n > first);

    let (status, _) = get(&addr, "/other");
    assert_eq!(status, "HTTP/1.1 404 Not Found");
}

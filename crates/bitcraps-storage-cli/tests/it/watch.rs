//! `watch` follows a store other CLI processes write: started first (read-only, so it takes
//! no lock), it prints each committed change of its collection and prefix as one JSON line —
//! catching up from `--since`, then live — and SIGINT ends it cleanly with exit 0.

#![allow(clippy::expect_used, reason = "tests: a failed step is a failed test")]

use crate::common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;

use common::Scratch;
use common::process::DEADLINE;
use serde_json::Value;

/// Kills the watch if the test fails before it ends it.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn watch(s: &Scratch, args: &[&str]) -> (Running, mpsc::Receiver<String>) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bitcraps-storage"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("BITCRAPS_STORAGE_") {
            cmd.env_remove(name);
        }
    }
    let mut child = cmd
        .env_remove("RUST_LOG")
        .current_dir(s.dir.path())
        .arg("--data")
        .arg(s.path("data"))
        .arg("watch")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start watch");
    let stdout = child.stdout.take().expect("stdout is piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (Running(child), rx)
}

/// The next line as `(seq, collection, key, kind, version)`, checking the line's fields.
fn next(rx: &mpsc::Receiver<String>) -> (u64, String, String, String, u64) {
    let line = rx.recv_timeout(DEADLINE).expect("a change line in time");
    let v: Value = serde_json::from_str(&line).expect("one JSON object per line");
    assert!(
        v["at"].as_str().is_some_and(|t| t.ends_with('Z')),
        "at is an RFC 3339 UTC time: {line}"
    );
    (
        v["seq"].as_u64().expect("seq"),
        v["collection"].as_str().expect("collection").to_owned(),
        v["key"].as_str().expect("key").to_owned(),
        v["kind"].as_str().expect("kind").to_owned(),
        v["version"].as_u64().expect("version"),
    )
}

fn change(seq: u64, key: &str, kind: &str) -> (u64, String, String, String) {
    (seq, "games".to_owned(), key.to_owned(), kind.to_owned())
}

fn without_version(c: (u64, String, String, String, u64)) -> (u64, String, String, String) {
    (c.0, c.1, c.2, c.3)
}

#[test]
fn watch_prints_changes_other_processes_commit_and_exits_0_on_sigint() {
    let s = Scratch::new();
    s.ok(&["put", "games", "g-1", r#"{"point":6}"#]);
    s.ok(&["put", "lobby", "g-2", "{}"]);
    let (mut running, rx) = watch(&s, &["games", "--prefix", "g-", "--since", "0"]);
    // Catch-up: the change committed before the watch started.
    let first = next(&rx);
    assert_eq!(without_version(first.clone()), change(1, "g-1", "put"));
    // Live: written by other processes while the watch holds the store open read-only.
    s.ok(&["put", "games", "g-2", r#"{"point":8}"#]);
    s.ok(&["put", "games", "h-1", "{}"]);
    s.ok(&["delete", "games", "g-1"]);
    let put = next(&rx);
    assert_eq!(without_version(put.clone()), change(3, "g-2", "put"));
    assert!(put.4 > first.4, "versions increase");
    let deleted = next(&rx);
    assert_eq!(without_version(deleted.clone()), change(5, "g-1", "delete"));
    assert_eq!(deleted.4, first.4, "a delete names the version it removed");

    let pid = running.0.id().to_string();
    let sent = Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("run kill");
    assert!(sent.success());
    let status = running.0.wait().expect("wait for watch");
    assert_eq!(status.code(), Some(0), "SIGINT ends watch cleanly");
    assert!(rx.try_recv().is_err(), "nothing else was printed");
}

/// Without `--since`, only what commits from now on: never the record written before.
#[test]
fn watch_without_since_starts_at_the_head() {
    let s = Scratch::new();
    s.ok(&["put", "games", "old", "{}"]);
    let (_running, rx) = watch(&s, &["games"]);
    // The watch may still be opening: keep writing until its first line arrives, then check
    // that it is one of these (never the old record) and the lines after follow in order.
    let mut written = 0u64;
    let line = loop {
        written += 1;
        s.ok(&["put", "games", &format!("new-{written}"), "{}"]);
        if let Ok(line) = rx.recv_timeout(DEADLINE / 60) {
            break line;
        }
        assert!(written < 60, "no change arrived");
    };
    let v: Value = serde_json::from_str(&line).expect("JSON");
    let key = v["key"].as_str().expect("key");
    assert!(key.starts_with("new-"), "{line}");
}

//! `key enable` on a plaintext store of 50,000 records, killed with SIGKILL midway (once
//! thousands of blobs are sealed and thousands are not, read from the database while it
//! runs — no sleep stands in for progress) and run again: it resumes, every record reads
//! back, every blob is ciphertext, and maintenance's checks pass.

#![allow(clippy::expect_used, reason = "tests: a failed step is a failed test")]

use crate::common;

use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::Scratch;

const RECORDS: usize = 50_000;
/// No fsync per commit: durability policy changes no logic under test, and this test
/// commits a hundred pages twice.
const FAST: (&str, &str) = ("BITCRAPS_STORAGE_WRITE_DURABILITY", "normal");

/// (sealed blobs, all blobs), read while the other process writes (WAL readers never block).
fn sealed(db: &Path) -> (i64, i64) {
    let Ok(conn) =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
    else {
        return (0, 0);
    };
    conn.query_row(
        "SELECT count(*) FILTER (WHERE substr(data, 1, 1) IN (X'E1', X'E2', X'E3', X'E4')), count(*) FROM blobs",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .unwrap_or((0, 0))
}

#[test]
fn key_enable_killed_midway_resumes_and_encrypts_everything() {
    let s = Scratch::new();
    let input = s.path("records.jsonl");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&input).expect("create"));
    for i in 0..RECORDS {
        writeln!(
            file,
            r#"{{"collection":"{}","key":"k-{i:06}","value":{{"player":"p-{}","chips":{i},"note":"plaintext"}}}}"#,
            if i % 2 == 0 { "players" } else { "bets" },
            i % 977
        )
        .expect("write");
    }
    drop(file);
    s.ok_with_env(
        &[FAST],
        &[
            "import",
            input.to_str().expect("utf-8"),
            "--batch-size",
            "5000",
        ],
    );
    let key = s.path("master.key");
    let generated = s.bare().args(["key", "generate"]).assert().success();
    std::fs::write(&key, &generated.get_output().stdout).expect("key file");
    let key = key.to_str().expect("utf-8");
    let db = s.path("data").join("bitcraps.db");

    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_bitcraps-storage"))
        .arg("--data")
        .arg(s.path("data"))
        .args(["--key-file", key, "key", "enable"])
        .env_remove("RUST_LOG")
        .env(FAST.0, FAST.1)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(300);
    let killed_at = loop {
        let (done, all) = sealed(&db);
        if done >= 5_000 {
            child.kill().expect("kill"); // SIGKILL
            child.wait().expect("wait");
            break (done, all);
        }
        assert!(
            child.try_wait().expect("try_wait").is_none(),
            "it finished before the kill"
        );
        assert!(Instant::now() < deadline, "no progress");
        std::thread::yield_now();
    };
    let (done, all) = sealed(&db);
    assert!(
        done >= killed_at.0 && done < all,
        "killed midway: {done} of {all} sealed"
    );

    // Interrupted: neither without the key nor with it does the store open for other commands.
    s.cli()
        .args(["get", "players", "k-000000"])
        .assert()
        .code(1);
    s.cli()
        .args(["--key-file", key, "get", "players", "k-000000"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("key enable"));

    let out = s.ok_with_env(&[FAST], &["--key-file", key, "key", "enable"]);
    let resumed: u64 = out
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("a count");
    assert!(
        resumed > 0 && resumed < RECORDS as u64,
        "resumed, not restarted: {out}"
    );
    let (done, all) = sealed(&db);
    assert_eq!(done, all, "every blob is ciphertext");

    let stats: serde_json::Value =
        serde_json::from_str(&s.ok(&["--key-file", key, "stats", "--json"])).expect("json");
    assert_eq!(stats["database_stats"]["record_count"], RECORDS as u64);
    for i in [0usize, 1, 24_999, 49_999] {
        let collection = if i % 2 == 0 { "players" } else { "bets" };
        let got = s.ok(&["--key-file", key, "get", collection, &format!("k-{i:06}")]);
        assert!(got.contains(&format!("\"chips\":{i}")), "{got}");
    }
    s.ok(&["--key-file", key, "maintenance"]);
    let raw = std::fs::read(&db).expect("db");
    assert!(
        !raw.windows(9).any(|w| w == b"plaintext"),
        "no plaintext left in the file"
    );
}

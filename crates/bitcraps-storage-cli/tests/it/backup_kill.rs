//! `kill -9` during `backup create`, repeated at different points (work directory made,
//! database copied, archive being written): the next `backup create`, and `maintenance`,
//! leave no temporary files behind and say how much they freed. Regression: eight kills left
//! 166 MB of `.tmp-<id>/` copies and `*.tmp-<pid>` files for a 16 MB store, never removed.
//!
//! No sleeps stand in for progress: each kill waits (polling, with a generous deadline) for
//! the state it wants to interrupt to appear on disk.

#![allow(clippy::expect_used, reason = "tests: a failed step is a failed test")]

use crate::common;

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::Scratch;

const ROUNDS: usize = 6;

/// Names in the backup directory that start with a dot (our temporaries).
fn hidden(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether the phase a round wants to interrupt has been reached.
fn reached(dir: &Path, phase: usize) -> bool {
    hidden(dir).iter().any(|work| {
        let inside: Vec<String> = std::fs::read_dir(dir.join(work))
            .map(|e| {
                e.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        match phase {
            // The work directory exists.
            0 => true,
            // The database copy is in it.
            1 => inside.iter().any(|n| n == "bitcraps.db"),
            // The archive is being written.
            _ => inside.iter().any(|n| n.contains(".db.zst")),
        }
    })
}

/// Starts `backup create` and kills it once `phase` is reached; true if it was killed there
/// (false if it finished first).
fn kill_during(s: &Scratch, phase: usize) -> bool {
    let backups = s.path("data/backups");
    let mut child: Child = std::process::Command::new(env!("CARGO_BIN_EXE_bitcraps-storage"))
        .arg("--data")
        .arg(s.path("data"))
        .args(["backup", "create"])
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if reached(&backups, phase) {
            child.kill().expect("kill"); // SIGKILL
            child.wait().expect("wait");
            return true;
        }
        if child.try_wait().expect("try_wait").is_some() || Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return false;
        }
        std::thread::yield_now();
    }
}

fn bytes_of(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let meta = entry.metadata().expect("metadata");
        total += if meta.is_dir() {
            bytes_of(&entry.path())
        } else {
            meta.len()
        };
    }
    total
}

#[test]
fn killed_backups_leave_nothing_after_the_next_one() {
    let s = Scratch::new();
    // Some megabytes that do not compress to nothing, so a backup takes a moment.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut lines = String::new();
    for i in 0..6000 {
        let mut noise = String::new();
        for _ in 0..40 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            noise.push_str(&format!("{x:016x}"));
        }
        lines.push_str(&format!(
            "{{\"collection\":\"games\",\"key\":\"g-{i}\",\"value\":{{\"noise\":\"{noise}\"}}}}\n"
        ));
    }
    let input = s.path("input.jsonl");
    std::fs::write(&input, lines).expect("input");
    s.cli().arg("import").arg(&input).assert().success();
    let backups = s.path("data/backups");

    let mut killed = 0;
    let mut left_behind = 0u64;
    for round in 0..ROUNDS {
        if kill_during(&s, round % 3) {
            killed += 1;
            left_behind = left_behind.max(
                hidden(&backups)
                    .iter()
                    .map(|n| bytes_of(&backups.join(n)))
                    .sum(),
            );
        }
    }
    assert!(
        killed > 0,
        "no backup was ever interrupted; the test proved nothing"
    );
    assert!(
        !hidden(&backups).is_empty(),
        "the kills left nothing to sweep"
    );

    let out = s.cli().args(["backup", "create"]).assert().success();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(stderr.contains("stale temporaries"), "{stderr}");
    assert_eq!(hidden(&backups), Vec::<String>::new(), "{stderr}");
    // Every file left is a complete backup's archive or manifest, and they verify.
    let listed: serde_json::Value =
        serde_json::from_str(&s.ok(&["backup", "list", "--json"])).expect("list json");
    let entries = listed.as_array().expect("array");
    assert!(
        entries.iter().all(|e| e["status"] == "complete"),
        "{listed}"
    );
    for e in entries {
        s.cli()
            .args(["backup", "verify", e["id"].as_str().expect("id")])
            .assert()
            .success();
    }

    // Maintenance sweeps too, and reports the bytes.
    let mut killed_again = false;
    for phase in [1, 0, 2] {
        if kill_during(&s, phase) {
            killed_again = true;
            break;
        }
    }
    if killed_again {
        let report: serde_json::Value =
            serde_json::from_str(&s.ok(&["maintenance", "--json"])).expect("report json");
        let swept = &report["backup_temporaries"];
        assert!(
            swept["removed"].as_array().is_some_and(|r| !r.is_empty()),
            "{report}"
        );
        assert!(swept["bytes_freed"].as_u64().is_some(), "{report}");
        assert_eq!(hidden(&backups), Vec::<String>::new());
    }
    eprintln!("{killed} kills, at most {left_behind} bytes left behind before the sweep");
}

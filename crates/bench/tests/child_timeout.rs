//! A store's child that hangs no longer fails a whole `--runs N` benchmark: the parent kills
//! it at `--child-timeout`, records the run as timed out and finishes with the table.

use std::process::Command;

#[test]
fn a_hung_child_is_killed_and_the_benchmark_finishes_reporting_it() -> anyhow::Result<()> {
    let out = Command::new(env!("CARGO_BIN_EXE_bitcraps-storage-bench"))
        .args([
            "--quick",
            "--bulk",
            "--runs",
            "2",
            "--stores",
            "sled",
            "--child-timeout",
            "1",
        ])
        // Every sled child hangs (the hidden test switch) instead of measuring.
        .env("BITCRAPS_BENCH_CHILD_HANG", "sled")
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("sled: 2 of 2 runs timed out (killed after 1 s)"),
        "{stdout}\n{stderr}"
    );
    assert!(stderr.contains("run 2/2: sled timed out"), "{stderr}");
    Ok(())
}

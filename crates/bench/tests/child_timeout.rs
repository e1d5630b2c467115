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

/// Regression: a PostgreSQL store's child killed at its time limit left its schema (and, with
/// the Redis tier, its keys) behind; the parent now drops them. Needs the test server
/// (`BITCRAPS_TEST_POSTGRES_URL`); skipped without it unless `BITCRAPS_TEST_REQUIRE_SERVICES`.
#[test]
fn a_killed_postgres_child_leaves_no_schema() -> anyhow::Result<()> {
    let Ok(url) = std::env::var("BITCRAPS_TEST_POSTGRES_URL") else {
        assert!(
            std::env::var_os("BITCRAPS_TEST_REQUIRE_SERVICES").is_none(),
            "BITCRAPS_TEST_POSTGRES_URL is not set"
        );
        return Ok(());
    };
    let out = Command::new(env!("CARGO_BIN_EXE_bitcraps-storage-bench"))
        .args([
            "--quick",
            "--bulk",
            "--runs",
            "1",
            "--stores",
            "postgres-jsonb",
            "--postgres",
            &url,
            // Opening takes well under a second; the limit only has to pass after it.
            "--child-timeout",
            "10",
        ])
        // The child creates its schema, then hangs (the hidden test switch).
        .env("BITCRAPS_BENCH_CHILD_HANG", "postgres-jsonb")
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("postgres-jsonb opened; hanging"),
        "{stderr}"
    );
    let dropped: Vec<&str> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("dropped schema "))
        .filter_map(|l| l.split(',').next())
        .collect();
    assert_eq!(dropped.len(), 1, "{stderr}");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let left: i64 = rt.block_on(async {
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
        let driver = tokio::spawn(connection);
        let row = client
            .query_one(
                "SELECT count(*) FROM pg_namespace WHERE nspname = $1",
                &[&dropped[0]],
            )
            .await?;
        drop(client);
        let _ = driver.await;
        anyhow::Ok(row.try_get(0)?)
    })?;
    assert_eq!(left, 0, "schema {} is still there", dropped[0]);
    Ok(())
}

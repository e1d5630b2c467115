//! `migrate` SQLite → PostgreSQL → SQLite keeps every record byte for byte. Needs
//! `BITCRAPS_TEST_POSTGRES_URL`; skipped (and passing) without it. The PostgreSQL store lives
//! in a schema of its own, created here and dropped at the end.

#![allow(clippy::expect_used, reason = "tests: a failed step is a failed test")]

mod common;

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use common::Scratch;
use common::migration::{GAMES, LOBBY, PLAYERS, assert_documents, build_source, export};
use predicates::prelude::*;

/// A fresh schema, dropped (with everything in it) when this goes out of scope.
struct Schema {
    server: String,
    name: String,
}

impl Schema {
    fn create(server: &str) -> Schema {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let name = format!("bcs_migrate_{}_{nanos}", std::process::id());
        execute(server, &format!("CREATE SCHEMA {name}"));
        Schema {
            server: server.to_owned(),
            name,
        }
    }

    /// The URL of a store in this schema.
    fn url(&self) -> String {
        let joiner = if self.server.contains('?') { '&' } else { '?' };
        format!(
            "{}{joiner}options=-csearch_path%3D{}",
            self.server, self.name
        )
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        execute(
            &self.server,
            &format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name),
        );
    }
}

/// Runs one statement on its own connection.
fn execute(server: &str, statement: &str) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(server, tokio_postgres::NoTls)
            .await
            .expect("connect to BITCRAPS_TEST_POSTGRES_URL");
        let driver = tokio::spawn(connection);
        client
            .batch_execute(statement)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
        drop(client);
        let _ = driver.await;
    });
}

#[test]
fn sqlite_to_postgres_and_back_keeps_every_record() {
    let Ok(server) = std::env::var("BITCRAPS_TEST_POSTGRES_URL") else {
        // CI sets BITCRAPS_TEST_REQUIRE_SERVICES: there this test must run, not skip.
        assert!(
            std::env::var_os("BITCRAPS_TEST_REQUIRE_SERVICES").is_none_or(|v| v.is_empty()),
            "BITCRAPS_TEST_POSTGRES_URL is not set and BITCRAPS_TEST_REQUIRE_SERVICES forbids skipping"
        );
        eprintln!("skipped: BITCRAPS_TEST_POSTGRES_URL is not set");
        return;
    };
    let s = Scratch::new();
    let source = build_source(&s);
    let schema = Schema::create(&server);
    let postgres = schema.url();
    let total = GAMES + LOBBY + PLAYERS.len();

    s.bare()
        .arg("migrate")
        .arg("--from")
        .arg(&source)
        .args(["--to", &postgres])
        .assert()
        .success()
        .stdout(predicate::str::contains(format!(
            "total (3 collections) ┆ {total}"
        )))
        .stderr(predicate::str::contains(format!(
            "copied {total} records in 3 collection(s)"
        )));
    // Read back from PostgreSQL directly.
    assert_documents(&s, &["--url", &postgres]);
    assert_eq!(export(&s, &source), export(&s, &PathBuf::from(&postgres)));

    // A second copy into the same schema is refused: it holds records now.
    s.bare()
        .arg("migrate")
        .arg("--from")
        .arg(&source)
        .args(["--to", &postgres])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("already holds"));

    let back = s.path("back");
    s.bare()
        .args(["migrate", "--from", &postgres, "--to"])
        .arg(&back)
        .args(["--batch-size", "500"])
        .assert()
        .success()
        .stdout(predicate::str::contains("MISMATCH").not());
    assert_eq!(export(&s, &source), export(&s, &back));
    assert_documents(&s, &["--data", &back.to_string_lossy()]);
    drop(schema);
}

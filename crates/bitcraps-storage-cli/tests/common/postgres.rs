//! A PostgreSQL schema of a test's own on the shared server named by
//! `BITCRAPS_TEST_POSTGRES_URL`, created on demand and dropped (with everything in it) at
//! the end.

use std::time::{SystemTime, UNIX_EPOCH};

/// The server URL, or `None` when the test should skip. CI sets
/// `BITCRAPS_TEST_REQUIRE_SERVICES`: there a missing URL fails the test instead.
pub fn server() -> Option<String> {
    let Ok(server) = std::env::var("BITCRAPS_TEST_POSTGRES_URL") else {
        assert!(
            std::env::var_os("BITCRAPS_TEST_REQUIRE_SERVICES").is_none_or(|v| v.is_empty()),
            "BITCRAPS_TEST_POSTGRES_URL is not set and BITCRAPS_TEST_REQUIRE_SERVICES forbids skipping"
        );
        eprintln!("skipped: BITCRAPS_TEST_POSTGRES_URL is not set");
        return None;
    };
    Some(server)
}

/// A fresh schema, dropped (with everything in it) when this goes out of scope.
pub struct Schema {
    server: String,
    name: String,
}

impl Schema {
    /// Creates `<prefix>_<pid>_<nanos>` on `server`.
    pub fn create(server: &str, prefix: &str) -> Schema {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let name = format!("{prefix}_{}_{nanos}", std::process::id());
        execute(server, &format!("CREATE SCHEMA {name}"));
        Schema {
            server: server.to_owned(),
            name,
        }
    }

    /// The URL of a store in this schema.
    pub fn url(&self) -> String {
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

//! A PostgreSQL schema of its own for one benchmark run: created before the store opens,
//! dropped (with everything in it) after it closes, so runs never see each other's tables.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};

/// A fresh schema on the server at `server`.
pub struct PgSchema {
    server: String,
    name: String,
}

impl PgSchema {
    /// Creates `bcs_bench_<tag>_<nanos>`, `<tag>` this process's ([`TAG_VAR`]).
    pub async fn create(server: &str) -> Result<Self> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let name = format!("bcs_bench_{}_{nanos}", own_tag());
        execute(server, &format!("CREATE SCHEMA {name}")).await?;
        Ok(PgSchema {
            server: server.to_owned(),
            name,
        })
    }

    /// The store's URL: the server's, with this schema as the search path, and without TLS
    /// unless the server's URL names an `sslmode`. The same URL serves ours and the
    /// `postgres-jsonb` peer, and both take their transport from it through the library's
    /// connector, so they run alike either way; without an `sslmode` the run measures plain
    /// connections (the library's own default, `prefer`, is left to the user's URL).
    pub fn url(&self) -> String {
        let joiner = if self.server.contains('?') { '&' } else { '?' };
        let tls = if self.server.contains("sslmode=") {
            ""
        } else {
            "&sslmode=disable"
        };
        format!(
            "{}{joiner}options=-csearch_path%3D{}{tls}",
            self.server, self.name
        )
    }

    /// The schema's name (also used as the Redis namespace of the run).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Drops the schema and everything in it, waiting at most 10 s for a lock (a killed
    /// child's server session may still hold one).
    pub async fn drop_schema(&self) -> Result<()> {
        execute(
            &self.server,
            &format!(
                "SET lock_timeout = '10s'; DROP SCHEMA IF EXISTS {} CASCADE",
                self.name
            ),
        )
        .await
    }

    /// Bytes of `table` in this schema (its heap, indexes and TOAST:
    /// `pg_total_relation_size`).
    pub async fn table_bytes(&self, table: &str) -> Result<u64> {
        let (client, driver) = connect(&self.server).await?;
        let relation = format!("{}.{table}", self.name);
        let bytes: Result<i64> = client
            .query_one(
                "SELECT pg_total_relation_size($1::text::regclass)",
                &[&relation],
            )
            .await
            .and_then(|r| r.try_get(0))
            .with_context(|| format!("measuring {relation}"));
        drop(client);
        let _ = driver.await;
        Ok(u64::try_from(bytes?)?)
    }
}

/// The environment variable by which the parent names each child it starts
/// ([`child_tag`]). The child's schemas are named after it, so the parent can tell a killed
/// child's schemas from every other run's: a process id cannot, since another run against the
/// same server, on another host or in another container, may have a child of the same pid.
pub const TAG_VAR: &str = "BITCRAPS_BENCH_CHILD_TAG";

/// A tag for a child about to start, unique to it among the runs against a server: the
/// parent's pid and the time in nanoseconds.
pub fn child_tag() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{}x{nanos}", std::process::id())
}

/// Whether `tag` can go into a schema's name as it is: lower-case letters and digits only
/// (an unquoted identifier, no `LIKE` pattern character), short enough for the name to fit
/// PostgreSQL's 63 bytes.
fn is_tag(tag: &str) -> bool {
    (1..=40).contains(&tag.len())
        && tag
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
}

/// This process's tag: the one its parent gave it, else its pid (a child started by hand).
fn own_tag() -> String {
    std::env::var(TAG_VAR)
        .ok()
        .filter(|t| is_tag(t))
        .unwrap_or_else(|| std::process::id().to_string())
}

/// Drops the schemas a killed child (started with `tag`, [`TAG_VAR`]) left on `server`, and
/// their Redis namespaces on `redis`: a child killed at its time limit runs none of its own
/// cleanup. Returns the schemas dropped. Only names this harness gives (`bcs_bench_<tag>_…`)
/// match.
pub async fn drop_left_by(server: &str, redis: Option<&str>, tag: &str) -> Result<Vec<String>> {
    anyhow::ensure!(is_tag(tag), "{tag:?} is not a child's tag");
    let (client, driver) = connect(server).await?;
    let prefix = format!("bcs\\_bench\\_{tag}\\_%");
    let names: Result<Vec<String>> = client
        .query(
            "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE $1",
            &[&prefix],
        )
        .await
        .context("listing the schemas a killed child left")
        .and_then(|rows| {
            rows.iter()
                .map(|r| r.try_get(0).context("a schema's name"))
                .collect()
        });
    drop(client);
    let _ = driver.await;
    // Each schema and namespace is tried even when another failed.
    let mut dropped = Vec::new();
    let mut failed = Vec::new();
    for name in names? {
        let schema = PgSchema {
            server: server.to_owned(),
            name: name.clone(),
        }
        .drop_schema()
        .await;
        let keys = match redis {
            Some(redis) => {
                super::redis_namespace::RedisNamespace::new(redis, &name)
                    .delete()
                    .await
            }
            None => Ok(()),
        };
        match schema.and(keys) {
            Ok(()) => dropped.push(name),
            Err(e) => failed.push(format!("{name}: {e:#}")),
        }
    }
    anyhow::ensure!(failed.is_empty(), "{}", failed.join("; "));
    Ok(dropped)
}

/// A connection to `server` over the transport its `sslmode` names, as the stores connect,
/// and the task driving it (done once the client is dropped).
async fn connect(server: &str) -> Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>)> {
    let (config, tls) = bitcraps_storage::testing::postgres::transport(server)?;
    let (client, connection) = config
        .connect(tls)
        .await
        .with_context(|| format!("connecting to {server}"))?;
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok((client, driver))
}

async fn execute(server: &str, statement: &str) -> Result<()> {
    let (client, driver) = connect(server).await?;
    let result = client
        .batch_execute(statement)
        .await
        .with_context(|| format!("{statement} on {server}"));
    drop(client);
    let _ = driver.await;
    result
}

#[cfg(test)]
mod tests {
    use anyhow::Result;

    use super::PgSchema;

    fn schema(server: &str) -> PgSchema {
        PgSchema {
            server: server.to_owned(),
            name: "bcs_bench_1_2".to_owned(),
        }
    }

    /// Regression: ours connected with TLS (the library's `sslmode=prefer`) while the peer,
    /// on the same URL, connected without.
    #[test]
    fn both_stores_connect_alike_without_tls_unless_the_url_says() {
        assert_eq!(
            schema("postgres://u@h:5432/db").url(),
            "postgres://u@h:5432/db?options=-csearch_path%3Dbcs_bench_1_2&sslmode=disable"
        );
        assert_eq!(
            schema("postgres://u@h/db?sslmode=require").url(),
            "postgres://u@h/db?sslmode=require&options=-csearch_path%3Dbcs_bench_1_2"
        );
    }

    /// A child's tag goes into an unquoted schema name and a `LIKE` pattern as it is.
    #[test]
    fn a_childs_tag_fits_a_schema_name() {
        let tag = super::child_tag();
        assert!(super::is_tag(&tag), "{tag}");
        assert!(format!("bcs_bench_{tag}_999999999").len() <= 63, "{tag}");
        for bad in ["", "1_2", "1%", "A1", "1;drop"] {
            assert!(!super::is_tag(bad), "{bad}");
        }
    }

    /// Whether `name` is a schema on `server`.
    async fn exists(server: &str, name: &str) -> Result<bool> {
        let (client, driver) = super::connect(server).await?;
        let row = client
            .query_one(
                "SELECT count(*) FROM pg_namespace WHERE nspname = $1",
                &[&name],
            )
            .await;
        drop(client);
        let _ = driver.await;
        Ok(row?.try_get::<_, i64>(0)? == 1)
    }

    /// The parent's cleanup after a child it killed must drop that child's schema only. A
    /// process id alone does not tell it apart: another benchmark run against the same
    /// server, on another host or in another container (another pid namespace), may have a
    /// live child of the same pid, whose schema is in use. Here the other run's child is this
    /// process, and the killed child had the same pid. Needs `BITCRAPS_TEST_POSTGRES_URL`.
    #[test]
    fn the_cleanup_after_a_killed_child_spares_another_runs_schema() -> Result<()> {
        let Some(server) = crate::stores::test_server()? else {
            return Ok(());
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let other = rt.block_on(PgSchema::create(&server))?;
        // The killed child: one this process started (as a parent, with its own tag).
        let killed = super::child_tag();
        let dropped = rt.block_on(super::drop_left_by(&server, None, &killed));
        let spared = rt.block_on(exists(&server, other.name()));
        rt.block_on(other.drop_schema())?;
        let dropped = dropped?;
        assert!(
            spared? && !dropped.iter().any(|d| d == other.name()),
            "another run's live schema {} was dropped",
            other.name()
        );
        Ok(())
    }
}

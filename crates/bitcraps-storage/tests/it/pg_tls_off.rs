//! A PostgreSQL server without TLS (`ssl = off`, a private cluster): a URL that requires TLS
//! (`require`, `verify-ca`, `verify-full`) is refused with "the server does not support
//! TLS" instead of falling back to plain text, while the default (`prefer`, as libpq) and
//! `disable` still connect, as before TLS support.
//!
//! Needs the PostgreSQL server binaries; skips without them unless
//! `BITCRAPS_TEST_REQUIRE_SERVICES` is set.
#![cfg(feature = "postgres")]

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use bitcraps_storage::{PersistentStorageManager, StorageConfig, StorageError, TlsFailure};
use common::nodes::TestResult;
use common::tls::{PgCluster, PgTls, Pki, postgres_available};
use common::{Game, game};

async fn open(url: &str) -> TestResult<bitcraps_storage::Result<PersistentStorageManager>> {
    let dir = tempfile::tempdir()?;
    let mut config = StorageConfig::with_data_path(dir.path());
    config.database.url = Some(url.to_owned());
    config.database.max_connections = 1;
    config.database.connection_timeout = Duration::from_secs(10);
    config.maintenance.background_tasks = false;
    Ok(PersistentStorageManager::open(config).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_required_is_refused_by_a_server_without_tls_and_prefer_falls_back() -> TestResult {
    if !postgres_available() {
        common::skip("the PostgreSQL server binaries are not installed");
        return Ok(());
    }
    let pki = Arc::new(Pki::new()?);
    let cluster = PgCluster::start(PgTls::Off, Arc::clone(&pki))?;
    let ca = format!("sslrootcert={}", pki.ca.display());
    for params in [
        "sslmode=require".to_owned(),
        format!("sslmode=verify-ca&{ca}"),
        format!("sslmode=verify-full&{ca}"),
    ] {
        match open(&cluster.url("localhost", &params)).await? {
            Ok(_) => panic!("{params}: connected in plain text although TLS is required"),
            Err(StorageError::Tls { failure, server }) => {
                assert_eq!(failure, TlsFailure::NotSupported, "{params}");
                assert_eq!(
                    StorageError::Tls { failure, server }.to_string(),
                    "TLS connection to PostgreSQL failed: the server does not support TLS"
                );
            }
            Err(other) => panic!("{params}: expected a TLS error, got {other:?}"),
        }
    }
    for params in [
        "application_name=default-mode",
        "sslmode=prefer",
        "sslmode=disable",
    ] {
        let store = open(&cluster.url("localhost", params))
            .await?
            .map_err(|e| format!("{params}: {e}"))?;
        store.store("games", params, &game(params, 1)).await?;
        assert_eq!(
            store.retrieve::<Game>("games", params).await?,
            Some(game(params, 1))
        );
        store.close().await?;
    }
    Ok(())
}

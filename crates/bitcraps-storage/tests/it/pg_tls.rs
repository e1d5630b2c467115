//! TLS to PostgreSQL, against a private cluster that accepts only TLS connections
//! (`hostssl` in pg_hba, `ssl = on`) with a certificate of a test CA for `localhost` only:
//! `verify-full` round-trips a record with the right CA and fails with a wrong one or on a
//! host-name mismatch; `verify-ca` checks the chain but not the name; `require` without a root
//! certificate encrypts without verifying (and verifies with one, as libpq); plain text is
//! refused by the server. `pg_tls_off.rs` covers a server without TLS.
//!
//! Needs the PostgreSQL server binaries (/usr/lib/postgresql/15/bin); skips without them
//! unless `BITCRAPS_TEST_REQUIRE_SERVICES` is set.
#![cfg(feature = "postgres")]

use crate::common;

use std::path::Path;
use std::time::Duration;

use bitcraps_storage::{PersistentStorageManager, StorageConfig, StorageError, TlsFailure};
use common::nodes::TestResult;
use common::tls::{PgCluster, postgres_available, shared_tls_cluster};
use common::{Game, game};

/// The cluster, or `None` after the skip notice.
fn cluster() -> TestResult<Option<std::sync::Arc<PgCluster>>> {
    if !postgres_available() {
        common::skip("the PostgreSQL server binaries are not installed");
        return Ok(None);
    }
    shared_tls_cluster().map(Some)
}

/// Opens a store on `url` (schema in the cluster's `postgres` database).
async fn open(
    url: &str,
) -> TestResult<(
    tempfile::TempDir,
    bitcraps_storage::Result<PersistentStorageManager>,
)> {
    let dir = tempfile::tempdir()?;
    let mut config = StorageConfig::with_data_path(dir.path());
    config.database.url = Some(url.to_owned());
    config.database.max_connections = 1;
    config.database.connection_timeout = Duration::from_secs(10);
    config.maintenance.background_tasks = false;
    let store = PersistentStorageManager::open(config).await;
    Ok((dir, store))
}

fn root(path: &Path) -> String {
    format!("sslrootcert={}", path.display())
}

/// The TLS failure of an open that must fail, with its message.
fn tls_failure(result: bitcraps_storage::Result<PersistentStorageManager>) -> (TlsFailure, String) {
    match result {
        Ok(_) => panic!("the store opened, but the connection should have been refused"),
        Err(StorageError::Tls { failure, server }) => {
            let text = StorageError::Tls {
                server: server.clone(),
                failure: failure.clone(),
            }
            .to_string();
            (failure, text)
        }
        Err(other) => panic!("expected a TLS error, got {other:?}: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_with_the_right_ca_round_trips_a_record() -> TestResult {
    let Some(cluster) = cluster()? else {
        return Ok(());
    };
    let url = cluster.url(
        "localhost",
        &format!("sslmode=verify-full&{}", root(&cluster.pki.ca)),
    );
    let (_dir, store) = open(&url).await?;
    let store = store?;
    store.store("games", "tls", &game("tls", 7)).await?;
    assert_eq!(
        store.retrieve::<Game>("games", "tls").await?,
        Some(game("tls", 7))
    );
    store.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_ca_fails_verify_full_verify_ca_and_require_with_a_root() -> TestResult {
    let Some(cluster) = cluster()? else {
        return Ok(());
    };
    for mode in ["verify-full", "verify-ca", "require"] {
        let params = format!("sslmode={mode}&{}", root(&cluster.pki.wrong_ca));
        let (_dir, result) = open(&cluster.url("localhost", &params)).await?;
        let (failure, text) = tls_failure(result);
        assert!(
            matches!(failure, TlsFailure::UntrustedCertificate { .. }),
            "{mode}: {failure:?}"
        );
        assert_eq!(
            text,
            "TLS connection to PostgreSQL at localhost failed: certificate verification \
             failed: the certificate is not signed by a trusted CA (unknown issuer)",
            "{mode}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_fails_on_a_host_name_mismatch_and_verify_ca_does_not_check_it() -> TestResult {
    let Some(cluster) = cluster()? else {
        return Ok(());
    };
    // The server's certificate names `localhost` only; 127.0.0.1 is the same server.
    let params = |mode: &str| format!("sslmode={mode}&{}", root(&cluster.pki.ca));
    let (_dir, result) = open(&cluster.url("127.0.0.1", &params("verify-full"))).await?;
    let (failure, text) = tls_failure(result);
    assert_eq!(
        failure,
        TlsFailure::HostnameMismatch {
            host: "127.0.0.1".into()
        }
    );
    assert!(text.contains("not valid for host \"127.0.0.1\""), "{text}");

    let (_dir, store) = open(&cluster.url("127.0.0.1", &params("verify-ca"))).await?;
    store?.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_without_a_root_certificate_encrypts_without_verifying() -> TestResult {
    let Some(cluster) = cluster()? else {
        return Ok(());
    };
    // No root certificate: the test CA is unknown, yet the connection (TLS, since the server
    // accepts nothing else) is made — libpq's `require`. So is the default, `prefer`.
    for params in [
        "sslmode=require",
        "sslmode=prefer",
        "application_name=default-mode",
    ] {
        let (_dir, store) = open(&cluster.url("127.0.0.1", params)).await?;
        store.map_err(|e| format!("{params}: {e}"))?.close().await?;
    }
    // Without a root certificate, `verify-full` uses the built-in roots, which do not know
    // the test CA.
    let (_dir, result) = open(&cluster.url("localhost", "sslmode=verify-full")).await?;
    let (failure, _) = tls_failure(result);
    assert!(
        matches!(failure, TlsFailure::UntrustedCertificate { .. }),
        "{failure:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_text_is_refused_by_a_tls_only_server() -> TestResult {
    let Some(cluster) = cluster()? else {
        return Ok(());
    };
    let (_dir, result) = open(&cluster.url("127.0.0.1", "sslmode=disable")).await?;
    let err = match result {
        Ok(_) => panic!("a plain-text connection was accepted by a hostssl-only server"),
        Err(e) => e,
    };
    assert!(matches!(err, StorageError::Database { .. }), "{err:?}");
    let mut chain = Vec::new();
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    while let Some(e) = next {
        chain.push(e.to_string());
        next = e.source();
    }
    let chain = chain.join(": ");
    assert!(chain.contains("no pg_hba.conf entry"), "{chain}");
    assert!(chain.contains("no encryption"), "{chain}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_root_certificate_fails_the_open_without_the_password() -> TestResult {
    // No server needed: the file is read before anything connects.
    let (_dir, result) = open(
        "postgres://app:s3cret@127.0.0.1:1/db?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
    )
    .await?;
    let (failure, text) = tls_failure(result);
    assert!(
        matches!(failure, TlsFailure::RootCertificate { .. }),
        "{failure:?}"
    );
    assert!(text.contains("/nonexistent/ca.pem"), "{text}");
    assert!(!text.contains("s3cret"), "{text}");
    Ok(())
}

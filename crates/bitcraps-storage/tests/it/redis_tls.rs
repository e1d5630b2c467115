//! `rediss://`: the Redis tier over TLS, against a private `redis-server` that speaks only
//! TLS (`--port 0 --tls-port N`) with a certificate of a test CA. With the CA in
//! `redis.tls_ca_file` two nodes connect, fill L2 and invalidate each other over TLS; with a
//! wrong CA, a certificate for another name, or a server without TLS, the tier never
//! connects (reads fall back to the database, as for any Redis failure) and the statistics
//! name the failure. Redis has no `verify-ca`: `rediss://` always verifies the name.
//!
//! Needs `redis-server` built with TLS (Debian's is); skips without it unless
//! `BITCRAPS_TEST_REQUIRE_SERVICES` is set.
#![cfg(feature = "redis")]

use crate::common;

use std::path::Path;
use std::time::Duration;

use common::nodes::{Nodes, TestResult, remote_stats, two_nodes_with, wait_connected, wait_until};
use common::tls::{Pki, TlsRedis, redis_server_available};
use common::{Game, game};

fn nodes(url: &str, test: &str, ca: &Path) -> TestResult<Nodes> {
    two_nodes_with(
        url,
        test,
        |b| b,
        |config, _| {
            config.redis.tls_ca_file = Some(ca.to_owned());
            config.redis.timeout = Duration::from_secs(1);
        },
    )
}

/// Waits until node A's tier reports a failure, and returns it.
async fn failure_of(nodes: &Nodes) -> TestResult<String> {
    wait_until("the Redis tier reports a connection failure", || async {
        Ok(remote_stats(&nodes.a).await?.last_error.is_some())
    })
    .await?;
    let stats = remote_stats(&nodes.a).await?;
    assert!(!stats.connected, "{stats:?}");
    // The store works regardless, from the database.
    nodes.a.store("games", "g", &game("g", 1)).await?;
    assert_eq!(
        nodes.b.retrieve::<Game>("games", "g").await?,
        Some(game("g", 1))
    );
    assert_eq!(remote_stats(&nodes.b).await?.fills, 0);
    Ok(stats.last_error.unwrap_or_default())
}

fn available() -> bool {
    if redis_server_available() {
        true
    } else {
        common::skip("redis-server is not on PATH");
        false
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_with_the_right_ca_caches_and_invalidates_over_tls() -> TestResult {
    if !available() {
        return Ok(());
    }
    let pki = Pki::new()?;
    let server = TlsRedis::start(&pki.server_cert, &pki.server_key, &pki.ca)?;
    let nodes = nodes(&server.url("127.0.0.1"), "tls_ok", &pki.ca)?;
    wait_connected(&nodes.a).await?;
    wait_connected(&nodes.b).await?;
    nodes.a.store("games", "g", &game("g", 1)).await?;
    assert_eq!(
        nodes.b.retrieve::<Game>("games", "g").await?,
        Some(game("g", 1))
    );
    let b = remote_stats(&nodes.b).await?;
    assert_eq!(
        (b.fills, b.errors, b.last_error),
        (1, 0, None),
        "B filled L2 over TLS"
    );
    // A's write reaches B's in-process cache as an invalidation over TLS pub/sub (the
    // first write's may have arrived already: count from here).
    let before = remote_stats(&nodes.b).await?.invalidations_received;
    nodes.a.store("games", "g", &game("g", 2)).await?;
    wait_until("B received A's invalidation", || async {
        Ok(remote_stats(&nodes.b).await?.invalidations_received > before)
    })
    .await?;
    assert_eq!(
        nodes.b.retrieve::<Game>("games", "g").await?,
        Some(game("g", 2))
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_ca_never_connects_and_says_why() -> TestResult {
    if !available() {
        return Ok(());
    }
    let pki = Pki::new()?;
    let server = TlsRedis::start(&pki.server_cert, &pki.server_key, &pki.ca)?;
    let url = server
        .url("127.0.0.1")
        .replace("rediss://", "rediss://:s3cret@");
    let nodes = nodes(&url, "tls_wrong_ca", &pki.wrong_ca)?;
    let error = failure_of(&nodes).await?;
    assert_eq!(
        error,
        format!(
            "TLS connection to Redis at rediss://:***@127.0.0.1:{} failed: certificate \
             verification failed: the certificate is not signed by a trusted CA (unknown issuer)",
            server.port
        )
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_for_another_name_never_connects() -> TestResult {
    if !available() {
        return Ok(());
    }
    let pki = Pki::new()?;
    // Signed by the right CA, for `localhost` only; the node connects to 127.0.0.1.
    let server = TlsRedis::start(&pki.localhost_cert, &pki.localhost_key, &pki.ca)?;
    let nodes = nodes(&server.url("127.0.0.1"), "tls_name", &pki.ca)?;
    let error = failure_of(&nodes).await?;
    assert!(
        error.ends_with(
            "certificate verification failed: the certificate is not valid for host \"127.0.0.1\""
        ),
        "{error}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_to_a_plain_text_server_is_not_downgraded() -> TestResult {
    if !available() {
        return Ok(());
    }
    // A private plain-text server: `rediss://` must fail the handshake, never speak plain.
    let pki = Pki::new()?;
    let port = common::tls::free_port()?;
    let dir = tempfile::tempdir()?;
    let mut child = std::process::Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    struct Kill<'a>(&'a mut std::process::Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _guard = Kill(&mut child);
    wait_until("the plain redis-server listens", || async {
        Ok(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok())
    })
    .await?;
    let nodes = nodes(&format!("rediss://127.0.0.1:{port}"), "tls_plain", &pki.ca)?;
    // The server takes the ClientHello for the start of a command and waits for its end, so
    // the handshake times out (`failure_of` checks that the tier stays disconnected).
    let error = failure_of(&nodes).await?;
    assert_eq!(
        error,
        format!(
            "cannot connect to Redis at rediss://127.0.0.1:{port}: connecting for pub/sub timed out"
        )
    );
    Ok(())
}

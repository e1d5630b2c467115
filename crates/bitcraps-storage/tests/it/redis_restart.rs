//! Redis killed (SIGKILL) and restarted under two running nodes: no error reaches a caller,
//! node A keeps writing through the outage, and once the tier reports connected again node B
//! reads A's latest values (its L1 was flushed on resubscription; no stale read).
//!
//! Starts its own `redis-server` on a free loopback port (skips when the binary is absent),
//! so it needs no `BITCRAPS_TEST_REDIS_URL`.
#![cfg(feature = "redis")]

use crate::common;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::nodes::{
    Nodes, TestResult, remote_stats, two_nodes_with, two_pg_nodes, wait_connected, wait_until,
};
use common::{Game, game};

/// A `redis-server` child, killed on drop so a failing test never leaks it.
struct Server {
    child: Option<Child>,
    port: u16,
}

impl Server {
    fn start(port: u16) -> TestResult<Self> {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let server = Server {
            child: Some(child),
            port,
        };
        server.wait_ready()?;
        Ok(server)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn wait_ready(&self) -> TestResult {
        let started = Instant::now();
        let client = redis::Client::open(self.url())?;
        loop {
            let pong = client
                .get_connection_with_timeout(Duration::from_millis(200))
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
            if pong.is_ok() {
                return Ok(());
            }
            if started.elapsed() > Duration::from_secs(30) {
                return Err("redis-server did not start within 30 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, and wait for the process to be gone.
    fn kill(&mut self) -> TestResult {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

fn free_port() -> TestResult<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

fn redis_server_available() -> bool {
    Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_survive_a_redis_restart_without_stale_reads() -> TestResult {
    if !redis_server_available() {
        common::skip("redis-server is not on PATH");
        return Ok(());
    }
    let port = free_port()?;
    let server = Server::start(port)?;
    let nodes = two_nodes_with(&server.url(), "restart", |b| b, short_timeout)?;
    survive_a_restart(server, nodes).await
}

/// The same with two real PostgreSQL nodes (each its own pool, writer and subscription).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_nodes_survive_a_redis_restart_without_stale_reads() -> TestResult {
    if !redis_server_available() {
        common::skip("redis-server is not on PATH");
        return Ok(());
    }
    let port = free_port()?;
    let server = Server::start(port)?;
    let Some(nodes) = two_pg_nodes(&server.url(), "pg_restart", short_timeout).await? else {
        return Ok(());
    };
    survive_a_restart(server, nodes).await
}

fn short_timeout(config: &mut bitcraps_storage::StorageConfig, _: bool) {
    config.redis.timeout = Duration::from_millis(100);
}

async fn survive_a_restart(mut server: Server, nodes: Nodes) -> TestResult {
    let port = server.port;
    let (a, b) = (&nodes.a, &nodes.b);
    wait_connected(a).await?;
    wait_connected(b).await?;
    let keys = ["k0", "k1", "k2"];
    for key in keys {
        a.store("games", key, &game(key, 0)).await?;
        // B caches every key in L1 (and L2).
        assert_eq!(b.retrieve::<Game>("games", key).await?, Some(game(key, 0)));
        assert_eq!(b.retrieve::<Game>("games", key).await?, Some(game(key, 0)));
    }

    server.kill()?;
    // Writes and reads go on during the outage; none fails.
    let mut round = 0u32;
    for _ in 0..30 {
        round += 1;
        for key in keys {
            a.store("games", key, &game(key, round)).await?;
            assert!(b.retrieve::<Game>("games", key).await?.is_some());
            assert!(a.retrieve::<Game>("games", key).await?.is_some());
        }
    }
    wait_until("B notices the outage", || async {
        Ok(!remote_stats(b).await?.connected)
    })
    .await?;
    // The last writes of the outage, after B stopped trusting its L1.
    round += 1;
    for key in keys {
        a.store("games", key, &game(key, round)).await?;
        assert_eq!(
            b.retrieve::<Game>("games", key).await?,
            Some(game(key, round)),
            "an untrusted L1 is bypassed during the outage"
        );
    }

    let _restarted = Server::start(port)?;
    wait_until("both nodes resubscribed", || async {
        let (ra, rb) = (remote_stats(a).await?, remote_stats(b).await?);
        Ok(ra.connected && rb.connected && ra.reconnects >= 1 && rb.reconnects >= 1)
    })
    .await?;
    for key in keys {
        assert_eq!(
            b.retrieve::<Game>("games", key).await?,
            Some(game(key, round)),
            "B reads A's latest value after the restart"
        );
    }
    wait_until("A delivered its pending invalidations", || async {
        Ok(remote_stats(a).await?.pending_invalidations == 0)
    })
    .await?;
    // The tier works again: a new write on A reaches B's caches.
    a.store("games", "k0", &game("k0", 999)).await?;
    wait_until("B reads the post-restart write", || async {
        Ok(b.retrieve::<Game>("games", "k0").await? == Some(game("k0", 999)))
    })
    .await?;
    let (ra, rb) = (remote_stats(a).await?, remote_stats(b).await?);
    assert!(ra.errors > 0 && rb.errors > 0, "{ra:?} {rb:?}");
    assert!(
        rb.l1_flushes >= 2,
        "flushed on first subscription and on resubscription"
    );
    assert_eq!(a.statistics().await?.errors, 0);
    assert_eq!(b.statistics().await?.errors, 0);
    Ok(())
}

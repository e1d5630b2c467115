//! The Prometheus exporter of `stats --format prometheus`, `serve-metrics` and
//! `demo --metrics-addr`: the `metrics-exporter-prometheus` recorder, installed for the
//! process, and a minimal HTTP endpoint serving its text exposition at `/metrics`.
//!
//! The endpoint is ours rather than the exporter crate's listener so that it can bind port 0
//! and report the address it got (tests and supervisors read it from stderr), refresh the
//! store's gauges on every scrape, and keep hyper out of the build. It answers `GET /metrics`
//! and nothing else, reads at most one request head of 8 KiB per connection, and gives each
//! connection 5 seconds.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use bitcraps_storage::PersistentStorageManager;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Bucket bounds of the operation latency histogram, in seconds (100 µs to 10 s).
const LATENCY_BUCKETS: &[f64] = &[
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];
/// Bucket bounds of the group commit size histogram, in requests.
const GROUP_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

/// The largest request head read from a client.
const MAX_REQUEST: usize = 8 * 1024;
/// How long a connection may take to send its request and read the answer.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(5);

/// Installs the Prometheus recorder for this process (histograms with buckets, so
/// `histogram_quantile` works) and registers the library's metric descriptions.
pub fn install() -> Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("bitcraps_storage_operation_duration_seconds".into()),
            LATENCY_BUCKETS,
        )
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full("bitcraps_storage_group_commit_requests".into()),
                GROUP_BUCKETS,
            )
        })
        .context("configuring the Prometheus exporter")?
        .install_recorder()
        .context("installing the Prometheus exporter")?;
    bitcraps_storage::describe_metrics();
    Ok(handle)
}

/// The text exposition, after refreshing the store's gauges.
pub async fn render(
    handle: &PrometheusHandle,
    storage: &PersistentStorageManager,
) -> Result<String> {
    storage
        .statistics()
        .await
        .context("collecting statistics")?;
    handle.run_upkeep();
    Ok(handle.render())
}

/// Binds `addr` and serves `/metrics` until the returned task is aborted; reports the bound
/// address on stderr (a note: not with `--quiet`, so give a fixed port then).
pub async fn serve(
    addr: SocketAddr,
    handle: PrometheusHandle,
    storage: PersistentStorageManager,
) -> Result<tokio::task::JoinHandle<()>> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let bound = listener.local_addr().context("reading the bound address")?;
    crate::notes::note!("serving metrics on http://{bound}/metrics");
    Ok(tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (handle, storage) = (handle.clone(), storage.clone());
            tokio::spawn(async move {
                let answered =
                    tokio::time::timeout(CONNECTION_TIMEOUT, answer(stream, &handle, &storage));
                if let Ok(Err(e)) = answered.await {
                    tracing::debug!(error = %e, "a /metrics connection failed");
                }
            });
        }
    }))
}

/// Reads one request head and answers it.
async fn answer(
    mut stream: TcpStream,
    handle: &PrometheusHandle,
    storage: &PersistentStorageManager,
) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_REQUEST {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(buf.get(..n).unwrap_or_default());
    }
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let mut parts = line.split(|b| *b == b' ');
    let (method, path) = (parts.next(), parts.next());
    let (status, body) = match (method, path) {
        (Some(b"GET"), Some(b"/metrics")) => match render(handle, storage).await {
            Ok(text) => ("200 OK", text),
            Err(e) => ("503 Service Unavailable", format!("{e:#}\n")),
        },
        (Some(b"GET"), _) => ("404 Not Found", "only /metrics is served\n".to_owned()),
        _ => ("405 Method Not Allowed", "only GET is served\n".to_owned()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

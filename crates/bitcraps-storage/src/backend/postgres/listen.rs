//! Live changes from every node: each write transaction that logs changes sends
//! `NOTIFY` on the store's channel (delivered at its commit, `feed.rs`), and one listening
//! connection per backend wakes this process's watches when a notification arrives. A
//! dedicated connection (not from the pool) on the backend's runtime: notifications reach a
//! client only through its connection's message stream, which the pool's connections
//! discard. Lost connections are reopened after a pause; meanwhile watches still poll
//! (`maintenance.change_poll_interval`), so a notification is a shortcut, never the only
//! path.

use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::AsyncMessage;

use super::tls;
use crate::error::{Result, StorageError};

/// Pause before the listener connects again after losing its connection.
const RECONNECT_PAUSE: Duration = Duration::from_secs(1);

/// The channel of the store in `schema` (quoted as an identifier where it is listened on).
pub(super) fn channel(schema: &str) -> String {
    format!("bitcraps_changes.{schema}")
}

/// Listens on `channel` through `url` until the task is aborted, calling `wake` on every
/// notification. What commits while it is disconnected is found by the watches' polling.
pub(super) async fn listen(
    url: String,
    timeout: Duration,
    channel: String,
    wake: Arc<dyn Fn() + Send + Sync>,
) {
    loop {
        if let Err(e) = listen_once(&url, timeout, &channel, &wake).await {
            tracing::debug!(error = %e, "the change listener lost its connection");
        }
        tokio::time::sleep(RECONNECT_PAUSE).await;
    }
}

async fn listen_once(
    url: &str,
    timeout: Duration,
    channel: &str,
    wake: &Arc<dyn Fn() + Send + Sync>,
) -> Result<()> {
    let (mut config, tls) = tls::transport(url)?;
    config.connect_timeout(timeout);
    config.application_name("bitcraps-storage change listener");
    let (client, mut connection) = config
        .connect(tls)
        .await
        .map_err(|e| StorageError::database("connecting the change listener", e))?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(_))) => {
                    if tx.send(()).is_err() {
                        return;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return,
            }
        }
    });
    let quoted = channel.replace('"', "\"\"");
    let listened = client
        .batch_execute(&format!("LISTEN \"{quoted}\""))
        .await
        .map_err(|e| StorageError::database("listening for changes", e));
    if let Err(e) = listened {
        driver.abort();
        return Err(e);
    }
    // A commit between the watch's last read and this LISTEN taking effect sent its
    // notification to nobody: read the log once now. (pg_two_node_feed's first store could
    // land in that window on a loaded machine, and the watch then waited for its hourly poll.)
    wake();
    while rx.recv().await.is_some() {
        wake();
    }
    drop(client);
    Err(StorageError::database(
        "listening for changes",
        "the connection closed",
    ))
}

//! The subscriber: keeps this node's in-process cache (L1) coherent with the other nodes'
//! writes.
//!
//! On every (re)subscription it first delivers this node's pending invalidations, then flushes
//! L1 entirely (every stripe generation bumped, every entry dropped — messages published while
//! it was not subscribed are lost), and only then marks L1 trusted. The moment the
//! subscription is lost (the stream ends, or a keepalive ping fails) L1 becomes untrusted:
//! neither read nor filled, reads go to L2 and the database. So a lost message can never leave
//! a stale L1 entry behind. Reconnects back off exponentially.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{PubSubSink, PubSubStream};

use super::health::Backoff;
use super::protocol::Message;
use super::stats::RemoteCounters;
use super::tier::Core;

/// A quiet subscription is pinged this often, to notice a half-open connection.
const KEEPALIVE: Duration = Duration::from_secs(1);

/// Runs until the tier's runtime shuts down; signals `subscribed` once, when the cache is
/// first trusted.
pub(crate) async fn run(core: Arc<Core>, subscribed: std::sync::mpsc::SyncSender<()>) {
    let mut backoff = Backoff::default();
    let mut subscribed_before = false;
    loop {
        match subscribe(&core).await {
            Ok((sink, stream)) => {
                if subscribed_before {
                    RemoteCounters::one(&core.counters.reconnects);
                }
                subscribed_before = true;
                backoff.reset();
                core.flush_pending().await;
                core.cache.invalidate_all();
                RemoteCounters::one(&core.counters.l1_flushes);
                core.cache.set_trusted(true);
                core.counters.connected.store(true, Ordering::Release);
                let _ = subscribed.try_send(());
                tracing::debug!("redis invalidation subscription up; L1 flushed and trusted");
                listen(&core, sink, stream).await;
                core.cache.set_trusted(false);
                core.counters.connected.store(false, Ordering::Release);
                tracing::warn!("redis invalidation subscription lost; L1 bypassed until back");
            }
            Err(e) => {
                RemoteCounters::one(&core.counters.errors);
                tracing::debug!(error = %e, "cannot subscribe to redis invalidations");
            }
        }
        tokio::time::sleep(backoff.next_pause()).await;
    }
}

async fn subscribe(core: &Core) -> redis::RedisResult<(PubSubSink, PubSubStream)> {
    let mut pubsub = core.conn.pubsub().await?;
    match tokio::time::timeout(core.conn.timeout(), pubsub.subscribe(core.keys.channel())).await {
        Ok(result) => result?,
        Err(_) => {
            return Err(
                std::io::Error::new(std::io::ErrorKind::TimedOut, "subscribing timed out").into(),
            );
        }
    }
    Ok(pubsub.split())
}

/// Applies messages until the subscription is lost.
async fn listen(core: &Core, mut sink: PubSubSink, mut stream: PubSubStream) {
    loop {
        tokio::select! {
            message = stream.next() => {
                let Some(message) = message else { return };
                apply(core, message.get_payload_bytes());
            }
            () = tokio::time::sleep(KEEPALIVE) => {
                let ping = tokio::time::timeout(
                    core.conn.timeout(),
                    sink.ping::<redis::Value>(),
                )
                .await;
                if !matches!(ping, Ok(Ok(_))) {
                    return;
                }
            }
        }
    }
}

/// Invalidates another node's keys in L1; ignores this node's own messages, and drops (and
/// counts) anything that is not an authentic message of this store. A flood of forged
/// messages thus costs one MAC check each and evicts nothing. (Should a flood outrun this
/// loop, Redis disconnects the subscriber at its output-buffer limit; L1 is then untrusted
/// and flushed on resubscription — database reads, never stale ones.)
fn apply(core: &Core, payload: &[u8]) {
    let Some(message) = Message::decode(&core.auth, payload) else {
        RemoteCounters::one(&core.counters.rejected_messages);
        if core.message_log.allow() {
            tracing::warn!(
                "dropped an unauthenticated invalidation message (logged once a minute; \
                 counted in rejected_messages)"
            );
        }
        return;
    };
    if message.origin == core.node_id {
        return;
    }
    for key in &message.keys {
        core.cache.invalidate(key);
    }
    RemoteCounters::add(&core.counters.invalidations_received, message.keys.len());
}

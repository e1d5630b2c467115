//! Statistics of the Redis tier: live counters and the [`RemoteCacheStatistics`] snapshot.

#[cfg(feature = "redis")]
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// What the Redis tier (the shared L2 cache and the invalidation channel) reports. Present in
/// [`StorageStatistics::remote_cache`](crate::StorageStatistics::remote_cache) when
/// `redis.url` is set.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct RemoteCacheStatistics {
    /// The invalidation subscription is up (and so the in-process cache is trusted).
    pub connected: bool,
    /// L2 lookups that returned a verified value.
    pub hits: u64,
    /// L2 lookups that returned nothing — no entry, a damaged one, Redis unavailable, or the
    /// key's invalidation still pending — so the database was read.
    pub misses: u64,
    /// Values read from the database and installed in L2.
    pub fills: u64,
    /// Fills refused because a write (or a Redis restart) happened since the lookup.
    pub raced_fills: u64,
    /// Redis operations that failed or timed out; each was treated as a miss (reads) or
    /// queued for retry (invalidations). Never returned to a caller.
    pub errors: u64,
    /// L2 entries that were not in the entry format (damaged, or written by something else);
    /// each was deleted and counted as a miss.
    pub corrupt_entries: u64,
    /// L2 entries in the format that were not served: their MAC did not verify (forged, or
    /// copied from another key), they were filled under an older generation of the key, or
    /// they were older than `redis.cache_ttl` (replayed). Each was deleted and counted as a
    /// miss, and the database was read.
    pub rejected_entries: u64,
    /// Invalidation messages dropped because they were not authentic messages of this store
    /// (no or a wrong MAC, or not a message at all).
    pub rejected_messages: u64,
    /// The Redis namespace (key prefix and channel) of this store.
    pub namespace: String,
    /// Values this store holds in Redis, counted when the statistics were taken (a `SCAN` of
    /// the namespace; approximate while Redis rehashes). `None` when Redis could not be
    /// counted in time.
    pub entries: Option<u64>,
    /// Bytes of those values (entries as stored: compressed document, MAC and header).
    pub bytes: Option<u64>,
    /// Keys this node invalidated in L2 and announced to the other nodes.
    pub invalidations_sent: u64,
    /// Keys other nodes announced, invalidated in this node's in-process cache.
    pub invalidations_received: u64,
    /// Keys whose invalidation could not be delivered yet (Redis unreachable); retried.
    pub pending_invalidations: u64,
    /// Times the invalidation subscription was re-established after a loss.
    pub reconnects: u64,
    /// Times the whole in-process cache was flushed (on every (re)subscription).
    pub l1_flushes: u64,
    /// Why the last attempt to connect to Redis failed, without any password; `None` once a
    /// connection succeeds. A TLS failure names its cause, for example
    /// `TLS connection to Redis at rediss://cache:6380 failed: certificate verification
    /// failed: the certificate is not signed by a trusted CA (unknown issuer)`.
    pub last_error: Option<String>,
}

/// The live counters behind [`RemoteCacheStatistics`].
#[cfg(feature = "redis")]
#[derive(Debug, Default)]
pub(crate) struct RemoteCounters {
    pub(crate) connected: AtomicBool,
    pub(crate) hits: AtomicU64,
    pub(crate) misses: AtomicU64,
    pub(crate) fills: AtomicU64,
    pub(crate) raced_fills: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) corrupt_entries: AtomicU64,
    pub(crate) rejected_entries: AtomicU64,
    pub(crate) rejected_messages: AtomicU64,
    pub(crate) invalidations_sent: AtomicU64,
    pub(crate) invalidations_received: AtomicU64,
    pub(crate) reconnects: AtomicU64,
    pub(crate) l1_flushes: AtomicU64,
}

#[cfg(feature = "redis")]
impl RemoteCounters {
    pub(crate) fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    pub(crate) fn one(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// A snapshot; `pending` is the current size of the pending-invalidation set.
    pub(crate) fn snapshot(&self, pending: usize, namespace: &str) -> RemoteCacheStatistics {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        RemoteCacheStatistics {
            connected: self.connected.load(Ordering::Acquire),
            hits: get(&self.hits),
            misses: get(&self.misses),
            fills: get(&self.fills),
            raced_fills: get(&self.raced_fills),
            errors: get(&self.errors),
            corrupt_entries: get(&self.corrupt_entries),
            rejected_entries: get(&self.rejected_entries),
            rejected_messages: get(&self.rejected_messages),
            namespace: namespace.to_owned(),
            entries: None,
            bytes: None,
            invalidations_sent: get(&self.invalidations_sent),
            invalidations_received: get(&self.invalidations_received),
            pending_invalidations: u64::try_from(pending).unwrap_or(u64::MAX),
            reconnects: get(&self.reconnects),
            l1_flushes: get(&self.l1_flushes),
            last_error: None,
        }
    }
}

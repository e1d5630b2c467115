//! The Redis tier (feature `redis`): a shared L2 cache between the in-process cache (L1) and
//! the database, and cross-node L1 invalidation over pub/sub.
//!
//! Reads go L1 → L2 → database (read-through). Writes never install values in L2: after the
//! commit, before acknowledging, the writer bumps each key's generation, deletes its L2 value
//! and publishes the keys; readers fill L2 only if the generation they saw before reading the
//! database is unchanged. See `protocol.rs` for the keys and scripts, `subscriber.rs` for L1
//! coherence, `health.rs` for the circuit breaker. A Redis failure is never an error for the
//! caller: reads fall back to the database, invalidations are retried.
//!
//! Guarantees and limits:
//! - Once `store`/`delete` returns, no node reads the old value from L2 (the writer invalidated
//!   it before acknowledging) — unless Redis could not be reached within `redis.timeout`; then
//!   the keys stay in a pending set, retried every 100 ms (and on resubscription), this node
//!   bypasses L2 for them, and other nodes may read the old value from L2 until the retry
//!   succeeds.
//! - Another node's L1 drops the key when the message arrives (milliseconds). Messages missed
//!   while a subscription was down cannot leave stale L1 entries: L1 is bypassed while down
//!   and flushed on every (re)subscription. A writer partitioned from Redis while the others
//!   are not (or one that crashed with invalidations pending) delays their invalidation until
//!   it reconnects; meanwhile they may serve the old value for at most
//!   `max(redis.l1_max_age, redis.cache_ttl)` after it was read from the database (both 10
//!   min by default): an L1 entry lives at most `l1_max_age`, an L2 entry at most
//!   `cache_ttl`, and an L1 entry filled from L2 no longer than that L2 entry would be
//!   served. (A shorter `l1_max_age` alone does not tighten this: an expired L1 entry is
//!   refilled from L2. It did cost every hot entry a reload each `l1_max_age`, so the default
//!   is no longer 30 s; see BENCHMARKS.md.)
//! - Redis is untrusted (`auth.rs`): entries and messages carry MACs keyed by a secret from
//!   the database; what fails is a miss or dropped, never served.
//! - The namespace derives from the store id in the database (one per store, whatever the
//!   URL text). A process without a Redis tier cannot write a store that runs with one
//!   (`StorageError::RedisTierRequired`).
//! - A Redis *with persistence* that restarts may bring back values whose invalidations are
//!   still pending on some node (delivered when it reconnects) or were lost with a crashed
//!   node (gone after `redis.cache_ttl`); run the L2 Redis without persistence
//!   (`--save "" --appendonly no`) for the strict guarantee. Redis Cluster is not supported.
//! - Documents over 1 MiB are not put in L2. Negative results (absent keys) are not cached.
//!
//! Without the feature, [`RemoteTier`] is an uninhabited stand-in so the call sites need no
//! `cfg`.

#[cfg(feature = "redis")]
mod auth;
#[cfg(feature = "redis")]
mod census;
#[cfg(feature = "redis")]
mod client;
#[cfg(not(feature = "redis"))]
mod disabled;
#[cfg(feature = "redis")]
mod health;
#[cfg(feature = "redis")]
mod protocol;
mod stats;
#[cfg(feature = "redis")]
mod subscriber;
#[cfg(feature = "redis")]
mod tier;
#[cfg(feature = "redis")]
mod tls;

use std::sync::Arc;

#[cfg(not(feature = "redis"))]
pub(crate) use disabled::RemoteTier;
pub use stats::RemoteCacheStatistics;
#[cfg(feature = "redis")]
pub(crate) use tier::RemoteTier;

/// What an L2 lookup found.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) enum Lookup {
    /// A verified document, when its record expires, and until when (milliseconds since the
    /// epoch) a copy may be served from the in-process cache: as long as the L2 entry itself
    /// would be served (its fill time plus `redis.cache_ttl`), so refilling L1 from L2 never
    /// extends how long a value missed by an invalidation can be served.
    Hit(Arc<[u8]>, Option<i64>, i64),
    /// Nothing; fill with this observation after reading the database.
    Miss(Observed),
    /// Redis is unavailable (or the key has an undelivered invalidation): read the database
    /// and do not fill.
    Unavailable,
}

/// The epoch and generation a reader saw before reading the database.
pub(crate) struct Observed {
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) epoch: String,
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) generation: String,
}

//! [`RemoteTier`]: the Redis tier as the manager and the writer thread see it. Every method
//! is infallible from the caller's point of view: a Redis failure is a miss (reads) or a
//! pending invalidation retried later (writes), counted in the statistics, never an error.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::{RedisResult, Script};

use super::auth::{self, Authenticator, LogLimit};
use super::census;
use super::client::{Connection, PrivateRuntime};
use super::health::{Breaker, MIN_BACKOFF};
use super::protocol::{self, EntryCheck, GENERATION_TTL_FACTOR, Keys, Message};
use super::stats::{RemoteCacheStatistics, RemoteCounters};
use super::{Lookup, Observed, subscriber};
use crate::backend::StoreIdentity;
use crate::cache::ValueCache;
use crate::config::StorageConfig;
use crate::error::Result;

/// How often the pending-invalidation set is retried while it is not empty.
const RETRY_INTERVAL: Duration = Duration::from_millis(100);

/// State shared by the tier's handle and its tasks.
pub(crate) struct Core {
    pub(crate) conn: Connection,
    pub(crate) keys: Keys,
    namespace: String,
    pub(crate) auth: Authenticator,
    /// Rejected entries and messages are logged at most once per interval.
    pub(crate) entry_log: LogLimit,
    pub(crate) message_log: LogLimit,
    pub(crate) node_id: String,
    pub(crate) cache: Arc<ValueCache>,
    pub(crate) counters: RemoteCounters,
    pub(crate) breaker: Breaker,
    value_ttl_ms: u64,
    generation_ttl_ms: u64,
    pending: Mutex<BTreeSet<String>>,
    lookup: Script,
    fill: Script,
    invalidate: Script,
}

/// The Redis tier of one store (one node).
pub(crate) struct RemoteTier {
    runtime: PrivateRuntime,
    core: Arc<Core>,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl RemoteTier {
    /// Starts the tier: the private runtime, the subscriber and the retry task. Waits up to
    /// `redis.timeout` for the first subscription, so a store opened next to a healthy Redis
    /// uses its in-process cache from the first read; past that it opens anyway, with the
    /// in-process cache untrusted until the subscription succeeds.
    ///
    /// The namespace is `redis.namespace`, or derived from the store id; the MAC key from the
    /// store's secret (both from `identity`, read from the database).
    pub(crate) fn start(
        config: &StorageConfig,
        url: &str,
        cache: Arc<ValueCache>,
        identity: &StoreIdentity,
    ) -> Result<Self> {
        let namespace = config
            .redis
            .namespace
            .clone()
            .unwrap_or_else(|| protocol::namespace_for(&identity.store_id));
        let conn = Connection::new(
            url,
            config.redis.timeout,
            config.redis.tls_ca_file.as_deref(),
        )?;
        let runtime = PrivateRuntime::new("redis", 1)?;
        cache.set_trusted(false);
        let value_ttl_ms = millis(config.redis.cache_ttl);
        let core = Arc::new(Core {
            conn,
            keys: Keys::new(&namespace),
            auth: Authenticator::new(&identity.secret, &namespace),
            namespace,
            entry_log: LogLimit::default(),
            message_log: LogLimit::default(),
            node_id: protocol::unique_token(),
            cache,
            counters: RemoteCounters::default(),
            breaker: Breaker::default(),
            value_ttl_ms,
            generation_ttl_ms: value_ttl_ms.saturating_mul(u64::from(GENERATION_TTL_FACTOR)),
            pending: Mutex::new(BTreeSet::new()),
            lookup: Script::new(protocol::LOOKUP),
            fill: Script::new(protocol::FILL),
            invalidate: Script::new(protocol::INVALIDATE),
        });
        let (subscribed, first_subscription) = std::sync::mpsc::sync_channel(1);
        runtime.spawn(subscriber::run(Arc::clone(&core), subscribed));
        runtime.spawn(retry_pending(Arc::downgrade(&core)));
        if first_subscription
            .recv_timeout(config.redis.timeout)
            .is_err()
        {
            tracing::warn!("redis is not reachable yet; serving from the database meanwhile");
        }
        Ok(RemoteTier { runtime, core })
    }

    /// Looks `cache_key` up in L2. Any failure is a miss without a fill.
    pub(crate) async fn lookup(&self, cache_key: &str) -> Lookup {
        let core = &self.core;
        let lookup = if core.is_pending(cache_key) || !core.breaker.allows() {
            Lookup::Unavailable
        } else {
            let task_core = Arc::clone(core);
            let key = cache_key.to_owned();
            let result = self
                .runtime
                .run(
                    async move { task_core.lookup(&key).await },
                    core.conn.timeout(),
                )
                .await;
            core.settle(result).unwrap_or(Lookup::Unavailable)
        };
        let counter = match lookup {
            Lookup::Hit(..) => &core.counters.hits,
            Lookup::Miss(_) | Lookup::Unavailable => &core.counters.misses,
        };
        RemoteCounters::one(counter);
        crate::observe::cache_request(crate::observe::Tier::L2, matches!(lookup, Lookup::Hit(..)));
        lookup
    }

    /// Installs a value read from the database, if nothing changed since `observed`.
    pub(crate) async fn fill(
        &self,
        cache_key: &str,
        observed: Observed,
        raw: &[u8],
        expires_ms: Option<i64>,
    ) {
        let core = &self.core;
        if raw.len() > protocol::MAX_ENTRY_BYTES
            || core.is_pending(cache_key)
            || !core.breaker.allows()
        {
            return;
        }
        let task_core = Arc::clone(core);
        let key = cache_key.to_owned();
        let Some(entry) = protocol::encode_entry(
            &core.auth,
            cache_key,
            &observed.generation,
            auth::now_ms(),
            expires_ms,
            raw,
        ) else {
            return;
        };
        let result = self
            .runtime
            .run(
                async move { task_core.fill(&key, &observed, entry).await },
                core.conn.timeout(),
            )
            .await;
        let counter = match core.settle(result) {
            Some(true) => &core.counters.fills,
            Some(false) => &core.counters.raced_fills,
            None => return,
        };
        RemoteCounters::one(counter);
    }

    /// Called by the writer thread after a commit and before acknowledging it: bumps the
    /// keys' generations, deletes their L2 values and announces them to the other nodes.
    /// Blocks at most `redis.timeout`; on failure the keys are retried in the background.
    pub(crate) fn invalidate_after_commit(&self, mut keys: Vec<String>) {
        if keys.is_empty() {
            return;
        }
        keys.sort_unstable();
        keys.dedup();
        let core = &self.core;
        if !core.breaker.allows() {
            core.add_pending(keys);
            return;
        }
        let task_core = Arc::clone(core);
        let sent = keys.clone();
        let result = self.runtime.run_blocking(
            async move { task_core.invalidate(&sent).await },
            core.deadline_for(keys.len()),
        );
        if core.settle(result).is_none() {
            core.add_pending(keys);
        }
    }

    /// A snapshot of the statistics, with the entries and bytes the namespace holds in Redis
    /// (counted now, within a few `redis.timeout`s, while the tier is connected; `None` when
    /// it is not, or Redis could not be counted in time).
    pub(crate) async fn statistics(&self) -> RemoteCacheStatistics {
        let core = &self.core;
        // Only while the tier is connected: counting must not add connection attempts (and
        // their errors, and their timeouts) to a statistics call while Redis is away.
        let connected = core
            .counters
            .connected
            .load(std::sync::atomic::Ordering::Acquire);
        let census = if connected && core.breaker.allows() {
            let task_core = Arc::clone(core);
            let budget = core.conn.timeout().saturating_mul(4);
            let result = self
                .runtime
                .run(
                    async move { census::count(&task_core.conn, &task_core.keys, budget).await },
                    budget.saturating_mul(2),
                )
                .await;
            core.settle(result).flatten()
        } else {
            None
        };
        let mut statistics = core.counters.snapshot(core.pending_len(), &core.namespace);
        statistics.last_error = core.conn.last_error();
        statistics.entries = census.map(|(entries, _)| entries);
        statistics.bytes = census.map(|(_, bytes)| bytes);
        statistics
    }

    /// Stops the tier's tasks (the store is closing). The in-process cache stays untrusted.
    pub(crate) fn shutdown(&self) {
        self.core.cache.set_trusted(false);
        self.runtime.shutdown();
    }
}

impl Core {
    /// Books the outcome of one Redis operation (`None`: timed out) with the breaker and the
    /// counters; returns the value when it succeeded.
    fn settle<T>(&self, result: Option<RedisResult<T>>) -> Option<T> {
        match result {
            Some(Ok(value)) => {
                self.breaker.success();
                Some(value)
            }
            Some(Err(e)) => {
                tracing::debug!(error = %e, "redis operation failed");
                self.failed();
                None
            }
            None => {
                tracing::debug!("redis operation timed out");
                self.failed();
                None
            }
        }
    }

    fn failed(&self) {
        RemoteCounters::one(&self.counters.errors);
        self.breaker.failure();
        self.conn.reset();
    }

    fn with_pending<T>(&self, f: impl FnOnce(&mut BTreeSet<String>) -> T) -> T {
        match self.pending.lock() {
            Ok(mut g) => f(&mut g),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    fn is_pending(&self, cache_key: &str) -> bool {
        self.with_pending(|p| !p.is_empty() && p.contains(cache_key))
    }

    fn pending_len(&self) -> usize {
        self.with_pending(|p| p.len())
    }

    fn add_pending(&self, keys: Vec<String>) {
        self.with_pending(|p| p.extend(keys));
    }

    async fn lookup(&self, cache_key: &str) -> RedisResult<Lookup> {
        let mut conn = self.conn.get().await?;
        let value_key = self.keys.value(cache_key);
        let (epoch, generation, entry): (String, String, Option<Vec<u8>>) = self
            .lookup
            .key(self.keys.epoch())
            .key(self.keys.generation(cache_key))
            .key(&value_key)
            .arg(protocol::unique_token())
            .arg(self.generation_ttl_ms)
            .invoke_async(&mut conn)
            .await?;
        if let Some(entry) = entry {
            let check = protocol::check_entry(
                &self.auth,
                cache_key,
                &generation,
                auth::now_ms(),
                self.value_ttl_ms,
                &entry,
            );
            match check {
                EntryCheck::Valid(raw, expires, filled_ms) => {
                    let served_until = filled_ms.saturating_add(self.value_ttl_ms);
                    let served_until = i64::try_from(served_until).unwrap_or(i64::MAX);
                    return Ok(Lookup::Hit(Arc::from(raw), expires, served_until));
                }
                EntryCheck::Malformed => {
                    RemoteCounters::one(&self.counters.corrupt_entries);
                    if self.entry_log.allow() {
                        tracing::warn!(key = %value_key.escape_debug(), "damaged L2 entry deleted");
                    }
                }
                EntryCheck::Rejected(reason) => {
                    RemoteCounters::one(&self.counters.rejected_entries);
                    if self.entry_log.allow() {
                        tracing::warn!(
                            key = %value_key.escape_debug(),
                            reason,
                            "unauthenticated L2 entry rejected and deleted (logged once a minute)"
                        );
                    }
                }
            }
            // Either is a miss; deleting it lets this reader's fill heal it.
            redis::cmd("DEL")
                .arg(&value_key)
                .query_async::<()>(&mut conn)
                .await?;
        }
        Ok(Lookup::Miss(Observed { epoch, generation }))
    }

    async fn fill(
        &self,
        cache_key: &str,
        observed: &Observed,
        entry: Vec<u8>,
    ) -> RedisResult<bool> {
        let mut conn = self.conn.get().await?;
        let installed: i64 = self
            .fill
            .key(self.keys.epoch())
            .key(self.keys.generation(cache_key))
            .key(self.keys.value(cache_key))
            .arg(&observed.epoch)
            .arg(&observed.generation)
            .arg(entry)
            .arg(self.value_ttl_ms)
            .invoke_async(&mut conn)
            .await?;
        Ok(installed == 1)
    }

    /// The deadline of invalidating `keys` keys: `redis.timeout` per script call.
    fn deadline_for(&self, keys: usize) -> Duration {
        let calls = u32::try_from(keys.div_ceil(protocol::INVALIDATE_CHUNK)).unwrap_or(u32::MAX);
        self.conn.timeout().saturating_mul(calls.max(1))
    }

    /// Bumps generations, deletes values and publishes: one script per chunk of keys.
    pub(crate) async fn invalidate(&self, cache_keys: &[String]) -> RedisResult<()> {
        let mut conn = self.conn.get().await?;
        for chunk in cache_keys.chunks(protocol::INVALIDATE_CHUNK) {
            self.invalidate_chunk(&mut conn, chunk).await?;
        }
        Ok(())
    }

    async fn invalidate_chunk(
        &self,
        conn: &mut redis::aio::MultiplexedConnection,
        cache_keys: &[String],
    ) -> RedisResult<()> {
        let mut invocation = self.invalidate.prepare_invoke();
        for key in cache_keys {
            invocation
                .key(self.keys.generation(key))
                .key(self.keys.value(key));
        }
        let message = Message {
            origin: self.node_id.clone(),
            keys: cache_keys.to_vec(),
        };
        invocation
            .arg(self.generation_ttl_ms)
            .arg(self.keys.channel())
            .arg(message.encode(&self.auth));
        invocation.invoke_async::<i64>(conn).await?;
        RemoteCounters::add(&self.counters.invalidations_sent, cache_keys.len());
        Ok(())
    }

    /// Delivers the pending invalidations; they leave the set only once delivered (so this
    /// node keeps bypassing L2 for them until then).
    pub(crate) async fn flush_pending(&self) {
        let keys: Vec<String> = self.with_pending(|p| p.iter().cloned().collect());
        if keys.is_empty() {
            return;
        }
        let deadline = self.deadline_for(keys.len());
        let result = tokio::time::timeout(deadline, self.invalidate(&keys)).await;
        if self.settle(result.ok()).is_some() {
            self.with_pending(|p| {
                for k in &keys {
                    p.remove(k);
                }
            });
        }
    }
}

/// Retries pending invalidations while the tier lives.
async fn retry_pending(core: std::sync::Weak<Core>) {
    let mut ticks = tokio::time::interval(RETRY_INTERVAL.max(MIN_BACKOFF));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(core) = core.upgrade() else { return };
        if core.pending_len() > 0 && core.breaker.allows() {
            core.flush_pending().await;
        }
    }
}

#[cfg(test)]
mod tests;

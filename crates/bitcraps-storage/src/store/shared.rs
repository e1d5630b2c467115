//! The store's shared state: what the handle, the writer thread, the background tasks and
//! the Redis tier all reach. Fields are crate-visible because the writer and the readers are
//! the two halves of one coherence protocol (see `cache`); everything else goes through the
//! handle's methods.

use std::sync::Arc;

use crate::access::AccessTracker;
use crate::backend::Backend;
use crate::cache::ValueCache;
use crate::clock::StoreClock;
use crate::crypto::Keyring;
use crate::dictionary::Dictionaries;
use crate::observe::Observer;
use crate::prefetch::Prefetcher;
use crate::remote::RemoteTier;
use crate::stats::Counters;

/// State shared by the handle and the writer thread.
pub(crate) struct Shared {
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) cache: Arc<ValueCache>,
    pub(crate) access: AccessTracker,
    /// Predictive prefetching into `cache` (`prefetch`).
    pub(crate) prefetch: Prefetcher,
    pub(crate) counters: Counters,
    pub(crate) dictionaries: Dictionaries,
    /// The decoded keyframes of recent deltas (`chunk/keyframes.rs`).
    pub(crate) keyframes: crate::chunk::keyframes::Keyframes,
    /// The Redis tier (L2 and cross-node invalidation), when configured.
    pub(crate) remote: Option<RemoteTier>,
    /// Metrics and spans of this store's operations.
    pub(crate) observer: Observer,
    pub(crate) clock: StoreClock,
    /// The keyring of an encrypted store (the backend is then `crypto`'s wrapper).
    pub(crate) keyring: Option<Arc<Keyring>>,
    /// Bumped after every group commit: wakes this process's change-feed watches
    /// (`feed/watch.rs`), which then read the log.
    pub(crate) feed_signal: Arc<tokio::sync::watch::Sender<u64>>,
    /// The writer's groups begun and installed (`feed/installed.rs`).
    pub(crate) feed_installed: crate::feed::installed::InstallGate,
    /// Whether the backend was asked to wake the watches on other nodes' changes.
    pub(crate) feed_listening: std::sync::atomic::AtomicBool,
    /// Counts the times a watch of this store began to wait: for new changes, after it read
    /// the log to its end, or for this process's cache to take changes it read (tests wait
    /// for it: `PersistentStorageManager::watch_waits`).
    pub(crate) feed_waits: tokio::sync::watch::Sender<u64>,
    /// Test hooks (`store/hooks.rs`).
    #[cfg(feature = "testing")]
    pub(crate) hooks: super::hooks::Hooks,
}

impl Shared {
    /// Wakes this process's watches.
    pub(crate) fn wake_watches(signal: &tokio::sync::watch::Sender<u64>) {
        signal.send_modify(|n| *n = n.wrapping_add(1));
    }
}

//! Turns for `update`: updates of one key within one process take turns, so they never
//! conflict with each other and never spend their attempts against each other. Keys hash to
//! one of [`TURN_STRIPES`] async mutexes (two keys sharing a stripe only wait for each other,
//! which is harmless); the guard is held across the read and the conditional write.

use tokio::sync::{Mutex, MutexGuard};

use crate::cache::shard_hash;

/// Number of stripes: enough that unrelated keys rarely wait for each other.
pub(crate) const TURN_STRIPES: usize = 256;

/// The stripes.
pub(crate) struct Turns(Vec<Mutex<()>>);

impl Turns {
    pub(crate) fn new() -> Self {
        Turns((0..TURN_STRIPES).map(|_| Mutex::new(())).collect())
    }

    /// Waits for `cache_key`'s turn.
    pub(crate) async fn take(&self, cache_key: &str) -> Option<MutexGuard<'_, ()>> {
        let stripe = self.0.get(shard_hash(cache_key) % TURN_STRIPES)?;
        Some(stripe.lock().await)
    }
}

//! Single-flight loads: concurrent misses of one key under the same stripe generation share
//! one load of L2 or the database. A reader arriving after a commit sees a newer generation
//! and starts its own load, so it never receives a value read before its write.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::ValueCache;
use super::stripes::{FillTicket, Stripes};

/// One load of a key from L2 or the database, shared by the readers that missed together.
/// Empty until the load succeeds; a failed load leaves it empty and the next waiter loads.
pub type Load = Arc<tokio::sync::OnceCell<Option<Arc<[u8]>>>>;

impl ValueCache {
    /// After a miss: the reader's ticket and the load of `key` under that generation — an
    /// existing one (counted as coalesced, `true`) or a new one this reader performs
    /// (`false`). One stripe lock for both.
    pub fn join_load(&self, key: &str) -> (FillTicket, Load, bool) {
        let stripe = Stripes::of(key);
        let mut guard = self.stripes.lock(stripe);
        let ticket = FillTicket {
            stripe,
            generation: guard.generation,
        };
        if let Some((generation, load)) = guard.loads.get(key)
            && *generation == ticket.generation
        {
            let load = Arc::clone(load);
            drop(guard);
            self.coalesced.fetch_add(1, Ordering::Relaxed);
            return (ticket, load, true);
        }
        let load = Load::default();
        guard
            .loads
            .insert(key.to_owned(), (ticket.generation, Arc::clone(&load)));
        (ticket, load, false)
    }

    /// A ticket to [`fill`](ValueCache::fill) `key` with a value read after this call, for
    /// reads that load several keys at once and so join no single-key load.
    pub fn ticket(&self, key: &str) -> FillTicket {
        let stripe = Stripes::of(key);
        let generation = self.stripes.lock(stripe).generation;
        FillTicket { stripe, generation }
    }

    /// A reader is done with `load`; the first to finish removes it (if it is still the one
    /// registered), so later misses load afresh.
    pub fn finish_load(&self, key: &str, ticket: FillTicket, load: &Load) {
        let mut guard = self.stripes.lock(ticket.stripe);
        if guard
            .loads
            .get(key)
            .is_some_and(|(_, current)| Arc::ptr_eq(current, load))
        {
            guard.loads.remove(key);
        }
    }
}

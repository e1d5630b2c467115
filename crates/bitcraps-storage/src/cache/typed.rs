//! The typed tier: which cache entries keep their document decoded, within a budget.
//!
//! "Hot data stays uncompressed": a typed read ([`retrieve_shared`]) leaves the document,
//! decoded as the type it was read as, in the entry's slot ([`CachedValue::set_typed`]), so the
//! next read of the entry costs neither decompression nor JSON parsing. Decoded values take
//! several times the memory of the compressed form, so only some entries may keep one: this
//! tier holds those entries in a bounded cache of its own (quick_cache), weighed by
//! [`CachedValue::typed_charge`] and bounded by `cache.typed_percent` of the cache's memory.
//! Every typed read of a held entry marks it referenced ([`TypedTier::touch`]), so the
//! cache's CLOCK keeps the entries read again; when it lets one go, the entry's decoded value
//! is dropped ([`CachedValue::clear_typed`]) and the entry stays cached in its compressed
//! form.
//!
//! Coherence is the byte cache's: a decoded value is only ever reached through the current
//! entry of its key, and a commit or invalidation replaces or removes that entry (and drops
//! the key from this tier, so the old value's memory goes too).
//!
//! [`retrieve_shared`]: crate::PersistentStorageManager::retrieve_shared

use quick_cache::sync::Cache;
use quick_cache::{Lifecycle, Weighter};

use super::{CachedValue, Slots, bounded};

/// A held entry's weight: what its decoded value is charged.
#[derive(Clone)]
struct TypedCharge;

impl Weighter<u64, CachedValue> for TypedCharge {
    fn weight(&self, _: &u64, entry: &CachedValue) -> u64 {
        u64::try_from(entry.typed_charge()).unwrap_or(u64::MAX)
    }
}

/// An entry the tier lets go (evicted, or refused for its size) drops its decoded value.
#[derive(Clone)]
struct Release;

impl Lifecycle<u64, CachedValue> for Release {
    type RequestState = ();

    fn begin_request(&self) {}

    fn on_evict(&self, (): &mut (), _: u64, entry: CachedValue) {
        entry.clear_typed();
    }
}

/// What a typical held entry is charged: a ~1 KiB game document decoded.
const TYPICAL_TYPED_CHARGE: u64 = 2_300;

/// The entries that keep a decoded value, by cache slot.
pub(super) struct TypedTier {
    holders: Option<Cache<u64, CachedValue, TypedCharge, Slots, Release>>,
}

impl TypedTier {
    /// A tier of at most `capacity` bytes of decoded values (0: none is kept).
    pub(super) fn new(capacity: u64) -> Self {
        let holders =
            (capacity > 0).then(|| bounded(capacity, TYPICAL_TYPED_CHARGE, TypedCharge, Release));
        TypedTier { holders }
    }

    /// Whether decoded values may be kept at all.
    pub(super) fn enabled(&self) -> bool {
        self.holders.is_some()
    }

    /// Holds `entry`, whose slot was just filled, under `slot`. The tier may refuse it at
    /// once (then its decoded value is dropped) or later evict it.
    pub(super) fn hold(&self, slot: u64, entry: &CachedValue) {
        if let Some(holders) = &self.holders {
            // Another entry under the slot (a hash collision) lets its value go.
            if let Some((_, old)) = holders.remove_if(&slot, |old| !old.same_entry(entry)) {
                old.clear_typed();
            }
            holders.insert(slot, entry.clone());
        }
    }

    /// Counts a typed read of `slot`: a held entry read again is kept over one that is not.
    pub(super) fn touch(&self, slot: u64) {
        if let Some(holders) = &self.holders {
            let _ = holders.get(&slot);
        }
    }

    /// Lets go of the entry under `slot` (its key was written, deleted or invalidated).
    pub(super) fn release(&self, slot: u64) {
        if let Some((_, entry)) = self.holders.as_ref().and_then(|h| h.remove(&slot)) {
            entry.clear_typed();
        }
    }

    /// Lets go of every entry.
    pub(super) fn release_all(&self) {
        if let Some(holders) = &self.holders {
            for (_, entry) in holders.drain() {
                entry.clear_typed();
            }
        }
    }

    /// Entries holding a decoded value, and the bytes charged for them.
    pub(super) fn usage(&self) -> (u64, u64) {
        self.holders.as_ref().map_or((0, 0), |h| {
            (u64::try_from(h.len()).unwrap_or(u64::MAX), h.weight())
        })
    }
}

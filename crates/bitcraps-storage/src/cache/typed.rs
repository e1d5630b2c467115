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
//! form. The tier holds no reference to an entry, only its charge and identity ([`Held`]):
//! an entry evicted from the cache of stored forms takes its decoded value with it.
//!
//! Coherence is the byte cache's: a decoded value is only ever reached through the current
//! entry of its key, and a commit or invalidation replaces or removes that entry (and drops
//! the key from this tier, so the old value's memory goes too).
//!
//! [`retrieve_shared`]: crate::PersistentStorageManager::retrieve_shared

use quick_cache::sync::Cache;
use quick_cache::{Lifecycle, Weighter};

use super::{CachedValue, Slots, bounded};

/// What the tier keeps of a held entry: its charge, and which entry it is (its address, for
/// identity only: never dereferenced). Not the entry itself: every typed read marks its hold
/// referenced, and a `get` clones the value it finds — a clone of the entry would write its
/// reference count, a line every reader of a hot entry shares, twice more per read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Held {
    charge: u64,
    entry: usize,
}

impl Held {
    fn of(entry: &CachedValue) -> Self {
        Held {
            charge: u64::try_from(entry.typed_charge()).unwrap_or(u64::MAX),
            entry: entry.address(),
        }
    }

    /// Whether this is the hold of `entry`.
    pub(super) fn is_of(&self, entry: &CachedValue) -> bool {
        self.entry == entry.address()
    }
}

/// A hold's weight: what its decoded value is charged.
#[derive(Clone)]
struct TypedCharge;

impl Weighter<u64, Held> for TypedCharge {
    fn weight(&self, _: &u64, held: &Held) -> u64 {
        held.charge
    }
}

/// The holds the tier lets go of during one insert (evicted, or refused for their size):
/// their entries drop their decoded values once the tier's lock is released
/// ([`super::ValueCache::hold_typed_doc`]).
#[derive(Clone)]
struct Release;

impl Lifecycle<u64, Held> for Release {
    type RequestState = Vec<(u64, Held)>;

    fn begin_request(&self) -> Self::RequestState {
        Vec::new()
    }

    fn on_evict(&self, let_go: &mut Self::RequestState, slot: u64, held: Held) {
        let_go.push((slot, held));
    }
}

/// What a typical held entry is charged: a ~1 KiB game document decoded.
const TYPICAL_TYPED_CHARGE: u64 = 2_300;

/// The entries that keep a decoded value, by cache slot.
pub(super) struct TypedTier {
    holders: Option<Cache<u64, Held, TypedCharge, Slots, Release>>,
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
    /// once or later evict it: the holds it lets go of now (this one included when refused,
    /// another entry's under the same slot), whose entries must drop their decoded values.
    pub(super) fn hold(&self, slot: u64, entry: &CachedValue) -> Vec<(u64, Held)> {
        let Some(holders) = &self.holders else {
            return Vec::new();
        };
        // Another entry under the slot (a hash collision, or the key's entry before a
        // write) lets its value go.
        let replaced = holders.remove_if(&slot, |old| !old.is_of(entry));
        let mut let_go = holders.insert_with_lifecycle(slot, Held::of(entry));
        let_go.extend(replaced);
        let_go
    }

    /// Counts a typed read of `slot`: a held entry read again is kept over one that is not.
    pub(super) fn touch(&self, slot: u64) {
        if let Some(holders) = &self.holders {
            let _ = holders.get(&slot);
        }
    }

    /// Lets go of the hold under `slot` (its key was written, deleted or invalidated: the
    /// entry, retired from the cache, drops its value itself).
    pub(super) fn release(&self, slot: u64) {
        if let Some(holders) = &self.holders {
            let _ = holders.remove(&slot);
        }
    }

    /// Lets go of the hold of `entry` under `slot`, if the tier holds it (the entry left the
    /// cache of stored forms: no read can reach its decoded value any more).
    pub(super) fn forget(&self, slot: u64, entry: &CachedValue) {
        if let Some(holders) = &self.holders {
            let _ = holders.remove_if(&slot, |held| held.is_of(entry));
        }
    }

    /// Lets go of every hold.
    pub(super) fn release_all(&self) {
        if let Some(holders) = &self.holders {
            holders.clear();
        }
    }

    /// Entries holding a decoded value, and the bytes charged for them.
    pub(super) fn usage(&self) -> (u64, u64) {
        self.holders.as_ref().map_or((0, 0), |h| {
            (u64::try_from(h.len()).unwrap_or(u64::MAX), h.weight())
        })
    }
}

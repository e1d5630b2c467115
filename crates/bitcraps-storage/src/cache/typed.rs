//! The typed tier: which cache entries keep their document decoded, within a budget.
//!
//! "Hot data stays uncompressed": a typed read ([`retrieve_shared`]) leaves the document,
//! decoded as the type it was read as, in the entry's slot ([`CachedValue::set_typed`]), so the
//! next read of the entry costs neither decompression nor JSON parsing. Decoded values take
//! several times the memory of the compressed form, so only some entries may keep one: this
//! tier holds those entries in a moka cache of its own, weighed by
//! [`CachedValue::typed_charge`] and bounded by `cache.typed_percent` of the cache's memory.
//! Every typed read is counted in this cache's frequency sketch ([`TypedTier::touch`]), so
//! moka's admission (TinyLFU) keeps the most frequently read; when it lets one go, the entry's
//! decoded value is dropped ([`CachedValue::clear_typed`]) and the entry stays cached in its
//! compressed form.
//!
//! Coherence is the byte cache's: a decoded value is only ever reached through the current
//! entry of its key, and a commit or invalidation replaces or removes that entry (and drops
//! the key from this tier, so the old value's memory goes too).
//!
//! [`retrieve_shared`]: crate::PersistentStorageManager::retrieve_shared

use std::hash::BuildHasherDefault;

use moka::notification::RemovalCause;
use moka::sync::Cache;

use super::{CachedValue, PassThrough};

/// The entries that keep a decoded value, by cache slot.
pub(super) struct TypedTier {
    holders: Option<Cache<u64, CachedValue, BuildHasherDefault<PassThrough>>>,
}

impl TypedTier {
    /// A tier of at most `capacity` bytes of decoded values (0: none is kept).
    pub(super) fn new(capacity: u64) -> Self {
        let holders = (capacity > 0).then(|| {
            Cache::builder()
                .max_capacity(capacity)
                .weigher(|_: &u64, entry: &CachedValue| {
                    u32::try_from(entry.typed_charge()).unwrap_or(u32::MAX)
                })
                .eviction_listener(
                    |_: std::sync::Arc<u64>, entry: CachedValue, _: RemovalCause| {
                        entry.clear_typed();
                    },
                )
                .build_with_hasher(BuildHasherDefault::default())
        });
        TypedTier { holders }
    }

    /// Whether decoded values may be kept at all.
    pub(super) fn enabled(&self) -> bool {
        self.holders.is_some()
    }

    /// Holds `entry`, whose slot was just filled, under `slot`. moka may decline it at once
    /// (then its decoded value is dropped) or later evict it.
    pub(super) fn hold(&self, slot: u64, entry: &CachedValue) {
        if let Some(holders) = &self.holders {
            holders.insert(slot, entry.clone());
        }
    }

    /// Counts a typed read of `slot` in the tier's frequency sketch, held or not: without
    /// it TinyLFU would see each entry once (its insert) and could not tell hot from cold.
    pub(super) fn touch(&self, slot: u64) {
        if let Some(holders) = &self.holders {
            let _ = holders.get(&slot);
        }
    }

    /// Lets go of the entry under `slot` (its key was written, deleted or invalidated).
    pub(super) fn release(&self, slot: u64) {
        if let Some(holders) = &self.holders {
            holders.invalidate(&slot);
        }
    }

    /// Lets go of every entry.
    pub(super) fn release_all(&self) {
        if let Some(holders) = &self.holders {
            holders.invalidate_all();
        }
    }

    /// Runs moka's pending work (evictions, and so the release of decoded values).
    pub(super) fn run_pending_tasks(&self) {
        if let Some(holders) = &self.holders {
            holders.run_pending_tasks();
        }
    }

    /// Entries holding a decoded value, and the bytes charged for them.
    pub(super) fn usage(&self) -> (u64, u64) {
        self.holders
            .as_ref()
            .map_or((0, 0), |h| (h.entry_count(), h.weighted_size()))
    }
}

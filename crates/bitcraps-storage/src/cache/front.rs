//! Per-thread fronts of the typed tier: a held decoded value answered without the shared
//! cache's locks.
//!
//! A typed hit through the cache writes lines every reader of a hot document shares: the
//! cache shard's lock word (read lock and unlock), the entry's reference count (quick_cache
//! hands out a clone), the entry's typed slot lock, and the typed tier's shard lock for the
//! touch. On one core these are cheap; on two and four, each such write moves the line from
//! the core that wrote it last, and the per-read CPU of the hot reads grew with the threads
//! (BENCHMARKS.md, "Typed reads on 2 and 4 threads: what does not scale").
//!
//! A front is a small direct-mapped table of this thread's own: the entries whose decoded
//! values this thread read lately, each with a weak handle of its value. A read that finds
//! its key there reads only lines no reader writes (the entry's key and flags) and takes
//! the value's `Arc` (the one write every `retrieve_shared` makes, inherent in handing out
//! an `Arc<T>`).
//!
//! Coherence is the cache's: an entry stops being its key's current one only through
//! [`CachedValue::mark_retired`], set before its replacement is installed or its removal
//! (under the key's stripe lock, `mod.rs`), and a front serves an entry only while it is not
//! retired. A front read that loads the flag clear is ordered before the replacement, as a
//! cache read that found the old entry would be. Whatever drops the whole cache (the Redis
//! tier's `invalidate_all`, an untrusted cache) moves the cache's front epoch first, which
//! every front slot must match. Fronts are off when entries have a maximum age.
//!
//! Every [`REFRESH`]th hit of a slot falls through to the cache, so the cache's and the
//! tier's eviction policies still see the document read (what they keep is what they
//! did: the typed hit and decode counts of the benchmark's reads move by well under 1 %).
//!
//! Memory: a slot keeps its entry alive (not its decoded value: the handle is weak) until
//! the slot is taken by another key or its thread ends — at most [`SLOTS`] entries a thread.

use std::any::{Any, TypeId};
use std::cell::RefCell;
use std::sync::{Arc, Weak};

use super::{CachedValue, DocKey};

/// Slots of a thread's front (a power of two: a slot is the key hash's low bits).
pub(super) const SLOTS: usize = 1024;

/// A front slot is read through the cache once per this many hits.
pub(super) const REFRESH: u32 = 16;

/// One remembered decoded value.
struct Slot {
    /// The cache it came from ([`super::ValueCache`]'s id: never reused in a process).
    cache: u64,
    /// That cache's front epoch when it was noted.
    epoch: u64,
    /// The key's hash (the cache's slot).
    hash: u64,
    entry: CachedValue,
    type_id: TypeId,
    value: Weak<dyn Any + Send + Sync>,
    /// Hits since the slot was last read through the cache.
    hits: u32,
}

thread_local! {
    static FRONT: RefCell<Vec<Option<Slot>>> = RefCell::new(Vec::new());
}

fn index(hash: u64) -> usize {
    // The mask keeps it in bounds; the hash is a keyed SipHash, so its low bits are as good
    // as any.
    usize::try_from(hash).unwrap_or(0) & (SLOTS - 1)
}

/// The decoded value of `doc` as `T` from this thread's front, if the slot of `doc` holds
/// the current entry of the key in `cache` (at front epoch `epoch`), live at `now_ms`, whose
/// value is still alive; `None` (read through the cache) otherwise, and on every
/// [`REFRESH`]th hit.
pub(super) fn get<T: Any + Send + Sync>(
    cache: u64,
    epoch: u64,
    doc: &DocKey<'_>,
    now_ms: i64,
) -> Option<Arc<T>> {
    let hash = doc.hash();
    FRONT
        .try_with(|front| {
            let mut front = front.try_borrow_mut().ok()?;
            let slot = front.get_mut(index(hash))?.as_mut()?;
            if slot.cache != cache
                || slot.hash != hash
                || slot.epoch != epoch
                || slot.type_id != TypeId::of::<T>()
                || slot.entry.is_retired()
                || !slot.entry.is_for_doc(doc)
                || !slot.entry.live_at(now_ms)
            {
                return None;
            }
            slot.hits = slot.hits.wrapping_add(1);
            if slot.hits % REFRESH == 0 {
                return None;
            }
            slot.value.upgrade()?.downcast::<T>().ok()
        })
        .ok()
        .flatten()
}

/// Remembers in this thread's front that `entry`, the current entry of `doc` in `cache` (at
/// front epoch `epoch`), answered a typed read with `value`.
pub(super) fn note<T: Any + Send + Sync>(
    cache: u64,
    epoch: u64,
    doc: &DocKey<'_>,
    entry: &CachedValue,
    value: &Arc<T>,
) {
    let hash = doc.hash();
    let _ = FRONT.try_with(|front| {
        let Ok(mut front) = front.try_borrow_mut() else {
            return;
        };
        if front.is_empty() {
            front.resize_with(SLOTS, || None);
        }
        let Some(place) = front.get_mut(index(hash)) else {
            return;
        };
        if let Some(slot) = place
            && slot.cache == cache
            && slot.epoch == epoch
            && slot.hash == hash
            && slot.entry.same_entry(entry)
            && slot.type_id == TypeId::of::<T>()
            && std::ptr::addr_eq(slot.value.as_ptr(), Arc::as_ptr(value))
        {
            // The same entry read through the cache (a refresh): nothing to clone again.
            return;
        }
        let weak: Weak<T> = Arc::downgrade(value);
        *place = Some(Slot {
            cache,
            epoch,
            hash,
            entry: entry.clone(),
            type_id: TypeId::of::<T>(),
            value: weak,
            hits: 0,
        });
    });
}

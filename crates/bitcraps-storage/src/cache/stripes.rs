//! Generation stripes: the ordering half of the cache's coherence protocol (see the module
//! docs of [`super`]). Every key hashes to one stripe; a commit or an invalidation bumps the
//! stripe's generation under its lock, and a fill is accepted only under the generation its
//! reader observed before reading.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use super::inflight::Load;
use super::shard_hash;

/// Number of generation stripes.
pub const STRIPES: usize = 256;

/// A generation observed before a database read, to be presented when filling.
#[derive(Debug, Clone, Copy)]
pub struct FillTicket {
    pub(super) stripe: usize,
    pub(super) generation: u64,
}

/// A stripe: its generation and the loads in flight for its keys (each tagged with the
/// generation it started under).
#[derive(Default)]
pub(super) struct Stripe {
    pub(super) generation: u64,
    pub(super) loads: HashMap<String, (u64, Load)>,
}

impl Stripe {
    /// Defeats every fill that observed an earlier generation.
    pub(super) fn bump(&mut self) {
        self.generation = self.generation.wrapping_add(1);
    }
}

/// The fixed array of stripes.
pub(super) struct Stripes([Mutex<Stripe>; STRIPES]);

impl Stripes {
    pub(super) fn new() -> Self {
        Stripes(std::array::from_fn(|_| Mutex::new(Stripe::default())))
    }

    /// The stripe `key` belongs to.
    pub(super) fn of(key: &str) -> usize {
        shard_hash(key) % STRIPES
    }

    pub(super) fn lock(&self, stripe: usize) -> MutexGuard<'_, Stripe> {
        // A poisoned stripe only means a panic elsewhere while holding it; the counter is
        // still meaningful, so keep going. The modulo keeps the index in bounds of the
        // fixed-size array.
        match self.0[stripe % STRIPES].lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Locks the stripe of `key`.
    pub(super) fn lock_key(&self, key: &str) -> MutexGuard<'_, Stripe> {
        self.lock(Self::of(key))
    }

    /// A ticket for `key` under its stripe's current generation.
    #[cfg(test)]
    pub(super) fn ticket(&self, key: &str) -> FillTicket {
        let stripe = Self::of(key);
        FillTicket {
            stripe,
            generation: self.lock(stripe).generation,
        }
    }
}

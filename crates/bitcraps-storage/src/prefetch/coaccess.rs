//! Co-access prefetch: a bounded table learns which documents are read together (a game and
//! its players, a table and its bets) and, when a document misses the cache, reads the
//! partners it is confident about ahead.
//!
//! Learning is driven by what the cache could not answer: when `B` misses (or is read from a
//! prefetch), each of the last [`RECENT`] documents that did the same, `A`, gains one
//! observation of the pair `A → B` (plain hits never reach the prefetcher). When `A` misses, the partners observed at least [`MIN_SUPPORT`] times, in at
//! least half of `A`'s misses, are prefetched. Documents the cache keeps anyway are never
//! learned as partners (they do not miss), so the table spends its room on what prefetching
//! can help.
//!
//! Bounded: [`SOURCES`] sources (a direct-mapped table by hash; a new source takes a slot
//! over only once its holder has lost its credit to collisions, so sources that keep learning
//! or predicting stay), each with at most [`PARTNERS`] partners (a new one replaces the
//! weakest, if that was seen once). The recent reads are a ring of hashes, not keys.

use std::collections::VecDeque;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::tally::{self, Counted};

/// Reads remembered as the sources of the next misses (a game, its four players and six
/// bets are eleven reads).
pub(crate) const RECENT: usize = 12;

/// Sources the table holds.
pub(crate) const SOURCES: usize = 8192;

/// Partners kept per source.
pub(crate) const PARTNERS: usize = 12;

/// Collisions a source that has earned its place survives before a newcomer takes its slot
/// (renewed whenever it learns or predicts).
const CREDIT: u8 = 4;

/// Observations of a pair before its partner is prefetched.
pub(crate) const MIN_SUPPORT: u32 = 2;

struct Partner {
    hash: u64,
    /// The partner's cache key (`collection` NUL `key`).
    key: Arc<str>,
    seen: u32,
}

impl Counted for Partner {
    fn seen(&self) -> u32 {
        self.seen
    }
    fn count(&mut self) {
        self.seen = self.seen.saturating_add(1);
    }
}

struct Source {
    hash: u64,
    misses: u32,
    /// Collisions left before a newcomer may take the slot (CLOCK-like aging, so sources
    /// that keep being useful are not pushed out by documents passing through).
    credit: u8,
    partners: Vec<Partner>,
}

/// The learner.
pub(crate) struct CoAccess {
    /// Fixed keys (SipHash with zero keys): the same table in every run, so tests are
    /// deterministic. Keys chosen to collide only cost prefetching (advisory), never a value.
    hasher: std::hash::BuildHasherDefault<std::hash::DefaultHasher>,
    recent: Mutex<VecDeque<u64>>,
    table: Vec<Mutex<Option<Source>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Poisoned only by a panic elsewhere; the table is advisory.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Default for CoAccess {
    fn default() -> Self {
        CoAccess {
            hasher: std::hash::BuildHasherDefault::default(),
            recent: Mutex::new(VecDeque::with_capacity(RECENT)),
            table: (0..SOURCES).map(|_| Mutex::new(None)).collect(),
        }
    }
}

impl CoAccess {
    fn slot(&self, hash: u64) -> &Mutex<Option<Source>> {
        // SOURCES is small, the remainder fits.
        let index = usize::try_from(hash % SOURCES as u64).unwrap_or(0);
        &self.table[index % SOURCES]
    }

    /// A read of the document under `cache_key`. `missed`: the cache did not have it;
    /// `prefetched`: it was a hit on an entry prefetched for it. Returns the partners to
    /// prefetch (cache keys), after a miss.
    pub(crate) fn on_read(&self, cache_key: &str, missed: bool, prefetched: bool) -> Vec<Arc<str>> {
        let hash = self.hasher.hash_one(cache_key);
        let sources: Vec<u64> = {
            let mut recent = lock(&self.recent);
            let mut sources: Vec<u64> = if missed || prefetched {
                recent.iter().copied().filter(|h| *h != hash).collect()
            } else {
                Vec::new()
            };
            sources.sort_unstable();
            sources.dedup();
            if recent.back() != Some(&hash) {
                if recent.len() == RECENT {
                    recent.pop_front();
                }
                recent.push_back(hash);
            }
            sources
        };
        if !sources.is_empty() {
            let key: Arc<str> = Arc::from(cache_key);
            for source in sources {
                self.learn(source, hash, &key);
            }
        }
        if !missed {
            return Vec::new();
        }
        let mut slot = lock(self.slot(hash));
        let Some(source) = slot.as_mut().filter(|s| s.hash == hash) else {
            return Vec::new();
        };
        source.misses = source.misses.saturating_add(1);
        source.credit = CREDIT;
        let misses = source.misses;
        source
            .partners
            .iter()
            .filter(|p| p.seen >= MIN_SUPPORT && p.seen.saturating_mul(2) >= misses)
            .map(|p| Arc::clone(&p.key))
            .collect()
    }

    /// One observation of `source → partner`.
    fn learn(&self, source: u64, partner: u64, key: &Arc<str>) {
        let mut slot = lock(self.slot(source));
        match slot.as_mut() {
            Some(s) if s.hash == source => s.credit = CREDIT,
            // Another source holds the slot: it ages, and gives the slot up once it is out
            // of credit.
            Some(s) if s.credit > 0 => {
                s.credit -= 1;
                return;
            }
            _ => {
                *slot = Some(Source {
                    hash: source,
                    // Its first read, which made it a source, was one load of it.
                    misses: 1,
                    credit: CREDIT,
                    partners: Vec::new(),
                });
            }
        }
        let Some(s) = slot.as_mut() else { return };
        tally::observe(
            &mut s.partners,
            PARTNERS,
            |p| p.hash == partner,
            || Partner {
                hash: partner,
                key: Arc::clone(key),
                seen: 1,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(t: &CoAccess, key: &str, missed: bool) -> Vec<String> {
        let mut keys: Vec<String> = t
            .on_read(key, missed, false)
            .iter()
            .map(|k| k.to_string())
            .collect();
        keys.sort();
        keys
    }

    #[test]
    fn partners_read_after_a_miss_twice_are_prefetched_with_it() {
        let t = CoAccess::default();
        // Two sessions that miss everything: the game, then its players.
        for _ in 0..2 {
            assert!(read(&t, "games\0g-1", true).is_empty());
            read(&t, "players\0p-1", true);
            read(&t, "players\0p-2", true);
            // Something unrelated in between, so the next session starts afresh.
            for n in 0..RECENT {
                read(&t, &format!("other\0{n}"), false);
            }
        }
        assert_eq!(
            read(&t, "games\0g-1", true),
            vec!["players\0p-1".to_owned(), "players\0p-2".to_owned()]
        );
        // A hit prefetches nothing.
        assert!(read(&t, "games\0g-1", false).is_empty());
    }

    #[test]
    fn a_pair_seen_once_or_in_few_misses_is_not_trusted() {
        let t = CoAccess::default();
        read(&t, "games\0g-1", true);
        read(&t, "players\0p-1", true);
        // Seen once: not enough.
        assert!(read(&t, "games\0g-1", true).is_empty());
        read(&t, "players\0p-1", true);
        // Now seen twice in the game's two misses... (this miss makes three)
        assert_eq!(
            read(&t, "games\0g-1", true),
            vec!["players\0p-1".to_owned()]
        );
        // ...but many misses of the game without the player make it unconfident.
        for n in 0..6 {
            for k in 0..RECENT {
                read(&t, &format!("other\0{n}-{k}"), false);
            }
            read(&t, "games\0g-1", true);
        }
        assert!(read(&t, "games\0g-1", true).is_empty());
    }

    #[test]
    fn the_table_is_bounded() {
        let t = CoAccess::default();
        for n in 0..(SOURCES * 3) {
            read(&t, &format!("c\0{n}"), true);
        }
        let sources = t.table.iter().filter(|s| lock(s).is_some()).count();
        assert!(sources <= SOURCES);
        let partners = t
            .table
            .iter()
            .filter_map(|s| lock(s).as_ref().map(|s| s.partners.len()))
            .max();
        assert!(partners.unwrap_or(0) <= PARTNERS);
    }
}

//! Key templates: co-access learned per collection rather than per document, so it also
//! predicts for documents never seen before.
//!
//! Hierarchical keys name a document's children by extending its key: a game `game-7` and
//! its players `game-7-p0`, `game-7-p1`. When a document of collection `C` misses and a
//! document of collection `D` whose key is the missed key plus a suffix starting with a
//! separator (`-`, `_`, `:`, `/`, `.`, `#`, `|`) is read (missed, or read from a prefetch) soon
//! after, the template `C → D + suffix` gains one observation. Once a template was observed
//! after at least [`MIN_SOURCES`] misses of `C`, and after at least [`CONFIDENCE_PERCENT`] %
//! of them, a miss of any document of `C` reads `D/key+suffix` with it — a game missed for
//! the first time brings its players, which a per-document learner cannot know yet.
//!
//! Bounded: [`FAMILIES`] source collections (a new one replaces the one with the fewest
//! misses), each with at most [`TEMPLATES`] templates (a new one replaces the weakest if that
//! was seen once). Counts are halved when a collection's misses reach [`AGE_AT`], so a
//! template that stops being followed loses its confidence.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use super::coaccess::RECENT;
use super::tally::{self, Counted};

/// Source collections tracked.
pub(crate) const FAMILIES: usize = 16;

/// Templates kept per source collection.
pub(crate) const TEMPLATES: usize = 16;

/// Misses of a collection before any of its templates is trusted.
pub(crate) const MIN_SOURCES: u32 = 4;

/// The share of a collection's misses a template must have followed, in percent.
pub(crate) const CONFIDENCE_PERCENT: u32 = 75;

/// A collection's miss count at which its counts are halved.
pub(crate) const AGE_AT: u32 = 4096;

/// Longest suffix learned, in bytes.
const MAX_SUFFIX: usize = 32;

struct Template {
    collection: Arc<str>,
    suffix: Arc<str>,
    seen: u32,
}

impl Counted for Template {
    fn seen(&self) -> u32 {
        self.seen
    }
    fn count(&mut self) {
        self.seen = self.seen.saturating_add(1);
    }
}

struct Family {
    collection: Arc<str>,
    misses: u32,
    templates: Vec<Template>,
}

/// The learner.
#[derive(Default)]
pub(crate) struct Templates {
    /// The last [`RECENT`] misses (cache keys): the sources of the reads that follow.
    recent: Mutex<VecDeque<Arc<str>>>,
    families: Mutex<Vec<Family>>,
}

fn is_separator(c: char) -> bool {
    matches!(c, '-' | '_' | ':' | '/' | '.' | '#' | '|')
}

/// The suffix that makes `partner` a child of `source`, if it is one.
fn child_suffix<'a>(source: &str, partner: &'a str) -> Option<&'a str> {
    let suffix = partner.strip_prefix(source)?;
    (suffix.len() <= MAX_SUFFIX && suffix.chars().next().is_some_and(is_separator))
        .then_some(suffix)
}

impl Templates {
    fn families(&self) -> std::sync::MutexGuard<'_, Vec<Family>> {
        // Poisoned only by a panic elsewhere; the table is advisory.
        self.families.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A read of `collection`/`key` (`cache_key`) that missed (`missed`) or was the first
    /// read of a prefetched entry: learns from the misses before it and, after a miss,
    /// returns the partners the confident templates name.
    pub(crate) fn on_read(
        &self,
        cache_key: &str,
        collection: &str,
        key: &str,
        missed: bool,
    ) -> Vec<Arc<str>> {
        let sources: Vec<Arc<str>> = {
            let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
            let sources = recent.iter().cloned().collect();
            if missed && recent.back().is_none_or(|b| &**b != cache_key) {
                if recent.len() >= RECENT {
                    recent.pop_front();
                }
                recent.push_back(Arc::from(cache_key));
            }
            sources
        };
        for source in sources {
            self.observe(&source, collection, key);
        }
        if missed {
            self.on_miss(collection, key)
        } else {
            Vec::new()
        }
    }

    /// A document of `collection` missed: counts it, and returns the partners its confident
    /// templates name (cache keys, `collection` NUL `key`).
    fn on_miss(&self, collection: &str, key: &str) -> Vec<Arc<str>> {
        let mut families = self.families();
        let Some(family) = families.iter_mut().find(|f| &*f.collection == collection) else {
            return Vec::new();
        };
        family.misses = family.misses.saturating_add(1);
        if family.misses >= AGE_AT {
            family.misses /= 2;
            for t in &mut family.templates {
                t.seen /= 2;
            }
        }
        // The miss just counted is not followed yet: judge on the ones before it.
        let judged = family.misses.saturating_sub(1);
        if judged < MIN_SOURCES {
            return Vec::new();
        }
        family
            .templates
            .iter()
            .filter(|t| {
                u64::from(t.seen) * 100 >= u64::from(judged) * u64::from(CONFIDENCE_PERCENT)
            })
            .map(|t| Arc::from(format!("{}\0{key}{}", t.collection, t.suffix)))
            .collect()
    }

    /// `collection`/`key` missed (or was read from a prefetch) after `source` (a cache key)
    /// missed: one observation of the template that relates them, if one does.
    fn observe(&self, source: &str, collection: &str, key: &str) {
        let Some((source_collection, source_key)) = source.split_once('\0') else {
            return;
        };
        let Some(suffix) = child_suffix(source_key, key) else {
            return;
        };
        let mut families = self.families();
        let family = match families
            .iter()
            .position(|f| &*f.collection == source_collection)
        {
            Some(i) => &mut families[i],
            None => {
                let fresh = Family {
                    collection: Arc::from(source_collection),
                    // The source's miss, which made it a source.
                    misses: 1,
                    templates: Vec::new(),
                };
                if families.len() < FAMILIES {
                    families.push(fresh);
                } else if let Some(weakest) = families.iter_mut().min_by_key(|f| f.misses) {
                    *weakest = fresh;
                }
                let Some(family) = families
                    .iter_mut()
                    .find(|f| &*f.collection == source_collection)
                else {
                    return;
                };
                family
            }
        };
        tally::observe(
            &mut family.templates,
            TEMPLATES,
            |t| &*t.collection == collection && &*t.suffix == suffix,
            || Template {
                collection: Arc::from(collection),
                suffix: Arc::from(suffix),
                seen: 1,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A session: the game `n` misses, then its players are read.
    fn session(t: &Templates, n: u32, players: u32) -> Vec<String> {
        let game = format!("game-{n}");
        let mut predicted: Vec<String> = t
            .on_miss("games", &game)
            .iter()
            .map(|k| k.to_string())
            .collect();
        predicted.sort();
        for p in 0..players {
            t.observe(
                &format!("games\0{game}"),
                "players",
                &format!("{game}-p{p}"),
            );
        }
        predicted
    }

    #[test]
    fn a_template_followed_by_most_misses_predicts_for_a_new_document() {
        let t = Templates::default();
        // Nothing is known about the collection before its first miss is followed.
        assert!(session(&t, 0, 2).is_empty());
        for n in 1..MIN_SOURCES {
            assert!(session(&t, n, 2).is_empty(), "too few misses yet ({n})");
        }
        // A game never read before: its players are named from the template.
        assert_eq!(
            session(&t, 99, 0),
            vec![
                "players\0game-99-p0".to_owned(),
                "players\0game-99-p1".to_owned()
            ]
        );
    }

    #[test]
    fn a_template_that_stops_being_followed_loses_its_confidence() {
        let t = Templates::default();
        for n in 0..8 {
            session(&t, n, 1);
        }
        assert_eq!(session(&t, 8, 0).len(), 1);
        // Misses after which the player is no longer read.
        for n in 9..12 {
            session(&t, n, 0);
        }
        assert!(session(&t, 12, 0).is_empty());
    }

    #[test]
    fn only_children_behind_a_separator_are_learned() {
        assert_eq!(child_suffix("game-1", "game-1-p0"), Some("-p0"));
        assert_eq!(
            child_suffix("game-1", "game-10"),
            None,
            "a sibling, not a child"
        );
        assert_eq!(child_suffix("game-1", "game-1"), None);
        assert_eq!(child_suffix("game-1", "other-1-p0"), None);
        assert_eq!(child_suffix("a", &format!("a-{}", "x".repeat(40))), None);
        let t = Templates::default();
        for n in 0..10 {
            t.on_miss("games", &format!("g{n}"));
            t.observe(&format!("games\0g{n}"), "games", &format!("g{n}0"));
        }
        assert!(t.on_miss("games", "g7").is_empty());
    }

    #[test]
    fn reads_after_a_miss_teach_the_template() {
        let t = Templates::default();
        for n in 0..=MIN_SOURCES {
            let game = format!("game-{n}");
            t.on_read(&format!("games\0{game}"), "games", &game, true);
            for p in 0..2 {
                let player = format!("{game}-p{p}");
                // Read from a prefetch counts as much as a miss.
                t.on_read(&format!("players\0{player}"), "players", &player, p == 0);
            }
        }
        let mut predicted = t.on_read("games\0game-x", "games", "game-x", true);
        predicted.sort();
        assert_eq!(
            predicted,
            vec![
                Arc::from("players\0game-x-p0"),
                Arc::from("players\0game-x-p1")
            ]
        );
        // Only a miss predicts.
        assert!(
            t.on_read("games\0game-y", "games", "game-y", false)
                .is_empty()
        );
    }

    #[test]
    fn the_table_is_bounded() {
        let t = Templates::default();
        for c in 0..(FAMILIES * 2) {
            for n in 0..(TEMPLATES * 2) {
                t.observe(&format!("c{c}\0k"), "d", &format!("k-{n}"));
            }
        }
        let families = t.families();
        assert!(families.len() <= FAMILIES);
        assert!(families.iter().all(|f| f.templates.len() <= TEMPLATES));
    }
}

//! Sequential readahead: a collection read in key order gets the next keys' documents read
//! ahead into the cache, in a window that grows while it is used and shrinks on waste.
//!
//! Anchors: RocksDB's auto-readahead (a run of sequential reads turns readahead on; its size
//! doubles on every readahead up to a maximum) and Linux/PostgreSQL readahead (the next batch
//! is read when the reader reaches a *marker* in the middle of the previous one, so it arrives
//! before it is needed). Keys have no "adjacent block" to test, so a run is [`SEQUENTIAL_RUN`]
//! reads in ascending key order; random reads form such runs rarely, and what they prefetch is
//! wasted, which halves the window down to zero (the stream is then disarmed until a long run,
//! [`REARM_RUN`], proves the reader sequential again).
//!
//! One stream per collection (a fixed table of [`STREAMS`] slots, by hash; a collection that
//! lands on an occupied slot takes it over).

use std::sync::{Mutex, MutexGuard, PoisonError};

use super::ledger::{Ledger, STREAMS, stream_origin};

/// Ascending reads in a row that turn readahead on.
pub(crate) const SEQUENTIAL_RUN: u32 = 3;

/// Ascending reads in a row that re-arm a stream whose window waste shrank to zero.
pub(crate) const REARM_RUN: u32 = 16;

/// The first window of a stream, in documents.
pub(crate) const INITIAL_WINDOW: usize = 4;

/// A readahead to do: the documents of up to `limit` keys of `collection` after `after` (or
/// exactly `keys`, after a listing), for stream `stream`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Readahead {
    pub(crate) collection: String,
    pub(crate) start: Start,
    pub(crate) stream: usize,
}

/// Where a readahead starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Start {
    /// The next `limit` keys after this one.
    After { key: String, limit: usize },
    /// These keys (a page just listed).
    Keys(Vec<String>),
}

impl Readahead {
    /// The origin its entries are marked with.
    pub(crate) fn origin(&self) -> u32 {
        stream_origin(self.stream)
    }
}

#[derive(Debug)]
struct Stream {
    collection: String,
    /// The last key read.
    last: String,
    /// Ascending reads in a row, ending with `last`.
    run: u32,
    /// Documents per readahead (0: disarmed).
    window: usize,
    /// The key whose read starts the next readahead.
    marker: Option<String>,
    /// The last key read ahead.
    horizon: Option<String>,
    /// A readahead is running.
    pending: bool,
}

impl Stream {
    fn new(collection: &str) -> Self {
        Stream {
            collection: collection.to_owned(),
            last: String::new(),
            run: 0,
            window: INITIAL_WINDOW,
            marker: None,
            horizon: None,
            pending: false,
        }
    }
}

/// The streams.
pub(crate) struct Sequential {
    streams: [Mutex<Option<Stream>>; STREAMS],
    max_window: usize,
}

fn slot_of(collection: &str) -> usize {
    crate::cache::shard_hash(collection) % STREAMS
}

impl Sequential {
    /// Streams whose windows grow up to `max_window` documents.
    pub(crate) fn new(max_window: usize) -> Self {
        Sequential {
            streams: std::array::from_fn(|_| Mutex::new(None)),
            max_window: max_window.max(1),
        }
    }

    fn lock(&self, index: usize) -> MutexGuard<'_, Option<Stream>> {
        // The modulo keeps the index in bounds; a poisoned stream is only readahead state.
        self.streams[index % STREAMS]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The stream of `collection`, taking its slot over if another collection held it, with
    /// the waste reported since it last looked applied to its window.
    fn stream<'a>(slot: &'a mut Option<Stream>, collection: &str, waste: u32) -> &'a mut Stream {
        if slot.as_ref().is_none_or(|s| s.collection != collection) {
            *slot = Some(Stream::new(collection));
        }
        let stream = slot.get_or_insert_with(|| Stream::new(collection));
        // Each wasted entry halves the window (down to zero: disarmed).
        stream.window = stream.window.checked_shr(waste).unwrap_or(0);
        stream
    }

    /// A read of `key` in `collection` (`missed`: it was not cached). Returns the readahead to
    /// start, if this read calls for one; the caller reports its keys to
    /// [`done`](Self::done) (or [`abandon`](Self::abandon) it).
    pub(crate) fn on_read(
        &self,
        ledger: &Ledger,
        collection: &str,
        key: &str,
        missed: bool,
    ) -> Option<Readahead> {
        let index = slot_of(collection);
        let waste = ledger.take_stream_waste(index);
        let mut slot = self.lock(index);
        let s = Self::stream(&mut slot, collection, waste);
        let ascending = key > s.last.as_str();
        s.last.clear();
        s.last.push_str(key);
        if !ascending {
            s.run = 0;
            s.marker = None;
            s.horizon = None;
            return None;
        }
        s.run = s.run.saturating_add(1);
        if s.pending {
            return None;
        }
        if s.window == 0 {
            if s.run < REARM_RUN {
                return None;
            }
            s.window = INITIAL_WINDOW.min(self.max_window);
        }
        let inside = s.horizon.as_deref().is_some_and(|h| key <= h);
        let start = if inside {
            // Inside what was read ahead: the next batch when the reader reaches the marker,
            // twice as large, as the previous one is being used.
            if s.marker.as_deref().is_none_or(|m| key < m) {
                return None;
            }
            s.window = s.window.saturating_mul(2).min(self.max_window);
            s.horizon.clone().unwrap_or_else(|| key.to_owned())
        } else {
            // Not read ahead (yet, or the reader outran it): only a miss in a run starts one.
            if !missed || s.run < SEQUENTIAL_RUN {
                return None;
            }
            if s.horizon.is_some() {
                // The reader outran the last readahead: read further ahead this time.
                s.window = s.window.saturating_mul(2).min(self.max_window);
            }
            key.to_owned()
        };
        s.pending = true;
        s.marker = None;
        Some(Readahead {
            collection: collection.to_owned(),
            start: Start::After {
                key: start,
                limit: s.window,
            },
            stream: index,
        })
    }

    /// A page of `keys` was just listed (after `after`): read ahead the first window of them,
    /// as the caller is likely to read them next, and continue from there as they are read.
    pub(crate) fn on_list(
        &self,
        ledger: &Ledger,
        collection: &str,
        after: Option<&str>,
        keys: &[String],
    ) -> Option<Readahead> {
        let index = slot_of(collection);
        let waste = ledger.take_stream_waste(index);
        let mut slot = self.lock(index);
        let s = Self::stream(&mut slot, collection, waste);
        if s.pending || s.window == 0 || keys.is_empty() {
            return None;
        }
        s.last.clear();
        s.last.push_str(after.unwrap_or_default());
        s.run = SEQUENTIAL_RUN;
        s.pending = true;
        s.marker = None;
        s.horizon = None;
        let take = s.window.min(keys.len());
        Some(Readahead {
            collection: collection.to_owned(),
            start: Start::Keys(keys.iter().take(take).cloned().collect()),
            stream: index,
        })
    }

    /// A readahead of `stream` read `keys` (in order): the next one starts at its middle.
    pub(crate) fn done(&self, stream: usize, collection: &str, keys: &[String]) {
        let mut slot = self.lock(stream);
        let Some(s) = slot.as_mut().filter(|s| s.collection == collection) else {
            return;
        };
        s.pending = false;
        if let Some(last) = keys.last() {
            s.marker = keys.get(keys.len() / 2).cloned();
            s.horizon = Some(last.clone());
        }
    }

    /// A readahead of `stream` did not run (no budget, or it failed).
    pub(crate) fn abandon(&self, stream: usize, collection: &str) {
        self.done(stream, collection, &[]);
    }

    /// The window of `collection`'s stream (tests).
    #[cfg(test)]
    pub(crate) fn window(&self, collection: &str) -> Option<usize> {
        self.lock(slot_of(collection))
            .as_ref()
            .filter(|s| s.collection == collection)
            .map(|s| s.window)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: usize) -> String {
        format!("k-{n:04}")
    }

    fn limit(r: &Readahead) -> usize {
        match &r.start {
            Start::After { limit, .. } => *limit,
            Start::Keys(keys) => keys.len(),
        }
    }

    /// Reads keys `from..to` in order (each a miss unless `hit` says otherwise), completing
    /// every readahead at once with the keys it asked for; returns the readaheads.
    fn walk(
        seq: &Sequential,
        ledger: &Ledger,
        from: usize,
        to: usize,
        hit: impl Fn(usize) -> bool,
    ) -> Vec<Readahead> {
        let mut started = Vec::new();
        for n in from..to {
            if let Some(r) = seq.on_read(ledger, "c", &key(n), !hit(n)) {
                let keys: Vec<String> = match &r.start {
                    Start::After { key: after, limit } => {
                        let first = after[2..].parse::<usize>().unwrap_or(0) + 1;
                        (first..first + limit).map(key).collect()
                    }
                    Start::Keys(keys) => keys.clone(),
                };
                seq.done(r.stream, "c", &keys);
                started.push(r);
            }
        }
        started
    }

    #[test]
    fn a_run_of_ascending_misses_starts_readahead_that_grows_while_used() {
        let seq = Sequential::new(32);
        let ledger = Ledger::default();
        // Everything after the first readahead is a hit (it was read ahead).
        let started = walk(&seq, &ledger, 0, 200, |n| n >= SEQUENTIAL_RUN as usize);
        assert!(started.len() >= 3, "{started:?}");
        let first = started.first().map(limit);
        assert_eq!(first, Some(INITIAL_WINDOW));
        let limits: Vec<usize> = started.iter().map(limit).collect();
        assert!(
            limits.windows(2).all(|w| w[1] >= w[0]),
            "windows never shrink without waste: {limits:?}"
        );
        assert_eq!(limits.last(), Some(&32), "grown to the maximum: {limits:?}");
    }

    #[test]
    fn waste_shrinks_the_window_down_to_disarmed() {
        let seq = Sequential::new(32);
        let ledger = Ledger::default();
        walk(&seq, &ledger, 0, 100, |n| n >= SEQUENTIAL_RUN as usize);
        let grown = seq.window("c").unwrap_or(0);
        assert!(grown > INITIAL_WINDOW, "{grown}");
        let origin = stream_origin(slot_of("c"));
        ledger.installed(10);
        ledger.wasted(origin, 10);
        // The next read (out of order, so it starts nothing) applies the waste: half the
        // window.
        seq.on_read(&ledger, "c", &key(0), false);
        assert_eq!(seq.window("c"), Some(grown / 2));
        for _ in 0..8 {
            ledger.wasted(origin, 0);
        }
        seq.on_read(&ledger, "c", &key(0), false);
        assert_eq!(seq.window("c"), Some(0), "disarmed");
        // Disarmed: a short run of misses starts nothing; a long one re-arms it.
        let short = walk(&seq, &ledger, 0, REARM_RUN as usize - 1, |_| false);
        assert!(short.is_empty(), "{short:?}");
        let long = walk(&seq, &ledger, 0, REARM_RUN as usize + 1, |_| false);
        assert_eq!(long.len(), 1, "{long:?}");
    }

    #[test]
    fn random_order_starts_nothing() {
        let seq = Sequential::new(32);
        let ledger = Ledger::default();
        for n in [5, 3, 9, 1, 7, 2, 8, 4, 6, 0] {
            assert_eq!(seq.on_read(&ledger, "c", &key(n), true), None);
        }
    }

    #[test]
    fn a_listing_reads_ahead_its_first_window() {
        let seq = Sequential::new(32);
        let ledger = Ledger::default();
        let keys: Vec<String> = (0..10).map(key).collect();
        let r = seq.on_list(&ledger, "c", None, &keys);
        assert_eq!(
            r.as_ref().map(|r| r.start.clone()),
            Some(Start::Keys(keys[..INITIAL_WINDOW].to_vec()))
        );
        seq.done(slot_of("c"), "c", &keys[..INITIAL_WINDOW]);
        // Reading the listed keys in order continues at the marker, after the horizon.
        let next = (0..INITIAL_WINDOW).find_map(|n| seq.on_read(&ledger, "c", &key(n), false));
        assert_eq!(
            next.map(|r| r.start),
            Some(Start::After {
                key: key(INITIAL_WINDOW - 1),
                limit: INITIAL_WINDOW * 2
            })
        );
    }
}

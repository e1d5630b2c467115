//! Predictive prefetching (issue #15): documents the reader is about to ask for are read into
//! the in-process cache ahead of the request.
//!
//! - **Sequential** (`sequential.rs`): a run of reads in key order, or a listing, reads the
//!   next keys' documents ahead, in a window that grows while it is used and shrinks on waste.
//! - **Co-access** (`coaccess.rs`): a bounded table learns documents read together and, when
//!   one misses, prefetches the partners it is confident about.
//! - **Key templates** (`template.rs`): learned per collection — a miss of `games/game-7` is
//!   followed by reads of `players/game-7-p0`… — so a document missed for the first time
//!   brings its children too. These partners are read in the same trip to the blocking pool
//!   as the missed document and filled before the read returns: the reader asks for them
//!   right after, and a prefetch that landed later would lose the race to it.
//!
//! Only misses and first reads of prefetched entries reach the prefetcher: plain hits, the
//! hot path, pay one atomic load (the entry's prefetch mark) and nothing else.
//!
//! Prefetched documents go through the cache's ordinary fill path (`ValueCache::ticket` taken
//! before the database read, `fill` refused if a write or invalidation came in between), so
//! they are exactly as coherent as a miss's fill. The other work runs on the blocking pool,
//! off the caller's path, at most [`MAX_JOBS`] jobs at a time (a read that would start one
//! more starts none). All of it runs only while the entries prefetched and not yet read stay
//! within the budget (`cache.prefetch_budget_percent` of the cache): speculation never takes
//! more of the cache than that. The ledger (`ledger.rs`) counts what became of every prefetched entry.

mod coaccess;
mod ledger;
mod sequential;
mod tally;
mod template;

use std::sync::Arc;

pub(crate) use ledger::{CO_ACCESS, Ledger, PrefetchCounts};
pub(crate) use sequential::{Readahead, Start};

use coaccess::CoAccess;
use sequential::Sequential;
use template::Templates;

/// Prefetch jobs running at once, per store.
pub(crate) const MAX_JOBS: usize = 2;

/// What a read or a listing asks to prefetch.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    pub(crate) readahead: Option<Readahead>,
    /// Cache keys of co-access partners.
    pub(crate) partners: Vec<Arc<str>>,
}

impl Plan {
    fn is_empty(&self) -> bool {
        self.readahead.is_none() && self.partners.is_empty()
    }
}

/// What a read asks for: partners to read with the missed document, before the read
/// returns (`inline`, cache keys named by key templates), and work for the blocking pool.
#[derive(Default)]
pub(crate) struct Decision {
    pub(crate) inline: Vec<Arc<str>>,
    pub(crate) background: Option<(Job, Plan)>,
}

/// A running job's slot: frees it (and wakes [`Prefetcher::settled`]) when dropped.
pub(crate) struct Job {
    jobs: Arc<tokio::sync::watch::Sender<usize>>,
}

impl Drop for Job {
    fn drop(&mut self) {
        self.jobs.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// The store's prefetcher.
pub(crate) struct Prefetcher {
    enabled: bool,
    budget_bytes: u64,
    ledger: Arc<Ledger>,
    sequential: Sequential,
    co_access: CoAccess,
    templates: Templates,
    jobs: Arc<tokio::sync::watch::Sender<usize>>,
}

impl Prefetcher {
    /// A prefetcher (`enabled` only with a cache to fill) reporting into `ledger`.
    pub(crate) fn new(
        enabled: bool,
        max_window: usize,
        budget_bytes: u64,
        ledger: Arc<Ledger>,
    ) -> Self {
        Prefetcher {
            enabled: enabled && budget_bytes > 0 && max_window > 0,
            budget_bytes,
            ledger,
            sequential: Sequential::new(max_window),
            co_access: CoAccess::default(),
            templates: Templates::default(),
            jobs: Arc::new(tokio::sync::watch::Sender::new(0)),
        }
    }

    /// Whether prefetching is on.
    pub(crate) fn enabled(&self) -> bool {
        self.enabled
    }

    /// Whether unread prefetched entries leave room for more.
    pub(crate) fn within_budget(&self) -> bool {
        self.ledger.outstanding_bytes() < self.budget_bytes
    }

    /// A job slot, if fewer than [`MAX_JOBS`] run and the budget has room.
    fn job(&self) -> Option<Job> {
        if !self.within_budget() {
            return None;
        }
        let mut taken = false;
        self.jobs.send_if_modified(|n| {
            taken = *n < MAX_JOBS;
            if taken {
                *n += 1;
            }
            taken
        });
        taken.then(|| Job {
            jobs: Arc::clone(&self.jobs),
        })
    }

    /// A read of `collection`/`key` (`cache_key`): `missed` when the cache did not have it,
    /// `prefetched` when it was a hit on an entry prefetched for it. Returns the partners to
    /// read with it (the caller fills them before its read returns) and the work to start,
    /// with its job slot.
    pub(crate) fn on_read(
        &self,
        collection: &str,
        key: &str,
        cache_key: &str,
        missed: bool,
        prefetched: bool,
    ) -> Decision {
        // A plain hit tells nothing worth its cost on the hottest path: a run over cached
        // documents needs no readahead, and a document the cache keeps is never the one whose
        // miss should bring its partners.
        if !self.enabled || !(missed || prefetched) {
            return Decision::default();
        }
        let mut inline = self.templates.on_read(cache_key, collection, key, missed);
        if !self.within_budget() {
            inline.clear();
        }
        let mut partners = self.co_access.on_read(cache_key, missed, prefetched);
        // What the templates read with the miss needs no second read.
        partners.retain(|p| !inline.contains(p));
        let plan = Plan {
            readahead: self
                .sequential
                .on_read(&self.ledger, collection, key, missed),
            partners,
        };
        Decision {
            inline,
            background: self.start(plan),
        }
    }

    /// A page of `keys` of `collection` was listed after `after`.
    pub(crate) fn on_list(
        &self,
        collection: &str,
        after: Option<&str>,
        keys: &[String],
    ) -> Option<(Job, Plan)> {
        if !self.enabled {
            return None;
        }
        let plan = Plan {
            readahead: self
                .sequential
                .on_list(&self.ledger, collection, after, keys),
            partners: Vec::new(),
        };
        self.start(plan)
    }

    fn start(&self, plan: Plan) -> Option<(Job, Plan)> {
        if plan.is_empty() {
            return None;
        }
        match self.job() {
            Some(job) => Some((job, plan)),
            None => {
                self.abandon(&plan);
                None
            }
        }
    }

    /// A readahead read `keys`.
    pub(crate) fn readahead_done(&self, readahead: &Readahead, keys: &[String]) {
        self.sequential
            .done(readahead.stream, &readahead.collection, keys);
    }

    /// A plan that will not run.
    pub(crate) fn abandon(&self, plan: &Plan) {
        if let Some(r) = &plan.readahead {
            self.sequential.abandon(r.stream, &r.collection);
        }
    }

    /// The counts of the statistics.
    pub(crate) fn counts(&self) -> PrefetchCounts {
        self.ledger.counts()
    }

    /// Waits until no prefetch job runs.
    pub(crate) async fn settled(&self) {
        let mut jobs = self.jobs.subscribe();
        // The sender lives as long as `self`, so this only ends when the count is zero.
        let _ = jobs.wait_for(|n| *n == 0).await;
    }
}

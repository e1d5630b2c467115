//! [`watch`](PersistentStorageManager::watch): a stream of the changes of one collection
//! (and key prefix), catching up from a seq and then following the log.
//!
//! Every change the stream delivers is read from the change log by seq, from a cursor that
//! only moves past changes it has read — catch-up and live are the same loop, so there is no
//! gap and no duplicate between them. What "live" adds is only when to look again: at once
//! when this process committed (the writer signals every group commit) or another node did
//! (PostgreSQL: a `NOTIFY` sent by each write transaction, `backend/postgres/listen.rs`), and
//! at least every `maintenance.change_poll_interval` for changes committed by other processes
//! (a read-only CLI beside the application on SQLite) or notifications missed.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::Stream;

use super::Change;
use super::read::MAX_CHANGES_PER_READ;
use crate::PersistentStorageManager;
use crate::error::Result;

/// Changes one read of the log takes while a watch catches up.
const WATCH_PAGE: usize = 1_000;

/// The live changes of a collection: see [`PersistentStorageManager::watch`]. A
/// [`Stream`]; [`next`](Self::next) reads it without a stream combinator library.
pub struct ChangeStream {
    inner: Pin<Box<dyn Stream<Item = Result<Change>> + Send>>,
}

impl std::fmt::Debug for ChangeStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeStream").finish_non_exhaustive()
    }
}

impl ChangeStream {
    /// The next change; `None` once the stream ended (after it yielded an error).
    pub async fn next(&mut self) -> Option<Result<Change>> {
        std::future::poll_fn(|cx| self.inner.as_mut().poll_next(cx)).await
    }
}

impl Stream for ChangeStream {
    type Item = Result<Change>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

/// Where a watch is.
struct Follow {
    store: PersistentStorageManager,
    collection: String,
    prefix: String,
    /// The last seq read from the log (delivered or filtered out).
    cursor: u64,
    ready: VecDeque<Change>,
    signal: tokio::sync::watch::Receiver<u64>,
    failed: bool,
}

impl Follow {
    async fn next(mut self) -> Option<(Result<Change>, Self)> {
        loop {
            if let Some(change) = self.ready.pop_front() {
                return Some((Ok(change), self));
            }
            if self.failed {
                return None;
            }
            // Marked before the read: a commit after this point wakes the wait below.
            self.signal.borrow_and_update();
            match self.store.changes_since(self.cursor, WATCH_PAGE).await {
                Err(e) => {
                    self.failed = true;
                    return Some((Err(e), self));
                }
                Ok(page) => {
                    if let Some(last) = page.last() {
                        // This process's writer may have committed some of these changes
                        // and not yet put their values in the cache: hand them out once it
                        // has, so a read of a record the consumer is told of returns it.
                        let begun = self.store.shared().feed_installed.begun();
                        while !self.store.shared().feed_installed.finished_through(begun) {
                            if !self.wait().await {
                                break;
                            }
                            self.signal.borrow_and_update();
                        }
                        self.cursor = last.seq;
                        let (c, p) = (&self.collection, &self.prefix);
                        self.ready
                            .extend(page.into_iter().filter(|ch| ch.matches(c, p)));
                        continue;
                    }
                }
            }
            self.wait().await;
        }
    }

    /// Waits for a wake-up (a commit of this process or, where the backend can tell,
    /// another node's) or the poll interval; `false` when the store is gone (after a poll
    /// interval: only polling is left, and the read fails if it closed).
    async fn wait(&mut self) -> bool {
        let poll = self.store.config().maintenance.change_poll_interval;
        self.store
            .shared()
            .feed_waits
            .send_modify(|n| *n = n.wrapping_add(1));
        tokio::select! {
            changed = self.signal.changed() => {
                if changed.is_err() {
                    tokio::time::sleep(poll).await;
                    return false;
                }
                true
            }
            () = tokio::time::sleep(poll) => true,
        }
    }
}

impl PersistentStorageManager {
    /// How many times a watch of this store has begun to wait (feature `testing`): after
    /// it read the log to its end, or for this process's cache to take changes it read.
    /// A test waits for it before it commits elsewhere, so the change can only arrive by a
    /// wake-up, never by the watch's first read.
    #[cfg(feature = "testing")]
    pub fn watch_waits(&self) -> tokio::sync::watch::Receiver<u64> {
        self.shared().feed_waits.subscribe()
    }

    /// The changes of `collection` whose key starts with `prefix` (`""`: all), committed from
    /// now on by any process or node, in seq order. See [`watch_from`](Self::watch_from).
    pub async fn watch(&self, collection: &str, prefix: &str) -> Result<ChangeStream> {
        let head = self.change_head().await?;
        self.watch_from(collection, prefix, head).await
    }

    /// The changes of `collection` whose key starts with `prefix`, after seq `since`: first
    /// those already in the log (catch-up), then each new one as it commits (live), exactly
    /// once each and in seq order, with no gap and no duplicate between the two.
    ///
    /// Changes of this process arrive as soon as they commit; those of other processes
    /// (another program on the same SQLite file) and other nodes (PostgreSQL) within
    /// `maintenance.change_poll_interval`. The stream ends after yielding an error: the store
    /// closed, or [`StorageError::ChangesPruned`](crate::StorageError::ChangesPruned) when
    /// `since` is older than retention. Works on a store opened read-only.
    pub async fn watch_from(
        &self,
        collection: &str,
        prefix: &str,
        since: u64,
    ) -> Result<ChangeStream> {
        crate::validate::collection(collection)?;
        self.check_open()?;
        let shared = self.shared();
        if !shared
            .feed_listening
            .swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            // Other nodes' commits wake the watches too, where the backend can tell.
            let signal = std::sync::Arc::clone(&shared.feed_signal);
            let backend = std::sync::Arc::clone(&shared.backend);
            crate::rt::blocking(move || {
                backend.notify_changes(std::sync::Arc::new(move || {
                    crate::store::Shared::wake_watches(&signal);
                }))
            })
            .await?;
        }
        let follow = Follow {
            store: self.clone(),
            collection: collection.to_owned(),
            prefix: prefix.to_owned(),
            cursor: since,
            ready: VecDeque::with_capacity(WATCH_PAGE.min(MAX_CHANGES_PER_READ)),
            signal: self.shared().feed_signal.subscribe(),
            failed: false,
        };
        let stream = futures_util::stream::unfold(follow, Follow::next);
        Ok(ChangeStream {
            inner: Box::pin(stream),
        })
    }
}

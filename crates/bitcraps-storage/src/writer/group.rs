//! One group commit: every queued unit in one transaction, then the Redis tier's
//! invalidations, then the cache and the counters, then the acknowledgements — in that order, so a caller
//! that returned sees its write everywhere.

use super::Reply;
use crate::backend::{OpOutcome, WriteOp, WriteUnit};
use crate::cache::{CachedValue, cache_key};
use crate::error::{Result, StorageError};
use crate::stats::Counters;
use crate::store::Shared;

/// Commits one group, with up to `touch_limit` buffered access counts (from a flush of
/// `touch_batch`, see `AccessTracker::drain`); returns how many counts it wrote, or the
/// error that failed the whole transaction.
pub(super) fn commit_group(
    shared: &Shared,
    writes: Vec<(WriteUnit, Reply<Vec<OpOutcome>>)>,
    touch_limit: usize,
    touch_batch: usize,
) -> Result<usize, StorageError> {
    let (mut units, replies): (Vec<WriteUnit>, Vec<_>) = writes.into_iter().unzip();
    let _span = tracing::debug_span!("group_commit", requests = replies.len()).entered();
    let touches = shared.access.drain(touch_limit, touch_batch);
    let touched = touches.len();
    let has_touches = touched > 0;
    if has_touches {
        units.push(touches);
    }
    let mark = shared.cache.remote_mark();
    // Watches of this process hand out this group's changes only once `installing` is
    // dropped: after the cache has its values, or after it failed (`feed/installed.rs`).
    let installing = shared.feed_installed.begin(shared);
    // A panic in the backend unwinds out of the writer thread, which poisons it (see
    // `Writer`): the transaction was rolled back by the unwinding, and nothing can say what
    // else the backend left half done.
    let results = match shared.backend.apply(&units) {
        Ok(results) => results,
        Err(mut e) => {
            if has_touches && let Some(t) = units.last() {
                shared.access.restore(t);
            }
            tracing::warn!(error = %e, requests = replies.len(), "group commit failed");
            crate::observe::group_failed();
            let mut replies = replies.into_iter();
            if let Some(first) = replies.next() {
                for r in replies {
                    let _ = r.send(Err(e.duplicate()));
                }
                let copy = e.duplicate();
                let _ = first.send(Err(e));
                return Err(copy);
            }
            return Err(e);
        }
    };
    #[cfg(feature = "testing")]
    shared.hooks.before_installing();
    let counters = &shared.counters;
    Counters::add(&counters.group_commits, 1);
    crate::observe::group_committed(replies.len());
    Counters::add(
        &counters.grouped_requests,
        u64::try_from(replies.len()).unwrap_or(0),
    );
    let mut results = results.into_iter();
    let mut answers = Vec::with_capacity(replies.len());
    for (unit, reply) in units.iter().zip(replies) {
        let result = results
            .next()
            .unwrap_or_else(|| Err(StorageError::Task("the backend skipped a write".into())));
        // A failed unit is counted as an error once, by the call that gets it (the handle's
        // `count_error`), not here too.
        answers.push((unit, reply, result));
    }
    // Other nodes and L2 first: invalidate L2 and announce the keys before this process's
    // cache takes the new values, and before anyone is acknowledged. In the other order a
    // reader that missed L1 (an eviction) between the install here and the invalidation
    // there would read the replaced value from L2 and fill L1 with it under the generation
    // this commit left, stale after the write returned. Once a write returns no node can
    // read the old value from L2 (bounded by `redis.timeout`).
    if let Some(remote) = &shared.remote {
        let mut written = Vec::new();
        for (unit, _, result) in &answers {
            if let Ok(outcomes) = result {
                for (op, outcome) in unit.iter().zip(outcomes) {
                    written_keys(op, outcome, &mut written);
                }
            }
        }
        remote.invalidate_after_commit(written);
    }
    for (unit, _, result) in &answers {
        if let Ok(outcomes) = result {
            for (op, outcome) in unit.iter().zip(outcomes) {
                record_effect(shared, op, outcome, mark);
            }
        }
    }
    // Watches of this process read the log again (`feed/watch.rs`) — now that this
    // process's cache has the group's values too, so a watcher that reads a record it was
    // told of gets the logged version, not the one it replaced. A watch that read the log
    // since the transaction committed has held those changes back until now.
    drop(installing);
    #[cfg(feature = "testing")]
    shared.hooks.before_acknowledging();
    for (_, reply, result) in answers {
        let _ = reply.send(result);
    }
    if has_touches && let (Some(Err(e)), Some(t)) = (results.next(), units.last()) {
        tracing::warn!(error = %e, "flushing access statistics failed; will retry");
        shared.access.restore(t);
        // The writes of the group were answered above; a flush() waiter must hear that its
        // counts are not on disk.
        return Err(e);
    }
    Ok(touched)
}

/// The cache keys `op` changed, as `outcome` says (for the Redis tier's invalidations).
fn written_keys(op: &WriteOp, outcome: &OpOutcome, written: &mut Vec<String>) {
    match (op, outcome) {
        (
            WriteOp::Put {
                collection, key, ..
            }
            | WriteOp::Delete {
                collection, key, ..
            },
            _,
        ) => written.push(cache_key(collection, key)),
        (WriteOp::SweepExpired { .. }, OpOutcome::Swept { removed }) => {
            written.extend(removed.iter().map(|(c, k)| cache_key(c, k)))
        }
        (WriteOp::DeletePrefix { collection, .. }, OpOutcome::DeletePrefix { deleted }) => {
            written.extend(deleted.iter().map(|k| cache_key(collection, k)))
        }
        _ => {}
    }
}

/// Applies a committed operation to the cache and the counters. `mark` was taken before the
/// commit (see `ValueCache::committed_since`).
fn record_effect(shared: &Shared, op: &WriteOp, outcome: &OpOutcome, mark: u64) {
    let counters = &shared.counters;
    match (op, outcome) {
        (
            WriteOp::Put {
                collection,
                key,
                value,
                ..
            },
            OpOutcome::Put {
                deduplicated,
                expires_ms,
                quota_warning,
                ..
            },
        ) => {
            if let Some(w) = quota_warning {
                tracing::warn!(
                    collection = %collection,
                    limit_kind = %w.kind,
                    limit = w.limit,
                    current = w.current,
                    "a collection passed the soft limit of its quota"
                );
                Counters::add(&counters.quota_warnings, 1);
                crate::observe::quota_warning();
            }
            shared.keyframes.latest().committed(collection, key, value);
            let dict = value
                .dict_id
                .and_then(|id| shared.dictionaries.decoder(id, "").ok());
            let k = cache_key(collection, key);
            let cached = CachedValue::from_encoded(&k, value, dict).expiring(*expires_ms);
            shared.cache.committed_since(&k, Some(cached), mark);
            Counters::add(&counters.writes, 1);
            let raw = u64::try_from(value.raw_len()).unwrap_or(u64::MAX);
            Counters::add(&counters.logical_bytes_written, raw);
            if *deduplicated {
                Counters::add(&counters.deduplicated, 1);
            } else {
                let stored = u64::try_from(value.stored_len()).unwrap_or(u64::MAX);
                Counters::add(&counters.bytes_written, stored);
            }
            crate::observe::put_committed(raw, *deduplicated, value.stored_len());
        }
        (
            WriteOp::Delete {
                collection, key, ..
            },
            OpOutcome::Delete { existed },
        ) => {
            gone(shared, collection, key);
            if *existed {
                Counters::add(&counters.deletes, 1);
            }
        }
        (WriteOp::SweepExpired { .. }, OpOutcome::Swept { removed }) => {
            for (collection, key) in removed {
                gone(shared, collection, key);
            }
            let n = u64::try_from(removed.len()).unwrap_or(u64::MAX);
            Counters::add(&counters.expired_swept, n);
            crate::observe::expired_swept(n);
        }
        (WriteOp::DeletePrefix { collection, .. }, OpOutcome::DeletePrefix { deleted }) => {
            for key in deleted {
                gone(shared, collection, key);
            }
            Counters::add(
                &counters.deletes,
                u64::try_from(deleted.len()).unwrap_or(u64::MAX),
            );
        }
        _ => {}
    }
}

/// `collection/key` is gone (deleted, expired, under a deleted prefix): its access counts,
/// its last keyframe and its cache entry go with it.
fn gone(shared: &Shared, collection: &str, key: &str) {
    let k = cache_key(collection, key);
    shared.access.forget(&k);
    shared.keyframes.latest().forget(collection, key);
    shared.cache.committed(&k, None);
}

//! The set-based write path's plan (`group.rs`): a whole group commit worked out in memory
//! from the state its statements read under the locks, then written with a few set-based
//! statements.
//!
//! The plan replays the units in order exactly as the statement-per-operation path does
//! (`write.rs`): a write of an expired record removes it first, a put takes a reference to
//! the content before it drops the old one, a blob whose last reference goes is gone for the
//! puts after it, a unit that fails (a check that does not hold, a hash whose length
//! disagrees) leaves no trace. What reaches the database is the net effect: the rows of keys
//! that were removed, the rows of keys present at the end, new blobs that are still
//! referenced, each blob's net reference change, and the change log in order.

use super::fast_hash::{FastMap, map_with_capacity};

use crate::backend::{OpOutcome, WriteOp, WriteUnit, is_expired};
use crate::error::{Result, StorageError};
use crate::feed::ChangeKind;
use crate::value::{ContentHash, EncodedValue};
use crate::version::Version;

/// A (collection, key).
pub(super) type Key<'a> = (&'a str, &'a str);

/// A record as the database holds it at the start of the group.
#[derive(Debug, Clone, Copy)]
pub(super) struct Current {
    pub(super) blob: i64,
    pub(super) version: i64,
    pub(super) expires: Option<i64>,
}

/// A blob as the database holds it (read under its hash lock, so the count is exact).
#[derive(Debug, Clone)]
pub(super) struct KnownBlob {
    pub(super) hash: Option<ContentHash>,
    pub(super) raw_len: i64,
    pub(super) refcount: i64,
}

/// What the plan starts from.
#[derive(Debug, Default)]
pub(super) struct Inputs<'a> {
    /// Every touched key's record, where it has one.
    pub(super) current: FastMap<Key<'a>, Current>,
    /// The current records' blobs and the blobs found by the new values' hashes.
    pub(super) blobs: FastMap<i64, KnownBlob>,
    /// The blob to share for each content hash found (deduplication only).
    pub(super) by_hash: FastMap<ContentHash, i64>,
    /// Versions drawn from the clock, ascending: at least one per put.
    pub(super) versions: Vec<i64>,
    /// Blob ids drawn from the blobs' sequence: at least one per new blob.
    pub(super) new_ids: Vec<i64>,
    /// The default TTL of each collection that has one.
    pub(super) ttl: FastMap<&'a str, i64>,
    pub(super) deduplicate: bool,
}

/// A record row to insert or update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct RecordRow<'a> {
    pub(super) key: Key<'a>,
    pub(super) blob: i64,
    /// The creation time of a row inserted in this group (`None`: the row is kept).
    pub(super) created: Option<i64>,
    pub(super) updated: i64,
    pub(super) version: i64,
    pub(super) expires: Option<i64>,
}

/// A change the group logs (`feed.rs`), its key borrowed from the units: the log's
/// parameters are built from these and nothing keeps them past the group.
#[derive(Debug, Clone, Copy)]
pub(super) struct Logged<'a> {
    pub(super) key: Key<'a>,
    pub(super) kind: ChangeKind,
    pub(super) version: i64,
    pub(super) at_ms: i64,
}

/// The net effect of a group.
#[derive(Debug, Default)]
pub(super) struct Plan<'a> {
    pub(super) results: Vec<Result<Vec<OpOutcome>>>,
    pub(super) changes: Vec<Logged<'a>>,
    /// Rows to delete first: keys whose record went away at some point (a later put of
    /// the key inserts a new row, as a delete then an insert would).
    pub(super) delete_rows: Vec<Key<'a>>,
    /// Rows present at the end, in key order.
    pub(super) upserts: Vec<RecordRow<'a>>,
    /// New blobs still referenced at the end, with their counts, in id order.
    pub(super) new_blobs: Vec<(i64, &'a EncodedValue, i64)>,
    /// Net reference changes of blobs that existed, in id order.
    pub(super) ref_deltas: Vec<(i64, i64)>,
    /// Blobs that existed and lost their last reference.
    pub(super) drop_blobs: Vec<i64>,
    /// Access counts to add: (key, reads, latest read), in key order.
    pub(super) touches: Vec<(Key<'a>, i64, i64)>,
}

#[derive(Debug, Clone, Copy)]
struct Rec {
    blob: i64,
    version: i64,
    expires: Option<i64>,
    /// When a put of this group inserted the row (`None`: the row the database holds).
    created: Option<i64>,
    /// When a put of this group wrote it (`None`: unchanged).
    updated: Option<i64>,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    rec: Option<Rec>,
    /// The row the database holds was removed in this group.
    row_deleted: bool,
}

#[derive(Debug, Clone)]
struct Blob<'a> {
    hash: Option<ContentHash>,
    raw_len: i64,
    refcount: i64,
    /// The value of a blob this group inserts.
    new: Option<&'a EncodedValue>,
}

enum Undo<'a> {
    Slot(Key<'a>, Option<Slot>),
    Blob(i64, Option<Blob<'a>>),
    Hash(ContentHash, Option<i64>),
}

struct Sim<'a> {
    slots: FastMap<Key<'a>, Slot>,
    blobs: FastMap<i64, Blob<'a>>,
    by_hash: FastMap<ContentHash, i64>,
    versions: Vec<i64>,
    next_version: usize,
    new_ids: Vec<i64>,
    next_id: usize,
    ttl: FastMap<&'a str, i64>,
    deduplicate: bool,
    changes: Vec<Logged<'a>>,
    undo: Vec<Undo<'a>>,
}

/// Works out `units` from `inputs`. Only the operations `group::eligible` admits appear;
/// an error means the inputs were short (too few versions or ids drawn), never a unit's own
/// failure, which is reported in its slot.
pub(super) fn plan<'a>(units: &'a [WriteUnit], inputs: Inputs<'a>) -> Result<Plan<'a>> {
    // Sized once for the group: a bulk batch of a thousand puts otherwise grows each map
    // and the undo log through every power of two.
    let ops = units.iter().map(Vec::len).sum::<usize>();
    let mut blobs = map_with_capacity(inputs.blobs.len().saturating_add(ops));
    for (id, b) in inputs.blobs {
        let blob = Blob {
            hash: b.hash,
            raw_len: b.raw_len,
            refcount: b.refcount,
            new: None,
        };
        blobs.insert(id, blob);
    }
    let mut by_hash = inputs.by_hash;
    if inputs.deduplicate {
        by_hash.reserve(ops);
    }
    let mut sim = Sim {
        slots: map_with_capacity(ops),
        blobs,
        by_hash,
        versions: inputs.versions,
        next_version: 0,
        new_ids: inputs.new_ids,
        next_id: 0,
        ttl: inputs.ttl,
        deduplicate: inputs.deduplicate,
        changes: Vec::with_capacity(ops),
        // A put records its slot twice and its blob and hash once each.
        undo: Vec::with_capacity(ops.saturating_mul(4)),
    };
    let mut start = map_with_capacity(sim.blobs.len());
    start.extend(sim.blobs.iter().map(|(id, b)| (*id, b.refcount)));
    let current = inputs.current;
    let mut results = Vec::with_capacity(units.len());
    let mut touches: FastMap<Key<'a>, (i64, i64)> = FastMap::default();
    for unit in units {
        let mark = (
            sim.undo.len(),
            sim.next_version,
            sim.next_id,
            sim.changes.len(),
        );
        let mut outcomes = Vec::with_capacity(unit.len());
        let mut failed = None;
        for op in unit {
            if let WriteOp::Touch {
                collection,
                key,
                count,
                last_ms,
            } = op
            {
                // Touches come last (`group::eligible`): they add to the final rows.
                let entry = touches
                    .entry((collection.as_str(), key.as_str()))
                    .or_insert((0, i64::MIN));
                entry.0 = entry
                    .0
                    .saturating_add(i64::try_from(*count).unwrap_or(i64::MAX));
                entry.1 = entry.1.max(*last_ms);
                outcomes.push(OpOutcome::Touch);
                continue;
            }
            match sim.op(op, &current) {
                Ok(outcome) => outcomes.push(outcome),
                Err(Short) => return Err(short()),
                Err(UnitFailed(e)) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        match failed {
            None => {
                sim.undo.clear();
                results.push(Ok(outcomes));
            }
            Some(e) => {
                sim.rollback(mark);
                results.push(Err(e));
            }
        }
    }
    Ok(sim.finish(results, &start, touches))
}

fn short() -> StorageError {
    StorageError::Task("the write plan ran out of drawn versions or blob ids".into())
}

/// Why an operation did not apply.
enum OpFail {
    /// The unit fails with this error; the others go on.
    UnitFailed(StorageError),
    /// The inputs were short.
    Short,
}
use OpFail::{Short, UnitFailed};

impl From<StorageError> for OpFail {
    fn from(e: StorageError) -> Self {
        UnitFailed(e)
    }
}

impl<'a> Sim<'a> {
    fn slot(&mut self, key: Key<'a>, current: &FastMap<Key<'a>, Current>) -> Slot {
        if let Some(slot) = self.slots.get(&key) {
            return *slot;
        }
        let slot = Slot {
            rec: current.get(&key).map(|c| Rec {
                blob: c.blob,
                version: c.version,
                expires: c.expires,
                created: None,
                updated: None,
            }),
            row_deleted: false,
        };
        self.undo.push(Undo::Slot(key, None));
        self.slots.insert(key, slot);
        slot
    }

    fn set_slot(&mut self, key: Key<'a>, slot: Slot) {
        let old = self.slots.insert(key, slot);
        self.undo.push(Undo::Slot(key, old));
    }

    fn set_blob(&mut self, id: i64, blob: Blob<'a>) {
        let old = self.blobs.insert(id, blob);
        self.undo.push(Undo::Blob(id, old));
    }

    fn set_hash(&mut self, hash: ContentHash, id: Option<i64>) {
        let old = match id {
            Some(id) => self.by_hash.insert(hash, id),
            None => self.by_hash.remove(&hash),
        };
        self.undo.push(Undo::Hash(hash, old));
    }

    fn rollback(&mut self, (undo, version, id, changes): (usize, usize, usize, usize)) {
        while self.undo.len() > undo {
            match self.undo.pop() {
                Some(Undo::Slot(key, old)) => restore(&mut self.slots, key, old),
                Some(Undo::Blob(id, old)) => restore(&mut self.blobs, id, old),
                Some(Undo::Hash(hash, old)) => restore(&mut self.by_hash, hash, old),
                None => break,
            }
        }
        self.next_version = version;
        self.next_id = id;
        self.changes.truncate(changes);
    }

    /// Removes the record at `key`, dropping its blob's reference.
    fn remove(&mut self, key: Key<'a>, slot: Slot, rec: Rec) {
        // A row the database holds is deleted; a row this group inserted never was written.
        let row_deleted = slot.row_deleted || rec.created.is_none();
        self.set_slot(
            key,
            Slot {
                rec: None,
                row_deleted,
            },
        );
        self.release(rec.blob);
    }

    fn release(&mut self, id: i64) {
        // A blob row that is missing has nothing to drop (as `release_blob` updates no row).
        let Some(mut blob) = self.blobs.get(&id).cloned() else {
            return;
        };
        blob.refcount = blob.refcount.saturating_sub(1);
        let gone = blob.refcount <= 0;
        let hash = blob.hash;
        self.set_blob(id, blob);
        if gone
            && let Some(hash) = hash
            && self.by_hash.get(&hash) == Some(&id)
        {
            self.set_hash(hash, None);
        }
    }

    /// Removes the record at `key` if it expired by `now_ms`.
    fn purge(&mut self, key: Key<'a>, now_ms: i64, current: &FastMap<Key<'a>, Current>) {
        let slot = self.slot(key, current);
        if let Some(rec) = slot.rec
            && is_expired(rec.expires, now_ms)
        {
            self.changes.push(Logged {
                key,
                kind: ChangeKind::Expire,
                version: rec.version,
                at_ms: now_ms,
            });
            self.remove(key, slot, rec);
        }
    }

    /// A reference to a blob with `value`'s content: `(id, deduplicated)`.
    fn acquire(&mut self, value: &'a EncodedValue) -> Result<(i64, bool), OpFail> {
        let raw_len = i64::try_from(value.raw_len()).unwrap_or(i64::MAX);
        if self.deduplicate
            && let Some(&id) = self.by_hash.get(&value.hash)
            && let Some(mut blob) = self.blobs.get(&id).cloned()
        {
            if blob.raw_len != raw_len {
                return Err(UnitFailed(StorageError::corruption(
                    format!("blob {id}"),
                    format!(
                        "same content hash but length {}, expected {raw_len}",
                        blob.raw_len
                    ),
                )));
            }
            blob.refcount = blob.refcount.saturating_add(1);
            self.set_blob(id, blob);
            return Ok((id, true));
        }
        let id = *self.new_ids.get(self.next_id).ok_or(Short)?;
        self.next_id += 1;
        self.set_blob(
            id,
            Blob {
                hash: Some(value.hash),
                raw_len,
                refcount: 1,
                new: Some(value),
            },
        );
        if self.deduplicate {
            self.set_hash(value.hash, Some(id));
        }
        Ok((id, false))
    }

    fn op(
        &mut self,
        op: &'a WriteOp,
        current: &FastMap<Key<'a>, Current>,
    ) -> Result<OpOutcome, OpFail> {
        match op {
            WriteOp::Put {
                collection,
                key,
                value,
                now_ms,
                expires_ms,
                ..
            } => {
                let k = (collection.as_str(), key.as_str());
                self.purge(k, *now_ms, current);
                let expires = match expires_ms {
                    Some(at) => Some(*at),
                    None => self
                        .ttl
                        .get(collection.as_str())
                        .map(|ttl| now_ms.saturating_add(*ttl)),
                };
                let slot = self.slot(k, current);
                let (blob, deduplicated) = self.acquire(value)?;
                let version = *self.versions.get(self.next_version).ok_or(Short)?;
                self.next_version += 1;
                let created = match slot.rec {
                    Some(old) => old.created,
                    None => Some(*now_ms),
                };
                let rec = Rec {
                    blob,
                    version,
                    expires,
                    created,
                    updated: Some(*now_ms),
                };
                self.set_slot(
                    k,
                    Slot {
                        rec: Some(rec),
                        row_deleted: slot.row_deleted,
                    },
                );
                if let Some(old) = slot.rec {
                    self.release(old.blob);
                }
                let stored = Version::stored(collection, key, version)?;
                self.changes.push(Logged {
                    key: (collection.as_str(), key.as_str()),
                    kind: ChangeKind::Put,
                    version,
                    at_ms: *now_ms,
                });
                Ok(OpOutcome::Put {
                    deduplicated,
                    replaced: slot.rec.is_some(),
                    version: stored,
                    expires_ms: expires,
                    quota_warning: None,
                })
            }
            WriteOp::Delete {
                collection,
                key,
                now_ms,
            } => {
                let k = (collection.as_str(), key.as_str());
                self.purge(k, *now_ms, current);
                let slot = self.slot(k, current);
                let Some(rec) = slot.rec else {
                    return Ok(OpOutcome::Delete { existed: false });
                };
                self.remove(k, slot, rec);
                self.changes.push(Logged {
                    key: k,
                    kind: ChangeKind::Delete,
                    version: rec.version,
                    at_ms: *now_ms,
                });
                Ok(OpOutcome::Delete { existed: true })
            }
            WriteOp::Check {
                collection,
                key,
                expect,
                now_ms,
            } => {
                let k = (collection.as_str(), key.as_str());
                let slot = self.slot(k, current);
                let actual = slot
                    .rec
                    .filter(|r| !is_expired(r.expires, *now_ms))
                    .map(|r| Version::stored(collection, key, r.version))
                    .transpose()?;
                expect.check(collection, key, actual)?;
                Ok(OpOutcome::Check)
            }
            // `group::eligible` admits nothing else.
            _ => Err(UnitFailed(StorageError::Task(
                "an operation the set-based write path does not take".into(),
            ))),
        }
    }

    fn finish(
        self,
        results: Vec<Result<Vec<OpOutcome>>>,
        start: &FastMap<i64, i64>,
        touches: FastMap<Key<'a>, (i64, i64)>,
    ) -> Plan<'a> {
        let mut plan = Plan {
            results,
            changes: self.changes,
            upserts: Vec::with_capacity(self.slots.len()),
            new_blobs: Vec::with_capacity(self.blobs.len()),
            ..Plan::default()
        };
        for (key, slot) in &self.slots {
            if slot.row_deleted {
                plan.delete_rows.push(*key);
            }
            if let Some(rec) = slot.rec
                && let Some(updated) = rec.updated
            {
                plan.upserts.push(RecordRow {
                    key: *key,
                    blob: rec.blob,
                    created: rec.created,
                    updated,
                    version: rec.version,
                    expires: rec.expires,
                });
            }
        }
        plan.delete_rows.sort_unstable();
        plan.upserts.sort_unstable_by_key(|r| r.key);
        for (id, blob) in &self.blobs {
            match blob.new {
                Some(value) if blob.refcount > 0 => {
                    plan.new_blobs.push((*id, value, blob.refcount));
                }
                Some(_) => {}
                None => {
                    // Every blob without a value was read at the start.
                    let before = start.get(id).copied().unwrap_or(blob.refcount);
                    let delta = blob.refcount.saturating_sub(before);
                    if delta != 0 {
                        plan.ref_deltas.push((*id, delta));
                        if blob.refcount <= 0 {
                            plan.drop_blobs.push(*id);
                        }
                    }
                }
            }
        }
        plan.new_blobs.sort_unstable_by_key(|(id, _, _)| *id);
        plan.ref_deltas.sort_unstable();
        plan.drop_blobs.sort_unstable();
        plan.touches = touches.into_iter().map(|(k, (n, l))| (k, n, l)).collect();
        plan.touches.sort_unstable_by_key(|(k, _, _)| *k);
        plan
    }
}

fn restore<K: std::hash::Hash + Eq, V>(map: &mut FastMap<K, V>, key: K, old: Option<V>) {
    match old {
        Some(v) => {
            map.insert(key, v);
        }
        None => {
            map.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Pipeline;
    use crate::version::Expect;

    fn value(doc: &str) -> Result<EncodedValue> {
        let pipeline = Pipeline {
            codec: crate::Codec::None,
            level: 0,
            max_value_size: usize::MAX,
            chunk_threshold: 0,
            keyframe_interval: 0,
        };
        pipeline.encode_raw("c", "k", doc.as_bytes().to_vec())
    }

    fn put(key: &str, doc: &str, now_ms: i64) -> Result<WriteOp> {
        Ok(WriteOp::Put {
            collection: "c".into(),
            key: key.into(),
            value: value(doc)?,
            now_ms,
            keep_version: None,
            expires_ms: None,
        })
    }

    fn inputs<'a>() -> Inputs<'a> {
        Inputs {
            versions: (100..200).collect(),
            new_ids: (1000..1100).collect(),
            deduplicate: true,
            ..Inputs::default()
        }
    }

    /// `k` holds blob 7 (content `doc`, one reference) at version 5.
    fn holding<'a>(doc: &str, expires: Option<i64>) -> Result<Inputs<'a>> {
        let mut inputs = inputs();
        let hash = value(doc)?.hash;
        inputs.current.insert(
            ("c", "k"),
            Current {
                blob: 7,
                version: 5,
                expires,
            },
        );
        inputs.blobs.insert(
            7,
            KnownBlob {
                hash: Some(hash),
                raw_len: i64::try_from(doc.len()).unwrap_or(0),
                refcount: 1,
            },
        );
        inputs.by_hash.insert(hash, 7);
        Ok(inputs)
    }

    #[test]
    fn rewriting_the_same_content_keeps_the_blob_and_its_count() -> Result<()> {
        let units = vec![vec![put("k", "{}", 10)?]];
        let plan = plan(&units, holding("{}", None)?)?;
        let Some(Ok(outcomes)) = plan.results.first() else {
            panic!("{:?}", plan.results);
        };
        assert!(matches!(
            outcomes.first(),
            Some(OpOutcome::Put {
                deduplicated: true,
                replaced: true,
                ..
            })
        ));
        assert!(plan.new_blobs.is_empty() && plan.ref_deltas.is_empty());
        assert!(plan.delete_rows.is_empty());
        assert_eq!(plan.upserts.len(), 1);
        assert_eq!(
            plan.upserts.first().map(|r| (r.blob, r.created)),
            Some((7, None))
        );
        Ok(())
    }

    /// An expired record's content written again: the old blob goes with the record, so the
    /// put stores the content anew (as one statement per operation does) and the row is
    /// deleted, then inserted with a new creation time.
    #[test]
    fn a_put_over_an_expired_record_of_the_same_content_stores_it_anew() -> Result<()> {
        let units = vec![vec![put("k", "{}", 10)?]];
        let plan = plan(&units, holding("{}", Some(5))?)?;
        assert_eq!(plan.changes.len(), 2, "an expire, then the put");
        assert_eq!(
            plan.changes.first().map(|c| c.kind),
            Some(ChangeKind::Expire)
        );
        assert_eq!(plan.delete_rows, vec![("c", "k")]);
        assert_eq!(plan.drop_blobs, vec![7]);
        assert_eq!(plan.ref_deltas, vec![(7, -1)]);
        assert_eq!(plan.new_blobs.len(), 1);
        assert_eq!(
            plan.upserts.first().map(|r| (r.blob, r.created)),
            Some((1000, Some(10)))
        );
        Ok(())
    }

    #[test]
    fn a_failed_check_leaves_no_trace_of_its_unit() -> Result<()> {
        let check = WriteOp::Check {
            collection: "c".into(),
            key: "k".into(),
            expect: Expect::Absent,
            now_ms: 10,
        };
        let units = vec![
            vec![put("k", "{\"a\":1}", 10)?, check],
            vec![put("j", "{}", 10)?],
        ];
        let plan = plan(&units, holding("{}", None)?)?;
        assert!(matches!(
            plan.results.first(),
            Some(Err(StorageError::Conflict { .. }))
        ));
        assert!(matches!(plan.results.get(1), Some(Ok(_))));
        // The second unit shares blob 7 and takes the first version the failed unit gave back.
        assert_eq!(plan.upserts.len(), 1);
        let row = plan.upserts.first().copied();
        assert_eq!(
            row.map(|r| (r.key, r.blob, r.version)),
            Some((("c", "j"), 7, 100))
        );
        assert_eq!(plan.ref_deltas, vec![(7, 1)]);
        assert!(plan.new_blobs.is_empty());
        assert_eq!(plan.changes.len(), 1);
        Ok(())
    }

    #[test]
    fn a_delete_then_a_put_of_a_key_replaces_its_row() -> Result<()> {
        let delete = WriteOp::Delete {
            collection: "c".into(),
            key: "k".into(),
            now_ms: 10,
        };
        let units = vec![
            vec![delete],
            vec![put("k", "{}", 11)?],
            vec![put("k", "[]", 12)?],
        ];
        let plan = plan(&units, holding("{}", None)?)?;
        assert_eq!(plan.delete_rows, vec![("c", "k")]);
        // Blob 7 dropped to zero with the delete, so the first put stored the content anew,
        // and the second put dropped that one again: only "[]" is inserted.
        assert_eq!(plan.drop_blobs, vec![7]);
        assert_eq!(plan.new_blobs.len(), 1);
        assert_eq!(plan.new_blobs.first().map(|b| (b.0, b.2)), Some((1001, 1)));
        let row = plan.upserts.first().copied();
        assert_eq!(
            row.map(|r| (r.blob, r.created, r.updated, r.version)),
            Some((1001, Some(11), 12, 101))
        );
        let kinds: Vec<ChangeKind> = plan.changes.iter().map(|c| c.kind).collect();
        assert_eq!(
            kinds,
            vec![ChangeKind::Delete, ChangeKind::Put, ChangeKind::Put]
        );
        Ok(())
    }

    #[test]
    fn the_same_new_content_twice_in_a_group_is_stored_once() -> Result<()> {
        let units = vec![vec![put("a", "{}", 10)?], vec![put("b", "{}", 10)?]];
        let plan = plan(&units, inputs())?;
        assert_eq!(plan.new_blobs.first().map(|b| (b.0, b.2)), Some((1000, 2)));
        assert_eq!(plan.new_blobs.len(), 1);
        let dedup: Vec<bool> = plan
            .results
            .iter()
            .flatten()
            .flatten()
            .map(|o| {
                matches!(
                    o,
                    OpOutcome::Put {
                        deduplicated: true,
                        ..
                    }
                )
            })
            .collect();
        assert_eq!(dedup, vec![false, true]);
        Ok(())
    }

    #[test]
    fn too_few_drawn_versions_is_an_error_not_a_panic() -> Result<()> {
        let units = vec![vec![put("a", "{}", 10)?]];
        let short = Inputs {
            new_ids: vec![1],
            deduplicate: true,
            ..Inputs::default()
        };
        assert!(plan(&units, short).is_err());
        Ok(())
    }
}

//! The set-based write path: a whole group commit in a handful of round trips, whatever its
//! size, instead of several statements per operation.
//!
//! Under the same locks as the statement-per-operation path (`write.rs`, `locks.rs`), in the
//! same order, it reads everything the group depends on in a few set-based statements, works
//! the group out in memory (`plan.rs`), and writes the net effect with one statement per
//! table. Statements that do not depend on each other's answers are pipelined: sent
//! together, answered together, one round trip. The server runs them in order, and each
//! takes its snapshot when it starts, so a read sent behind a lock sees what committed
//! before the lock was granted.
//!
//! 1. `BEGIN`; the store's write lock; the put collections' settings (quotas, default TTLs)
//!    and whether they are shredded (`shredded.rs`); the key locks; every touched key's
//!    record and its blob (none of these needs another's answer, so they go in one round
//!    trip);
//! 2. the hash locks; the blobs those records name and those the new values' hashes find;
//!    versions and blob ids drawn from their sequences;
//! 3. record rows deleted, blobs inserted, reference counts moved, blobs dropped, record
//!    rows upserted, access counts added, the change log numbered and appended (`feed.rs`),
//!    and `COMMIT`. Under the exclusive lock the blobs go by a binary `COPY` opened at the
//!    end of the first round trip (`copy.rs`).
//!
//! Three round trips whatever the group's size, against about ten per put before. A group
//! under the store's exclusive lock (a bulk batch: `locks.rs`) takes no hash locks, so its
//! second step needs nothing from the first and goes with it: two round trips. The
//! transaction is the path's own (not a driver `Transaction`, whose `COMMIT` is a round trip
//! of its own): a connection that fails or is dropped mid-way is closed, never pooled.
//!
//! It takes puts, deletes, checks and trailing access counts of plain (unchunked) values
//! outside collections with a quota; other groups go the statement-per-operation way. One
//! found to need that only once read (a quota, a chunked current value) is rolled back
//! first, before anything was written.

use std::collections::BTreeSet;

use deadpool_postgres::Client;
use futures_util::future::try_join_all;
use tokio_postgres::types::ToSql;

use super::copy;
use super::fast_hash::map_with_capacity;
use super::feed;
use super::locks::{LOCK_ALL, STORE_LOCK_SPACE, hash_lock, key_lock, store_lock};
use super::plan::{self, Current, Inputs, KnownBlob};
use super::shredded;
use super::write::{Fail, Settings, db};
use crate::backend::{OpOutcome, WriteOp, WriteUnit};
use crate::error::Result;
use crate::quota::CollectionQuota;
use crate::value::{ContentHash, EncodedValue};

type Params<'p> = Vec<&'p (dyn ToSql + Sync)>;

const BEGIN: &str = "BEGIN";
const RELAXED: &str = "SET LOCAL synchronous_commit = off";
const COMMIT: &str = "COMMIT";

/// The keys' records, with their blobs' hash, codec, length and reference count: one probe
/// of the primary key a key, whatever the tables' statistics say. As a plain join of the
/// keys with `records`, the plan followed them: the connection's cached generic plan, made
/// while the table was empty and never analyzed (the server's autovacuum may be off, and the
/// backend analyzes only after `ANALYZE_AFTER_PUTS`), hashed the keys and scanned the whole
/// table in every group — 0.03 ms a group at first, 0.9 ms at 4,000 records. `OFFSET 0`
/// keeps the planner from flattening the lateral subquery back into that join. The blobs
/// are joined outside it: so the generic plan costs little enough for the server to keep it
/// from a group of about eight keys on, instead of planning each execution afresh (0.15 ms).
const CURRENT: &str = "SELECT t.c, t.k, r.blob_id, r.version, r.expires_at, b.hash, b.codec,
         b.raw_len, b.refcount
     FROM unnest($1::text[], $2::text[]) AS t(c, k)
     CROSS JOIN LATERAL (
         SELECT r.blob_id, r.version, r.expires_at FROM records r
         WHERE r.collection = t.c AND r.key = t.k
         OFFSET 0) AS r
     LEFT JOIN blobs b ON b.id = r.blob_id";

/// The blobs named by id (`found` false), and for each hash the blob deduplication shares
/// (`found` true; the lowest id when several hold it).
const BLOBS: &str = "SELECT id, hash, raw_len, refcount, false FROM blobs WHERE id = ANY($1)
     UNION ALL
     SELECT * FROM (SELECT DISTINCT ON (hash) id, hash, raw_len, refcount, true FROM blobs
                    WHERE hash = ANY($2) ORDER BY hash, id) AS f";

/// Versions and blob ids. The blobs' sequence is looked up once (an init plan), not once
/// per id: per id it cost ~2 µs, more than drawing.
const DRAW: &str = "SELECT
     ARRAY(SELECT nextval('version_clock') FROM generate_series(1, $1::bigint)),
     ARRAY(SELECT nextval((SELECT pg_get_serial_sequence('blobs', 'id')::regclass))
           FROM generate_series(1, $2::bigint))";

const DELETE_ROWS: &str = "DELETE FROM records WHERE (collection, key) IN
     (SELECT * FROM unnest($1::text[], $2::text[]))";

const INSERT_BLOBS: &str =
    "INSERT INTO blobs (id, hash, codec, raw_len, stored_len, refcount, data, dict_id)
     SELECT * FROM unnest($1::bigint[], $2::bytea[], $3::bigint[], $4::bigint[], $5::bigint[],
                          $6::bigint[], $7::bytea[], $8::bigint[])";

const MOVE_REFS: &str = "UPDATE blobs SET refcount = blobs.refcount + d.delta
     FROM unnest($1::bigint[], $2::bigint[]) AS d(id, delta) WHERE blobs.id = d.id";

const DROP_BLOBS: &str = "DELETE FROM blobs WHERE id = ANY($1) AND refcount <= 0";

/// Rows no record held when the group read the keys (or that it deleted first): the key
/// locks (or the store's exclusive lock) keep every other writer off them, so a plain
/// insert, without the speculative insertion of an upsert (~3 µs a row less).
const INSERT_ROWS: &str = "INSERT INTO records
         (collection, key, blob_id, created_at, updated_at, version, expires_at)
     SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[],
                          $6::bigint[], $7::bigint[])";

/// Rows the database holds, updated (the creation time given is not used).
const UPSERT: &str = "INSERT INTO records
         (collection, key, blob_id, created_at, updated_at, version, expires_at)
     SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[],
                          $6::bigint[], $7::bigint[])
     ON CONFLICT (collection, key) DO UPDATE
     SET blob_id = excluded.blob_id, updated_at = excluded.updated_at,
         version = excluded.version, expires_at = excluded.expires_at";

/// The write step's statements other than the blobs' insert.
const WRITES: [&str; 8] = [
    DELETE_ROWS,
    MOVE_REFS,
    DROP_BLOBS,
    INSERT_ROWS,
    UPSERT,
    TOUCH,
    feed::APPEND,
    COMMIT,
];

const TOUCH: &str = "UPDATE records r SET access_count = r.access_count + t.n,
         last_accessed = greatest(coalesce(r.last_accessed, 0), t.l)
     FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[]) AS t(c, k, n, l)
     WHERE r.collection = t.c AND r.key = t.k";

/// Whether the set-based path takes `units`: puts (not keeping a version, not chunked),
/// deletes and checks, then access counts after every other operation.
pub(super) fn eligible(units: &[WriteUnit]) -> bool {
    let mut touching = false;
    units.iter().flatten().all(|op| match op {
        WriteOp::Touch { .. } => {
            touching = true;
            true
        }
        WriteOp::Put {
            keep_version: None,
            value,
            ..
        } => !touching && !value.is_chunked(),
        WriteOp::Delete { .. } | WriteOp::Check { .. } => !touching,
        _ => false,
    })
}

/// The statement for `sql`, prepared once per connection (see `write::cached`).
async fn prepared(client: &Client, sql: &str) -> Result<tokio_postgres::Statement, Fail> {
    client
        .prepare_cached(sql)
        .await
        .map_err(db("preparing a statement"))
}

fn pipelined_err(e: tokio_postgres::Error) -> Fail {
    db("running a group's statements")(e)
}

/// What the set-based path did with a group.
pub(super) enum Ran {
    /// Committed, with each unit's result.
    Done(Vec<Result<Vec<OpOutcome>>>),
    /// Declined before writing anything (a quota, a chunked current value): the connection,
    /// outside any transaction, for the statement-per-operation path.
    Declined(Box<Client>),
}

/// A connection whose transaction the server may still hold open. Dropped without
/// [`Open::release`] (a failure, or the future dropped), it is taken out of the pool and
/// closed, which ends the transaction: a pooled connection never carries one.
struct Open(Option<Client>);

impl Open {
    fn client(&self) -> Result<&Client, Fail> {
        self.0.as_ref().ok_or_else(|| {
            Fail::Final(crate::error::StorageError::Task(
                "the write connection was already released".into(),
            ))
        })
    }

    fn release(mut self) -> Option<Client> {
        self.0.take()
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        if let Some(client) = self.0.take() {
            drop(Client::take(client));
        }
    }
}

/// Runs `units` (which [`eligible`] admitted) in a transaction of its own on `client`:
/// `BEGIN` goes with the first step's statements and `COMMIT` with the last step's.
pub(super) async fn run(
    client: Client,
    settings: &Settings,
    units: &[WriteUnit],
    exclusive: bool,
) -> Result<Ran, Fail> {
    let open = Open(Some(client));
    let ran = steps(open.client()?, settings, units, exclusive).await?;
    match ran {
        Some(results) => {
            // Committed (the last step's `COMMIT` answered): the connection is clean.
            drop(open.release());
            Ok(Ran::Done(results))
        }
        None => {
            open.client()?
                .batch_execute("ROLLBACK")
                .await
                .map_err(db("rolling back a declined group"))?;
            match open.release() {
                Some(client) => Ok(Ran::Declined(Box::new(client))),
                None => Err(Fail::Final(crate::error::StorageError::Task(
                    "the write connection was already released".into(),
                ))),
            }
        }
    }
}

/// The steps; `None` when the group needs the statement-per-operation path after all,
/// before anything was written (the transaction is open: the caller rolls it back).
async fn steps(
    tx: &Client,
    settings: &Settings,
    units: &[WriteUnit],
    exclusive: bool,
) -> Result<Option<Vec<Result<Vec<OpOutcome>>>>, Fail> {
    let scope = settings.scope.as_str();
    let keys: BTreeSet<(&str, &str)> = units
        .iter()
        .flatten()
        .filter_map(super::locks::touched_key)
        .collect();
    let put_into: BTreeSet<&str> = units
        .iter()
        .flatten()
        .filter_map(|op| match op {
            WriteOp::Put { collection, .. } => Some(collection.as_str()),
            _ => None,
        })
        .collect();
    // The new values' hashes, and how many versions and blob ids to draw: a blob id for
    // each put, the most a group can need. Fewer (one per distinct content) ran short when
    // a put's old blob is released before the content it shares with a later put of the
    // same group is acquired again (`model.rs`: an encrypted batch writing one key twice).
    // Unused ids are skipped, as the sequences already allow.
    let mut new_hashes: BTreeSet<&ContentHash> = BTreeSet::new();
    let mut puts = 0i64;
    for op in units.iter().flatten() {
        if let WriteOp::Put { value, .. } = op {
            puts += 1;
            new_hashes.insert(&value.hash);
        }
    }
    let new_blobs = puts;
    let lookup: Vec<&[u8]> = if settings.deduplicate {
        new_hashes.iter().map(|h| &h[..]).collect()
    } else {
        Vec::new()
    };
    let no_ids: Vec<i64> = Vec::new();

    // 1. The store's lock, the settings, the key locks and the keys' records, pipelined:
    // none of them needs another's answer. The server runs them in order, so the records
    // are read once the key locks are granted. Under the exclusive lock no hash lock is
    // taken, so the blobs the new values' hashes find and the numbers drawn go in this
    // round trip too, and the current records' blobs come with the records.
    let merged = exclusive;
    let store_sql = if exclusive {
        "SELECT pg_advisory_xact_lock($1, $2)"
    } else {
        "SELECT pg_advisory_xact_lock_shared($1, $2)"
    };
    let begin = prepared(tx, BEGIN).await?;
    let relaxed = prepared(tx, RELAXED).await?;
    let (store_stmt, settings_stmt) = (
        prepared(tx, store_sql).await?,
        prepared(tx, shredded::SETTINGS_AND_SHREDDED).await?,
    );
    let (lock_stmt, current_stmt) = (prepared(tx, LOCK_ALL).await?, prepared(tx, CURRENT).await?);
    let (blobs_stmt, draw_stmt) = (prepared(tx, BLOBS).await?, prepared(tx, DRAW).await?);
    // Under the exclusive lock the new blobs go by `COPY` (`copy.rs`), started at the end of
    // this round trip. While it is open the connection sends nothing else, so every
    // statement of the write step is prepared before it.
    let copy_stmt = if merged {
        for sql in WRITES {
            prepared(tx, sql).await?;
        }
        Some(prepared(tx, copy::COPY_BLOBS).await?)
    } else {
        None
    };
    let names: Vec<&str> = put_into.iter().copied().collect();
    let store_id = store_lock(scope);
    let (collections, key_names): (Vec<&str>, Vec<&str>) = keys.iter().copied().unzip();
    // Under the exclusive lock no key is locked: no lock ids to work out (~1.2 k
    // instructions a key).
    let key_ids: Vec<i64> = if exclusive {
        Vec::new()
    } else {
        keys.iter().map(|(c, k)| key_lock(scope, c, k)).collect()
    };
    let p_store: Params = vec![&STORE_LOCK_SPACE, &store_id];
    // The collections put into: their settings, and whether they are shredded.
    let p_settings: Params = vec![&names, &names];
    let p_lock: Params = vec![&key_ids];
    let p_current: Params = vec![&collections, &key_names];
    let p_found: Params = vec![&no_ids, &lookup];
    let p_draw: Params = vec![&puts, &new_blobs];
    let locks_keys = !exclusive && !key_ids.is_empty();
    let mut calls = Vec::with_capacity(9);
    calls.push(tx.query(&begin, &[]));
    if !settings.synchronous {
        calls.push(tx.query(&relaxed, &[]));
    }
    calls.push(tx.query(&store_stmt, &p_store));
    // After the store's lock: a shred committed by another node is seen whole.
    calls.push(tx.query(&settings_stmt, &p_settings));
    if locks_keys {
        calls.push(tx.query(&lock_stmt, &p_lock));
    }
    calls.push(tx.query(&current_stmt, &p_current));
    if merged {
        calls.push(tx.query(&blobs_stmt, &p_found));
        calls.push(tx.query(&draw_stmt, &p_draw));
    }
    let reads = try_join_all(calls);
    let (mut answers, sink) = match &copy_stmt {
        Some(stmt) => {
            let open = async { tx.copy_in(stmt).await.map(|sink| Some(Box::pin(sink))) };
            futures_util::future::try_join(reads, open)
                .await
                .map_err(pipelined_err)?
        }
        None => (reads.await.map_err(pipelined_err)?, None),
    };
    let (mut draw_rows, mut blob_rows) = (Vec::new(), Vec::new());
    if merged {
        draw_rows = answers.pop().unwrap_or_default();
        blob_rows = answers.pop().unwrap_or_default();
    }
    let current_rows = answers.pop().unwrap_or_default();
    if locks_keys {
        answers.pop();
    }
    let read = shredded::Read::from_rows(&answers.pop().unwrap_or_default())?;
    // Declined before anything was written: the caller rolls back, releasing the locks.
    // A put into a shredded collection is refused per unit by the statement path.
    if !read.shredded.is_empty()
        || names
            .iter()
            .any(|c| CollectionQuota::of(c, read.triples()).is_some())
    {
        return Ok(None);
    }
    let mut inputs = Inputs {
        deduplicate: settings.deduplicate,
        current: map_with_capacity(current_rows.len()),
        blobs: map_with_capacity(current_rows.len().saturating_add(blob_rows.len())),
        by_hash: map_with_capacity(blob_rows.len()),
        ..Inputs::default()
    };
    for (c, n, v) in read.triples() {
        if n == crate::settings::DEFAULT_TTL_MS
            && let Some(name) = names.iter().find(|x| **x == c)
        {
            inputs.ttl.insert(*name, v);
        }
    }

    let mut hashes: BTreeSet<i64> = BTreeSet::new();
    let mut current_ids: Vec<i64> = Vec::with_capacity(current_rows.len());
    for row in &current_rows {
        let err = db("reading the records of a group");
        let c: &str = row.try_get(0).map_err(&err)?;
        let k: &str = row.try_get(1).map_err(&err)?;
        let blob: i64 = row.try_get(2).map_err(&err)?;
        let hash: Option<&[u8]> = row.try_get(5).map_err(&err)?;
        let codec: Option<i64> = row.try_get(6).map_err(&err)?;
        if codec.is_some_and(crate::chunk::is_chunked) {
            return Ok(None);
        }
        if let Some(hash) = hash {
            // Under the exclusive lock the blob read with the record is the one to plan
            // with; otherwise it is read again under its hash lock (step 2).
            if !merged {
                hashes.insert(hash_lock(scope, hash));
            } else {
                inputs.blobs.insert(
                    blob,
                    KnownBlob {
                        hash: ContentHash::try_from(hash).ok(),
                        raw_len: row.try_get(7).map_err(&err)?,
                        refcount: row.try_get(8).map_err(&err)?,
                    },
                );
            }
        }
        current_ids.push(blob);
        // The row's strings are the keys' own: find the borrowed pair to key the map by.
        if let Some(key) = keys.get(&(c, k)) {
            inputs.current.insert(
                *key,
                Current {
                    blob,
                    version: row.try_get(3).map_err(&err)?,
                    expires: row.try_get(4).map_err(&err)?,
                },
            );
        }
    }

    // 2. The hash locks, then the blobs, and the numbers drawn (in step 1 when merged).
    if !merged {
        for hash in &new_hashes {
            hashes.insert(hash_lock(scope, &hash[..]));
        }
        let hash_ids: Vec<i64> = hashes.into_iter().collect();
        let p_hash_lock: Params = vec![&hash_ids];
        let p_blobs: Params = vec![&current_ids, &lookup];
        let mut calls = Vec::with_capacity(3);
        if !hash_ids.is_empty() {
            calls.push(tx.query(&lock_stmt, &p_hash_lock));
        }
        calls.push(tx.query(&blobs_stmt, &p_blobs));
        calls.push(tx.query(&draw_stmt, &p_draw));
        let mut answers = try_join_all(calls).await.map_err(pipelined_err)?;
        draw_rows = answers.pop().unwrap_or_default();
        blob_rows = answers.pop().unwrap_or_default();
    }
    for row in &blob_rows {
        let err = db("reading the blobs of a group");
        let id: i64 = row.try_get(0).map_err(&err)?;
        let hash: &[u8] = row.try_get(1).map_err(&err)?;
        let hash = ContentHash::try_from(hash).ok();
        let found: bool = row.try_get(4).map_err(&err)?;
        if found && let Some(hash) = hash {
            inputs.by_hash.insert(hash, id);
        }
        inputs.blobs.insert(
            id,
            KnownBlob {
                hash,
                raw_len: row.try_get(2).map_err(&err)?,
                refcount: row.try_get(3).map_err(&err)?,
            },
        );
    }
    if let Some(row) = draw_rows.first() {
        let err = db("drawing versions and blob ids");
        inputs.versions = row.try_get(0).map_err(&err)?;
        inputs.new_ids = row.try_get(1).map_err(&err)?;
        inputs.versions.sort_unstable();
        inputs.new_ids.sort_unstable();
    }

    // 3. The net effect.
    let plan = plan::plan(units, inputs).map_err(Fail::Final)?;
    write(tx, scope, &plan, sink).await?;
    Ok(Some(plan.results))
}

/// Writes `plan`'s rows and its changes, pipelined, in the order the statements depend on
/// each other; the change log last (`feed.rs`), then the commit.
async fn write(
    tx: &Client,
    scope: &str,
    plan: &plan::Plan<'_>,
    sink: Option<copy::Sink>,
) -> Result<(), Fail> {
    let (del_c, del_k): (Vec<&str>, Vec<&str>) = plan.delete_rows.iter().copied().unzip();

    let mut b_id = Vec::with_capacity(plan.new_blobs.len());
    let mut b_hash: Vec<&[u8]> = Vec::with_capacity(plan.new_blobs.len());
    let (mut b_codec, mut b_raw, mut b_stored, mut b_refs) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut b_data: Vec<&[u8]> = Vec::with_capacity(plan.new_blobs.len());
    let mut b_dict: Vec<Option<i64>> = Vec::with_capacity(plan.new_blobs.len());
    // Copied (`copy.rs`), the new blobs need no columns here.
    let columns: &[(i64, &EncodedValue, i64)] = if sink.is_some() { &[] } else { &plan.new_blobs };
    for (id, value, refs) in columns {
        b_id.push(*id);
        b_hash.push(&value.hash[..]);
        b_codec.push(value.codec_id());
        b_raw.push(i64::try_from(value.raw_len()).unwrap_or(i64::MAX));
        b_stored.push(i64::try_from(value.stored.len()).unwrap_or(i64::MAX));
        b_refs.push(*refs);
        b_data.push(&value.stored[..]);
        b_dict.push(value.dict_id);
    }
    let (ref_ids, ref_deltas): (Vec<i64>, Vec<i64>) = plan.ref_deltas.iter().copied().unzip();

    let (new_rows, kept_rows): (Vec<_>, Vec<_>) =
        plan.upserts.iter().partition(|r| r.created.is_some());
    let new_rows = RowColumns::of(&new_rows);
    let kept_rows = RowColumns::of(&kept_rows);
    let (mut t_c, mut t_k, mut t_n, mut t_l) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for ((c, k), count, last) in &plan.touches {
        t_c.push(*c);
        t_k.push(*k);
        t_n.push(*count);
        t_l.push(*last);
    }

    let p_delete: Params = vec![&del_c, &del_k];
    let p_insert: Params = vec![
        &b_id, &b_hash, &b_codec, &b_raw, &b_stored, &b_refs, &b_data, &b_dict,
    ];
    let p_refs: Params = vec![&ref_ids, &ref_deltas];
    let p_drop: Params = vec![&plan.drop_blobs];
    let p_insert_rows = new_rows.params();
    let p_upsert = kept_rows.params();
    let p_touch: Params = vec![&t_c, &t_k, &t_n, &t_l];
    let no_params: Params = Vec::new();
    let mut steps: Vec<(&str, &Params)> = Vec::with_capacity(8);
    if !del_c.is_empty() {
        steps.push((DELETE_ROWS, &p_delete));
    }
    let copied = match &sink {
        Some(_) => Some(copy::blob_rows(&plan.new_blobs)?),
        None => None,
    };
    if !b_id.is_empty() {
        steps.push((INSERT_BLOBS, &p_insert));
    }
    if !ref_ids.is_empty() {
        steps.push((MOVE_REFS, &p_refs));
    }
    if !plan.drop_blobs.is_empty() {
        steps.push((DROP_BLOBS, &p_drop));
    }
    if !new_rows.c.is_empty() {
        steps.push((INSERT_ROWS, &p_insert_rows));
    }
    if !kept_rows.c.is_empty() {
        steps.push((UPSERT, &p_upsert));
    }
    if !t_c.is_empty() {
        steps.push((TOUCH, &p_touch));
    }
    let log = feed::Log::of_plan(scope, &plan.changes);
    let p_log = log.as_ref().map(feed::Log::params);
    if let Some(p) = &p_log {
        steps.push((feed::APPEND, p));
    }
    // The commit goes with them; a statement that fails aborts the transaction, and the
    // server answers the `COMMIT` after it with a rollback.
    steps.push((COMMIT, &no_params));
    let mut statements = Vec::with_capacity(steps.len());
    for (sql, _) in &steps {
        statements.push(prepared(tx, sql).await?);
    }
    let writes = try_join_all(
        statements
            .iter()
            .zip(&steps)
            .map(|(stmt, (_, params))| tx.query(stmt, params)),
    );
    // The `COPY`'s rows first: the statements after it are sent once it is done. The new
    // blobs then go in before the rows deleted and the counts moved, which touch only
    // blobs and records that existed (new ids are drawn, never reused).
    match (sink, copied) {
        (Some(sink), Some(rows)) => {
            futures_util::future::try_join(copy::finish(sink, rows), writes)
                .await
                .map_err(pipelined_err)?;
        }
        _ => {
            writes.await.map_err(pipelined_err)?;
        }
    }
    Ok(())
}

/// Record rows as the columns of an `unnest`.
struct RowColumns<'a> {
    c: Vec<&'a str>,
    k: Vec<&'a str>,
    blob: Vec<i64>,
    created: Vec<i64>,
    updated: Vec<i64>,
    version: Vec<i64>,
    expires: Vec<Option<i64>>,
}

impl<'a> RowColumns<'a> {
    fn of(rows: &[&plan::RecordRow<'a>]) -> Self {
        let n = rows.len();
        let mut columns = RowColumns {
            c: Vec::with_capacity(n),
            k: Vec::with_capacity(n),
            blob: Vec::with_capacity(n),
            created: Vec::with_capacity(n),
            updated: Vec::with_capacity(n),
            version: Vec::with_capacity(n),
            expires: Vec::with_capacity(n),
        };
        for row in rows {
            columns.c.push(row.key.0);
            columns.k.push(row.key.1);
            columns.blob.push(row.blob);
            // A row kept by the conflict keeps its creation time; the value is not used.
            columns.created.push(row.created.unwrap_or(row.updated));
            columns.updated.push(row.updated);
            columns.version.push(row.version);
            columns.expires.push(row.expires);
        }
        columns
    }

    fn params(&self) -> Params<'_> {
        vec![
            &self.c,
            &self.k,
            &self.blob,
            &self.created,
            &self.updated,
            &self.version,
            &self.expires,
        ]
    }
}

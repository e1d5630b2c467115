//! Versioned schema migrations, recorded in `PRAGMA user_version`.
//!
//! Each entry of [`MIGRATIONS`] moves the schema one version up and runs in the same
//! transaction as the version bump. A database newer than this build is refused.

use rusqlite::Connection;

use super::db_err;
use crate::backend::identity;
use crate::backend::{KeyChange, StoreIdentity, WrappedKey};

use crate::error::{Result, StorageError};

/// `PRAGMA application_id` of bitcraps-storage databases ("BCRS").
pub const APPLICATION_ID: i64 = 0x4243_5253;

/// The migrations, oldest first; the schema version is the number applied.
pub const MIGRATIONS: &[&str] = &[
    // Version 1: content-addressed blobs with reference counts, and records pointing at them.
    r"
    CREATE TABLE blobs (
        id         INTEGER PRIMARY KEY,
        hash       BLOB    NOT NULL CHECK (length(hash) = 32),
        codec      INTEGER NOT NULL,
        raw_len    INTEGER NOT NULL CHECK (raw_len >= 0),
        stored_len INTEGER NOT NULL CHECK (stored_len >= 0),
        refcount   INTEGER NOT NULL CHECK (refcount >= 0),
        data       BLOB    NOT NULL
    );
    CREATE INDEX blobs_by_hash ON blobs(hash);
    CREATE TABLE records (
        collection    TEXT    NOT NULL,
        key           TEXT    NOT NULL,
        blob_id       INTEGER NOT NULL,
        created_at    INTEGER NOT NULL,
        updated_at    INTEGER NOT NULL,
        access_count  INTEGER NOT NULL DEFAULT 0,
        last_accessed INTEGER,
        PRIMARY KEY (collection, key)
    ) WITHOUT ROWID;
    CREATE INDEX records_by_blob ON records(blob_id);
    ",
    // Version 2: per-collection zstd dictionaries; a blob names the one it needs.
    r"
    CREATE TABLE dictionaries (
        id         INTEGER PRIMARY KEY,
        collection TEXT    NOT NULL,
        created_at INTEGER NOT NULL,
        data       BLOB    NOT NULL
    );
    ALTER TABLE blobs ADD COLUMN dict_id INTEGER;
    ",
    // Version 3: smaller indexes (issue #4). Dedup looks a hash up by its first 8 bytes and
    // compares the full hash in the row, so a prefix collision is never a false match; the
    // index holds 8 bytes per blob instead of 32. `records_by_blob` is dropped: only the
    // consistency check and the reference repair join records to blobs, and they do it in one
    // `GROUP BY blob_id` pass instead of one lookup per blob.
    r"
    DROP INDEX records_by_blob;
    DROP INDEX blobs_by_hash;
    CREATE INDEX blobs_by_hash_prefix ON blobs(substr(hash, 1, 8));
    ",
    // Version 4: the store's identity (issue #12): a random store id, the Redis tier's secret
    // and whether the store runs with a Redis tier. The two random rows are inserted by
    // `migrate` in the same transaction (`backend/identity.rs`).
    r"
    CREATE TABLE meta (
        name  TEXT NOT NULL PRIMARY KEY,
        value TEXT NOT NULL
    ) WITHOUT ROWID;
    ",
    // Version 5: record versions (issue #13). Every record gets a version from one store-wide
    // clock (`version.rs`); records written before have version 1 and the clock starts there.
    r"
    ALTER TABLE records ADD COLUMN version INTEGER NOT NULL DEFAULT 1 CHECK (version >= 1);
    CREATE TABLE version_clock (
        id   INTEGER PRIMARY KEY CHECK (id = 0),
        last INTEGER NOT NULL CHECK (last >= 1)
    );
    INSERT INTO version_clock (id, last) VALUES (0, 1);
    ",
    // Version 6: data lifecycle (issue #18). A record may expire (`expires_at`, milliseconds
    // since the epoch; NULL: never), found by the sweep through a partial index; collections
    // keep named settings (the default TTL, and later limits) every node reads.
    r"
    ALTER TABLE records ADD COLUMN expires_at INTEGER;
    CREATE INDEX records_by_expiry ON records(expires_at) WHERE expires_at IS NOT NULL;
    CREATE TABLE collection_settings (
        collection TEXT    NOT NULL,
        name       TEXT    NOT NULL,
        value      INTEGER NOT NULL,
        PRIMARY KEY (collection, name)
    ) WITHOUT ROWID;
    ",
    // Version 7: encryption at rest (issue #14). The data keys of an encrypted store, each
    // sealed under the master key (`crypto/keyring.rs`); the key check value is the `meta`
    // row 'key_check'. A plaintext store keeps this table empty.
    r"
    CREATE TABLE data_keys (
        id         INTEGER PRIMARY KEY,
        collection TEXT    NOT NULL,
        version    INTEGER NOT NULL CHECK (version >= 1),
        wrapped    BLOB    NOT NULL,
        created_at INTEGER NOT NULL,
        UNIQUE (collection, version)
    );
    ",
    // Version 8: the change feed (issue #18). Every committed put, delete and expiry appends
    // a row in the same transaction (`feed/`); `seq` is dense and increases in commit order.
    // `change_clock` holds the last seq handed out ('last') and the highest seq retention
    // removed ('pruned'), so a read after a removed seq is an error, never a silent gap.
    // `kind`: 1 put, 2 delete, 3 expire.
    r"
    CREATE TABLE changes (
        seq        INTEGER PRIMARY KEY,
        collection TEXT    NOT NULL,
        key        TEXT    NOT NULL,
        kind       INTEGER NOT NULL CHECK (kind BETWEEN 1 AND 3),
        version    INTEGER NOT NULL,
        at         INTEGER NOT NULL
    );
    CREATE TABLE change_clock (
        name  TEXT    NOT NULL PRIMARY KEY,
        value INTEGER NOT NULL CHECK (value >= 0)
    ) WITHOUT ROWID;
    INSERT INTO change_clock (name, value) VALUES ('last', 0), ('pruned', 0);
    ",
    // Version 9: chunked blobs (issue #16). A large document's blob has codec 16 (a chunk
    // list) and no bytes of its own; its chunks are content-addressed, reference-counted rows
    // of `chunks` (same columns as `blobs`), listed in order by `blob_chunks`. A chunk's
    // reference count is the number of list entries naming it (`chunk/`).
    r"
    CREATE TABLE chunks (
        id         INTEGER PRIMARY KEY,
        hash       BLOB    NOT NULL CHECK (length(hash) = 32),
        codec      INTEGER NOT NULL,
        raw_len    INTEGER NOT NULL CHECK (raw_len >= 0),
        stored_len INTEGER NOT NULL CHECK (stored_len >= 0),
        refcount   INTEGER NOT NULL CHECK (refcount >= 0),
        data       BLOB    NOT NULL,
        dict_id    INTEGER
    );
    CREATE INDEX chunks_by_hash_prefix ON chunks(substr(hash, 1, 8));
    CREATE TABLE blob_chunks (
        blob_id  INTEGER NOT NULL,
        seq      INTEGER NOT NULL CHECK (seq >= 0),
        chunk_id INTEGER NOT NULL,
        PRIMARY KEY (blob_id, seq)
    ) WITHOUT ROWID;
    ",
    // Version 10: chunk reference counts out of the data pages (issue #16). A rewrite that
    // shares its chunks with the version it replaces changes their counts; beside the chunk's
    // bytes, that rewrote every page holding chunk data. The counts live in the narrow
    // `chunk_refs` (one row per chunk, a few hundred to a page); `chunks` is rebuilt without
    // its `refcount` column.
    r"
    CREATE TABLE chunk_refs (
        chunk_id INTEGER PRIMARY KEY,
        refcount INTEGER NOT NULL CHECK (refcount >= 0)
    );
    INSERT INTO chunk_refs (chunk_id, refcount) SELECT id, refcount FROM chunks;
    CREATE TABLE chunks_v10 (
        id         INTEGER PRIMARY KEY,
        hash       BLOB    NOT NULL CHECK (length(hash) = 32),
        codec      INTEGER NOT NULL,
        raw_len    INTEGER NOT NULL CHECK (raw_len >= 0),
        stored_len INTEGER NOT NULL CHECK (stored_len >= 0),
        data       BLOB    NOT NULL,
        dict_id    INTEGER
    );
    INSERT INTO chunks_v10 (id, hash, codec, raw_len, stored_len, data, dict_id)
        SELECT id, hash, codec, raw_len, stored_len, data, dict_id FROM chunks;
    DROP TABLE chunks;
    ALTER TABLE chunks_v10 RENAME TO chunks;
    CREATE INDEX chunks_by_hash_prefix ON chunks(substr(hash, 1, 8));
    ",
    // Version 11: fewer pages per durable write (issue #16). A rewrite wrote six pages to the
    // WAL, two of them only for the clocks (`version_clock`, `change_clock`) and one for the
    // hash-index entry of a delta that nothing looks up by hash. The version clock becomes
    // the 'version' row of `change_clock` (one page for both clocks); `version_clock` stays
    // as a view of it, updatable through a trigger, for the restores and snapshot readers
    // that name it. `blobs_by_hash_prefix` leaves deltas (codec 17) out: deduplication
    // never shares a delta, so it never looks one up.
    r"
    INSERT INTO change_clock (name, value) SELECT 'version', last FROM version_clock;
    DROP TABLE version_clock;
    CREATE VIEW version_clock (id, last) AS
        SELECT 0, value FROM change_clock WHERE name = 'version';
    CREATE TRIGGER version_clock_update INSTEAD OF UPDATE OF last ON version_clock
    BEGIN
        UPDATE change_clock SET value = NEW.last WHERE name = 'version';
    END;
    DROP INDEX blobs_by_hash_prefix;
    CREATE INDEX blobs_by_hash_prefix ON blobs(substr(hash, 1, 8)) WHERE codec <> 17;
    ",
    // Version 12: no clock page per durable write (issue #16). A rewrite still wrote four
    // pages, one of them only for the `change_clock` rows. Both clocks are now derived from
    // the change log's newest row (`feed.rs`): the head is the highest seq, the version clock
    // the newest change's version; the 'last' and 'version' rows become floors, written
    // only when the log does not tell (a commit whose newest change does not carry the
    // clock, a shred, before retention removes rows). Nothing moves: the rows are exact
    // today, so they are valid floors. The version makes older builds, which would read a
    // stale row as the clock, refuse the store. `version_clock` is redefined as the derived
    // value, for the restores and snapshot readers that name it.
    r"
    DROP TRIGGER version_clock_update;
    DROP VIEW version_clock;
    CREATE VIEW version_clock (id, last) AS
        SELECT 0, max(value, coalesce((SELECT version FROM changes ORDER BY seq DESC LIMIT 1), 0))
        FROM change_clock WHERE name = 'version';
    CREATE TRIGGER version_clock_update INSTEAD OF UPDATE OF last ON version_clock
    BEGIN
        UPDATE change_clock SET value = NEW.last WHERE name = 'version';
    END;
    ",
    // Version 13: a small delta in its record's row (issue #16). A delta over a delta wrote
    // three pages — the record, the delta's `blobs` row, the change log — and on the
    // block-device counter three WAL frames dirty four file-system pages (16 KiB) per
    // commit. A delta whose stored bytes fit the record's row (`sqlite/inline.rs`) is kept
    // there: the record names its keyframe's chunk-list blob (codec 16, one reference, as
    // the keyframe's version did) and carries the delta's hash, length and bytes; a commit
    // writes the record's page and the change log's. Readers see the same delta blob
    // (codec 17 over the keyframe's chunks) as before. NULL columns: no inline delta.
    r"
    ALTER TABLE records ADD COLUMN delta_hash BLOB CHECK (delta_hash IS NULL OR length(delta_hash) = 32);
    ALTER TABLE records ADD COLUMN delta_raw_len INTEGER CHECK (delta_raw_len IS NULL OR delta_raw_len >= 0);
    ALTER TABLE records ADD COLUMN delta_data BLOB;
    ",
    // Version 14: a smaller hash index (issue #15, footprint). The index holds the hash's
    // first 4 bytes instead of 8: an entry's payload is ~10 bytes instead of ~14, ~1.3 % of
    // the file at ~1 KiB documents. Dedup still compares the full hash in the row, so a
    // shared prefix is never a match; it only costs reading one more row, and with 2^32
    // prefixes that is rare below hundreds of millions of blobs. Only the index is rebuilt.
    // From this version on, dictionary frames are also written without zstd's magic number
    // (`dictionary/frame.rs`), and encrypted documents are sealed in envelope layout v2
    // (0xE3/0xE4, `crypto/blob.rs`): the version keeps older builds from meeting either, so
    // it must not be dropped while those formats have no gate of their own.
    r"
    DROP INDEX blobs_by_hash_prefix;
    CREATE INDEX blobs_by_hash_prefix ON blobs(substr(hash, 1, 4)) WHERE codec <> 17;
    ",
    // Version 15: smaller change-log and record rows (issue #15, footprint). A change row
    // named its collection in full, carried its version and time as absolute numbers (3 and
    // 6 bytes), and a record stored `updated_at` even when it equals `created_at` (98 % of
    // the records of a bulk load). Now (`feed.rs`):
    // - `changes.collection_id` names a row of `collection_ids` (a collection's small id,
    //   handed out on its first change and never reused or removed);
    // - `changes.version_offset` is the version minus the seq (0 or 1 byte while puts
    //   outnumber deletes);
    // - `changes.at` is NULL when it equals the previous row's (the changes of one batch
    //   share their time); the log's first row, and every 64th row of an append, keep it,
    //   so a reader resolves a NULL from at most 63 rows back and retention keeps the first
    //   row's;
    // - `records.updated_at` is NULL when it equals `created_at` (readers coalesce).
    // Both tables are rebuilt; the clock view is redefined over the new columns.
    r"
    DROP TRIGGER version_clock_update;
    DROP VIEW version_clock;
    CREATE TABLE collection_ids (
        id   INTEGER PRIMARY KEY,
        name TEXT    NOT NULL UNIQUE
    );
    INSERT INTO collection_ids (name) SELECT DISTINCT collection FROM changes ORDER BY collection;
    CREATE TABLE changes_v15 (
        seq            INTEGER PRIMARY KEY,
        collection_id  INTEGER NOT NULL,
        key            TEXT    NOT NULL,
        kind           INTEGER NOT NULL CHECK (kind BETWEEN 1 AND 3),
        version_offset INTEGER NOT NULL,
        at             INTEGER
    );
    INSERT INTO changes_v15 (seq, collection_id, key, kind, version_offset, at)
        SELECT seq, collection_id, key, kind, version_offset,
               iif(n % 64 <> 1 AND at IS previous, NULL, at)
        FROM (SELECT c.seq, i.id AS collection_id, c.key, c.kind,
                     c.version - c.seq AS version_offset, c.at,
                     lag(c.at) OVER (ORDER BY c.seq) AS previous,
                     row_number() OVER (ORDER BY c.seq) AS n
              FROM changes c JOIN collection_ids i ON i.name = c.collection);
    DROP TABLE changes;
    ALTER TABLE changes_v15 RENAME TO changes;
    CREATE VIEW version_clock (id, last) AS
        SELECT 0, max(value, coalesce(
            (SELECT seq + version_offset FROM changes ORDER BY seq DESC LIMIT 1), 0))
        FROM change_clock WHERE name = 'version';
    CREATE TRIGGER version_clock_update INSTEAD OF UPDATE OF last ON version_clock
    BEGIN
        UPDATE change_clock SET value = NEW.last WHERE name = 'version';
    END;
    CREATE TABLE records_v15 (
        collection    TEXT    NOT NULL,
        key           TEXT    NOT NULL,
        blob_id       INTEGER NOT NULL,
        created_at    INTEGER NOT NULL,
        updated_at    INTEGER,
        access_count  INTEGER NOT NULL DEFAULT 0,
        last_accessed INTEGER,
        version       INTEGER NOT NULL DEFAULT 1 CHECK (version >= 1),
        expires_at    INTEGER,
        delta_hash    BLOB CHECK (delta_hash IS NULL OR length(delta_hash) = 32),
        delta_raw_len INTEGER CHECK (delta_raw_len IS NULL OR delta_raw_len >= 0),
        delta_data    BLOB,
        PRIMARY KEY (collection, key)
    ) WITHOUT ROWID;
    INSERT INTO records_v15
        SELECT collection, key, blob_id, created_at, nullif(updated_at, created_at),
               access_count, last_accessed, version, expires_at,
               delta_hash, delta_raw_len, delta_data
        FROM records;
    DROP TABLE records;
    ALTER TABLE records_v15 RENAME TO records;
    CREATE INDEX records_by_expiry ON records(expires_at) WHERE expires_at IS NOT NULL;
    ",
    // Version 16: fewer header bytes per row (issue #15, footprint). Every column costs its
    // row a header byte even when NULL, and a value equal to 0 or 1 costs no other byte:
    // - `changes.kind` and `changes.version_offset` become one integer, `kind_offset` =
    //   (version − seq − 1) · 4 + kind − 1 (`feed.rs`): 0 for a put that took the next
    //   version, as every change of a bulk load does;
    // - the three inline-delta columns of `records` become one, `delta` = the delta's hash
    //   (32 bytes) ‖ its raw length as 20 ASCII decimal digits ‖ its stored bytes
    //   (`inline.rs`; SQL reads the length with a cast); a delta that was partly missing
    //   gets the length −1, which every reader reports as damage;
    // - `blobs.stored_len` is NULL when it equals `length(data)` (every blob this build
    //   writes; readers coalesce).
    // The three tables are rebuilt; the clock view is redefined over the new column. A
    // version offset outside what the column encodes (−2^61 < offset ≤ 2^61) fails the
    // migration.
    r"
    DROP TRIGGER version_clock_update;
    DROP VIEW version_clock;
    CREATE TABLE changes_v16 (
        seq           INTEGER PRIMARY KEY,
        collection_id INTEGER NOT NULL,
        key           TEXT    NOT NULL,
        kind_offset   INTEGER NOT NULL
                      CHECK (typeof(kind_offset) = 'integer' AND kind_offset & 3 <> 3),
        at            INTEGER
    );
    INSERT INTO changes_v16 (seq, collection_id, key, kind_offset, at)
        SELECT seq, collection_id, key, (version_offset - 1) * 4 + kind - 1, at FROM changes;
    DROP TABLE changes;
    ALTER TABLE changes_v16 RENAME TO changes;
    CREATE VIEW version_clock (id, last) AS
        SELECT 0, max(value, coalesce(
            (SELECT seq + (kind_offset >> 2) + 1 FROM changes ORDER BY seq DESC LIMIT 1), 0))
        FROM change_clock WHERE name = 'version';
    CREATE TRIGGER version_clock_update INSTEAD OF UPDATE OF last ON version_clock
    BEGIN
        UPDATE change_clock SET value = NEW.last WHERE name = 'version';
    END;
    CREATE TABLE records_v16 (
        collection    TEXT    NOT NULL,
        key           TEXT    NOT NULL,
        blob_id       INTEGER NOT NULL,
        created_at    INTEGER NOT NULL,
        updated_at    INTEGER,
        access_count  INTEGER NOT NULL DEFAULT 0,
        last_accessed INTEGER,
        version       INTEGER NOT NULL DEFAULT 1 CHECK (version >= 1),
        expires_at    INTEGER,
        delta         BLOB CHECK (delta IS NULL OR length(delta) >= 52),
        PRIMARY KEY (collection, key)
    ) WITHOUT ROWID;
    INSERT INTO records_v16
        SELECT collection, key, blob_id, created_at, updated_at, access_count, last_accessed,
               version, expires_at,
               iif(delta_hash IS NULL AND delta_raw_len IS NULL AND delta_data IS NULL, NULL,
                   CAST(coalesce(delta_hash, zeroblob(32))
                        || printf('%020d', iif(delta_hash IS NULL OR delta_data IS NULL,
                                               -1, coalesce(delta_raw_len, -1)))
                        || coalesce(delta_data, X'') AS BLOB))
        FROM records;
    DROP TABLE records;
    ALTER TABLE records_v16 RENAME TO records;
    CREATE INDEX records_by_expiry ON records(expires_at) WHERE expires_at IS NOT NULL;
    CREATE TABLE blobs_v16 (
        id         INTEGER PRIMARY KEY,
        hash       BLOB    NOT NULL CHECK (length(hash) = 32),
        codec      INTEGER NOT NULL,
        raw_len    INTEGER NOT NULL CHECK (raw_len >= 0),
        stored_len INTEGER CHECK (stored_len >= 0),
        refcount   INTEGER NOT NULL CHECK (refcount >= 0),
        data       BLOB    NOT NULL,
        dict_id    INTEGER
    );
    INSERT INTO blobs_v16 (id, hash, codec, raw_len, stored_len, refcount, data, dict_id)
        SELECT id, hash, codec, raw_len, nullif(stored_len, length(data)), refcount, data,
               dict_id
        FROM blobs;
    DROP TABLE blobs;
    ALTER TABLE blobs_v16 RENAME TO blobs;
    CREATE INDEX blobs_by_hash_prefix ON blobs(substr(hash, 1, 4)) WHERE codec <> 17;
    ",
];

/// The schema version that keeps small deltas in their record's row (`inline.rs`).
pub(crate) const INLINE_DELTAS: i64 = 13;

/// The schema version this build writes.
pub fn latest_version() -> i64 {
    i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX)
}

/// Brings the database to the latest version; returns the version it is at. A database that
/// is already current is only read: no write transaction, so a store on a full disk still
/// opens for reads, exports and backups.
pub fn migrate(conn: &mut Connection) -> Result<i64> {
    if is_current(conn)? {
        return Ok(latest_version());
    }
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(db_err("starting the schema migration"))?;
    let version: i64 = tx
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(db_err("reading the schema version"))?;
    let app_id: i64 = tx
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .map_err(db_err("reading the application id"))?;
    if version == 0 {
        let tables: i64 = tx
            .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
            .map_err(db_err("inspecting the database"))?;
        if tables > 0 && app_id != APPLICATION_ID {
            return Err(StorageError::Config(
                "the database file holds tables that bitcraps-storage did not create".into(),
            ));
        }
    } else if app_id != APPLICATION_ID {
        return Err(StorageError::Config(format!(
            "the database file is not a bitcraps-storage database (application_id {app_id:#x})"
        )));
    }
    let latest = latest_version();
    if version > latest {
        return Err(StorageError::SchemaTooNew {
            found: version,
            supported: latest,
        });
    }
    let start = usize::try_from(version).unwrap_or(0);
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(start) {
        tx.execute_batch(sql)
            .map_err(db_err("applying a schema migration"))?;
        tracing::info!(version = index + 1, "applied schema migration");
    }
    insert_identity(&tx)?;
    tx.execute_batch(&format!(
        "PRAGMA user_version = {latest}; PRAGMA application_id = {APPLICATION_ID};"
    ))
    .map_err(db_err("recording the schema version"))?;
    tx.commit()
        .map_err(db_err("committing the schema migration"))?;
    Ok(latest)
}

/// The identity rows of a new `meta` table; existing rows are kept.
fn insert_identity(conn: &Connection) -> Result<()> {
    for (name, value) in identity::fresh_rows()? {
        conn.execute(
            "INSERT OR IGNORE INTO meta (name, value) VALUES (?1, ?2)",
            [&name, &value],
        )
        .map_err(db_err("creating the store identity"))?;
    }
    Ok(())
}

/// The store's identity (`meta` rows).
pub(crate) fn read_identity(conn: &Connection) -> Result<StoreIdentity> {
    let rows = conn
        .prepare_cached("SELECT name, value FROM meta")
        .and_then(|mut s| {
            s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<Vec<(String, String)>>>()
        })
        .map_err(db_err("reading the store identity"))?;
    StoreIdentity::from_rows(rows)
}

/// Records that the store runs with a Redis tier; writes nothing when it already is.
pub(crate) fn record_redis_tier(conn: &Connection) -> Result<()> {
    if read_identity(conn)?.redis_tier {
        return Ok(());
    }
    conn.execute(
        "INSERT OR IGNORE INTO meta (name, value) VALUES (?1, 'on')",
        [identity::REDIS_TIER],
    )
    .map_err(db_err("recording the Redis tier"))?;
    Ok(())
}

/// The wrapped data keys, in id order.
pub(crate) fn read_data_keys(conn: &Connection) -> Result<Vec<WrappedKey>> {
    conn.prepare_cached(
        "SELECT id, collection, version, wrapped, created_at FROM data_keys ORDER BY id",
    )
    .and_then(|mut s| {
        s.query_map([], |r| {
            Ok(WrappedKey {
                id: r.get(0)?,
                collection: r.get(1)?,
                version: r.get(2)?,
                wrapped: r.get(3)?,
                created_at_ms: r.get(4)?,
            })
        })?
        .collect()
    })
    .map_err(db_err("reading the data keys"))
}

/// Writes `change` in one transaction (see [`KeyChange`]).
pub(crate) fn write_keys(conn: &mut Connection, change: &KeyChange) -> Result<()> {
    if change.shred.is_none() {
        return write_keys_in_tx(conn, change);
    }
    // Freed pages of a shred are overwritten, so its ciphertext and key leave the file (and,
    // after a checkpoint, the WAL) instead of lingering on the free list. secure_delete only
    // zeroes what this transaction frees: copies that page splits left in the unallocated
    // space of pages long before (when the documents were written) stay, so the file is
    // rebuilt from its live content too (VACUUM; the cost of a shred is the database's size).
    conn.execute_batch("PRAGMA secure_delete = ON")
        .map_err(db_err("turning secure_delete on"))?;
    let written = write_keys_in_tx(conn, change).and_then(|()| {
        conn.execute_batch("VACUUM")
            .map_err(db_err("rebuilding the database after a shred"))
    });
    let reset = conn
        .execute_batch("PRAGMA secure_delete = OFF")
        .map_err(db_err("turning secure_delete off"));
    written.and(reset)
}

/// The SQL of a shred (`?1`: the collection), in order: references released, records,
/// blobs nothing refers to, dictionaries no blob names, keys destroyed.
pub(crate) const SHRED_SQLITE: [&str; 9] = [
    "UPDATE blobs SET refcount = refcount - (SELECT count(*) FROM records r \
     WHERE r.collection = ?1 AND r.blob_id = blobs.id) \
     WHERE id IN (SELECT blob_id FROM records WHERE collection = ?1)",
    "DELETE FROM records WHERE collection = ?1",
    "DELETE FROM blobs WHERE refcount <= 0",
    // The chunk lists of the deleted blobs release their chunks.
    "UPDATE chunk_refs SET refcount = refcount - (SELECT count(*) FROM blob_chunks bc \
     WHERE bc.chunk_id = chunk_refs.chunk_id AND bc.blob_id NOT IN (SELECT id FROM blobs)) \
     WHERE chunk_id IN \
     (SELECT chunk_id FROM blob_chunks WHERE blob_id NOT IN (SELECT id FROM blobs))",
    "DELETE FROM blob_chunks WHERE blob_id NOT IN (SELECT id FROM blobs)",
    "DELETE FROM chunks WHERE id IN (SELECT chunk_id FROM chunk_refs WHERE refcount <= 0)",
    "DELETE FROM chunk_refs WHERE refcount <= 0",
    "DELETE FROM dictionaries WHERE collection = ?1 \
     AND id NOT IN (SELECT dict_id FROM blobs WHERE dict_id IS NOT NULL) \
     AND id NOT IN (SELECT dict_id FROM chunks WHERE dict_id IS NOT NULL)",
    "UPDATE data_keys SET wrapped = X'' WHERE collection = ?1",
];

fn write_keys_in_tx(conn: &mut Connection, change: &KeyChange) -> Result<()> {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(db_err("starting to write keys"))?;
    let check_sql = if change.replace {
        "INSERT OR REPLACE INTO meta (name, value) VALUES (?1, ?2)"
    } else {
        "INSERT OR IGNORE INTO meta (name, value) VALUES (?1, ?2)"
    };
    if let Some(check) = &change.check {
        tx.execute(check_sql, [identity::KEY_CHECK, check.as_str()])
            .map_err(db_err("writing the key check value"))?;
    }
    for key in &change.keys {
        if change.replace {
            let changed = tx
                .execute(
                    "UPDATE data_keys SET wrapped = ?2 WHERE id = ?1",
                    rusqlite::params![key.id, key.wrapped],
                )
                .map_err(db_err("rewrapping a data key"))?;
            if changed != 1 {
                return Err(StorageError::Config(format!(
                    "data key {} is not in the store",
                    key.id
                )));
            }
        } else {
            tx.execute(
                "INSERT OR IGNORE INTO data_keys (id, collection, version, wrapped, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                rusqlite::params![
                    key.id,
                    key.collection,
                    key.version,
                    key.wrapped,
                    key.created_at_ms
                ],
            )
            .map_err(db_err("storing a data key"))?;
        }
    }
    match change.encrypting {
        Some(true) => tx.execute(
            "INSERT OR IGNORE INTO meta (name, value) VALUES (?1, 'on')",
            [identity::ENCRYPTING],
        ),
        Some(false) => tx.execute("DELETE FROM meta WHERE name = ?1", [identity::ENCRYPTING]),
        None => Ok(0),
    }
    .map_err(db_err("marking the encryption in place"))?;
    for (id, data) in &change.dictionaries {
        tx.execute(
            "UPDATE dictionaries SET data = ?2 WHERE id = ?1",
            rusqlite::params![id, data],
        )
        .map_err(db_err("sealing a dictionary"))?;
    }
    for blob in &change.resealed {
        tx.execute(
            "UPDATE blobs SET data = ?3 WHERE id = ?1 AND data = ?2",
            rusqlite::params![blob.id, blob.before, blob.after],
        )
        .map_err(db_err("sealing a blob again"))?;
    }
    for chunk in &change.resealed_chunks {
        tx.execute(
            "UPDATE chunks SET data = ?3
             WHERE substr(hash, 1, 8) = substr(?1, 1, 8) AND hash = ?1 AND data = ?2",
            rusqlite::params![chunk.hash, chunk.before, chunk.after],
        )
        .map_err(db_err("sealing a chunk again"))?;
    }
    for delta in &change.resealed_inline {
        tx.execute(
            "UPDATE records SET delta = CAST(substr(delta, 1, 52) || ?4 AS BLOB)
             WHERE collection = ?1 AND key = ?2 AND substr(delta, 53) = ?3",
            rusqlite::params![delta.collection, delta.key, delta.before, delta.after],
        )
        .map_err(db_err("sealing an inline delta again"))?;
    }
    if let Some(collection) = &change.shred {
        super::feed::log_shred(&tx, collection, crate::backend::now_ms())?;
        for sql in SHRED_SQLITE {
            let params: &[&dyn rusqlite::ToSql] = if sql.contains("?1") {
                &[collection]
            } else {
                &[]
            };
            tx.execute(sql, params)
                .map_err(db_err("shredding a collection"))?;
        }
    }
    tx.commit().map_err(db_err("committing keys"))
}

/// Whether the database already is a bitcraps-storage database of the latest version (read
/// without taking the write lock; `migrate` checks again inside its transaction otherwise).
pub(super) fn is_current(conn: &Connection) -> Result<bool> {
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(db_err("reading the schema version"))?;
    let app_id: i64 = conn
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .map_err(db_err("reading the application id"))?;
    Ok(version == latest_version() && app_id == APPLICATION_ID)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::OptionalExtension;

    /// The regression: every open ran `BEGIN IMMEDIATE` and committed the schema version
    /// again, so a store on a full disk could not even be opened to read or export it
    /// ("database or disk is full while committing the schema migration").
    #[test]
    fn opening_a_current_database_writes_nothing() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| StorageError::io(".", e))?;
        let path = dir.path().join("s.db");
        let mut conn = Connection::open(&path).map_err(db_err("open"))?;
        migrate(&mut conn)?;
        drop(conn);
        let before = std::fs::read(&path).map_err(|e| StorageError::io(&path, e))?;
        let mut conn = Connection::open(&path).map_err(db_err("open"))?;
        let changes_before = conn.total_changes();
        // A read-only connection cannot write at all: migrate must still succeed on it.
        let mut readonly =
            Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                .map_err(db_err("open read-only"))?;
        assert_eq!(migrate(&mut readonly)?, latest_version());
        assert_eq!(migrate(&mut conn)?, latest_version());
        assert_eq!(conn.total_changes(), changes_before);
        drop((conn, readonly));
        let after = std::fs::read(&path).map_err(|e| StorageError::io(&path, e))?;
        assert!(before == after, "the database file changed on open");
        Ok(())
    }

    /// Version 4 gives every store its own identity, kept across opens.
    #[test]
    fn the_identity_is_created_once_and_kept() -> Result<()> {
        let mut a = Connection::open_in_memory().map_err(db_err("open"))?;
        let mut b = Connection::open_in_memory().map_err(db_err("open"))?;
        migrate(&mut a)?;
        migrate(&mut b)?;
        let first = read_identity(&a)?;
        assert_ne!(first.store_id, read_identity(&b)?.store_id);
        assert!(!first.redis_tier);
        a.execute_batch("PRAGMA user_version = 3")
            .map_err(db_err("pretend an older version"))?;
        a.execute_batch(
            "DROP TABLE meta; DROP VIEW version_clock; ALTER TABLE records DROP COLUMN version;
             DROP INDEX records_by_expiry; DROP TABLE collection_settings;
             ALTER TABLE records DROP COLUMN expires_at; DROP TABLE data_keys;
             DROP TABLE chunks; DROP TABLE blob_chunks; DROP TABLE chunk_refs; DROP TABLE changes;
             DROP TABLE change_clock; DROP TABLE collection_ids;
             ALTER TABLE records DROP COLUMN delta;",
        )
        .map_err(db_err("drop"))?;
        migrate(&mut a)?;
        assert_ne!(read_identity(&a)?.store_id, first.store_id);
        record_redis_tier(&a)?;
        record_redis_tier(&a)?;
        assert!(read_identity(&a)?.redis_tier);
        Ok(())
    }

    /// Version 10 moves the chunk reference counts of a version-9 store into `chunk_refs`
    /// and rebuilds `chunks` without them, keeping every chunk and its id.
    #[test]
    fn version_10_moves_chunk_counts_out_of_the_chunk_rows() -> Result<()> {
        let mut conn = Connection::open_in_memory().map_err(db_err("open"))?;
        let v9 = MIGRATIONS.get(..9).unwrap_or_default();
        conn.execute_batch(&v9.concat())
            .map_err(db_err("schema 9"))?;
        conn.execute_batch(
            "PRAGMA user_version = 9; PRAGMA application_id = 1111708243;
             INSERT INTO chunks (id, hash, codec, raw_len, stored_len, refcount, data)
                 VALUES (7, zeroblob(32), 0, 3, 3, 2, X'616263');
             INSERT INTO blob_chunks (blob_id, seq, chunk_id) VALUES (1, 0, 7), (2, 0, 7);",
        )
        .map_err(db_err("a version-9 chunk"))?;
        assert_eq!(migrate(&mut conn)?, latest_version());
        let (id, refcount, data): (i64, i64, Vec<u8>) = conn
            .query_row(
                "SELECT c.id, r.refcount, c.data FROM chunks c
                 JOIN chunk_refs r ON r.chunk_id = c.id",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .map_err(db_err("the migrated chunk"))?;
        assert_eq!((id, refcount, data.as_slice()), (7, 2, &b"abc"[..]));
        let has_refcount: i64 = conn
            .query_row(
                "SELECT count(*) FROM pragma_table_info('chunks') WHERE name = 'refcount'",
                [],
                |r| r.get(0),
            )
            .map_err(db_err("the chunk columns"))?;
        assert_eq!(has_refcount, 0);
        Ok(())
    }

    /// Version 11 moves the version clock of a version-10 store into `change_clock`, keeps
    /// `version_clock` readable and updatable (restores and snapshots name it), and takes
    /// deltas out of the hash index: dedup still finds every other blob, never a delta.
    #[test]
    fn version_11_merges_the_clocks_and_leaves_deltas_out_of_the_hash_index() -> Result<()> {
        use crate::backend::sqlite::write::FIND_BLOB_BY_HASH;
        let mut conn = Connection::open_in_memory().map_err(db_err("open"))?;
        let v10 = MIGRATIONS.get(..10).unwrap_or_default();
        conn.execute_batch(&v10.concat())
            .map_err(db_err("schema 10"))?;
        conn.execute_batch(
            "PRAGMA user_version = 10; PRAGMA application_id = 1111708243;
             UPDATE version_clock SET last = 42;
             UPDATE change_clock SET value = 7 WHERE name = 'last';
             INSERT INTO blobs (id, hash, codec, raw_len, stored_len, refcount, data)
                 VALUES (1, zeroblob(32), 1, 3, 3, 1, X'616263'),
                        (2, X'0100000000000000000000000000000000000000000000000000000000000000', 17, 3, 3, 1, X'80000001');
             INSERT INTO records (collection, key, blob_id, created_at, updated_at, version)
                 VALUES ('c', 'a', 1, 0, 0, 41), ('c', 'd', 2, 0, 0, 42);",
        )
        .map_err(db_err("a version-10 store"))?;
        assert_eq!(migrate(&mut conn)?, latest_version());
        let clocks = |conn: &Connection| -> Result<(i64, i64, i64)> {
            conn.query_row(
                "SELECT (SELECT last FROM version_clock),
                        (SELECT value FROM change_clock WHERE name = 'version'),
                        (SELECT value FROM change_clock WHERE name = 'last')",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .map_err(db_err("the clocks"))
        };
        assert_eq!(clocks(&conn)?, (42, 42, 7));
        // What a restore runs: the view's trigger moves the row.
        conn.execute("UPDATE version_clock SET last = max(last, 50)", [])
            .map_err(db_err("a restore's clock update"))?;
        assert_eq!(clocks(&conn)?, (50, 50, 7));
        let find = |hash: &[u8]| {
            conn.query_row(FIND_BLOB_BY_HASH, [hash], |r| r.get::<_, i64>(0))
                .optional()
                .map_err(db_err("find"))
        };
        assert_eq!(find(&[0u8; 32])?, Some(1));
        let mut delta = [0u8; 32];
        delta[0] = 1;
        assert_eq!(find(&delta)?, None, "a delta is not shared");
        let indexed: i64 = conn
            .query_row(
                "SELECT count(*) FROM blobs INDEXED BY blobs_by_hash_prefix
                 WHERE substr(hash, 1, 8) IS NOT NULL AND codec <> 17",
                [],
                |r| r.get(0),
            )
            .map_err(db_err("the index"))?;
        assert_eq!(indexed, 1);
        let check: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .map_err(db_err("integrity"))?;
        assert_eq!(check, "ok");
        Ok(())
    }

    /// Version 12 reads both clocks as the change log's newest row or their `change_clock`
    /// row, whichever is higher: a version-11 store (rows exact) reads the same after the
    /// upgrade, a change appended without touching the rows moves both clocks, and the
    /// view a restore updates still moves the row.
    #[test]
    fn version_12_reads_the_clocks_from_the_change_log() -> Result<()> {
        use crate::backend::sqlite::feed;
        let mut conn = Connection::open_in_memory().map_err(db_err("open"))?;
        let v11 = MIGRATIONS.get(..11).unwrap_or_default();
        conn.execute_batch(&v11.concat())
            .map_err(db_err("schema 11"))?;
        conn.execute_batch(
            "PRAGMA user_version = 11; PRAGMA application_id = 1111708243;
             UPDATE change_clock SET value = 9 WHERE name = 'version';
             UPDATE change_clock SET value = 2 WHERE name = 'last';
             INSERT INTO changes (seq, collection, key, kind, version, at)
                 VALUES (1, 'c', 'a', 1, 8, 0), (2, 'c', 'a', 2, 8, 0);",
        )
        .map_err(db_err("a version-11 store"))?;
        assert_eq!(migrate(&mut conn)?, latest_version());
        let clocks = |conn: &Connection| -> Result<(i64, i64, u64)> {
            let view: i64 = conn
                .query_row("SELECT last FROM version_clock", [], |r| r.get(0))
                .map_err(db_err("the view"))?;
            Ok((view, feed::version_clock(conn)?, feed::head(conn)?))
        };
        // The delete's change carries 8; the row says 9.
        assert_eq!(clocks(&conn)?, (9, 9, 2));
        conn.execute(
            // Version 16's row: collection 'c' is id 1, a put of version 10 at seq 3 is
            // (10 − 3 − 1) · 4 + 0.
            "INSERT INTO changes (seq, collection_id, key, kind_offset, at)
             VALUES (3, 1, 'b', 24, 0)",
            [],
        )
        .map_err(db_err("a logged put"))?;
        assert_eq!(clocks(&conn)?, (10, 10, 3));
        conn.execute("UPDATE version_clock SET last = max(last, 50)", [])
            .map_err(db_err("a restore's clock update"))?;
        assert_eq!(clocks(&conn)?, (50, 50, 3));
        Ok(())
    }

    /// Version 13 adds the inline delta's columns to `records`: a version-12 store with a
    /// keyframe, a delta blob and a whole blob reads the same after the upgrade (no inline
    /// delta anywhere), and a record may then carry one over its keyframe.
    #[test]
    fn version_13_keeps_a_version_12_store_and_adds_inline_deltas() -> Result<()> {
        use crate::backend::sqlite::read;
        let mut conn = Connection::open_in_memory().map_err(db_err("open"))?;
        let v12 = MIGRATIONS.get(..12).unwrap_or_default();
        conn.execute_batch(&v12.concat())
            .map_err(db_err("schema 12"))?;
        conn.execute_batch(
            "PRAGMA user_version = 12; PRAGMA application_id = 1111708243;
             INSERT INTO chunks (id, hash, codec, raw_len, stored_len, data)
                 VALUES (1, zeroblob(32), 0, 3, 3, X'616263');
             INSERT INTO chunk_refs (chunk_id, refcount) VALUES (1, 2);
             INSERT INTO blobs (id, hash, codec, raw_len, stored_len, refcount, data)
                 VALUES (1, zeroblob(32), 1, 3, 3, 1, X'616263'),
                        (2, randomblob(32), 16, 3, 0, 1, X''),
                        (3, randomblob(32), 17, 3, 4, 1, X'80000001');
             INSERT INTO blob_chunks (blob_id, seq, chunk_id) VALUES (2, 0, 1), (3, 0, 1);
             INSERT INTO records (collection, key, blob_id, created_at, updated_at, version)
                 VALUES ('c', 'a', 1, 0, 0, 1), ('c', 'k', 2, 0, 0, 2), ('c', 'd', 3, 0, 0, 3);",
        )
        .map_err(db_err("a version-12 store"))?;
        assert_eq!(migrate(&mut conn)?, latest_version());
        // Each record reads as its blob row: codec, bytes and chunk count.
        let blob_of = |key: &str| -> Result<(i64, Vec<u8>, usize)> {
            let r = read::get(&conn, "c", key)?
                .ok_or_else(|| StorageError::corruption(key, "missing"))?;
            Ok((r.blob.codec_id, r.blob.data, r.blob.chunks.len()))
        };
        assert_eq!(blob_of("a")?, (1, b"abc".to_vec(), 0));
        assert_eq!(blob_of("k")?, (crate::chunk::CHUNKED, Vec::new(), 1));
        assert_eq!(blob_of("d")?, (crate::chunk::DELTA, vec![0x80, 0, 0, 1], 1));
        assert!(read::check(&conn)?.is_ok());
        let inline: i64 = conn
            .query_row(
                "SELECT count(*) FROM records WHERE delta IS NOT NULL",
                [],
                |r| r.get(0),
            )
            .map_err(db_err("inline deltas"))?;
        assert_eq!(inline, 0);
        // The keyframe's record now carries a delta over it: read as the delta blob.
        conn.execute(
            "UPDATE records
             SET delta = CAST(randomblob(32) || printf('%020d', 3) || X'80000002' AS BLOB)
             WHERE collection = 'c' AND key = 'k'",
            [],
        )
        .map_err(db_err("an inline delta"))?;
        assert_eq!(blob_of("k")?, (crate::chunk::DELTA, vec![0x80, 0, 0, 2], 1));
        assert!(read::check(&conn)?.is_ok());
        let check: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .map_err(db_err("integrity"))?;
        assert_eq!(check, "ok");
        Ok(())
    }

    /// Version 14 rebuilds `blobs_by_hash_prefix` on the hash's first 4 bytes: a version-13
    /// store's blobs are found through the new index after the upgrade, a blob sharing only
    /// the first 4 (or 8) bytes of the hash is never a match, and deltas stay out of it.
    #[test]
    fn version_14_indexes_four_bytes_of_the_hash() -> Result<()> {
        use crate::backend::sqlite::write::FIND_BLOB_BY_HASH;
        let mut conn = Connection::open_in_memory().map_err(db_err("open"))?;
        let v13 = MIGRATIONS.get(..13).unwrap_or_default();
        conn.execute_batch(&v13.concat())
            .map_err(db_err("schema 13"))?;
        let mut wanted = [9u8; 32];
        wanted[31] = 1;
        let mut eight = wanted;
        eight[31] = 2;
        let mut four = wanted;
        four[4] = 0;
        let mut delta = [5u8; 32];
        delta[31] = 1;
        {
            let mut insert = conn
                .prepare(
                    "INSERT INTO blobs (id, hash, codec, raw_len, stored_len, refcount, data)
                     VALUES (?1, ?2, ?3, 3, 3, 1, X'616263')",
                )
                .map_err(db_err("prepare"))?;
            for (id, hash, codec) in [(1, eight, 1), (2, four, 1), (3, wanted, 1), (4, delta, 17)] {
                insert
                    .execute(rusqlite::params![id, &hash[..], codec])
                    .map_err(db_err("a version-13 blob"))?;
            }
        }
        conn.execute_batch("PRAGMA user_version = 13; PRAGMA application_id = 1111708243;")
            .map_err(db_err("version 13"))?;
        assert_eq!(migrate(&mut conn)?, latest_version());
        let sql: String = conn
            .query_row(
                "SELECT sql FROM sqlite_master WHERE name = 'blobs_by_hash_prefix'",
                [],
                |r| r.get(0),
            )
            .map_err(db_err("the index"))?;
        assert!(sql.contains("substr(hash, 1, 4)"), "{sql}");
        let steps = plan(&conn, FIND_BLOB_BY_HASH, [&wanted[..]])?;
        assert!(
            steps
                .iter()
                .any(|(.., d)| d.contains("USING INDEX blobs_by_hash_prefix")),
            "{steps:?}"
        );
        let find = |hash: &[u8]| {
            conn.query_row(FIND_BLOB_BY_HASH, [hash], |r| r.get::<_, i64>(0))
                .optional()
                .map_err(db_err("find"))
        };
        assert_eq!(find(&wanted)?, Some(3));
        assert_eq!(find(&eight)?, Some(1));
        assert_eq!(find(&four)?, Some(2));
        assert_eq!(find(&delta)?, None, "a delta is not shared");
        let mut absent = wanted;
        absent[31] = 3;
        assert_eq!(find(&absent)?, None, "a shared prefix is not a match");
        let indexed: i64 = conn
            .query_row(
                "SELECT count(*) FROM blobs INDEXED BY blobs_by_hash_prefix
                 WHERE substr(hash, 1, 4) IS NOT NULL AND codec <> 17",
                [],
                |r| r.get(0),
            )
            .map_err(db_err("the index"))?;
        assert_eq!(indexed, 3);
        let check: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .map_err(db_err("integrity"))?;
        assert_eq!(check, "ok");
        Ok(())
    }

    /// Version 15 rebuilds `changes` (collection ids, version offsets, a time only where
    /// it changes) and `records` (`updated_at` NULL when it equals `created_at`): a
    /// version-14 store's change log reads back the same through the feed, from any seq,
    /// its records' metadata is unchanged, and the clocks stay where they were.
    #[test]
    fn version_15_keeps_a_version_14_change_log_and_records() -> Result<()> {
        use crate::backend::sqlite::{feed, read};
        /// `(seq, collection, key, kind, version, at ms)`.
        type Logged = (i64, String, String, i64, i64, i64);
        let mut conn = Connection::open_in_memory().map_err(db_err("open"))?;
        let v14 = MIGRATIONS.get(..14).unwrap_or_default();
        conn.execute_batch(&v14.concat())
            .map_err(db_err("schema 14"))?;
        let mut log = Vec::new();
        for seq in 1..=150i64 {
            // Runs of shared times, two collections, versions drifting from the seqs.
            let collection = if seq % 50 == 7 { "rolls" } else { "games" };
            let kind = if seq % 40 == 3 { 2 } else { 1 };
            log.push((
                seq,
                collection,
                format!("k{seq}"),
                kind,
                seq + seq / 30,
                1_000 + seq / 70,
            ));
        }
        {
            let mut insert = conn
                .prepare(
                    "INSERT INTO changes (seq, collection, key, kind, version, at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .map_err(db_err("prepare"))?;
            for (seq, c, k, kind, version, at) in &log {
                insert
                    .execute(rusqlite::params![seq, c, k, kind, version, at])
                    .map_err(db_err("a version-14 change"))?;
            }
        }
        conn.execute_batch(
            "PRAGMA user_version = 14; PRAGMA application_id = 1111708243;
             UPDATE change_clock SET value = 150 WHERE name = 'last';
             INSERT INTO blobs (id, hash, codec, raw_len, stored_len, refcount, data)
                 VALUES (1, zeroblob(32), 0, 3, 3, 2, X'616263');
             INSERT INTO records (collection, key, blob_id, created_at, updated_at, version,
                                  expires_at)
                 VALUES ('games', 'same', 1, 500, 500, 4, NULL),
                        ('games', 'later', 1, 500, 900, 7, 99999);",
        )
        .map_err(db_err("a version-14 store"))?;
        let clock_before: i64 = conn
            .query_row("SELECT last FROM version_clock", [], |r| r.get(0))
            .map_err(db_err("the version-14 view"))?;
        assert_eq!(clock_before, 155, "the newest change's version");
        assert_eq!(migrate(&mut conn)?, latest_version());
        assert_eq!(feed::version_clock(&conn)?, clock_before);
        assert_eq!(feed::head(&conn)?, 150);
        let view: i64 = conn
            .query_row("SELECT last FROM version_clock", [], |r| r.get(0))
            .map_err(db_err("the view"))?;
        assert_eq!(view, clock_before);
        for after in [0u64, 1, 30, 63, 64, 65, 70, 139, 149] {
            let read: Vec<Logged> = feed::since(&conn, after, 1000)?
                .into_iter()
                .map(|c| {
                    let at =
                        c.at.duration_since(std::time::UNIX_EPOCH)
                            .map(|d| i64::try_from(d.as_millis()).unwrap_or(-1))
                            .unwrap_or(-1);
                    (
                        i64::try_from(c.seq).unwrap_or(-1),
                        c.collection,
                        c.key,
                        c.kind.code(),
                        i64::try_from(c.version.get()).unwrap_or(-1),
                        at,
                    )
                })
                .collect();
            let expected: Vec<Logged> = log
                .iter()
                .skip(usize::try_from(after).unwrap_or(0))
                .map(|(s, c, k, kind, v, at)| (*s, (*c).to_owned(), k.clone(), *kind, *v, *at))
                .collect();
            assert_eq!(read, expected, "after {after}");
        }
        let (times, ids): (i64, i64) = conn
            .query_row(
                "SELECT (SELECT count(*) FROM changes WHERE at IS NOT NULL),
                        (SELECT count(*) FROM collection_ids)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(db_err("the new rows"))?;
        // Seq 1, 65 and 129 open runs of 64; 70 and 140 change the time.
        assert_eq!((times, ids), (5, 2));
        let same = read::metadata(&conn, "games", "same")?
            .ok_or_else(|| StorageError::corruption("same", "missing"))?;
        assert_eq!(same.updated_at, same.created_at);
        assert_eq!(same.version.get(), 4);
        let later = read::metadata(&conn, "games", "later")?
            .ok_or_else(|| StorageError::corruption("later", "missing"))?;
        assert_eq!(
            later.updated_at,
            crate::backend::time_from_ms(900),
            "a different updated_at is kept"
        );
        assert_eq!(later.expires_at, Some(crate::backend::time_from_ms(99999)));
        let nulls: i64 = conn
            .query_row(
                "SELECT count(*) FROM records WHERE updated_at IS NULL",
                [],
                |r| r.get(0),
            )
            .map_err(db_err("records"))?;
        assert_eq!(nulls, 1);
        assert!(read::check(&conn)?.is_ok());
        let check: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .map_err(db_err("integrity"))?;
        assert_eq!(check, "ok");
        Ok(())
    }

    #[test]
    fn migrates_once_and_refuses_newer() -> Result<()> {
        let mut conn = Connection::open_in_memory().map_err(db_err("open"))?;
        assert_eq!(migrate(&mut conn)?, latest_version());
        assert_eq!(migrate(&mut conn)?, latest_version());
        conn.execute_batch("PRAGMA user_version = 99")
            .map_err(db_err("bump"))?;
        assert!(matches!(
            migrate(&mut conn),
            Err(StorageError::SchemaTooNew { found: 99, .. })
        ));
        Ok(())
    }

    /// `EXPLAIN QUERY PLAN` of `sql`, one `(id, parent, detail)` per step.
    fn plan(
        conn: &Connection,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<Vec<(i64, i64, String)>> {
        conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .and_then(|mut s| {
                s.query_map(params, |r| Ok((r.get(0)?, r.get(1)?, r.get(3)?)))?
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(db_err("explain"))
    }

    /// The queries that used `blobs_by_hash` and `records_by_blob` (dropped in version 3)
    /// neither scan inside a correlated subquery nor scan a table more than once.
    #[test]
    fn reference_queries_make_one_pass() -> Result<()> {
        use crate::backend::sqlite::{maintain, read};
        let mut conn = Connection::open_in_memory().map_err(db_err("open"))?;
        migrate(&mut conn)?;
        for sql in [
            read::COUNT_DANGLING_RECORDS,
            read::COUNT_REFERENCE_ERRORS,
            &format!("SELECT count(*) FROM blobs WHERE {}", maintain::ORPHAN),
            &format!("DELETE FROM blobs WHERE {}", maintain::ORPHAN),
            maintain::RECOUNT,
        ] {
            let steps = plan(&conn, sql, [])?;
            let text = steps
                .iter()
                .map(|(.., d)| d.as_str())
                .collect::<Vec<_>>()
                .join("\n");
            let correlated: Vec<i64> = steps
                .iter()
                .filter(|(.., d)| d.starts_with("CORRELATED"))
                .map(|(id, ..)| *id)
                .collect();
            for (_, parent, detail) in &steps {
                assert!(
                    !(detail.starts_with("SCAN") && correlated.contains(parent)),
                    "a scan per row in {sql}:\n{text}"
                );
            }
            for table in ["records", "blobs"] {
                let scans = steps
                    .iter()
                    .filter(|(.., d)| {
                        d.strip_prefix("SCAN ")
                            .is_some_and(|t| t.split(' ').next() == Some(table))
                    })
                    .count();
                assert!(
                    scans <= 1,
                    "{table} scanned {scans} times in {sql}:\n{text}"
                );
            }
        }
        Ok(())
    }

    /// Dedup finds content through the 4-byte prefix index and compares the full hash.
    #[test]
    fn hash_lookup_uses_the_prefix_index_and_the_full_hash() -> Result<()> {
        use crate::backend::sqlite::write::FIND_BLOB_BY_HASH;
        let mut conn = Connection::open_in_memory().map_err(db_err("open"))?;
        migrate(&mut conn)?;
        let steps = plan(&conn, FIND_BLOB_BY_HASH, [&[0u8; 32][..]])?;
        assert!(
            steps
                .iter()
                .any(|(.., d)| d.contains("USING INDEX blobs_by_hash_prefix")),
            "{steps:?}"
        );
        let wanted = [7u8; 32];
        let mut same_prefix = [7u8; 32];
        same_prefix[31] = 8;
        let insert = |hash: &[u8]| {
            conn.execute(
                "INSERT INTO blobs (hash, codec, raw_len, stored_len, refcount, data)
                 VALUES (?1, 0, 1, 1, 1, x'00')",
                [hash],
            )
            .map(|_| conn.last_insert_rowid())
            .map_err(db_err("insert"))
        };
        let find = |hash: &[u8]| {
            conn.query_row(FIND_BLOB_BY_HASH, [hash], |r| r.get::<_, i64>(0))
                .optional()
                .map_err(db_err("find"))
        };
        insert(&same_prefix)?;
        assert_eq!(find(&wanted)?, None, "a prefix collision is not a match");
        conn.execute(
            "INSERT INTO blobs (hash, codec, raw_len, stored_len, refcount, data)
             VALUES (?1, 17, 1, 1, 1, x'00')",
            [&wanted[..]],
        )
        .map_err(db_err("insert a delta"))?;
        assert_eq!(find(&wanted)?, None, "a delta is never shared");
        let id = insert(&wanted)?;
        assert_eq!(find(&wanted)?, Some(id));
        Ok(())
    }

    #[test]
    fn refuses_foreign_database() -> Result<()> {
        let mut conn = Connection::open_in_memory().map_err(db_err("open"))?;
        conn.execute_batch("CREATE TABLE other(x)")
            .map_err(db_err("create"))?;
        let err = migrate(&mut conn).err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some(
                "invalid configuration: the database file holds tables that bitcraps-storage did not create"
            )
        );
        Ok(())
    }
}

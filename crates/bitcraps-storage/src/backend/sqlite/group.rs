//! One group commit's transaction: the units in order, each all or nothing, then the change
//! log, then the commit.
//!
//! A unit that fails is rolled back alone and the others commit. That takes a savepoint
//! around the unit, and a savepoint is not free: SQLite copies every page the unit is first
//! to change into the statement journal, and opening and releasing it are two more
//! statements — together about a third of the writer thread's instructions for a durable
//! single put. So the first pass gives a savepoint only to the units that can fail in the
//! normal course of things (a condition to check, a collection with a quota); should any
//! other unit fail, the whole transaction is rolled back and the group runs again with a
//! savepoint around every unit, which is what every group did before. Both passes produce
//! the same outcomes: the second starts from the same database and clock.

use rusqlite::Connection;

use super::db_err;
use super::feed;
use super::held::Held;
use super::immediate::Immediate;
use super::settings::SettingsCache;
use super::write::{Clock, apply_unit};
use crate::backend::{OpOutcome, WriteOp, WriteUnit};
use crate::error::Result;

/// Each unit's outcome.
type Outcomes = Vec<Result<Vec<OpOutcome>>>;

/// Applies `units` in one transaction; see [`Backend::apply`](crate::backend::Backend::apply).
/// The connection is taken `&mut`: the writer's alone while the group runs.
pub fn apply(conn: &mut Connection, units: &[WriteUnit], deduplicate: bool) -> Result<Outcomes> {
    match run(conn, units, deduplicate, Isolation::Expected)? {
        Pass::Done(results) => Ok(results),
        Pass::Again => match run(conn, units, deduplicate, Isolation::Every)? {
            Pass::Done(results) => Ok(results),
            // Not reached: with a savepoint around every unit, a unit's failure is its own.
            Pass::Again => Err(crate::error::StorageError::Task(
                "a write group failed without a savepoint to roll back to".into(),
            )),
        },
    }
}

/// Which units get a savepoint of their own.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Isolation {
    /// Those that can fail in the normal course of things ([`may_fail`]).
    Expected,
    /// Every unit.
    Every,
}

enum Pass {
    Done(Outcomes),
    /// A unit without a savepoint failed; the transaction was rolled back.
    Again,
}

fn run(
    conn: &Connection,
    units: &[WriteUnit],
    deduplicate: bool,
    isolation: Isolation,
) -> Result<Pass> {
    let tx = Immediate::begin(conn)?;
    let tx_conn = tx.conn();
    // Both clocks, read once: nothing a unit does moves the log's head (`feed::Tail`).
    let tail = feed::tail(tx_conn)?;
    let mut clock = Clock(tail.version);
    let start = clock.0;
    let mut settings = SettingsCache::default();
    let mut held = Held::new(tx_conn);
    let mut results = Vec::with_capacity(units.len());
    // The changes of the units that committed, numbered at the end (`feed/`).
    let mut committed = Vec::new();
    for unit in units {
        let mut changes = Vec::new();
        let isolated = match isolation {
            Isolation::Every => true,
            Isolation::Expected => match may_fail(tx_conn, unit, &mut settings) {
                Ok(may) => may,
                // Failing to read the settings fails the unit: in the second pass, alone.
                Err(_) => return Ok(Pass::Again),
            },
        };
        if isolated {
            savepoint(tx_conn, "SAVEPOINT unit", "opening a savepoint")?;
        }
        let outcome = apply_unit(
            &mut held,
            unit,
            deduplicate,
            &mut clock,
            &mut changes,
            &mut settings,
        );
        match outcome {
            Ok(outcomes) => {
                if isolated {
                    savepoint(tx_conn, "RELEASE unit", "releasing a savepoint")?;
                }
                committed.append(&mut changes);
                results.push(Ok(outcomes));
            }
            // Rolling back to the savepoint undoes this unit; the others are unaffected.
            // What it read of the settings may include its own changes to them.
            Err(e) if isolated => {
                savepoint(tx_conn, "ROLLBACK TO unit", "rolling back a savepoint")?;
                savepoint(tx_conn, "RELEASE unit", "releasing a savepoint")?;
                settings.forget();
                results.push(Err(e));
            }
            // Dropping the transaction rolls it back.
            Err(_) => return Ok(Pass::Again),
        }
    }
    // Versions used by units that were rolled back stay used: gaps, never a repeat (the
    // clock's row is written when no logged change carries its value).
    feed::append(tx_conn, &committed, tail.seq, clock.0, clock.0 != start)?;
    drop(held);
    tx.commit()?;
    Ok(Pass::Done(results))
}

/// Whether `unit` can fail in the normal course of things, so that it gets a savepoint even
/// in the first pass: a condition to check (`store_if`, `delete_if`, `update`, a batch's
/// conditions: conflicts are expected), or a put into a collection with a quota.
fn may_fail(conn: &Connection, unit: &[WriteOp], settings: &mut SettingsCache) -> Result<bool> {
    if unit.iter().any(|op| matches!(op, WriteOp::Check { .. })) {
        return Ok(true);
    }
    for collection in crate::quota::put_collections(unit) {
        if settings.quota(conn, collection)?.is_some() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Runs one savepoint statement, prepared once per connection (rusqlite's `Savepoint`
/// parses its SQL each time).
fn savepoint(conn: &Connection, sql: &str, context: &'static str) -> Result<()> {
    conn.prepare_cached(sql)
        .and_then(|mut s| s.execute([]))
        .map(drop)
        .map_err(db_err(context))
}

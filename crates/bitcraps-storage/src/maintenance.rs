//! Maintenance: one call that keeps the store healthy, reporting every step. A failing step
//! is recorded and the others still run — except the health checks: destructive steps (the
//! reference repair, vacuum, a backup with retention) run only on a store that passed them.
//!
//! - Before anything that writes, the **integrity check** (the engine's quick check and the
//!   reference checks, [`Maintenance::quick_check`](crate::backend::Maintenance::quick_check)).
//!   If it fails, nothing else runs and maintenance returns [`StorageError::Corruption`]: a
//!   damaged page can hide records, and the repair would delete the blobs they still name.
//! - Before the backup, the **deep check** (every blob decoded and hashed): a store holding a
//!   damaged document is not certified by a new backup, and retention does not rotate out
//!   the older backups that may still hold the document intact.

use std::future::Future;
use std::time::{Duration, Instant};

use serde::Serialize;
use tracing::Instrument;

use crate::PersistentStorageManager;
use crate::backend::{DatabaseStatistics, RepairOutcome, now_ms};
use crate::backup::{BackupInfo, RetentionOutcome, SweepReport};
use crate::error::{Result, StorageError};
use crate::observe::Operation;
use crate::rt::blocking;
use crate::stats::Counters;

/// Space the store could give back, measured before and after maintenance.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct SpaceDebt {
    /// Size of the write-ahead log.
    pub wal_bytes: u64,
    /// Unused pages in the database file.
    pub free_pages: u64,
    /// Bytes of those pages.
    pub free_bytes: u64,
    /// Database file plus WAL.
    pub file_bytes: u64,
}

impl SpaceDebt {
    fn of(s: &DatabaseStatistics) -> Self {
        SpaceDebt {
            wal_bytes: s.wal_bytes,
            free_pages: s.free_pages,
            free_bytes: s.free_pages.saturating_mul(s.page_size),
            file_bytes: s.file_bytes,
        }
    }
}

/// One step of a maintenance run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct MaintenanceStep {
    /// What the step does.
    pub name: &'static str,
    /// Whether it succeeded (a skipped step succeeded).
    pub ok: bool,
    /// How long it took, in milliseconds.
    pub duration_ms: u64,
    /// What it did, or why it failed.
    pub detail: String,
}

/// What a maintenance run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct MaintenanceReport {
    /// The backend maintained (`sqlite`, `postgres`): what the space figures mean. A
    /// PostgreSQL server manages its own WAL and free space, so there they are 0.
    pub backend: &'static str,
    /// Start time, milliseconds since the Unix epoch.
    pub started_at_ms: i64,
    /// Total duration, in milliseconds.
    pub duration_ms: u64,
    /// Every step, in order.
    pub steps: Vec<MaintenanceStep>,
    /// `"step: error"` for each failed step.
    pub errors: Vec<String>,
    /// `PRAGMA optimize` ran.
    pub database_optimized: bool,
    /// The write-ahead log was checkpointed and truncated.
    pub wal_checkpointed: bool,
    /// The database was vacuumed.
    pub vacuumed: bool,
    /// Expired records the sweep removed.
    pub expired_swept: u64,
    /// Changes past `maintenance.change_retention` removed from the change log.
    pub changes_pruned: u64,
    /// Reference repair: counts corrected and orphaned blobs removed.
    pub references: RepairOutcome,
    /// Cache entries before and after upkeep.
    pub cache_entries: (u64, u64),
    /// The backup taken, if any.
    pub backup: Option<BackupInfo>,
    /// What retention kept and deleted, if it ran.
    pub retention: Option<RetentionOutcome>,
    /// Stale temporaries of interrupted backups, verifications and restores removed before
    /// the backup, if it ran.
    pub backup_temporaries: Option<SweepReport>,
    /// Space debt before the run.
    pub before: SpaceDebt,
    /// Space debt after the run.
    pub after: SpaceDebt,
}

/// Where a backend's space goes, which decides what vacuum and checkpoint mean for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Space {
    /// An embedded database file and its WAL (SQLite): vacuum and checkpoint are ours.
    File,
    /// A database server (PostgreSQL): autovacuum and the server's checkpoints manage it.
    Server,
    /// Nothing on disk (the in-memory test backend).
    Memory,
}

impl Space {
    fn of(backend: &str) -> Self {
        match backend {
            "sqlite" => Space::File,
            "memory" => Space::Memory,
            _ => Space::Server,
        }
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl MaintenanceReport {
    /// Runs one step inside its own `maintenance_step` span (a child of the maintenance run's
    /// span), and records it: its duration, and what it did or why it failed. The result is
    /// handed back, so a failed health check can stop the run.
    async fn run<T>(
        &mut self,
        name: &'static str,
        work: impl Future<Output = Result<T>>,
        detail: impl FnOnce(&T) -> String,
    ) -> Result<T> {
        let span = tracing::debug_span!(
            "maintenance_step",
            step = name,
            ok = tracing::field::Empty,
            duration_ms = tracing::field::Empty
        );
        let started = Instant::now();
        let result = work.instrument(span.clone()).await;
        let duration_ms = ms(started.elapsed());
        span.record("ok", result.is_ok());
        span.record("duration_ms", duration_ms);
        let _entered = span.enter();
        match &result {
            Ok(v) => {
                tracing::debug!(step = name, duration_ms, "maintenance step");
                self.steps.push(MaintenanceStep {
                    name,
                    ok: true,
                    duration_ms,
                    detail: detail(v),
                });
            }
            Err(e) => {
                tracing::warn!(step = name, error = %e, "maintenance step failed");
                self.errors.push(format!("{name}: {e}"));
                self.steps.push(MaintenanceStep {
                    name,
                    ok: false,
                    duration_ms,
                    detail: e.to_string(),
                });
            }
        }
        result
    }
}

impl PersistentStorageManager {
    /// Runs maintenance now: checks the store's integrity, flushes access statistics, sweeps
    /// expired records ([`sweep_expired`](Self::sweep_expired)), repairs
    /// references (removing blobs nothing refers to), checkpoints and truncates the WAL,
    /// refreshes planner statistics, vacuums past `maintenance.vacuum_free_percent` free
    /// pages, runs cache upkeep, and — with `backup.on_maintenance` — verifies every stored
    /// document, sweeps stale backup temporaries, takes a backup and applies retention. Errors
    /// of single steps are in the report.
    ///
    /// `Err` means the store is closed, or it failed a health check:
    /// [`StorageError::Corruption`] naming what was found (damaged pages, missing blobs,
    /// damaged documents by collection and key) and what was not done. A store that fails
    /// the integrity check is left exactly as it was (no repair, vacuum, checkpoint, backup
    /// or retention); one that holds a damaged document gets no new backup, and every
    /// existing backup is kept.
    pub async fn maintenance(&self) -> Result<MaintenanceReport> {
        let work = self.maintenance_inner();
        let result = self
            .observer()
            .observed(Operation::Maintenance, "", None, work)
            .await;
        crate::observe::maintenance_run(result.is_ok());
        result
    }

    async fn maintenance_inner(&self) -> Result<MaintenanceReport> {
        self.check_open()?;
        self.check_read_write("maintenance")?;
        let started = Instant::now();
        let mut report = MaintenanceReport {
            backend: self.shared().backend.name(),
            started_at_ms: now_ms(),
            ..MaintenanceReport::default()
        };
        let shared = self.shared();
        let backend = || std::sync::Arc::clone(&shared.backend);
        let stats = |b: std::sync::Arc<dyn crate::backend::Backend>| async move {
            blocking(move || b.statistics()).await
        };
        if let Ok(s) = stats(backend()).await {
            report.before = SpaceDebt::of(&s);
        }

        let b = backend();
        let health = report
            .run(
                "integrity check",
                blocking(move || b.maintenance().quick_check()),
                |c| {
                    if c.is_sound() {
                        "ok".into()
                    } else {
                        c.problems()
                    }
                },
            )
            .await
            .ok();
        match health {
            Some(check) if check.is_sound() => {}
            Some(check) => return Err(unhealthy(&check.problems())),
            // The check itself failed (a read error on a damaged file, or a lost connection):
            // health unknown, so nothing destructive either.
            None => {
                let why = report.errors.last().cloned().unwrap_or_default();
                return Err(unhealthy(&format!(
                    "the integrity check could not run: {why}"
                )));
            }
        }

        let _ = report
            .run(
                "flush access statistics",
                self.writer().flush_access(),
                |_| "buffered reads written".into(),
            )
            .await;

        if let Ok(n) = report
            .run("sweep expired records", self.sweep_expired(), |n| {
                format!("{n} expired records removed")
            })
            .await
        {
            report.expired_swept = n;
        }

        if let Some(ring) = &shared.keyring
            && shared.counters.reencrypt.pending(ring)
        {
            let _ = report
                .run("re-encrypt", self.reencrypt(), |s| {
                    format!(
                        "{} of {} blobs read sealed again under their collection's current key{}{}",
                        s.blobs_resealed,
                        s.blobs_examined,
                        if s.chunks_resealed > 0 {
                            format!(", and {} chunks of large documents", s.chunks_resealed)
                        } else {
                            String::new()
                        },
                        if s.pass_complete {
                            "; pass complete"
                        } else {
                            ""
                        }
                    )
                })
                .await;
        }

        if let Ok(n) = report
            .run("prune change log", self.prune_changes(), |n| {
                format!("{n} changes past retention removed")
            })
            .await
        {
            report.changes_pruned = n;
        }

        let b = backend();
        let repaired = report
            .run(
                "repair references",
                blocking(move || b.maintenance().repair_references()),
                |o| {
                    let mut text = format!(
                        "{} reference counts fixed, {} orphaned blobs ({} bytes) removed",
                        o.refcounts_fixed, o.orphans_removed, o.orphan_bytes_removed
                    );
                    if o.chunk_refcounts_fixed > 0 || o.orphan_chunks_removed > 0 {
                        text.push_str(&format!(
                            "; {} chunk reference counts fixed, {} orphaned chunks ({} bytes) \
                             removed",
                            o.chunk_refcounts_fixed,
                            o.orphan_chunks_removed,
                            o.orphan_chunk_bytes_removed
                        ));
                    }
                    text
                },
            )
            .await;
        match repaired {
            Ok(outcome) => report.references = outcome,
            // The repair refuses when the record table cannot be read in full: then nothing
            // after it may run either.
            Err(e) if e.is_corruption() => return Err(unhealthy(&e.to_string())),
            Err(_) => {}
        }

        let b = backend();
        report.database_optimized = report
            .run(
                "optimize",
                blocking(move || b.maintenance().optimize()),
                |_| "planner statistics refreshed".into(),
            )
            .await
            .is_ok();

        let threshold = u64::from(self.config().maintenance.vacuum_free_percent);
        let space = Space::of(shared.backend.name());
        let b = backend();
        let vacuum = blocking(move || {
            let s = b.statistics()?;
            if space == Space::File
                && s.page_count > 0
                && s.free_pages.saturating_mul(100) > s.page_count.saturating_mul(threshold)
            {
                b.maintenance().vacuum()?;
                Ok(Some(s.free_pages))
            } else {
                Ok(None)
            }
        });
        report.vacuumed = matches!(
            report
                .run("vacuum", vacuum, |v| match (v, space) {
                    (Some(free), _) => format!("vacuumed {free} free pages"),
                    (None, Space::File) => format!("skipped: free pages under {threshold}%"),
                    (None, Space::Server) => {
                        "skipped: the server's autovacuum reclaims dead rows".into()
                    }
                    (None, Space::Memory) => "skipped: nothing on disk".into(),
                })
                .await,
            Ok(Some(_))
        );

        // After vacuum, which writes the whole database through the WAL.
        let b = backend();
        report.wal_checkpointed = report
            .run(
                "checkpoint",
                blocking(move || b.maintenance().checkpoint()),
                |()| match space {
                    Space::File => "write-ahead log truncated".into(),
                    Space::Server => "skipped: the server runs its own checkpoints".into(),
                    Space::Memory => "skipped: nothing on disk".into(),
                },
            )
            .await
            .is_ok()
            && space == Space::File;

        let cache = &shared.cache;
        let upkeep = async {
            let before = cache.statistics().entry_count;
            cache.run_pending_tasks();
            Ok((before, cache.statistics().entry_count))
        };
        if let Ok(entries) = report
            .run("cache upkeep", upkeep, |(before, after)| {
                format!("{before} → {after} entries")
            })
            .await
        {
            report.cache_entries = entries;
        }

        if self
            .config()
            .backup
            .takes_maintenance_backups(space != Space::Server)
        {
            let b = backend();
            let keyring = self.shared().keyring.clone();
            let verify = blocking(move || {
                let m = b.maintenance();
                let mut check = m.quick_check()?;
                crate::verify::deepen(
                    &mut check,
                    &b.dictionaries()?,
                    keyring,
                    crate::verify::Readers::of(m),
                )?;
                Ok(check)
            });
            let verified = report
                .run("verify contents", verify, |c| {
                    if c.is_ok() {
                        format!(
                            "{} blobs ({} bytes) decoded and hashed",
                            c.blobs_verified, c.bytes_verified
                        )
                    } else {
                        c.problems()
                    }
                })
                .await;
            match verified {
                Ok(c) if c.is_ok() => {}
                Ok(c) => return Err(not_certified(&c.problems())),
                Err(e) => {
                    return Err(not_certified(&format!(
                        "the contents could not be verified: {e}"
                    )));
                }
            }
            let backups = self.backups();
            // Temporaries of killed runs first, counted in the report (the backup sweeps too).
            let backup = async {
                let swept = backups.sweep_temporaries().await;
                backups.create_backup().await.map(|b| (b, swept))
            };
            if let Ok((b, swept)) = report
                .run("backup", backup, |(b, swept)| {
                    let freed = match swept {
                        Ok(s) => format!(
                            "; swept {} stale temporaries ({} bytes)",
                            s.removed.len(),
                            s.bytes_freed
                        ),
                        Err(e) => format!("; sweeping stale temporaries failed: {e}"),
                    };
                    format!("{} ({} bytes){freed}", b.id, b.archive_bytes)
                })
                .await
            {
                report.backup = Some(b);
                report.backup_temporaries = swept.ok();
            }
            report.retention = report
                .run("retention", backups.apply_retention(), |o| {
                    format!("kept {}, deleted {}", o.kept.len(), o.deleted.len())
                })
                .await
                .ok();
        }

        if let Ok(s) = stats(backend()).await {
            report.after = SpaceDebt::of(&s);
        }
        report.duration_ms = ms(started.elapsed());
        Counters::add(&shared.counters.maintenance_runs, 1);
        shared
            .counters
            .last_maintenance_ms
            .store(report.started_at_ms, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(
            duration_ms = report.duration_ms,
            errors = report.errors.len(),
            "maintenance finished"
        );
        Ok(report)
    }
}

/// What the operator should do about a store that failed a health check.
const NEXT_STEPS: &str = "stop writing to the store, take a copy of its database files, \
     verify the existing backups (`backup verify <id>`, newest first) and restore the newest \
     one that verifies";

/// The refusal of a store that failed the integrity check before any destructive step.
fn unhealthy(found: &str) -> StorageError {
    tracing::error!(%found, "maintenance refused: the store failed its integrity check");
    StorageError::corruption(
        "the store",
        format!(
            "{found}. Maintenance stopped: no reference repair, vacuum, checkpoint, \
             backup or retention ran, and every existing backup was kept. Next: {NEXT_STEPS}"
        ),
    )
}

/// The refusal to back up a store whose documents did not all verify.
fn not_certified(found: &str) -> StorageError {
    tracing::error!(%found, "maintenance refused to back up a damaged store");
    StorageError::corruption(
        "the store",
        format!(
            "{found}. No backup was taken and retention did not run: every existing backup \
             was kept. Next: {NEXT_STEPS}"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::ConsistencyReport;

    #[test]
    fn refusals_say_what_was_kept_and_what_to_do() {
        let check = ConsistencyReport {
            integrity: vec!["Tree 5 page 7: btreeInitPage() returns error code 11".into()],
            ..ConsistencyReport::default()
        };
        let e = unhealthy(&check.problems());
        assert!(e.is_corruption());
        let text = e.to_string();
        assert!(
            text.starts_with("corrupted data at the store: integrity check: Tree 5"),
            "{text}"
        );
        assert!(text.contains("every existing backup was kept"), "{text}");
        assert!(text.contains("take a copy of its database files"), "{text}");
        let text = not_certified("damaged documents: games/g-1").to_string();
        assert!(
            text.contains("games/g-1") && text.contains("No backup was taken"),
            "{text}"
        );
    }
}

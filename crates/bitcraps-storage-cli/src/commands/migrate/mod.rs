//! `migrate --from A --to B`: copies every record of one store into another (any backend to
//! any backend), then verifies that the target equals the source.
//!
//! Both stores are opened with background tasks and the read cache off (a one-pass copy
//! gains nothing from either). The copy reads each collection in pages of `--batch-size`
//! keys and stores each page with one atomic `store_batch` of the source's JSON documents,
//! passed through unchanged as raw JSON, so the target stores the same bytes (and content
//! hashes). The verification ([`verify`]) compares every collection's record count and every
//! record's content hash on both sides.
//!
//! Documents, their versions and their expiry times are copied
//! (`store_batch_keeping_expiry`: a version read from the source is valid against the
//! target, and a record expires in the target when it does in the source); after the
//! records, every collection's settings — default TTL and quota — are copied, so records
//! without an expiry time do not pick the default TTL up on the way. The target's records
//! get new creation times and no access history, and the copy's reads are counted in the
//! source's access statistics. The change log is not copied: the target's log records the
//! copy itself (one put per record).

mod copy;
mod pages;
mod verify;

pub use verify::Row as MigrationRow;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use bitcraps_storage::BackendTarget;
use bitcraps_storage::{PersistentStorageManager, StorageConfig};

use crate::cli::MigrateArgs;
use crate::commands::{describe, open, print};
use crate::exit::CliError;
use crate::progress::Ui;
use crate::render;
use crate::settings::{Layer, Settings};

/// How many mismatching records the error names.
const NAMED_MISMATCHES: usize = 5;

/// Runs the migration; exit 1 when the verification finds any difference.
pub async fn run(
    args: &MigrateArgs,
    config_file: Option<&Path>,
    key_file: Option<PathBuf>,
    ui: &Ui,
) -> Result<()> {
    // The source's key is --key-file; the target's --to-key-file, else the same. Documents
    // pass through memory only: the target seals them under its own keys.
    let to_key = args.to_key_file.clone().or_else(|| key_file.clone());
    let from = endpoint(&args.from, config_file, key_file)?;
    let to = endpoint(&args.to, config_file, to_key)?;
    if identity(&from) == identity(&to) {
        return Err(CliError::Usage(format!(
            "--from and --to name the same store ({}); migrate copies between two stores",
            describe(&from)
        ))
        .into());
    }
    must_exist(&from, "source")?;
    if args.verify_only {
        must_exist(&to, "target")?;
    }
    let source = open(from).await.context("opening the source")?;
    let target = match open(to).await.context("opening the target") {
        Ok(target) => target,
        Err(e) => {
            // The open error is the one worth reporting.
            let _ = source.close().await;
            return Err(e);
        }
    };
    let result = migrate(&source, &target, args, ui).await;
    let closed_target = target.close().await.context("closing the target");
    let closed_source = source.close().await.context("closing the source");
    result.and(closed_target).and(closed_source)
}

async fn migrate(
    source: &PersistentStorageManager,
    target: &PersistentStorageManager,
    args: &MigrateArgs,
    ui: &Ui,
) -> Result<()> {
    let limit = usize::try_from(args.batch_size).unwrap_or(usize::MAX);
    if !args.verify_only {
        refuse_nonempty(target, args.allow_nonempty).await?;
        let copied = copy::copy_all(source, target, limit, ui).await?;
        target.flush().await.context("flushing the target")?;
        ui.suspend(|| {
            crate::notes::note!(
                "copied {} records in {} collection(s) and {} collection setting(s); verifying",
                copied.records,
                copied.collections,
                copied.settings
            );
        });
    }
    let report = verify::verify(source, target, limit, ui).await?;
    if args.json {
        let first: Vec<String> = report
            .first_mismatches
            .iter()
            .map(ToString::to_string)
            .collect();
        let summary = serde_json::json!({
            "collections": report.rows,
            "mismatches": report.mismatches,
            "first_mismatches": first,
        });
        print(&format!("{}\n", serde_json::to_string_pretty(&summary)?))?;
    } else {
        print(&format!("{}\n", render::migration(&report.rows)))?;
    }
    if report.mismatches == 0 {
        return Ok(());
    }
    let named: Vec<String> = report
        .first_mismatches
        .iter()
        .take(NAMED_MISMATCHES)
        .map(ToString::to_string)
        .collect();
    bail!(
        "verification failed: {} record(s) differ between the source and the target, first: {}",
        report.mismatches,
        named.join("; ")
    )
}

/// Fails when a SQLite store to read does not exist (opening it would create an empty one).
fn must_exist(config: &StorageConfig, side: &str) -> Result<()> {
    match config.target() {
        Ok(BackendTarget::Sqlite { path }) if !path.exists() => Err(CliError::Usage(format!(
            "the {side} {} does not exist (expected a data directory holding {}, or \
             sqlite://PATH of a database file)",
            path.display(),
            bitcraps_storage::DEFAULT_DATABASE_FILE,
        ))
        .into()),
        _ => Ok(()),
    }
}

/// Fails when the target holds records, unless `allow` says to copy into it anyway.
async fn refuse_nonempty(target: &PersistentStorageManager, allow: bool) -> Result<()> {
    let existing = target.collections().await.context("listing the target")?;
    if existing.is_empty() || allow {
        return Ok(());
    }
    let records = target
        .statistics()
        .await
        .context("counting the target's records")?
        .database_stats
        .record_count;
    bail!(
        "the target {} already holds {records} records in {} collection(s) ({}); migrate \
         refuses to copy into it because records with the same keys would be replaced and \
         the copy could no longer be verified as equal to the source. Use an empty target, \
         or pass --allow-nonempty (e.g. to resume an interrupted migration)",
        describe(target.config()),
        existing.len(),
        existing.join(", "),
    )
}

/// The settings for one side: its location from `--from`/`--to`, everything else from the
/// environment and the config file as for any command.
fn endpoint(
    location: &str,
    config_file: Option<&Path>,
    key_file: Option<PathBuf>,
) -> Result<StorageConfig> {
    let flags = if location.contains("://") {
        Layer::from_flags(None, Some(location.to_owned()))
    } else {
        Layer::from_flags(Some(PathBuf::from(location)), None)
    }
    .with_key_file(key_file);
    let mut config = Settings::load(flags, config_file, |name| std::env::var(name).ok())?.config;
    config.maintenance.background_tasks = false;
    config.cache.size_mb = 0;
    Ok(config)
}

/// What makes two configurations the same store: the canonical database file for SQLite,
/// the URL otherwise.
fn identity(config: &StorageConfig) -> String {
    match config.target() {
        Ok(BackendTarget::Sqlite { path }) => canonical(&path).display().to_string(),
        _ => config.database.url.clone().unwrap_or_default(),
    }
}

/// `path` made absolute with symbolic links resolved, as far as it exists.
fn canonical(path: &Path) -> PathBuf {
    if let Ok(path) = path.canonicalize() {
        return path;
    }
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) if !parent.as_os_str().is_empty() => {
            canonical(parent).join(name)
        }
        _ => std::env::current_dir()
            .map(|dir| dir.join(path))
            .unwrap_or_else(|_| path.to_path_buf()),
    }
}

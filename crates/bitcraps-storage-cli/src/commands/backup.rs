//! `backup create | list | verify ID | prune [--dry-run] | restore ID --to DIR|postgres://…`,
//! each with `--json`.

use std::path::Path;

use anyhow::{Context, Result};
use bitcraps_storage::{BackupInfo, BackupManager, PersistentStorageManager};

use crate::cli::BackupCommand;
use crate::commands::print;
use crate::exit::CliError;
use crate::progress::Ui;
use crate::render;

fn info_rows(b: &BackupInfo) -> Vec<(String, String)> {
    vec![
        ("id".into(), b.id.clone()),
        ("created".into(), b.created_at.clone()),
        ("records".into(), b.snapshot.record_count.to_string()),
        ("blobs".into(), b.snapshot.blob_count.to_string()),
        (
            "logical bytes".into(),
            render::bytes(b.snapshot.logical_bytes),
        ),
        ("database".into(), render::bytes(b.database_bytes)),
        ("archive".into(), render::bytes(b.archive_bytes)),
        ("blake3".into(), b.archive_blake3.clone()),
    ]
}

/// Runs one backup subcommand.
pub async fn run(
    storage: &PersistentStorageManager,
    command: BackupCommand,
    ui: &Ui,
) -> Result<()> {
    let backups = storage.backups();
    match command {
        BackupCommand::Create { json } => {
            let spinner = ui.bar(None, "", "backing up");
            // Swept here (create sweeps too) so the report can say what was freed.
            let swept = backups.sweep_temporaries().await;
            let info = backups.create_backup().await;
            spinner.finish_and_clear();
            let swept = swept.context("sweeping stale backup temporaries")?;
            let info = info.context("creating a backup")?;
            if !swept.removed.is_empty() {
                crate::notes::note!(
                    "removed {} stale temporaries of interrupted backups ({})",
                    swept.removed.len(),
                    render::bytes(swept.bytes_freed)
                );
            }
            if json {
                print(&format!("{}\n", serde_json::to_string_pretty(&info)?))
            } else {
                print(&format!("{}\n", render::key_value(&info_rows(&info))))
            }
        }
        BackupCommand::List { json } => list(&backups, json).await,
        BackupCommand::Verify { id, json } => {
            let spinner = ui.bar(None, "", "verifying");
            let verified = backups.verify_backup(&id).await;
            spinner.finish_and_clear();
            let v = match verified {
                Err(e) if e.is_corruption() => {
                    return Err(e).with_context(|| format!("backup {id:?} failed verification"));
                }
                other => other.with_context(|| format!("verifying backup {id:?}"))?,
            };
            if json {
                return print(&format!("{}\n", serde_json::to_string_pretty(&v)?));
            }
            print(&format!(
                "backup {} verified: {} records, {} blobs ({} decoded and hash-checked), \
                 integrity {}\n",
                v.id,
                v.snapshot.record_count,
                v.snapshot.blob_count,
                v.blobs_decoded,
                v.integrity.join(", ")
            ))
        }
        BackupCommand::Prune { dry_run, json } => prune(storage, &backups, dry_run, json).await,
        BackupCommand::Restore { id, to, json } => restore(&backups, &id, &to, json, ui).await,
    }
}

/// `backup list`: complete backups, then incomplete ones and foreign manifests (which are
/// never used, counted by retention or deleted). `--json` is one array; each entry has a
/// `status` of `complete` (with the manifest's fields), `incomplete` (`id`, `reason`) or
/// `foreign` (`file`, `reason`).
async fn list(backups: &BackupManager, json: bool) -> Result<()> {
    let listing = backups.scan_backups().await.context("listing backups")?;
    if json {
        let mut entries = Vec::new();
        for b in &listing.complete {
            let mut v = serde_json::to_value(b)?;
            if let Some(map) = v.as_object_mut() {
                map.insert("status".into(), "complete".into());
            }
            entries.push(v);
        }
        for b in &listing.incomplete {
            entries
                .push(serde_json::json!({"status": "incomplete", "id": b.id, "reason": b.reason}));
        }
        for f in &listing.foreign {
            entries
                .push(serde_json::json!({"status": "foreign", "file": f.file, "reason": f.reason}));
        }
        return print(&format!("{}\n", serde_json::to_string_pretty(&entries)?));
    }
    let mut table = render::table();
    table.set_header(["id", "created", "records", "archive", "status"]);
    for b in &listing.complete {
        table.add_row([
            b.id.clone(),
            b.created_at.clone(),
            b.snapshot.record_count.to_string(),
            render::bytes(b.archive_bytes),
            "complete".into(),
        ]);
    }
    for b in &listing.incomplete {
        table.add_row([
            b.id.clone(),
            String::new(),
            String::new(),
            String::new(),
            format!("incomplete: {}", b.reason),
        ]);
    }
    for f in &listing.foreign {
        table.add_row([
            format!("{:?}", f.file),
            String::new(),
            String::new(),
            String::new(),
            format!("foreign manifest, left alone: {}", f.reason),
        ]);
    }
    print(&format!("{table}\n"))
}

/// `backup prune`: retention without a new backup; `--dry-run` deletes nothing. Refused with
/// `--read-only` (it deletes files).
async fn prune(
    storage: &PersistentStorageManager,
    backups: &BackupManager,
    dry_run: bool,
    json: bool,
) -> Result<()> {
    if storage.config().database.read_only && !dry_run {
        return Err(bitcraps_storage::StorageError::ReadOnly {
            operation: "backup prune",
        }
        .into());
    }
    let outcome = if dry_run {
        backups.plan_retention().await
    } else {
        backups.apply_retention().await
    }
    .context("applying the retention rules")?;
    if json {
        return print(&format!("{}\n", serde_json::to_string_pretty(&outcome)?));
    }
    let verb = if dry_run { "would delete" } else { "deleted" };
    let mut text = String::new();
    for id in &outcome.deleted {
        text.push_str(&format!("{verb} {id}\n"));
    }
    text.push_str(&format!(
        "kept {}, {verb} {}\n",
        outcome.kept.len(),
        outcome.deleted.len()
    ));
    print(&text)
}

/// Where `backup restore --to` points.
enum Target<'a> {
    /// A PostgreSQL database or schema (`postgres://…`, `postgresql://…`).
    Postgres(&'a str),
    /// A new data directory.
    Directory(&'a Path),
}

/// Reads `--to`: a PostgreSQL URL, or else a directory. Any other URL (`sqlite://…`,
/// `redis://…`) is refused rather than taken as a directory named after it.
fn target(to: &Path) -> Result<Target<'_>> {
    match to.to_str() {
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            Ok(Target::Postgres(url))
        }
        // Only the scheme is named: the rest of a URL may hold a password.
        Some(url) if let Some((scheme, _)) = url.split_once("://") => {
            Err(CliError::Usage(format!(
                "backup restore --to takes a new data directory or a postgres:// URL, \
                 not a {scheme}:// URL"
            ))
            .into())
        }
        _ => Ok(Target::Directory(to)),
    }
}

async fn restore(backups: &BackupManager, id: &str, to: &Path, json: bool, ui: &Ui) -> Result<()> {
    let target = target(to)?;
    let spinner = ui.bar(None, "", "restoring");
    let message: Result<String> = match target {
        Target::Postgres(url) => match backups.restore_backup_to_url(id, url).await {
            Ok(r) if json => pretty(&r),
            // The URL is not echoed: it may hold a password.
            Ok(r) => Ok(format!(
                "restored backup {} into the PostgreSQL database of --to ({} records); \
                     open it with --url and that URL\n",
                r.id, r.snapshot.record_count
            )),
            Err(e) => Err(e.into()),
        },
        Target::Directory(dir) => match backups.restore_backup(id, dir).await {
            Ok(r) if json => pretty(&r),
            Ok(r) => Ok(format!(
                "restored backup {} into {} ({} records); open it with --data {}\n",
                r.id,
                r.target.display(),
                r.snapshot.record_count,
                r.target.display()
            )),
            Err(e) => Err(e.into()),
        },
    };
    spinner.finish_and_clear();
    print(&message.with_context(|| format!("restoring backup {id:?}"))?)
}

/// A report as pretty JSON, one line break after it.
fn pretty<T: serde::Serialize>(report: &T) -> Result<String> {
    Ok(format!("{}\n", serde_json::to_string_pretty(report)?))
}

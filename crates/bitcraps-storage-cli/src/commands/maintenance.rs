//! `maintenance [--json]`: run maintenance now and show what each step did.

use anyhow::{Context, Result};
use bitcraps_storage::PersistentStorageManager;

use crate::cli::MaintenanceArgs;
use crate::commands::print;
use crate::progress::Ui;
use crate::render;

/// Runs maintenance; a failed step is shown (and makes the exit code 1) but the others run.
pub async fn run(
    storage: &PersistentStorageManager,
    args: &MaintenanceArgs,
    ui: &Ui,
) -> Result<()> {
    let spinner = ui.bar(None, "steps", "maintenance");
    let report = storage.maintenance().await.context("running maintenance");
    spinner.finish_and_clear();
    let report = report?;
    if args.json {
        print(&format!("{}\n", serde_json::to_string_pretty(&report)?))?;
    } else {
        let mut rows: Vec<(String, String)> = report
            .steps
            .iter()
            .map(|s| {
                let status = if s.ok { "ok" } else { "FAILED" };
                (
                    s.name.to_owned(),
                    format!("{status} ({} ms) {}", s.duration_ms, s.detail),
                )
            })
            .collect();
        rows.push((
            "WAL before → after".into(),
            format!(
                "{} → {}",
                render::bytes(report.before.wal_bytes),
                render::bytes(report.after.wal_bytes)
            ),
        ));
        rows.push((
            "free pages before → after".into(),
            format!("{} → {}", report.before.free_pages, report.after.free_pages),
        ));
        rows.push((
            "file before → after".into(),
            format!(
                "{} → {}",
                render::bytes(report.before.file_bytes),
                render::bytes(report.after.file_bytes)
            ),
        ));
        rows.push(("duration".into(), format!("{} ms", report.duration_ms)));
        print(&format!("{}\n", render::key_value(&rows)))?;
    }
    anyhow::ensure!(
        report.errors.is_empty(),
        "maintenance finished with errors: {}",
        report.errors.join("; ")
    );
    Ok(())
}

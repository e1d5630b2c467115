//! `maintenance [--json]`: run maintenance now and show what each step did.

use anyhow::{Context, Result};
use bitcraps_storage::{PersistentStorageManager, StorageError};

use crate::cli::MaintenanceArgs;
use crate::commands::print;
use crate::progress::Ui;
use crate::render;

/// What an operator runs after maintenance refused a damaged store.
const RECOVERY: &str = "to recover:
  1. copy the data directory aside, as it is (database, -wal and -shm files)
  2. bitcraps-storage backup list
  3. bitcraps-storage backup verify <id>            (newest first, until one verifies)
  4. bitcraps-storage backup restore <id> --to <new data dir>";

/// Runs maintenance; a failed step is shown (and makes the exit code 1) but the others run.
/// A store that fails the health checks is refused before any destructive step, with an
/// error saying what was found and what to do next.
pub async fn run(
    storage: &PersistentStorageManager,
    args: &MaintenanceArgs,
    ui: &Ui,
) -> Result<()> {
    let spinner = ui.bar(None, "steps", "maintenance");
    let report = storage.maintenance().await;
    spinner.finish_and_clear();
    let report = match report {
        Err(e @ StorageError::Corruption { .. }) => {
            ui.suspend(|| eprintln!("{RECOVERY}"));
            return Err(e).context("maintenance refused to run on a damaged store");
        }
        other => other.context("running maintenance")?,
    };
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
        rows.extend(render::space_debt(
            report.backend,
            &report.before,
            &report.after,
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

//! `export [--collection C] [-o FILE]`: JSON Lines of every record (see `jsonl`).

use std::pin::Pin;

use anyhow::{Context, Result};
use bitcraps_storage::{ListOptions, PersistentStorageManager};
use tokio::io::{AsyncWrite, AsyncWriteExt, BufWriter};

use crate::cli::ExportArgs;
use crate::jsonl;
use crate::progress::Ui;

/// Writes every record of one or all collections, in collection then key order. Reading
/// goes through `retrieve_raw`, so every document is verified against its hash on the way out
/// (and counted as a read in its metadata).
pub async fn run(storage: &PersistentStorageManager, args: &ExportArgs, ui: &Ui) -> Result<()> {
    let (collections, total) = match &args.collection {
        Some(c) => (vec![c.clone()], None),
        None => {
            let total = storage.statistics().await?.database_stats.record_count;
            let names = storage.collections().await.context("listing collections")?;
            (names, Some(total))
        }
    };
    let mut out: Pin<Box<dyn AsyncWrite + Send>> = match &args.output {
        Some(path) => {
            let file = tokio::fs::File::create(path)
                .await
                .with_context(|| format!("cannot create {}", path.display()))?;
            Box::pin(BufWriter::new(file))
        }
        None => Box::pin(BufWriter::new(tokio::io::stdout())),
    };
    let bar = ui.bar(total, "records", "exporting");
    let mut count = 0u64;
    for c in &collections {
        let mut after: Option<String> = None;
        loop {
            let mut options = ListOptions::default();
            if let Some(after) = &after {
                options = options.after(after);
            }
            let page = storage
                .list(c, options)
                .await
                .with_context(|| format!("listing {c}"))?;
            for key in &page.keys {
                // Listed but gone: nothing else writes while this process holds the store.
                let Some(raw) = storage
                    .retrieve_raw(c, key)
                    .await
                    .with_context(|| format!("reading {c}/{key}"))?
                else {
                    continue;
                };
                out.write_all(jsonl::line(c, key, &raw)?.as_bytes())
                    .await
                    .context("writing the export")?;
                count += 1;
                bar.inc(1);
            }
            match page.next_after {
                Some(next) => after = Some(next),
                None => break,
            }
        }
    }
    out.flush().await.context("writing the export")?;
    out.shutdown().await.context("writing the export")?;
    bar.finish_and_clear();
    ui.suspend(|| {
        crate::notes::note!(
            "exported {count} records from {} collection(s)",
            collections.len()
        );
    });
    Ok(())
}

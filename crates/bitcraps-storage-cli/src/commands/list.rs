//! `list <collection> [--prefix P] [--limit N] [--after K]`: one key per line.

use anyhow::{Context, Result};
use bitcraps_storage::{DEFAULT_LIST_LIMIT, ListOptions, PersistentStorageManager};

use crate::cli::ListArgs;
use crate::commands::print;

/// Prints keys page by page. When `--limit` stops the listing early, says on stderr how to
/// continue.
pub async fn run(storage: &PersistentStorageManager, args: &ListArgs) -> Result<()> {
    let c = &args.collection;
    let mut remaining = args.limit.unwrap_or(usize::MAX);
    let mut after = args.after.clone();
    while remaining > 0 {
        let mut options = ListOptions::default().limit(remaining.min(DEFAULT_LIST_LIMIT));
        if let Some(prefix) = &args.prefix {
            options = options.prefix(prefix);
        }
        if let Some(after) = &after {
            options = options.after(after);
        }
        let page = storage
            .list(c, options)
            .await
            .with_context(|| format!("listing {c}"))?;
        remaining = remaining.saturating_sub(page.keys.len());
        let mut text = String::new();
        for key in &page.keys {
            text.push_str(key);
            text.push('\n');
        }
        print(&text)?;
        match page.next_after {
            Some(next) if remaining == 0 => {
                eprintln!("more keys follow; continue with --after {next:?}");
            }
            Some(next) => after = Some(next),
            None => break,
        }
    }
    Ok(())
}

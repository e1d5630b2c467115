//! `list <collection> [--prefix P] [--limit N] [--after K] [-0 | --json]`: one key per line,
//! control characters escaped; or NUL-terminated, or a JSON array, exactly as stored.

use std::borrow::Cow;

use anyhow::{Context, Result};
use bitcraps_storage::{DEFAULT_LIST_LIMIT, ListOptions, PersistentStorageManager};

use crate::cli::ListArgs;
use crate::commands::print;
use crate::render;

/// Prints keys page by page, one per line. A key's control characters are printed escaped
/// (see [`render::escape_controls`]) whether stdout is a terminal or not, so a key can neither
/// split into two lines nor drive the terminal; stderr then says how many keys were shown
/// escaped (those cannot be passed back to `get` as printed). When `--limit` stops the
/// listing early, says on stderr how to continue.
pub async fn run(storage: &PersistentStorageManager, args: &ListArgs) -> Result<()> {
    let c = &args.collection;
    let mut escaped = 0usize;
    let mut remaining = args.limit.unwrap_or(usize::MAX);
    let mut after = args.after.clone();
    let mut first = true;
    if args.json {
        print("[")?;
    }
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
            if args.null {
                text.push_str(key);
                text.push('\0');
                continue;
            }
            if args.json {
                text.push_str(if first { "\n  " } else { ",\n  " });
                text.push_str(&serde_json::to_string(key)?);
                first = false;
                continue;
            }
            let shown = render::escape_controls(key);
            if matches!(shown, Cow::Owned(_)) {
                escaped += 1;
            }
            text.push_str(&shown);
            text.push('\n');
        }
        print(&text)?;
        match page.next_after {
            Some(next) if remaining == 0 => {
                crate::notes::note!("more keys follow; continue with --after {next:?}");
            }
            Some(next) => after = Some(next),
            None => break,
        }
    }
    if args.json {
        print(if first { "]\n" } else { "\n]\n" })?;
    }
    if escaped > 0 {
        crate::notes::note!(
            "{escaped} key(s) hold control characters and are shown escaped (\\n, \\t, \\u{{1b}}, ...)"
        );
    }
    Ok(())
}

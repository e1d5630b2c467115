//! The verification after a copy: per collection, the record counts on both sides, and every
//! record's content hash (blake3 of its JSON document, from `metadata`) on both sides.
//!
//! It walks the source's keys and looks each up on both sides, then counts the target's keys;
//! it does not assume that both backends list keys in the same order.

use std::collections::BTreeSet;
use std::fmt;

use anyhow::{Context, Result};
use bitcraps_storage::PersistentStorageManager;

use super::NAMED_MISMATCHES;
use super::pages::{for_each_key, next_page};
use crate::progress::Ui;

/// One collection's line of the summary (`migrate --json` prints it as it serializes).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Row {
    /// Collection name.
    pub collection: String,
    /// Records in the source.
    pub source_records: u64,
    /// Records in the target.
    pub target_records: u64,
    /// Source records missing from the target or stored with different content, plus target
    /// records the source does not have.
    pub mismatches: u64,
}

/// How a record differs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Difference {
    /// In the source, not in the target.
    MissingInTarget,
    /// In both, with different content hashes.
    ContentDiffers {
        /// The source's content hash.
        source: String,
        /// The target's content hash.
        target: String,
    },
    /// In the target, not in the source.
    OnlyInTarget,
}

/// One mismatching record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// Collection name.
    pub collection: String,
    /// Key.
    pub key: String,
    /// How it differs.
    pub difference: Difference,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}: ", self.collection, self.key)?;
        match &self.difference {
            Difference::MissingInTarget => write!(f, "missing in the target"),
            Difference::ContentDiffers { source, target } => write!(
                f,
                "content differs (blake3 {} in the source, {} in the target)",
                short(source),
                short(target)
            ),
            Difference::OnlyInTarget => write!(f, "only in the target"),
        }
    }
}

fn short(hash: &str) -> &str {
    hash.get(..16).unwrap_or(hash)
}

/// The verification's result.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// One row per collection of either side, in order.
    pub rows: Vec<Row>,
    /// Mismatching records in all.
    pub mismatches: u64,
    /// The first few of them.
    pub first_mismatches: Vec<Mismatch>,
}

impl Report {
    fn note(&mut self, mismatch: Mismatch) {
        self.mismatches += 1;
        if self.first_mismatches.len() < NAMED_MISMATCHES {
            self.first_mismatches.push(mismatch);
        }
    }
}

/// Compares `target` with `source`, reading keys in pages of `limit`.
pub async fn verify(
    source: &PersistentStorageManager,
    target: &PersistentStorageManager,
    limit: usize,
    ui: &Ui,
) -> Result<Report> {
    let mut collections: BTreeSet<String> = source
        .collections()
        .await
        .context("listing the source's collections")?
        .into_iter()
        .collect();
    collections.extend(
        target
            .collections()
            .await
            .context("listing the target's collections")?,
    );
    let total = source
        .statistics()
        .await
        .context("counting the source's records")?
        .database_stats
        .record_count;
    let bar = ui.bar(Some(total), "records", "verifying");
    let mut report = Report::default();
    for collection in collections {
        let mut row = Row {
            collection,
            ..Row::default()
        };
        let matched =
            compare_source_records(source, target, limit, &mut row, &mut report, &bar).await?;
        row.target_records = count(target, &row.collection, limit).await?;
        let extra = row.target_records.saturating_sub(matched);
        if extra > 0 {
            row.mismatches += extra;
            name_extra_records(source, target, limit, &row.collection, extra, &mut report).await?;
        }
        report.rows.push(row);
    }
    bar.finish_and_clear();
    Ok(report)
}

/// Looks up every source record of `row.collection` on both sides; returns how many of them
/// the target holds.
async fn compare_source_records(
    source: &PersistentStorageManager,
    target: &PersistentStorageManager,
    limit: usize,
    row: &mut Row,
    report: &mut Report,
    bar: &crate::progress::Bar,
) -> Result<u64> {
    let collection = row.collection.clone();
    let mut in_target = 0u64;
    let mut after: Option<String> = None;
    loop {
        let keys = next_page(source, &collection, after.as_deref(), limit).await?;
        let Some(last) = keys.last().cloned() else {
            break;
        };
        let (c, t) = (collection.clone(), target.clone());
        let hashes = for_each_key(source, &keys, move |source, key| {
            let (c, target) = (c.clone(), t.clone());
            async move {
                let ours = hash(&source, &c, &key, "source").await?;
                let theirs = hash(&target, &c, &key, "target").await?;
                Ok((ours, theirs))
            }
        })
        .await?;
        for (key, (ours, theirs)) in keys.into_iter().zip(hashes) {
            // A key gone from the source since it was listed is not a record of it.
            let Some(ours) = ours else { continue };
            row.source_records += 1;
            bar.inc(1);
            let difference = match theirs {
                None => Difference::MissingInTarget,
                Some(theirs) => {
                    in_target += 1;
                    if theirs == ours {
                        continue;
                    }
                    Difference::ContentDiffers {
                        source: ours,
                        target: theirs,
                    }
                }
            };
            row.mismatches += 1;
            report.note(Mismatch {
                collection: collection.clone(),
                key,
                difference,
            });
        }
        after = Some(last);
    }
    Ok(in_target)
}

async fn hash(
    storage: &PersistentStorageManager,
    collection: &str,
    key: &str,
    side: &str,
) -> Result<Option<String>> {
    let meta = storage
        .metadata(collection, key)
        .await
        .with_context(|| format!("reading the metadata of {collection}/{key} in the {side}"))?;
    Ok(meta.map(|m| m.content_hash))
}

/// Records in `collection`.
async fn count(storage: &PersistentStorageManager, collection: &str, limit: usize) -> Result<u64> {
    let mut n = 0u64;
    let mut after: Option<String> = None;
    loop {
        let keys = next_page(storage, collection, after.as_deref(), limit).await?;
        let Some(last) = keys.last().cloned() else {
            return Ok(n);
        };
        n += u64::try_from(keys.len()).unwrap_or(u64::MAX);
        after = Some(last);
    }
}

/// Counts the `extra` target records the source lacks, naming them while the report still
/// has room; stops walking once every name it can show is found.
async fn name_extra_records(
    source: &PersistentStorageManager,
    target: &PersistentStorageManager,
    limit: usize,
    collection: &str,
    extra: u64,
    report: &mut Report,
) -> Result<()> {
    report.mismatches += extra;
    let mut wanted = NAMED_MISMATCHES.saturating_sub(report.first_mismatches.len());
    let mut after: Option<String> = None;
    while wanted > 0 {
        let keys = next_page(target, collection, after.as_deref(), limit).await?;
        let Some(last) = keys.last().cloned() else {
            break;
        };
        let (c, s) = (collection.to_owned(), source.clone());
        let present = for_each_key(target, &keys, move |_, key| {
            let (c, source) = (c.clone(), s.clone());
            async move {
                source
                    .exists(&c, &key)
                    .await
                    .with_context(|| format!("looking up {c}/{key} in the source"))
            }
        })
        .await?;
        for (key, present) in keys.into_iter().zip(present) {
            if !present && wanted > 0 {
                wanted -= 1;
                report.first_mismatches.push(Mismatch {
                    collection: collection.to_owned(),
                    key,
                    difference: Difference::OnlyInTarget,
                });
            }
        }
        after = Some(last);
    }
    Ok(())
}

//! Writes into a crypto-shredded collection, refused inside the write transaction.
//!
//! A node's keyring may still hold a collection's data key after another node shredded it
//! (each node reloads keys only when it misses one). A shred takes the store's write lock
//! exclusively and empties the collection's key rows in the same transaction, and every
//! write transaction takes that lock (shared or exclusive) first. So a write that reads the
//! key rows after its store lock sees either no shred (and then the shred, waiting for the
//! lock, deletes what the write committed) or the whole shred (and is refused here). Without
//! this, a write checked against a stale keyring would commit a record sealed under a
//! destroyed key after the shred: acknowledged, unreadable, and never shredded.
//!
//! The key rows are read in the statement that reads the written collections' settings,
//! which every write transaction sends after its store lock anyway: the check costs no
//! statement and no round trip of its own, on a plaintext store (no key rows) or not. It is
//! not skipped on a store a node believes plaintext: another node may `key enable` and
//! shred while this one is open, and only a read after the store lock could tell, which is
//! what the check is.

use std::collections::BTreeSet;

use deadpool_postgres::Transaction;
use tokio_postgres::Row;

use super::write::{Fail, cached, db};
use crate::backend::WriteOp;
use crate::error::StorageError;

/// The settings of the collections in `$1` (a `name` and a `value`), and one row with a
/// NULL `name` for each collection in `$2` that is shredded (a shred empties every key row
/// of its collection). Send it after the store's write lock.
pub(super) const SETTINGS_AND_SHREDDED: &str = "SELECT collection, name, value
     FROM collection_settings WHERE collection = ANY($1)
     UNION ALL
     SELECT DISTINCT collection, NULL::text, NULL::bigint FROM data_keys
     WHERE collection = ANY($2) AND octet_length(wrapped) = 0";

/// What [`SETTINGS_AND_SHREDDED`] answered.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Read {
    /// (collection, name, value) of each setting.
    pub(super) settings: Vec<(String, String, i64)>,
    /// The shredded collections.
    pub(super) shredded: BTreeSet<String>,
}

impl Read {
    /// Sorts the statement's rows: a row without a name marks a shredded collection.
    pub(super) fn from_rows(rows: &[Row]) -> Result<Self, Fail> {
        let err = db("reading collection settings and shreds");
        let mut fields = Vec::with_capacity(rows.len());
        for row in rows {
            fields.push((
                row.try_get(0).map_err(&err)?,
                row.try_get(1).map_err(&err)?,
                row.try_get(2).map_err(&err)?,
            ));
        }
        Ok(Self::sort(fields)?)
    }

    fn sort(
        fields: impl IntoIterator<Item = (String, Option<String>, Option<i64>)>,
    ) -> Result<Self, StorageError> {
        let mut read = Read::default();
        for (collection, name, value) in fields {
            match (name, value) {
                (None, _) => {
                    read.shredded.insert(collection);
                }
                (Some(name), Some(value)) => read.settings.push((collection, name, value)),
                (Some(name), None) => {
                    return Err(StorageError::corruption(
                        "the collection_settings table",
                        format!("setting {name} of {collection} has no value"),
                    ));
                }
            }
        }
        Ok(read)
    }

    /// The settings as borrowed triples.
    pub(super) fn triples(&self) -> impl Iterator<Item = (&str, &str, i64)> + Clone {
        self.settings
            .iter()
            .map(|(c, n, v)| (c.as_str(), n.as_str(), *v))
    }
}

/// The collections `unit` writes sealed data into (documents and dictionaries).
pub(super) fn sealed_into(unit: &[WriteOp]) -> impl Iterator<Item = &str> {
    unit.iter().filter_map(|op| match op {
        WriteOp::Put { collection, .. } | WriteOp::PutDictionary { collection, .. } => {
            Some(collection.as_str())
        }
        _ => None,
    })
}

/// The settings of `settings_of` and which of `sealed_into` are shredded, in one statement
/// (call it with the store's write lock held).
pub(super) async fn read(
    tx: &Transaction<'_>,
    settings_of: &BTreeSet<&str>,
    sealed_into: &BTreeSet<&str>,
) -> Result<Read, Fail> {
    if settings_of.is_empty() && sealed_into.is_empty() {
        return Ok(Read::default());
    }
    let settings_of: Vec<&str> = settings_of.iter().copied().collect();
    let sealed_into: Vec<&str> = sealed_into.iter().copied().collect();
    let rows = tx
        .query(
            &cached(tx, SETTINGS_AND_SHREDDED).await?,
            &[&settings_of, &sealed_into],
        )
        .await
        .map_err(db("reading collection settings and shreds"))?;
    Read::from_rows(&rows)
}

/// The error of a unit that writes into a shredded collection, if it does.
pub(super) fn refusal(unit: &[WriteOp], shredded: &BTreeSet<String>) -> Option<StorageError> {
    sealed_into(unit)
        .find(|c| shredded.contains(*c))
        .map(|c| StorageError::Shredded {
            collection: c.to_owned(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A row without a name is a shred, never a setting (and a setting is never a shred).
    #[test]
    fn rows_without_a_name_mark_shredded_collections() -> Result<(), StorageError> {
        let read = Read::sort([
            ("players".to_owned(), None, None),
            (
                "tables".to_owned(),
                Some("max_records".to_owned()),
                Some(10),
            ),
        ])?;
        assert_eq!(read.shredded, BTreeSet::from(["players".to_owned()]));
        assert_eq!(
            read.triples().collect::<Vec<_>>(),
            vec![("tables", "max_records", 10)]
        );
        Ok(())
    }

    #[test]
    fn a_setting_without_a_value_is_corruption() {
        let read = Read::sort([("tables".to_owned(), Some("max_records".to_owned()), None)]);
        assert!(
            matches!(read, Err(StorageError::Corruption { .. })),
            "{read:?}"
        );
    }
}

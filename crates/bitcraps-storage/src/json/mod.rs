//! JSON text handed to the store as it is (`store_json`, `store_json_batch`): checked, never
//! parsed into a value or serialized again, and stored byte for byte without the whitespace
//! around it (as serde_json's `RawValue` keeps it).
//!
//! The check (`check.rs`) accepts exactly what serde_json accepts when it parses a value
//! (a `RawValue` also keeps lone surrogate escapes and numbers out of an `f64`'s range,
//! which a typed read then refuses), nested at most [`MAX_DEPTH`] deep, in one pass that builds nothing. An overwrite of a large document
//! checks only from the last mark of its keyframe inside the prefix they share (`marks.rs`):
//! for an append, the last few KiB. When the check refuses text, serde_json parses it again
//! to say why (with its line and column): the error path pays for the message, the accepting
//! path does not.

mod check;
mod marks;

pub use check::MAX_DEPTH;
pub(crate) use check::{Refusal, check, check_marking};
pub(crate) use marks::{Marks, STRIDE};

use crate::error::StorageError;

/// `text` without the JSON whitespace (space, tab, line feed, carriage return) around it.
pub(crate) fn trim(text: &str) -> &str {
    text.trim_matches([' ', '\t', '\n', '\r'])
}

/// The error for text the check refused, in `collection`/`key`: serde_json's own message
/// for text that is not JSON, else the nesting depth. `None` when serde_json accepts the text
/// within the depth limit after all (the check is meant never to refuse such text; serde_json
/// is the reference).
pub(crate) fn refused(
    collection: &str,
    key: &str,
    text: &str,
    refusal: Refusal,
) -> Option<StorageError> {
    if let Err(source) = serde_json::from_str::<serde::de::IgnoredAny>(text) {
        return Some(StorageError::InvalidJson {
            collection: collection.to_owned(),
            key: key.to_owned(),
            source,
        });
    }
    let depth = depth(text);
    if u32::try_from(depth).map_or(true, |d| d > MAX_DEPTH) {
        return Some(StorageError::JsonTooDeep {
            collection: collection.to_owned(),
            key: key.to_owned(),
            depth,
            limit: MAX_DEPTH,
        });
    }
    // Syntax serde_json keeps as a `RawValue` but a value cannot hold: a lone surrogate
    // escape, a number out of an `f64`'s range.
    if let Err(source) = serde_json::from_str::<serde_json::Value>(text) {
        return Some(StorageError::InvalidJson {
            collection: collection.to_owned(),
            key: key.to_owned(),
            source,
        });
    }
    let (Refusal::Syntax(at) | Refusal::TooDeep(at)) = refusal;
    tracing::warn!(
        at,
        "the JSON check refused a document serde_json accepts; it is stored"
    );
    None
}

/// The deepest nesting of arrays and objects in JSON text (for the error's message).
fn depth(text: &str) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let mut in_string = false;
    let mut escaped = false;
    for b in text.bytes() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

#[cfg(test)]
mod tests;

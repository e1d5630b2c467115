//! A document's JSON kept pre-tokenized for typed reads of hot entries: a *tape* of the
//! values serde_json's parser produced (numbers already parsed, strings already unescaped),
//! and a serde `Deserializer` over it that makes exactly the visitor calls serde_json makes
//! on the text, without scanning the text again.
//!
//! Exactness is the contract, and fallback is how it is kept: the tape is built by
//! serde_json itself (`deserialize_any`, so the numbers are its numbers and a string it
//! would lend from the text is marked as such); [`deserialize`] answers `None` whenever it
//! meets anything it does not reproduce call for call — `f32` and 128-bit numbers, bytes,
//! numeric or boolean map keys, an enum as a map key, serde_json's `RawValue` — and whenever
//! *any* error is made while it runs, even one a `Deserialize` impl catches and recovers
//! from. The caller then parses the text with serde_json, so values and error messages are
//! serde_json's. (A `Deserialize` impl with side effects sees them twice on such a read:
//! once on the tape, once on the text.)

mod build;
mod de;
#[cfg(test)]
mod tests;

pub(crate) use de::deserialize;

/// One value of the tape. Containers are followed by their contents (an object's as key,
/// value, key, value…) and record where they end, so a skipped value costs one step.
#[derive(Clone, Copy, Debug)]
enum Node {
    Null,
    Bool(bool),
    U64(u64),
    I64(i64),
    F64(f64),
    /// A string serde_json lends from the text (no escapes): `strings[start..start + len]`.
    Str {
        start: u32,
        len: u32,
    },
    /// A string serde_json copies (it had escapes), unescaped.
    Copied {
        start: u32,
        len: u32,
    },
    /// An array; its elements follow, up to (not including) node `end`.
    Array {
        end: u32,
    },
    /// An object; its keys and values follow, up to (not including) node `end`.
    Object {
        end: u32,
    },
}

/// A JSON document as serde_json parsed it (see the module docs).
pub(crate) struct Tape {
    nodes: Box<[Node]>,
    strings: Box<str>,
}

impl Tape {
    /// The tape of `text`, or `None` when serde_json does not parse it as one JSON value or
    /// it holds what the tape does not keep (serde_json's private tokens, more than `u32`
    /// nodes or string bytes).
    pub(crate) fn parse(text: &str) -> Option<Tape> {
        build::parse(text)
    }

    /// Heap bytes the tape holds (for the cache's charge).
    pub(crate) fn heap_bytes(&self) -> usize {
        self.nodes.len() * std::mem::size_of::<Node>() + self.strings.len()
    }
}

impl std::fmt::Debug for Tape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tape")
            .field("nodes", &self.nodes.len())
            .field("string_bytes", &self.strings.len())
            .finish()
    }
}

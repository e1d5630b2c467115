//! Checking a new version of a large document from its keyframe's marks (issue #16).
//!
//! `store_json` checks the text it is given (`check.rs`): one pass over a 1 MiB document,
//! every version, though an append changes only its last bytes. The pass keeps nothing but
//! an index and the open containers, so its state at a value's first byte is small, and the
//! check of any text that has the same bytes up to and including that one may resume there.
//! So a keyframe in the cache (`chunk/keyframes.rs`) keeps a [`Mark`] about every
//! [`STRIDE`] bytes of its document, taken by a pass that accepted the whole document; a new
//! version is checked from the last mark inside the prefix it shares with the keyframe (found
//! by comparing the bytes, as `chunk/prefix_hash.rs` does for the hash), to its end.

use super::check::{self, Mark, Refusal};

/// Bytes of the keyframe between two marks.
pub(crate) const STRIDE: usize = 16 * 1024;

/// The marks over a keyframe document, in order; none when the document is not one JSON
/// document within the depth limit (a version is then checked whole).
#[derive(Debug, Clone, Default)]
pub(crate) struct Marks {
    marks: Vec<Mark>,
}

impl Marks {
    /// The marks over `document` (one pass of the check over it).
    pub(crate) fn of(document: &[u8]) -> Self {
        Self {
            marks: check::check_marking(document, STRIDE).unwrap_or_default(),
        }
    }

    /// Marks a pass over the document took (`check::check_marking`).
    pub(crate) fn from_marks(marks: Vec<Mark>) -> Self {
        Self { marks }
    }

    /// The bytes the marks take.
    pub(crate) fn bytes(&self) -> usize {
        self.marks.len().saturating_mul(std::mem::size_of::<Mark>())
    }

    /// Checks `text`, a new version of the document the marks are over that shares its
    /// first `shared` bytes with it (`chunk::common_prefix`), from the last mark inside that
    /// prefix: the verdict of `check::check(text)`.
    pub(crate) fn check(&self, shared: usize, text: &[u8]) -> Result<(), Refusal> {
        match self.resume(shared) {
            Some((_, mark)) => check::check_from(text, mark),
            None => check::check(text),
        }
    }

    /// Like [`check`](Self::check), when that checks at most `limit` bytes of `text`;
    /// `None` (nothing checked) when it would check more.
    pub(crate) fn check_within(
        &self,
        shared: usize,
        text: &[u8],
        limit: usize,
    ) -> Option<Result<(), Refusal>> {
        let from = self.resume(shared).map_or(0, |(_, mark)| mark.at);
        (text.len().saturating_sub(from) <= limit).then(|| self.check(shared, text))
    }

    /// The marks over `text`, a new version of the document the marks are over that shares
    /// its first `shared` bytes with it — what [`Marks::of`] would take over `text` — or
    /// the check's refusal: the marks inside that prefix are kept and the check resumes
    /// from the last of them, marking as it goes. A new keyframe of a document that grows
    /// by appends is checked and marked from its last few KiB, not whole.
    pub(crate) fn resumed(&self, shared: usize, text: &[u8]) -> Result<Self, Refusal> {
        let Some((n, mark)) = self.resume(shared) else {
            return check::check_marking(text, STRIDE).map(Self::from_marks);
        };
        let after = check::check_marking_from(text, mark, STRIDE)?;
        let mut marks = self.marks.get(..n).unwrap_or_default().to_vec();
        marks.extend(after);
        Ok(Self { marks })
    }

    /// The last mark a check of a version sharing the first `shared` bytes may resume
    /// from, and its index.
    fn resume(&self, shared: usize) -> Option<(usize, Mark)> {
        // A mark at `at` needs the bytes up to and including `at` to be the same: the check
        // decided there what the bytes before it were (a number ends at its first non-digit).
        let usable = self.marks.partition_point(|m| m.at < shared);
        let n = usable.checked_sub(1)?;
        self.marks.get(n).map(|mark| (n, *mark))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A document of `n` rolls, as the game log of the benchmark.
    fn log(n: usize) -> String {
        let rolls: Vec<String> = (0..n)
            .map(|i| {
                format!(
                    r#"{{"n":{i},"dice":[{},{}],"shooter":"p-{}"}}"#,
                    i % 6 + 1,
                    i % 5 + 1,
                    i % 7
                )
            })
            .collect();
        format!(r#"{{"game":1,"rolls":[{}]}}"#, rolls.join(","))
    }

    /// Resumed checks give the whole check's verdict: appends, edits at every kind of
    /// position (inside a number, a string, after a mark), truncations, garbage.
    #[test]
    fn resumed_checks_agree_with_whole_checks() {
        let base = log(2_000);
        let marks = Marks::of(base.as_bytes());
        assert!(
            marks.marks.len() >= base.len() / STRIDE,
            "{}",
            marks.marks.len()
        );
        let mut texts = vec![base.clone()];
        let appended = format!(
            "{},{}]}}",
            base.trim_end_matches("]}"),
            r#"{"n":2000,"dice":[1,2]}"#
        );
        texts.push(appended);
        for mark in &marks.marks {
            for delta in [0usize, 1, 2, 3] {
                let at = mark.at.saturating_add(delta);
                for insert in ["1", "\"", "]", ",", " ", "x", "{", "\\", "0", "e5", "-"] {
                    let mut t = base.clone().into_bytes();
                    if at <= t.len() {
                        t.splice(at..at, insert.bytes());
                        texts.push(String::from_utf8_lossy(&t).into_owned());
                    }
                    let mut t = base.clone().into_bytes();
                    if let Some(b) = t.get_mut(at) {
                        *b = insert.as_bytes().first().copied().unwrap_or(b'x');
                        texts.push(String::from_utf8_lossy(&t).into_owned());
                    }
                }
                texts.push(base.get(..at).unwrap_or_default().to_owned());
            }
        }
        for text in &texts {
            assert_eq!(
                marks.check(
                    crate::chunk::common_prefix(base.as_bytes(), text.as_bytes()),
                    text.as_bytes()
                ),
                check::check(text.as_bytes()),
                "{}",
                text.len()
            );
        }
        // Resumed marks are the marks a whole pass takes, with the same verdict; a check
        // within a limit is the same check, or none when it would pass the limit.
        for text in &texts {
            let shared = crate::chunk::common_prefix(base.as_bytes(), text.as_bytes());
            let whole = check::check_marking(text.as_bytes(), STRIDE);
            let resumed = marks.resumed(shared, text.as_bytes()).map(|m| m.marks);
            assert_eq!(resumed, whole, "{}", text.len());
            let within = marks.check_within(shared, text.as_bytes(), 2 * STRIDE);
            if let Some(verdict) = within {
                assert_eq!(verdict, check::check(text.as_bytes()));
            }
        }
        let appended = texts.get(1).map(String::as_bytes).unwrap_or_default();
        let shared = crate::chunk::common_prefix(base.as_bytes(), appended);
        assert_eq!(
            marks.check_within(shared, appended, STRIDE + 64),
            Some(Ok(()))
        );
        assert_eq!(marks.check_within(0, appended, STRIDE), None);
        // Marks over text that is not a document: none, and every check is whole.
        let broken = Marks::of(b"[1,2");
        assert!(broken.marks.is_empty());
        assert!(broken.check(4, b"[1,2]").is_ok());
    }
}

//! JSON documents arriving from outside (`put`'s argument or stdin, `import`'s lines): checked
//! here, then stored as the bytes they are, never re-serialized (which would reorder keys and
//! turn big integers into floats).
//!
//! A document is accepted when it is UTF-8, one JSON value (whitespace around it is dropped),
//! and nested at most [`MAX_DEPTH`] arrays or objects deep — the limit `put` had from
//! `serde_json`'s parser, now applied explicitly to `put` and `import` alike (parsing into a
//! `RawValue` alone does not limit nesting).

use serde_json::value::RawValue;

/// Deepest accepted nesting of arrays and objects (`[[1]]` is 2).
pub const MAX_DEPTH: usize = 127;

/// Why a document is refused (for `CliError::InvalidInput`, exit 4).
pub type Refusal = String;

/// The text of `bytes`, or where the UTF-8 breaks.
pub fn utf8<'a>(bytes: &'a [u8], what: &str) -> Result<&'a str, Refusal> {
    std::str::from_utf8(bytes)
        .map_err(|e| format!("{what} is not valid UTF-8 (at byte {})", e.valid_up_to()))
}

/// Checks `text` as one JSON document and returns it without surrounding whitespace.
pub fn check<'a>(text: &'a str, what: &str) -> Result<&'a RawValue, Refusal> {
    let raw: &RawValue =
        serde_json::from_str(text).map_err(|e| format!("{what} is not valid JSON: {e}"))?;
    check_depth(raw, what)?;
    // A `RawValue` checks only syntax: a lone surrogate escape or a number beyond an `f64`'s
    // range would be stored, and no typed read could return it.
    serde_json::from_str::<serde_json::Value>(raw.get())
        .map_err(|e| format!("{what} is not valid JSON: {e}"))?;
    Ok(raw)
}

/// Fails when `raw` nests deeper than [`MAX_DEPTH`].
pub fn check_depth(raw: &RawValue, what: &str) -> Result<(), Refusal> {
    let depth = depth(raw.get());
    if depth > MAX_DEPTH {
        return Err(format!(
            "{what} nests {depth} arrays or objects deep; at most {MAX_DEPTH} are accepted"
        ));
    }
    Ok(())
}

/// The deepest nesting of arrays and objects in valid JSON text.
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

/// Valid JSON text without the whitespace between tokens; everything else (key order, number
/// spelling, escapes) is kept byte for byte.
pub fn compact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in text.chars() {
        if in_string {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
        } else if matches!(c, ' ' | '\t' | '\n' | '\r') {
            continue;
        } else if c == '"' {
            in_string = true;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_are_kept_as_given() -> Result<(), Refusal> {
        let text = " {\"b\":1, \"a\":12345678901234567890123}\n";
        assert_eq!(
            check(text, "doc")?.get(),
            "{\"b\":1, \"a\":12345678901234567890123}"
        );
        Ok(())
    }

    /// Text a `RawValue` keeps but no typed read returns (found in review): refused.
    #[test]
    fn documents_no_value_holds_are_refused() {
        for text in [r#"{"a":1e400}"#, r#"["\ud800"]"#, r#""\udc00\ud800""#] {
            let err = check(text, "doc").err();
            assert!(
                err.as_deref()
                    .is_some_and(|e| e.starts_with("doc is not valid JSON: ")),
                "{text}: {err:?}"
            );
        }
        assert!(check(r#"["\ud83d\ude00", 1e300]"#, "doc").is_ok());
    }

    #[test]
    fn nesting_is_limited() -> Result<(), Refusal> {
        let nested = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        check(&nested(MAX_DEPTH), "doc")?;
        // The same limit as serde_json's parser (which `get --pretty` uses).
        assert!(serde_json::from_str::<serde_json::Value>(&nested(MAX_DEPTH)).is_ok());
        assert!(serde_json::from_str::<serde_json::Value>(&nested(MAX_DEPTH + 1)).is_err());
        let err = check(&nested(MAX_DEPTH + 1), "doc").err();
        assert_eq!(
            err.as_deref(),
            Some("doc nests 128 arrays or objects deep; at most 127 are accepted")
        );
        // Brackets inside strings do not count.
        assert_eq!(depth(r#"{"a":"[[[{\"","b":[1]}"#), 2);
        Ok(())
    }

    #[test]
    fn invalid_utf8_says_where() {
        let err = utf8(b"{\"a\":\"\xff\"}", "the document").err();
        assert_eq!(
            err.as_deref(),
            Some("the document is not valid UTF-8 (at byte 6)")
        );
    }

    #[test]
    fn compact_drops_only_whitespace_between_tokens() {
        assert_eq!(
            compact("{\n  \"z\" : [1 , 2.50e1],\n  \"a\": \"x \\\" y\\\\\"\n}"),
            "{\"z\":[1,2.50e1],\"a\":\"x \\\" y\\\\\"}"
        );
    }
}

//! The JSON Lines format of `export` and `import`: one
//! `{"collection":"…","key":"…","value":…}` object per line. The value is copied byte for byte,
//! so an export imported elsewhere stores identical documents (and content hashes).

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// One record as written by `export`.
#[derive(Serialize)]
struct OutLine<'a> {
    collection: &'a str,
    key: &'a str,
    value: &'a RawValue,
}

/// One record as read by `import`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Collection name.
    pub collection: String,
    /// Key.
    pub key: String,
    /// The document, exactly as it appears in the line.
    pub value: Box<RawValue>,
}

/// The line (with its `\n`) for a stored document.
pub fn line(collection: &str, key: &str, raw: &[u8]) -> Result<String> {
    let location = || format!("{collection}/{key}");
    let text = std::str::from_utf8(raw).with_context(|| format!("{} is not UTF-8", location()))?;
    let compact;
    let value: &RawValue = if text.contains('\n') {
        // A document stored pretty-printed (by `put` from a file, or by another program): the
        // whitespace between tokens goes so the line stays one line; key order and numbers
        // stay as stored (re-encoding would sort keys and round big integers).
        compact = RawValue::from_string(crate::document::compact(text))
            .with_context(|| format!("{} is not JSON", location()))?;
        &compact
    } else {
        serde_json::from_str(text).with_context(|| format!("{} is not JSON", location()))?
    };
    let mut out = serde_json::to_string(&OutLine {
        collection,
        key,
        value,
    })?;
    out.push('\n');
    Ok(out)
}

/// Parses one line.
pub fn parse(line: &str) -> serde_json::Result<Entry> {
    serde_json::from_str(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_the_value_bytes() -> Result<()> {
        let raw = br#"{"z":1,"a":[true,null,"\u00e9\n"]}"#;
        let text = line("games", "g \"1\"", raw)?;
        assert_eq!(
            text,
            "{\"collection\":\"games\",\"key\":\"g \\\"1\\\"\",\"value\":{\"z\":1,\"a\":[true,null,\"\\u00e9\\n\"]}}\n"
        );
        let entry = parse(text.trim_end())?;
        assert_eq!(entry.collection, "games");
        assert_eq!(entry.key, "g \"1\"");
        assert_eq!(entry.value.get().as_bytes(), raw);
        Ok(())
    }

    #[test]
    fn multi_line_documents_become_one_line() -> Result<()> {
        let text = line("c", "k", b"{\n  \"a\": 1\n}")?;
        assert_eq!(
            text,
            "{\"collection\":\"c\",\"key\":\"k\",\"value\":{\"a\":1}}\n"
        );
        // Key order and number spelling survive.
        let text = line(
            "c",
            "k",
            b"{\n \"b\": 1,\n \"a\": 12345678901234567890123\n}",
        )?;
        assert!(
            text.ends_with("\"value\":{\"b\":1,\"a\":12345678901234567890123}}\n"),
            "{text}"
        );
        Ok(())
    }

    #[test]
    fn malformed_lines_are_rejected() {
        assert!(parse("{\"collection\":\"c\",\"key\":\"k\"}").is_err());
        assert!(parse("{\"collection\":\"c\",\"key\":\"k\",\"value\":1,\"x\":2}").is_err());
        assert!(parse("not json").is_err());
    }
}

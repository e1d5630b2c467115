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

/// A line in the form `export` writes, split without parsing its value.
#[derive(Debug, PartialEq, Eq)]
pub struct Split<'a> {
    /// Collection name.
    pub collection: String,
    /// Key.
    pub key: String,
    /// The value's text, unchecked: the line is one JSON object exactly when this is one JSON
    /// value (the store checks it: `store_json`).
    pub value: &'a str,
    /// The line up to the value (`{"collection":…,"key":…,"value":`).
    pub head: &'a str,
}

/// Splits a line of the form `export` writes — `{"collection":"…","key":"…","value":…}`,
/// nothing between the tokens — into its collection, key and the value's text, the value
/// not parsed (a 1 MiB document is not read twice). `None` for any other line: [`parse`]
/// it.
pub fn split(line: &str) -> Option<Split<'_>> {
    let rest = line.strip_prefix(r#"{"collection":"#)?;
    let (collection, rest) = string(rest)?;
    let rest = rest.strip_prefix(r#","key":"#)?;
    let (key, rest) = string(rest)?;
    let rest = rest.strip_prefix(r#","value":"#)?;
    let head = line.get(..line.len().checked_sub(rest.len())?)?;
    let value = rest.strip_suffix('}')?;
    Some(Split {
        collection,
        key,
        value,
        head,
    })
}

/// The JSON string at the start of `text`, decoded, and the text after it.
fn string(text: &str) -> Option<(String, &str)> {
    let bytes = text.as_bytes();
    if bytes.first() != Some(&b'"') {
        return None;
    }
    let mut end = 1;
    loop {
        match bytes.get(end)? {
            b'"' => break,
            b'\\' => end += 2,
            _ => end += 1,
        }
    }
    let (token, rest) = text.split_at_checked(end + 1)?;
    Some((serde_json::from_str(token).ok()?, rest))
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
    fn exported_lines_split_into_their_fields() -> Result<()> {
        let raw = br#"{"z":1,"a":[true,null,"\u00e9\n}"]}"#;
        let text = line("ga\"mes", "g \"1\"\\", raw)?;
        let text = text.trim_end();
        let parts = split(text).context("the line splits")?;
        let entry = parse(text)?;
        assert_eq!(parts.collection, entry.collection);
        assert_eq!(parts.key, entry.key);
        assert_eq!(parts.value, entry.value.get());
        assert_eq!(format!("{}{}}}", parts.head, parts.value), text);
        // Lines in another form are left to `parse`.
        for other in [
            r#"{ "collection":"c","key":"k","value":1}"#,
            r#"{"key":"k","collection":"c","value":1}"#,
            r#"{"collection":"c","key":"k","value":1,"x":2"#,
            r#"{"collection":"c\x","key":"k","value":1}"#,
            r#"{"collection":"c","key":"k"}"#,
            r#"{"collection":"c","key":"k\"#,
        ] {
            assert_eq!(split(other), None, "{other}");
        }
        // A line whose value is not one JSON value still splits: the store refuses it.
        let odd = split(r#"{"collection":"c","key":"k","value":1,"x":2}"#);
        assert_eq!(odd.map(|s| s.value), Some(r#"1,"x":2"#));
        Ok(())
    }

    #[test]
    fn malformed_lines_are_rejected() {
        assert!(parse("{\"collection\":\"c\",\"key\":\"k\"}").is_err());
        assert!(parse("{\"collection\":\"c\",\"key\":\"k\",\"value\":1,\"x\":2}").is_err());
        assert!(parse("not json").is_err());
    }
}

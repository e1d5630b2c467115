//! The check against serde_json, the reference: the same verdict on every text.

use proptest::prelude::*;

use super::*;

/// [`MAX_DEPTH`] as a length.
const MAX: usize = MAX_DEPTH as usize;

/// serde_json's verdict when it parses a value (surrogates paired, numbers in an `f64`'s
/// range), with the depth limit.
fn reference(text: &str) -> bool {
    depth(text) <= MAX && serde_json::from_str::<serde_json::Value>(text).is_ok()
}

fn agree(text: &str) {
    assert_eq!(
        check(text.as_bytes()).is_ok(),
        reference(text),
        "the check and serde_json disagree on {text:?}"
    );
}

#[test]
fn edge_cases_agree_with_serde_json() {
    let nested = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    let nested_objects = |n: usize| format!("{}1{}", "{\"a\":".repeat(n), "}".repeat(n));
    let cases = [
        "",
        " ",
        "1",
        "-",
        "-0",
        "-01",
        "01",
        "0",
        "0.",
        "0.5",
        ".5",
        "1e",
        "1e+",
        "1e+5",
        "1E-5",
        "1.5e3",
        "-1.5E+3",
        "1.e3",
        "+1",
        "0x10",
        "1 2",
        "[1 2]",
        "[1,]",
        "[,1]",
        "[]",
        "[ ]",
        "{}",
        "{ }",
        "{\"a\"}",
        "{\"a\":}",
        "{\"a\":1,}",
        "{\"a\":1 \"b\":2}",
        "{1:2}",
        "{\"a\":1}",
        " {\"a\" : [ 1 , { } ] } \n",
        "\"abc\"",
        "\"a\\\"b\"",
        "\"\\u00e9\"",
        "\"\\uD800\"",
        "\"\\uDC00\\uD800\"",
        "\"\\u12\"",
        "\"\\u12G4\"",
        "\"\\x\"",
        "\"\\'\"",
        "\"\t\"",
        "\"\n\"",
        "\"\u{1f}\"",
        "\"\u{7f}\"",
        "\"é\"",
        "\"\\/\\b\\f\\n\\r\\t\\\\\"",
        "\"abc",
        "\"abc\\",
        "\"abc\\\"",
        "true",
        "false",
        "null",
        "tru",
        "nul",
        "falsey",
        "True",
        "NaN",
        "Infinity",
        "[true,false,null]",
        "\u{feff}1",
        "1\u{0c}",
        "\u{0c}1",
        "\u{a0}1",
        "[1]]",
        "[[1]",
        "{\"a\":1}}",
        "é",
        "[\"a\",\"b\"",
        "12345678901234567890123",
        "1e400",
        "-1e400",
        "1E+400",
        "1e-400",
        "0e99999",
        "-0.0e400",
        "1.7976931348623157e308",
        "1.8e308",
        "[1e309]",
        "{\"a\":2e308}",
        "\"\\uD83D\\uDE00\"",
        "\"\\ud83d\\ude00x\"",
        "\"\\uD800\\u0041\"",
        "\"\\uD800\\n\"",
        "\"\\uD800\\uD800\\uDC00\"",
        "\"\\uDBFF\\uDFFF\"",
        "\"\\uD800x\"",
        "\"a\\uDFFF\"",
        "\"\\uD800\\",
        "\"\\uD800\\uDC0\"",
        "-",
        "[-]",
        "[-a]",
        "\"\\u0000\"",
        "[1,\n2\r,\t3]",
        "{\"\":\"\"}",
    ];
    for case in cases {
        agree(case);
    }
    let long = "9".repeat(400);
    agree(&long);
    agree(&format!("{long}.5"));
    agree(&format!("-{long}e-200"));
    agree(&format!("0.{long}"));
    agree(&"9".repeat(300));
    agree(&nested(MAX));
    agree(&nested(MAX + 1));
    agree(&nested_objects(MAX));
    agree(&nested_objects(MAX + 1));
    assert!(check(nested(MAX).as_bytes()).is_ok());
    assert_eq!(
        check(nested(MAX + 1).as_bytes()),
        Err(Refusal::TooDeep(MAX))
    );
    // Brackets inside strings do not count.
    assert_eq!(depth(r#"{"a":"[[[{\"","b":[1]}"#), 2);
}

/// The refusal's error: serde_json's message with its line and column, or the depth.
#[test]
fn refusals_say_why_like_serde_json() {
    let text = "{\"a\":\n [1, 2,]}";
    let Err(refusal) = check(text.as_bytes()) else {
        panic!("refused");
    };
    let err = refused("c", "k", text, refusal).map(|e| e.to_string());
    assert_eq!(
        err.as_deref(),
        Some("the JSON for c/k is not valid: expected value at line 2 column 8")
    );
    let deep = format!("{}{}", "[".repeat(130), "]".repeat(130));
    let Err(refusal) = check(deep.as_bytes()) else {
        panic!("refused");
    };
    let err = refused("c", "k", &deep, refusal).map(|e| e.to_string());
    assert_eq!(
        err.as_deref(),
        Some("the JSON for c/k nests 130 arrays or objects deep; at most 127 are accepted")
    );
    // Text serde_json accepts within the limit is never an error, whatever the check said.
    assert!(refused("c", "k", "[1]", Refusal::Syntax(0)).is_none());
}

#[test]
fn trim_drops_only_json_whitespace() {
    assert_eq!(trim(" \t\r\n[1] \n"), "[1]");
    assert_eq!(trim("\u{a0}[1]\u{0c}"), "\u{a0}[1]\u{0c}");
}

/// Pieces that JSON text is made of, and some that break it.
fn piece() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "{", "}", "[", "]", ",", ":", " ", "\n", "\"", "\\", "\"a\"", "\"k\":", "1", "0", "-", ".",
        "e", "E", "+", "12", "3.5", "true", "false", "null", "tru", "\\u00", "\\u12ab", "\\n",
        "\t", "\u{1}", "é", "x", "\"\\\"\"", "\\uD83D", "\\uDE00", "e400", "e308",
    ])
}

/// Valid JSON values, small and nested.
fn value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_owned()),
        Just("true".to_owned()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| serde_json::to_string(&f).unwrap_or_default()),
        ".{0,8}".prop_map(|s| serde_json::to_string(&s).unwrap_or_default()),
    ];
    leaf.prop_recursive(5, 40, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec((".{0,4}", inner), 0..5).prop_map(|v| {
                let fields: Vec<String> = v
                    .into_iter()
                    .map(|(k, v)| format!("{}:{v}", serde_json::to_string(&k).unwrap_or_default()))
                    .collect();
                format!("{{{}}}", fields.join(" , "))
            }),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    /// Any sequence of JSON-ish pieces: the same verdict as serde_json.
    #[test]
    fn pieces_agree_with_serde_json(pieces in prop::collection::vec(piece(), 0..24)) {
        agree(&pieces.concat());
    }

    /// Valid documents are accepted, and each with one byte replaced, inserted or removed
    /// gets serde_json's verdict.
    #[test]
    fn mutated_documents_agree_with_serde_json(
        doc in value(),
        at in any::<prop::sample::Index>(),
        byte in prop::sample::select(b"{}[],:\"\\ 01-.eE+tfnu\x01x".to_vec()),
    ) {
        prop_assert!(check(doc.as_bytes()).is_ok(), "{doc}");
        let mut bytes = doc.clone().into_bytes();
        let i = at.index(bytes.len().max(1));
        let mut replaced = bytes.clone();
        if let Some(b) = replaced.get_mut(i) {
            *b = byte;
        }
        let mut inserted = bytes.clone();
        inserted.insert(i.min(bytes.len()), byte);
        if i < bytes.len() {
            bytes.remove(i);
        }
        for text in [replaced, inserted, bytes] {
            if let Ok(text) = String::from_utf8(text) {
                agree(&text);
            }
        }
    }
}

//! The tape against serde_json: whenever the tape answers, its value is serde_json's, bit for
//! bit (compared through `Debug`, which tells `-0.0` from `0.0` and prints floats exactly);
//! whenever serde_json refuses a document, the tape does not answer.

use std::collections::BTreeMap;
use std::fmt::Debug;

use proptest::prelude::*;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};

use super::{Tape, deserialize};

/// What the tape answered for `text` as `T`: `Some` when it reproduced serde_json.
fn check<T: DeserializeOwned + Debug>(text: &str) -> Option<T> {
    let ours = Tape::parse(text).and_then(|t| deserialize::<T>(&t));
    let theirs = serde_json::from_str::<T>(text);
    match (&ours, &theirs) {
        (Some(a), Ok(b)) => assert_eq!(format!("{a:?}"), format!("{b:?}"), "{text}"),
        (Some(a), Err(e)) => panic!("{text}: tape {a:?}, serde_json refused: {e}"),
        (None, _) => {}
    }
    ours
}

/// `check` for a document the tape must answer.
fn answers<T: DeserializeOwned + Debug>(text: &str) -> T {
    match check::<T>(text) {
        Some(v) => v,
        None => panic!("{text}: the tape fell back"),
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Plain {
    a: u8,
    b: i64,
    c: u64,
    d: f64,
    s: String,
    o: Option<u32>,
    v: Vec<i16>,
    t: (bool, char),
    unit: (),
    pair: [u8; 2],
    nested: Option<Option<u8>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum External {
    Unit,
    Newtype(i32),
    Tuple(u8, String),
    Struct { x: f64 },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type")]
enum Internal {
    A { x: u32 },
    B(Inner),
    C,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "t", content = "c")]
enum Adjacent {
    A(u32),
    B { s: String },
    C,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
enum Untagged {
    Num(u64),
    Str(String),
    Obj { k: i8 },
    List(Vec<bool>),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Inner {
    k: i8,
    #[serde(default)]
    tag: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Flattened {
    id: String,
    #[serde(flatten)]
    inner: Inner,
    #[serde(flatten)]
    rest: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Strict {
    first_name: String,
    #[serde(alias = "n")]
    count: u16,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Wrapper(u32);

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Floats {
    single: f32,
    wide: i128,
}

#[derive(Debug, Deserialize)]
struct Raw {
    #[expect(dead_code, reason = "compared through Debug")]
    raw: Box<serde_json::value::RawValue>,
}

/// Whether serde_json lent a string from the text or handed over a copy.
#[derive(Debug, PartialEq)]
enum Lent {
    Borrowed(String),
    Copied(String),
}

impl<'de> Deserialize<'de> for Lent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Lent;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Lent, E> {
                Ok(Lent::Borrowed(s.to_owned()))
            }
            fn visit_str<E>(self, s: &str) -> Result<Lent, E> {
                Ok(Lent::Copied(s.to_owned()))
            }
        }
        d.deserialize_str(V)
    }
}

/// Recovers from an error: what it holds depends on whether the inner read failed, which a
/// tape that refuses (`f32`) must not decide.
#[derive(Debug)]
struct Lenient(#[expect(dead_code, reason = "compared through Debug")] Option<f32>);

impl<'de> Deserialize<'de> for Lenient {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Lenient(f32::deserialize(d).ok()))
    }
}

/// Every test type against `text`.
fn check_all(text: &str) {
    check::<Plain>(text);
    check::<External>(text);
    check::<Vec<External>>(text);
    check::<Internal>(text);
    check::<Adjacent>(text);
    check::<Untagged>(text);
    check::<Flattened>(text);
    check::<Strict>(text);
    check::<Wrapper>(text);
    check::<Floats>(text);
    check::<BTreeMap<String, i64>>(text);
    check::<BTreeMap<u32, String>>(text);
    check::<BTreeMap<i64, bool>>(text);
    check::<serde_json::Value>(text);
    check::<Vec<Lent>>(text);
    check::<BTreeMap<String, Lent>>(text);
    check::<Lenient>(text);
    check::<Vec<Lenient>>(text);
    check::<(u8, Option<String>, f64)>(text);
    check::<Option<Vec<Option<u64>>>>(text);
    check::<i64>(text);
    check::<u64>(text);
    check::<f64>(text);
    check::<char>(text);
    check::<()>(text);
    check::<Raw>(text);
    check::<Box<str>>(text);
    check::<serde::de::IgnoredAny>(text);
}

#[test]
fn edge_documents_match_serde_json() {
    let docs = [
        "null",
        "true",
        "0",
        "-0",
        "-0.0",
        "18446744073709551615",
        "18446744073709551616",
        "-9223372036854775808",
        "-9223372036854775809",
        "1e308",
        "1e400",
        "5e-324",
        "2.2250738585072014e-308",
        "0.1",
        "1.7976931348623157e308",
        r#""plain""#,
        r#""esc\"aped\n\u00e9\ud83c\udfb2""#,
        r#""\ud800""#,
        r#""x""#,
        r#"["a","b\tc"]"#,
        r#"{"a":1,"b":-2,"c":3,"d":0.5,"s":"s","o":null,"v":[1,-1],"t":[true,"x"],"unit":null,"pair":[1,2],"nested":null}"#,
        r#"{"a":1,"b":-2,"c":3,"d":1,"s":"s","o":7,"v":[],"t":[false,"\u00e9"],"unit":null,"pair":[1,2],"nested":5,"extra":{"deep":[1,{}]}}"#,
        r#"[1,-2,3,0.5,"s",null,[],[true,"y"],null,[0,0],null]"#,
        r#"{"a":1,"a":2}"#,
        r#""Unit""#,
        r#"{"Unit":null}"#,
        r#"{"Newtype":-5}"#,
        r#"{"Tuple":[1,"x"]}"#,
        r#"{"Struct":{"x":1e10}}"#,
        r#"{"Struct":{"x":1},"Unit":null}"#,
        r#"{}"#,
        r#"[{"Newtype":1},"Unit",{"Tuple":[2,"\u0041"]}]"#,
        r#"{"type":"A","x":3}"#,
        r#"{"x":3,"type":"A"}"#,
        r#"{"type":"B","k":-1}"#,
        r#"{"type":"C"}"#,
        r#"{"t":"A","c":5}"#,
        r#"{"c":{"s":"q"},"t":"B"}"#,
        r#"{"t":"C"}"#,
        r#"7"#,
        r#"{"k":-3}"#,
        r#"[true,false]"#,
        r#"{"id":"i","k":1,"tag":"t","other":[1,2.5,"x"],"n":null}"#,
        r#"{"firstName":"f","count":3}"#,
        r#"{"firstName":"f","n":3}"#,
        r#"{"firstName":"f","count":3,"more":1}"#,
        r#"{"single":0.1,"wide":1}"#,
        r#"{"1":"one","20":"twenty"}"#,
        r#"{"-1":true,"x":false}"#,
        r#"{"k":1,"\u006b":2}"#,
        r#"{"raw":{"a":[1, 2]}}"#,
        r#"[1,"x",2.5]"#,
        r#"[1,null,2.5]"#,
        r#"[[1,null,3]]"#,
        r#"0.30000001192092896"#,
        r#"[0.1,1e39,-0.0]"#,
    ];
    for doc in docs {
        check_all(doc);
    }
}

#[test]
fn plain_documents_take_the_tape() {
    let p: Plain = answers(
        r#"{"a":1,"b":-2,"c":3,"d":0.5,"s":"s\u00e9","o":null,"v":[1,-1],"t":[true,"x"],"unit":null,"pair":[1,2],"nested":null,"extra":[{"x":1}]}"#,
    );
    assert_eq!((p.a, p.b, p.s.as_str()), (1, -2, "s\u{e9}"));
    let e: Vec<External> =
        answers(r#"["Unit",{"Newtype":1},{"Tuple":[2,"a"]},{"Struct":{"x":-0.0}}]"#);
    assert_eq!(e.len(), 4);
    let _: Internal = answers(r#"{"x":3,"type":"A"}"#);
    let _: Adjacent = answers(r#"{"t":"B","c":{"s":"q"}}"#);
    let _: Flattened = answers(r#"{"id":"i","k":1,"other":[1,2.5,"x"]}"#);
    let _: BTreeMap<String, serde_json::Value> = answers(r#"{"a":[1,-1,1.5,"\n",null,{}]}"#);
    let lent: Vec<Lent> = answers(r#"["plain","esc\"aped"]"#);
    assert_eq!(
        lent,
        [
            Lent::Borrowed("plain".into()),
            Lent::Copied("esc\"aped".into())
        ]
    );
}

#[test]
fn what_the_tape_does_not_reproduce_falls_back() {
    // Numeric map keys are parsed out of the string; f32, i128, raw values and a recovered
    // error are serde_json's to decide.
    assert!(check::<BTreeMap<u32, String>>(r#"{"1":"one"}"#).is_none());
    assert!(check::<Floats>(r#"{"single":0.1,"wide":1}"#).is_none());
    assert!(check::<Raw>(r#"{"raw":[1, 2]}"#).is_none());
    // Without the failure mark this would answer `Lenient(None)`; serde_json says Some.
    assert!(check::<Lenient>("0.5").is_none());
    assert!(check::<Untagged>(r#"{"k":1}"#).is_none());
}

fn json_leaf() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    const KEYS: [&str; 21] = [
        "a",
        "b",
        "s",
        "x",
        "k",
        "t",
        "c",
        "type",
        "id",
        "Unit",
        "Newtype",
        "Tuple",
        "Struct",
        "A",
        "B",
        "C",
        "1",
        "-7",
        "caf\u{e9}",
        "q\"uote",
        "",
    ];
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u8>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop::sample::select(&[0.0, -0.0, 0.1, 1e300, 5e-324, f64::MAX, 0.5][..])
            .prop_map(Value::from),
        prop::sample::select(&KEYS[..]).prop_map(|k| Value::String(k.to_owned())),
        "[a-c\\\\\"\n\u{e9}\u{1F3B2}]{0,4}".prop_map(Value::String),
    ]
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let keys = prop::sample::select(
        &[
            "a", "b", "c", "d", "s", "o", "v", "t", "x", "k", "id", "tag", "type", "Unit",
            "Newtype", "Tuple", "Struct", "A", "B", "C", "1", "20", "-3", "e\u{e9}", "\n",
        ][..],
    );
    json_leaf().prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            prop::collection::vec((keys.clone(), inner), 0..6).prop_map(|entries| {
                serde_json::Value::Object(
                    entries
                        .into_iter()
                        .map(|(k, v)| (k.to_owned(), v))
                        .collect(),
                )
            }),
        ]
    })
}

fn plain() -> impl Strategy<Value = Plain> {
    (
        (
            any::<u8>(),
            any::<i64>(),
            any::<u64>(),
            any::<f64>(),
            "\\PC{0,8}",
        ),
        (
            any::<Option<u32>>(),
            prop::collection::vec(any::<i16>(), 0..4),
            any::<(bool, char)>(),
            any::<[u8; 2]>(),
            any::<Option<Option<u8>>>(),
        ),
    )
        .prop_map(|((a, b, c, d, s), (o, v, t, pair, nested))| Plain {
            a,
            b,
            c,
            d,
            s,
            o,
            v,
            t,
            unit: (),
            pair,
            nested,
        })
}

fn enums() -> impl Strategy<Value = (External, Internal, Adjacent, Untagged)> {
    let inner = (any::<i8>(), "[a-z\"\\\\]{0,3}").prop_map(|(k, tag)| Inner { k, tag });
    let external = prop_oneof![
        Just(External::Unit),
        any::<i32>().prop_map(External::Newtype),
        (any::<u8>(), "\\PC{0,4}").prop_map(|(a, b)| External::Tuple(a, b)),
        any::<f64>().prop_map(|x| External::Struct { x }),
    ];
    let internal = prop_oneof![
        any::<u32>().prop_map(|x| Internal::A { x }),
        inner.clone().prop_map(Internal::B),
        Just(Internal::C),
    ];
    let adjacent = prop_oneof![
        any::<u32>().prop_map(Adjacent::A),
        "\\PC{0,4}".prop_map(|s| Adjacent::B { s }),
        Just(Adjacent::C),
    ];
    let untagged = prop_oneof![
        any::<u64>().prop_map(Untagged::Num),
        "\\PC{0,4}".prop_map(Untagged::Str),
        any::<i8>().prop_map(|k| Untagged::Obj { k }),
        prop::collection::vec(any::<bool>(), 0..3).prop_map(Untagged::List),
    ];
    (external, internal, adjacent, untagged)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_json_matches_serde_json(value in json_value()) {
        check_all(&value.to_string());
        check_all(&serde_json::to_string_pretty(&value).unwrap_or_default());
    }

    #[test]
    fn serialized_structs_match_serde_json(p in plain()) {
        let text = serde_json::to_string(&p).unwrap_or_default();
        if p.d.is_finite() {
            answers::<Plain>(&text);
        }
        check_all(&text);
    }

    #[test]
    fn serialized_enums_match_serde_json((e, i, a, u) in enums()) {
        for text in [
            serde_json::to_string(&e),
            serde_json::to_string(&i),
            serde_json::to_string(&a),
            serde_json::to_string(&u),
            serde_json::to_string(&(vec![e.clone(), e], i, a, u)),
        ] {
            check_all(&text.unwrap_or_default());
        }
    }

    #[test]
    fn maps_and_flatten_match_serde_json(
        map in prop::collection::btree_map(any::<u32>(), "\\PC{0,3}", 0..4),
        extra in prop::collection::btree_map("[a-z]{1,3}", json_leaf(), 0..4),
        k in any::<i8>(),
    ) {
        check_all(&serde_json::to_string(&map).unwrap_or_default());
        let mut doc = serde_json::json!({"id": "x", "k": k});
        if let Some(obj) = doc.as_object_mut() {
            obj.extend(extra);
        }
        check_all(&doc.to_string());
    }
}

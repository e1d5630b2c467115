#![allow(dead_code)]
//! Review probe: typed reads of a hot (promoted, tape-holding) entry give exactly what
//! serde_json gives on the text — value and error message — for types beyond the game
//! documents.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;

use bitcraps_storage::{PersistentStorageManager, StorageConfig, StorageError};
use serde::Deserialize;
use serde::de::DeserializeOwned;

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

async fn check<T: DeserializeOwned + Debug>(
    s: &PersistentStorageManager,
    key: &str,
    text: &str,
) -> Result {
    // Spaces inside the outer brackets (`store_json` trims the ends): compressible, so the
    // entry is stored compressed and promoted.
    let padded = match text.get(..1) {
        Some(open @ ("{" | "[")) => format!("{open}{}{}", " ".repeat(400), &text[1..]),
        _ => text.to_owned(),
    };
    s.store_json("t", key, &padded).await?;
    let expected = serde_json::from_str::<T>(&padded)
        .map(|v| format!("{v:?}"))
        .map_err(|e| e.to_string());
    for read in 0..5 {
        let got = s
            .retrieve::<T>("t", key)
            .await
            .map(|v| v.map_or_else(|| "absent".to_owned(), |v| format!("{v:?}")))
            .map_err(|e| match e {
                StorageError::Deserialize { source, .. } => source.to_string(),
                e => format!("not a Deserialize error: {e}"),
            });
        assert_eq!(got, expected, "{key}, read {read}: {text}");
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type")]
enum Internal {
    A { x: u8 },
    B { y: String },
}

#[derive(Debug, Deserialize)]
#[serde(tag = "t", content = "c")]
enum Adjacent {
    A(u8),
    B(Vec<i64>),
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Untagged {
    N(u8),
    S(String),
    L(Vec<Untagged>),
}

#[derive(Debug, Deserialize)]
struct Flat {
    id: u32,
    #[serde(flatten)]
    rest: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Strict {
    a: u8,
    #[serde(default)]
    b: Option<String>,
}

#[derive(Debug, Deserialize)]
enum Ext {
    Unit,
    New(i32),
    Tup(u8, u8),
    Str { a: bool },
}

#[derive(Debug, Deserialize)]
enum WithOther {
    Known,
    #[serde(other)]
    Other,
}

#[derive(Debug, Deserialize)]
struct Numbers {
    a: f64,
    b: i64,
    c: u64,
    d: f64,
    e: f64,
}

#[derive(Debug, Deserialize)]
struct Unit;

#[derive(Debug, Deserialize)]
struct Newtype(Vec<String>);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_reads_of_hot_entries_match_serde_json() -> Result {
    let dir = tempfile::tempdir()?;
    let mut config = StorageConfig::with_data_path(dir.path());
    config.maintenance.background_tasks = false;
    let s = PersistentStorageManager::open(config).await?;
    check::<Internal>(&s, "i0", r#"{"type":"A","x":1}"#).await?;
    // The probe reaches the tape: hot entries were promoted.
    let promoted = s.statistics().await?.cache_stats.promoted_bytes;
    assert!(
        promoted > 0,
        "nothing promoted: {:?}",
        s.statistics().await?.cache_stats
    );
    check::<Internal>(&s, "i1", r#"{"type":"B","y":"q\"z"}"#).await?;
    check::<Internal>(&s, "i2", r#"{"y":"q","type":"A","x":3}"#).await?;
    check::<Internal>(&s, "i3", r#"{"type":"C"}"#).await?;
    check::<Adjacent>(&s, "a1", r#"{"c":[1,-2],"t":"B"}"#).await?;
    check::<Adjacent>(&s, "a2", r#"{"t":"A","c":300}"#).await?;
    check::<Untagged>(&s, "u1", r#"[1,"x",[300,"\u00e9"]]"#).await?;
    check::<Untagged>(&s, "u2", r#"{"a":1}"#).await?;
    check::<Flat>(&s, "f1", r#"{"z":[1,{"k":null}],"id":7,"w":"s\\t"}"#).await?;
    check::<Flat>(&s, "f2", r#"{"z":1}"#).await?;
    check::<Strict>(&s, "s1", r#"{"a":1}"#).await?;
    check::<Strict>(&s, "s2", r#"{"a":1,"c":2}"#).await?;
    check::<Strict>(&s, "s3", r#"{"a":1,"a":2}"#).await?;
    check::<Strict>(&s, "s4", r#"[1,"x"]"#).await?;
    check::<Strict>(&s, "s5", r#"[1,"x",3]"#).await?;
    check::<Vec<Ext>>(
        &s,
        "e1",
        r#"["Unit",{"New":-4},{"Tup":[1,2]},{"Str":{"a":true}}]"#,
    )
    .await?;
    check::<Ext>(&s, "e2", r#"{"New":1,"Unit":null}"#).await?;
    check::<Ext>(&s, "e3", r#"{"Tup":[1,2,3]}"#).await?;
    check::<Ext>(&s, "e4", r#"{}"#).await?;
    check::<Ext>(&s, "e5", r#""New""#).await?;
    check::<Ext>(&s, "e6", r#"{"Unit":1}"#).await?;
    check::<Vec<WithOther>>(&s, "o1", r#"["Known","Nope"]"#).await?;
    check::<Numbers>(
        &s,
        "n1",
        r#"{"a":-0,"b":-9223372036854775808,"c":18446744073709551615,"d":18446744073709551616,"e":1.7976931348623157e308}"#,
    )
    .await?;
    check::<Numbers>(&s, "n2", r#"{"a":1,"b":1.5,"c":0,"d":0,"e":0}"#).await?;
    check::<Numbers>(&s, "n3", r#"{"a":1,"b":-1,"c":-1,"d":0,"e":0}"#).await?;
    check::<BTreeMap<char, u8>>(&s, "m1", r#"{"é":1,"\n":2}"#).await?;
    check::<BTreeMap<char, u8>>(&s, "m2", r#"{"ab":1}"#).await?;
    check::<HashMap<u32, u8>>(&s, "m3", r#"{"1":1}"#).await?;
    check::<BTreeMap<String, Option<Unit>>>(&s, "m4", r#"{"a":null,"b":null}"#).await?;
    check::<(u8, String)>(&s, "t1", r#"[1,"a",2]"#).await?;
    check::<(u8, String)>(&s, "t2", r#"[1]"#).await?;
    check::<[u16; 3]>(&s, "t3", r#"[1,2,65535]"#).await?;
    check::<Newtype>(&s, "nt", r#"["a\u0000b","c"]"#).await?;
    check::<Box<str>>(&s, "bs", r#""\ud83d\ude00 x""#).await?;
    check::<std::net::SocketAddr>(&s, "sa", r#""127.0.0.1:80""#).await?;
    check::<std::time::Duration>(&s, "du", r#"{"secs":1,"nanos":5}"#).await?;
    check::<std::time::Duration>(&s, "du2", r#"[1,5]"#).await?;
    check::<Option<Option<u8>>>(&s, "oo", r#"null"#).await?;
    check::<serde_json::Value>(&s, "v1", r#"{"a":[1,-1,1.5,"x\"",true,null,{}],"a":2}"#).await?;
    check::<()>(&s, "unit", r#"null"#).await?;
    check::<Unit>(&s, "unit2", r#"{}"#).await?;
    check::<String>(&s, "str", r#"12"#).await?;
    check::<u8>(&s, "u8", r#"256"#).await?;
    check::<f32>(&s, "f32", r#"0.1"#).await?;
    check::<i128>(&s, "i128", r#"-170141183460469231731687303715884105728"#).await?;
    check::<Vec<serde::de::IgnoredAny>>(&s, "ign", r#"[1,{"a":[2]},"x"]"#).await?;
    s.close().await?;
    Ok(())
}

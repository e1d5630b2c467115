//! `store_json`: JSON text stored as it is. It must refuse what is not one JSON document (with
//! serde_json's message) or nests too deep, store nothing then, and read back byte for byte
//! through `retrieve_raw` and parsed through `retrieve` — also for a large document whose
//! appends are deltas checked from their keyframe's marks (`json/marks.rs`).

use crate::common;

use bitcraps_storage::{MAX_JSON_DEPTH, PersistentStorageManager, StorageError};
use serde_json::Value;

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn nested(n: u32) -> String {
    let n = usize::try_from(n).unwrap_or(0);
    format!("{}{}", "[".repeat(n), "]".repeat(n))
}

/// The JSON text of a game log of `rolls` rolls (~60 bytes each).
fn log(rolls: u64) -> String {
    let rolls: Vec<String> = (0..rolls)
        .map(|n| {
            format!(
                r#"{{"n":{n},"dice":[{},{}],"shooter":"p-{}"}}"#,
                n % 6 + 1,
                n % 5 + 1,
                n % 7
            )
        })
        .collect();
    format!(r#"{{"game":1,"rolls":[{}]}}"#, rolls.join(","))
}

async fn open(f: &common::Fixture) -> Result<PersistentStorageManager> {
    let mut config = f.config.clone();
    config.maintenance.background_tasks = false;
    config.cache.size_mb = 0;
    Ok(PersistentStorageManager::open(config).await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_is_stored_as_given_and_reads_back() -> Result {
    let f = common::sqlite_fixture();
    let s = open(&f).await?;
    // Key order, number spelling, escapes and inner spacing are kept; the whitespace around
    // the document is not (as a `RawValue` keeps it).
    let text = "\n {\"b\": 1, \"a\":12345678901234567890123,\"e\":\"\\u00e9\\n\",\"f\":1.50} \t\n";
    s.store_json("docs", "d", text).await?;
    let raw = s.retrieve_raw("docs", "d").await?.ok_or("missing")?;
    assert_eq!(&raw[..], text.trim().as_bytes());
    let typed: Option<Value> = s.retrieve("docs", "d").await?;
    assert_eq!(typed, Some(serde_json::from_str::<Value>(text)?));
    s.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_or_too_deep_text_is_refused_and_nothing_stored() -> Result {
    let f = common::sqlite_fixture();
    let s = open(&f).await?;
    s.store_json("docs", "d", "[1]").await?;
    for bad in [
        "", "[1,]", "{\"a\":1", "[1] [2]", "\"\\x\"", "tru", "{'a':1}", "01",
    ] {
        match s.store_json("docs", "d", bad).await {
            Err(StorageError::InvalidJson {
                collection,
                key,
                source,
            }) => {
                assert_eq!((collection.as_str(), key.as_str()), ("docs", "d"));
                let expected = serde_json::from_str::<serde::de::IgnoredAny>(bad).err();
                assert_eq!(Some(source.to_string()), expected.map(|e| e.to_string()));
            }
            other => panic!("{bad:?} was not refused as invalid: {other:?}"),
        }
    }
    let err = s.store_json("docs", "d", "{\"a\":\n [1, 2,]}").await.err();
    assert_eq!(
        err.map(|e| e.to_string()).as_deref(),
        Some("the JSON for docs/d is not valid: expected value at line 2 column 8")
    );
    s.store_json("docs", "deep", &nested(MAX_JSON_DEPTH))
        .await?;
    match s.store_json("docs", "d", &nested(MAX_JSON_DEPTH + 1)).await {
        Err(e @ StorageError::JsonTooDeep { .. }) => assert_eq!(
            e.to_string(),
            "the JSON for docs/d nests 128 arrays or objects deep; at most 127 are accepted"
        ),
        other => panic!("not refused as too deep: {other:?}"),
    }
    // A batch with one bad text stores nothing.
    let batch = [("x", "1".to_owned()), ("y", nested(MAX_JSON_DEPTH + 1))];
    assert!(matches!(
        s.store_json_batch("docs", &batch).await,
        Err(StorageError::JsonTooDeep { ref key, .. }) if key == "y"
    ));
    let batch = [("x", "1"), ("y", "[1,")];
    assert!(matches!(
        s.store_json_batch("docs", &batch).await,
        Err(StorageError::InvalidJson { ref key, .. }) if key == "y"
    ));
    assert_eq!(s.retrieve_raw("docs", "x").await?, None);
    let raw = s.retrieve_raw("docs", "d").await?.ok_or("missing")?;
    assert_eq!(&raw[..], b"[1]", "the refused writes left the record alone");
    s.store_json_batch("docs", &[("x", " 1 "), ("y", "[{}]")])
        .await?;
    let x = s.retrieve_raw("docs", "x").await?.ok_or("missing")?;
    let y = s.retrieve_raw("docs", "y").await?.ok_or("missing")?;
    assert_eq!((&x[..], &y[..]), (&b"1"[..], &b"[{}]"[..]));
    s.close().await?;
    Ok(())
}

/// Appends to a large document are deltas checked from the keyframe's marks: each version
/// reads back byte for byte; an append that breaks the document (after the last mark, or in
/// the prefix it shares with the keyframe) is refused and the last good version stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_appends_are_checked_from_the_keyframe_and_read_back() -> Result {
    let f = common::sqlite_fixture();
    let s = open(&f).await?;
    let mut rolls = 4_000;
    let mut text = log(rolls);
    assert!(text.len() > 150_000);
    // The first keyframe from a typed store (its marks are built on the first append), then
    // appends as text.
    s.store("logs", "a", &serde_json::from_str::<Value>(&text)?)
        .await?;
    for _ in 0..5 {
        rolls += 1;
        text = log(rolls);
        s.store_json("logs", "a", &text).await?;
        let raw = s.retrieve_raw("logs", "a").await?.ok_or("missing")?;
        assert_eq!(&raw[..], text.as_bytes());
    }
    let meta = s.metadata("logs", "a").await?.ok_or("missing")?;
    assert!(meta.is_delta, "{meta:?}");
    // Broken at its end, in the middle and at its start: refused with serde_json's message.
    let body = text.strip_suffix("]}").ok_or("the log ends its rolls")?;
    let broken_end = format!("{body},]}}");
    let broken_middle = text.replacen(r#""n":2000,"#, r#""n":2000,,"#, 1);
    let broken_start = text.replacen(r#"{"game":1"#, r#"{"game":01"#, 1);
    let deep_end = format!("{body},{}]}}", nested(MAX_JSON_DEPTH));
    for bad in [&broken_end, &broken_middle, &broken_start] {
        assert_ne!(bad, &text);
        match s.store_json("logs", "a", bad).await {
            Err(StorageError::InvalidJson { source, .. }) => {
                let expected = serde_json::from_str::<serde::de::IgnoredAny>(bad).err();
                assert_eq!(Some(source.to_string()), expected.map(|e| e.to_string()));
            }
            other => panic!("a broken append was not refused: {other:?}"),
        }
    }
    assert!(matches!(
        s.store_json("logs", "a", &deep_end).await,
        Err(StorageError::JsonTooDeep { depth: 129, .. })
    ));
    let raw = s.retrieve_raw("logs", "a").await?.ok_or("missing")?;
    assert_eq!(&raw[..], text.as_bytes());
    // A keyframe written from text, then appends to it, read back typed too.
    s.store_json("logs", "b", &log(5_000)).await?;
    for n in 5_001..5_004 {
        s.store_json("logs", "b", &log(n)).await?;
        let typed: Option<Value> = s.retrieve("logs", "b").await?;
        assert_eq!(typed, Some(serde_json::from_str::<Value>(&log(n))?));
    }
    let meta = s.metadata("logs", "b").await?.ok_or("missing")?;
    assert!(meta.is_delta, "{meta:?}");
    let report = s.check_consistency_deep().await?;
    assert!(report.is_ok(), "{report:?}");
    s.close().await?;
    Ok(())
}

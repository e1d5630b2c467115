//! `store_json` stores text that no typed read returns.
//!
//! `store_json`'s docs (and the README's "JSON text as it is") promise it stores text "like
//! [`store`] of a value that serializes to it" and that reads return it "parsed through
//! `retrieve`" into any type. Its check accepts what serde_json accepts as a `RawValue`, which
//! only checks syntax: a number that overflows `f64` (`1e400`) and a lone UTF-16 surrogate
//! escape (`"\ud800"`) pass it. No serde value serializes to either, and serde_json refuses
//! both when it parses a value: the record is stored and acknowledged, `retrieve_raw`
//! returns it, but `retrieve::<serde_json::Value>` (or `String`, `f64`) fails with
//! `Deserialize` for ever. Either the check refuses such text or the docs must say typed
//! reads can fail.

mod common;

use bitcraps_storage::PersistentStorageManager;
use serde_json::Value;

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_store_json_accepts_reads_back_as_a_value() -> Result {
    let f = common::sqlite_fixture();
    let mut config = f.config.clone();
    config.maintenance.background_tasks = false;
    let s = PersistentStorageManager::open(config).await?;
    let mut unreadable = Vec::new();
    for (key, text) in [
        ("overflow", r#"{"ratio":1e400}"#),
        ("surrogate", r#"{"name":"\ud800"}"#),
    ] {
        if s.store_json("docs", key, text).await.is_err() {
            continue; // Refused: fine.
        }
        let raw = s.retrieve_raw("docs", key).await?.ok_or("missing")?;
        assert_eq!(&raw[..], text.as_bytes());
        if let Err(e) = s.retrieve::<Value>("docs", key).await {
            unreadable.push(format!("{key}: {e}"));
        }
    }
    s.close().await?;
    assert!(
        unreadable.is_empty(),
        "store_json accepted text that retrieve::<serde_json::Value> cannot read: {unreadable:?}"
    );
    Ok(())
}

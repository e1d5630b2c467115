//! `store_json` refuses text that no typed read could return (found in review).
//!
//! `store_json` promises to store text "like [`store`] of a value that serializes to it" and
//! that reads return it through `retrieve` into any type. Its check used to accept what
//! serde_json accepts as a `RawValue`, which checks only syntax: a number that overflows an
//! `f64` (`1e400`) and a lone UTF-16 surrogate escape (`"\ud800"`) passed it, the record was
//! stored and acknowledged, and `retrieve::<serde_json::Value>` failed with `Deserialize` for
//! ever. The check now refuses both, as serde_json does when it parses a value.

use crate::common;

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
        match s.store_json("docs", key, text).await {
            Err(bitcraps_storage::StorageError::InvalidJson { .. }) => {
                assert!(
                    s.retrieve_raw("docs", key).await?.is_none(),
                    "{key}: stored"
                );
                continue;
            }
            Err(e) => return Err(format!("{key}: refused with the wrong error: {e}").into()),
            Ok(()) => {}
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

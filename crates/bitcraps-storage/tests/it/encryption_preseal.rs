//! Values are sealed in the caller's encode step, ahead of the writer thread
//! (`crypto/preseal.rs`). A value sealed under a data key that is no longer the collection's
//! current one when the writer reaches it (a rotation in between) is sealed again under the
//! current key: nothing new is written under a retired key.

use crate::common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bitcraps_storage::PersistentStorageManager;
use serde_json::json;

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// While the writer holds write A (the hook runs before A is answered), write B is encoded —
/// and so sealed under key version 1 — and queued; then the collection's key is rotated.
/// The writer must store B under version 2: re-encryption then finds exactly the two blobs
/// written before the rotation under the old key, not B.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_sealed_before_a_rotation_is_sealed_again_under_the_new_key() -> Result {
    let dir = tempfile::tempdir()?;
    let (_key_dir, key) = common::key_file();
    let s = PersistentStorageManager::open(common::keyed_config(dir.path(), &key)).await?;
    s.store("bank", "a", &json!({"chips": 1, "who": "before"}))
        .await?;

    let outcome: Arc<Mutex<Option<std::result::Result<i64, String>>>> = Arc::default();
    let runtime = tokio::runtime::Handle::current();
    let (hooked, seen) = (s.clone(), Arc::clone(&outcome));
    let armed = Arc::new(std::sync::atomic::AtomicBool::new(true));
    s.before_acknowledging(Some(Arc::new(move || {
        if !armed.swap(false, std::sync::atomic::Ordering::AcqRel) {
            return;
        }
        let s = hooked.clone();
        let result = runtime.block_on(async move {
            let held = s
                .statistics()
                .await
                .map_err(|e| e.to_string())?
                .queued_write_bytes;
            let b = s.clone();
            tokio::spawn(async move {
                b.store("bank", "b", &json!({"chips": 3, "who": "queued"}))
                    .await
            });
            // B takes its queue space only after it was encoded (and sealed): wait for that
            // condition, with a deadline (each check is a statistics call on the blocking
            // pool, so B's task runs meanwhile).
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while s
                .statistics()
                .await
                .map_err(|e| e.to_string())?
                .queued_write_bytes
                <= held
            {
                if std::time::Instant::now() > deadline {
                    return Err("write B never reached the queue".to_owned());
                }
                tokio::task::yield_now().await;
            }
            s.rotate_data_key("bank").await.map_err(|e| e.to_string())
        });
        *seen.lock().expect("lock") = Some(result);
    })));
    s.store("bank", "x", &json!({"chips": 2, "who": "held"}))
        .await?;
    s.before_acknowledging(None);
    assert_eq!(
        outcome.lock().expect("lock").clone(),
        Some(Ok(2)),
        "the rotation ran while B was queued"
    );
    // B is committed once a later write is (one writer, in order).
    s.store("other", "c", &json!("after")).await?;
    assert_eq!(
        s.retrieve::<serde_json::Value>("bank", "b").await?,
        Some(json!({"chips": 3, "who": "queued"}))
    );

    let step = s.reencrypt().await?;
    assert!(step.pass_complete, "{step:?}");
    assert_eq!(
        step.blobs_resealed, 2,
        "only a and x were sealed under the old key: {step:?}"
    );
    for (k, chips) in [("a", 1), ("x", 2), ("b", 3)] {
        let v = s.retrieve::<serde_json::Value>("bank", k).await?;
        assert_eq!(v.map(|v| v["chips"].clone()), Some(json!(chips)), "{k}");
    }
    s.close().await?;
    Ok(())
}

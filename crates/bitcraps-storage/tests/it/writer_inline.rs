//! Commits on the caller's thread: a write that finds the writer idle on a multi-thread
//! runtime commits there (inside `block_in_place`) instead of handing off to the writer
//! thread; a current-thread runtime still queues; a panic during such a commit poisons the
//! store for every caller, queued ones included; `close()` waits for a running one.

use crate::common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bitcraps_storage::{PersistentStorageManager, StorageError};
use common::faulty::{Fault, Method, When, faulty_sqlite};
use common::{game, sqlite_fixture};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Generous: only a hang (the defect) runs into it.
const DEADLINE: Duration = Duration::from_secs(120);

const WRITER_THREAD: &str = "bitcraps-storage-writer";

fn quiet(mut config: bitcraps_storage::StorageConfig) -> bitcraps_storage::StorageConfig {
    config.maintenance.background_tasks = false;
    config
}

/// The name of the thread every commit's acknowledgement ran on, in order.
fn record_threads(s: &PersistentStorageManager) -> Arc<Mutex<Vec<String>>> {
    let threads: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = Arc::clone(&threads);
    s.before_acknowledging(Some(Arc::new(move || {
        let name = std::thread::current().name().unwrap_or("").to_owned();
        seen.lock().expect("lock").push(name);
    })));
    threads
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_writer_lets_the_caller_commit_on_its_own_thread() -> Result {
    let f = sqlite_fixture();
    let s = PersistentStorageManager::open(quiet(f.config.clone())).await?;
    let threads = record_threads(&s);
    let before = s.statistics().await?;
    for i in 0..3 {
        s.store("games", &format!("g-{i}"), &game("g", i)).await?;
    }
    let after = s.statistics().await?;
    s.before_acknowledging(None);
    let threads = threads.lock().expect("lock").clone();
    assert_eq!(threads.len(), 3, "one commit per write: {threads:?}");
    assert!(
        threads.iter().all(|t| t != WRITER_THREAD),
        "committed on the writer thread: {threads:?}"
    );
    assert_eq!(after.inline_commits - before.inline_commits, 3);
    assert_eq!(after.group_commits - before.group_commits, 3);
    // Durable and visible like any other write, also after a reopen.
    assert_eq!(s.retrieve("games", "g-2").await?, Some(game("g", 2)));
    s.close().await?;
    let s = PersistentStorageManager::open(quiet(f.config.clone())).await?;
    assert_eq!(s.retrieve("games", "g-1").await?, Some(game("g", 1)));
    s.close().await?;
    Ok(())
}

#[tokio::test]
async fn a_current_thread_runtime_queues_to_the_writer_thread() -> Result {
    let f = sqlite_fixture();
    let s = PersistentStorageManager::open(quiet(f.config.clone())).await?;
    let threads = record_threads(&s);
    s.store("games", "a", &game("a", 1)).await?;
    s.before_acknowledging(None);
    assert_eq!(
        *threads.lock().expect("lock"),
        vec![WRITER_THREAD.to_owned()]
    );
    assert_eq!(s.statistics().await?.inline_commits, 0);
    assert_eq!(s.retrieve("games", "a").await?, Some(game("a", 1)));
    s.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_panic_in_an_inline_commit_poisons_the_store() -> Result {
    let f = sqlite_fixture();
    let backend = faulty_sqlite(&f.config)?;
    let s = PersistentStorageManager::with_backend(quiet(f.config.clone()), backend.clone())?;
    s.store("games", "before", &game("before", 1)).await?;
    assert_eq!(s.statistics().await?.inline_commits, 1);

    backend.inject(Method::Apply, When::Always, Fault::Panic);
    let failed = tokio::time::timeout(DEADLINE, s.store("games", "x", &game("x", 2))).await?;
    match failed {
        Err(StorageError::Poisoned { reason }) => {
            assert!(reason.contains("caller's thread"), "reason: {reason}");
            assert!(reason.contains("injected panic"), "reason: {reason}");
        }
        other => return Err(format!("expected Poisoned, got {other:?}").into()),
    }
    // Every later write fails at once, typed, on either path; so does a flush.
    backend.clear(Method::Apply);
    let later = tokio::time::timeout(DEADLINE, s.store("games", "y", &game("y", 3))).await?;
    assert!(
        matches!(later, Err(StorageError::Poisoned { .. })),
        "later write: {later:?}"
    );
    assert!(matches!(
        tokio::time::timeout(DEADLINE, s.flush()).await?,
        Err(StorageError::Poisoned { .. })
    ));
    // Reads still work, from the database; closing does not hang.
    assert_eq!(
        s.retrieve("games", "before").await?,
        Some(game("before", 1))
    );
    tokio::time::timeout(DEADLINE, s.close()).await??;
    Ok(())
}

/// The callers that queued while an inline commit ran wait for the writer thread, which
/// waits for that commit: when it panics, they must get the poison too, not hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_an_inline_commit_fails_every_queued_caller() -> Result {
    let f = sqlite_fixture();
    let s = PersistentStorageManager::open(quiet(f.config.clone())).await?;
    let runtime = tokio::runtime::Handle::current();
    let (entered_tx, entered) = tokio::sync::oneshot::channel::<()>();
    let entered_tx = Mutex::new(Some(entered_tx));
    let probe = s.clone();
    let armed = AtomicBool::new(true);
    s.before_installing(Some(Arc::new(move || {
        if !armed.swap(false, Ordering::AcqRel) {
            return;
        }
        assert_ne!(std::thread::current().name(), Some(WRITER_THREAD));
        if let Some(tx) = entered_tx.lock().expect("lock").take() {
            let _ = tx.send(());
        }
        // Until the other eight writes hold queue space (one permit each, this one too).
        let queued = runtime.block_on(async {
            let deadline = tokio::time::Instant::now() + DEADLINE;
            loop {
                match probe.statistics().await {
                    Ok(st) if st.queued_write_bytes >= 9 * 1024 => return true,
                    Ok(_) if tokio::time::Instant::now() < deadline => {
                        tokio::task::yield_now().await;
                    }
                    _ => return false,
                }
            }
        });
        std::panic::panic_any(format!(
            "injected panic in an inline commit (writers queued: {queued})"
        ));
    })));
    let first = {
        let s = s.clone();
        tokio::spawn(async move { s.store("games", "first", &game("first", 1)).await })
    };
    tokio::time::timeout(DEADLINE, entered).await??;
    let queued: Vec<_> = (0..8)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move { s.store("games", &format!("q-{i}"), &game("q", i)).await })
        })
        .collect();
    let mut outcomes = vec![first];
    outcomes.extend(queued);
    for (i, task) in outcomes.into_iter().enumerate() {
        match tokio::time::timeout(DEADLINE, task).await?? {
            Err(StorageError::Poisoned { reason }) => {
                assert!(reason.contains("injected panic"), "{i}: {reason}");
                assert!(reason.contains("writers queued: true"), "{i}: {reason}");
            }
            other => return Err(format!("caller {i}: expected Poisoned, got {other:?}").into()),
        }
    }
    s.before_installing(None);
    let later = s.store("games", "later", &game("later", 2)).await;
    assert!(
        matches!(later, Err(StorageError::Poisoned { .. })),
        "{later:?}"
    );
    tokio::time::timeout(DEADLINE, s.close()).await??;
    Ok(())
}

/// `close()` begun while an inline commit runs returns only after it: the writer thread
/// waits for the commit lock before it ends, and the database is closed after that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_waits_for_a_running_inline_commit() -> Result {
    let f = sqlite_fixture();
    let backend = faulty_sqlite(&f.config)?;
    let s = PersistentStorageManager::with_backend(quiet(f.config.clone()), backend.clone())?;
    let (entered_tx, entered) = tokio::sync::oneshot::channel::<()>();
    let entered_tx = Mutex::new(Some(entered_tx));
    let (release, released) = std::sync::mpsc::channel::<()>();
    let released = Mutex::new(released);
    let finished = Arc::new(AtomicBool::new(false));
    let (done, hook_backend) = (Arc::clone(&finished), backend.clone());
    s.before_acknowledging(Some(Arc::new(move || {
        if let Some(tx) = entered_tx.lock().expect("lock").take() {
            let _ = tx.send(());
            let _ = released.lock().expect("lock").recv_timeout(DEADLINE);
            // The database is still open: close() has not reached the backend.
            assert_eq!(hook_backend.calls(Method::Close), 0);
            done.store(true, Ordering::SeqCst);
        }
    })));
    let close_gate = backend.hold_next(Method::Close, false);
    let write = {
        let s = s.clone();
        tokio::spawn(async move { s.store("games", "held", &game("held", 1)).await })
    };
    tokio::time::timeout(DEADLINE, entered).await??;
    let closing = {
        let (s, finished) = (s.clone(), Arc::clone(&finished));
        tokio::spawn(async move {
            let closed = s.close().await;
            (closed, finished.load(Ordering::SeqCst))
        })
    };
    // Writes are refused once close() began...
    loop {
        match s.retrieve::<serde_json::Value>("games", "held").await {
            Err(StorageError::Closed) => break,
            _ => tokio::task::yield_now().await,
        }
    }
    // ...and close() must not reach the database while the commit runs. Without the wait,
    // it does within this bound; with it, the bound is what this check costs.
    let reached = tokio::task::spawn_blocking({
        let gate = close_gate.clone();
        move || gate.wait_for_arrivals(1, Duration::from_millis(500))
    })
    .await?;
    assert!(
        !reached,
        "close() closed the database under a running commit"
    );
    release.send(())?;
    close_gate.open();
    tokio::time::timeout(DEADLINE, write).await???;
    let (closed, commit_finished_first) = tokio::time::timeout(DEADLINE, closing).await??;
    closed?;
    assert!(
        commit_finished_first,
        "close() returned before the commit ended"
    );
    assert!(matches!(
        s.store("games", "after", &game("after", 2)).await,
        Err(StorageError::Closed)
    ));
    let s = PersistentStorageManager::open(quiet(f.config.clone())).await?;
    assert_eq!(s.retrieve("games", "held").await?, Some(game("held", 1)));
    s.close().await?;
    Ok(())
}

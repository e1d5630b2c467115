//! Sealing a large group commit, and opening a page of records, on more than one core. The
//! writer thread waits for its group anyway, and a bulk load's caller waits for the writer,
//! so while a group of a thousand documents is sealed the machine's other cores would idle;
//! a scan's caller likewise waits while a page's records are opened. Small groups are
//! sealed on the writer thread alone: starting a thread costs tens of microseconds, sealing
//! a document a few. A large page is opened with the process's helper threads
//! ([`map_static`]), started once and woken per page; a page of a hundred (a scan's usual
//! page) is opened on the caller's thread alone, which measured faster than waking a helper
//! for half of it (`BENCHMARKS.md`, "Encrypted misses read in place; the encrypted scan's
//! pages opened on one thread").

use crate::error::{Result, StorageError};

/// Operations in a group below which it is sealed on the writer thread alone.
pub(crate) const PARALLEL_MIN: usize = 256;

/// Records in a page (a scan, a `get_many`) below which they are opened on the caller's
/// thread alone. Opening a record costs ~0.5 µs on the benchmark's machine (AES-256-GCM-SIV
/// derives two keys per message), so a page of 100 is ~50 µs of work; handing half of it to
/// a helper cost more than it saved there (a wake-up, the caller asleep until the helper's
/// half is back: the full-size typed scan ran 7 % slower with the helper than without, and
/// switched context twice more a page). From 256 records each thread gets 128 or more.
pub(crate) const OPEN_PARALLEL_MIN: usize = 256;

/// Threads at most, the writer's own included.
const MAX_THREADS: usize = 4;

/// How many threads a page of `records` records is opened on.
pub(crate) fn open_threads_for(records: usize) -> usize {
    if records < OPEN_PARALLEL_MIN {
        return 1;
    }
    crate::rt::cores()
        .clamp(1, MAX_THREADS)
        .min(records / (OPEN_PARALLEL_MIN / 2))
}

/// How many threads a group of `ops` operations is sealed on.
pub(crate) fn threads_for(ops: usize) -> usize {
    if ops < PARALLEL_MIN {
        return 1;
    }
    crate::rt::cores()
        .clamp(1, MAX_THREADS)
        .min(ops / (PARALLEL_MIN / 2))
}

/// `f` of every item, in order, on `threads` threads (this one included) over contiguous
/// slices; the first error (in item order) wins. A thread that panics is an error, not a
/// panic of the caller.
pub(crate) fn map<T, U, F>(items: &[T], threads: usize, f: F) -> Result<Vec<U>>
where
    T: Sync,
    U: Send,
    F: Fn(&T) -> Result<U> + Sync,
{
    let threads = threads.clamp(1, items.len().max(1));
    if threads == 1 {
        return items.iter().map(&f).collect();
    }
    let per = items.len().div_ceil(threads);
    let mut slices = items.chunks(per);
    let own = slices.next().unwrap_or_default();
    let f = &f;
    std::thread::scope(|scope| {
        let others: Vec<_> = slices
            .map(|slice| scope.spawn(move || slice.iter().map(f).collect::<Result<Vec<U>>>()))
            .collect();
        let mut out = own.iter().map(f).collect::<Result<Vec<U>>>();
        for handle in others {
            let part = handle
                .join()
                .map_err(|_| StorageError::Task("an encryption thread panicked".into()))
                .and_then(|part| part);
            out = match (out, part) {
                (Ok(mut all), Ok(part)) => {
                    all.extend(part);
                    Ok(all)
                }
                (Err(e), _) | (Ok(_), Err(e)) => Err(e),
            };
        }
        out
    })
}

/// [`map`] over owned items (a page's records, opened in the buffers they were read into),
/// in order, on `threads` threads over contiguous runs: this one and up to `threads - 1` of
/// the process's helper threads ([`helpers`]), started once, so a page pays a wake-up
/// rather than a thread's start. Falls back to this thread alone when no helper could be
/// started. A helper's job that panics is an error, and the helper lives on.
pub(crate) fn map_static<T, U, F>(mut items: Vec<T>, threads: usize, f: F) -> Result<Vec<U>>
where
    T: Send + 'static,
    U: Send + 'static,
    F: Fn(T) -> U + Send + Sync + 'static,
{
    let threads = threads.clamp(1, items.len().max(1)).min(MAX_THREADS);
    let helpers = if threads > 1 { helpers() } else { None };
    let Some(helpers) = helpers else {
        return Ok(items.into_iter().map(f).collect());
    };
    let per = items.len().div_ceil(threads);
    // Runs from the back, so each split moves only its own run; then in item order.
    let mut runs = Vec::with_capacity(threads);
    while items.len() > per {
        runs.push(items.split_off(items.len() - per));
    }
    runs.reverse();
    let f = std::sync::Arc::new(f);
    let (done, results) = std::sync::mpsc::channel::<(usize, Vec<U>)>();
    let sent = runs.len();
    for (i, run) in runs.into_iter().enumerate() {
        let f = std::sync::Arc::clone(&f);
        let done = done.clone();
        let job: Job = Box::new(move || {
            let out = run.into_iter().map(&*f).collect();
            // The caller has gone only if it failed itself: nothing to tell it.
            let _ = done.send((i, out));
        });
        helpers
            .send(job)
            .map_err(|_| StorageError::Task("the encryption helpers stopped".into()))?;
    }
    drop(done);
    let mut out: Vec<U> = items.into_iter().map(&*f).collect();
    let mut parts: Vec<Option<Vec<U>>> = (0..sent).map(|_| None).collect();
    for _ in 0..sent {
        // Every sender gone before all parts came back: a helper's job panicked.
        let (i, part) = results
            .recv()
            .map_err(|_| StorageError::Task("an encryption thread panicked".into()))?;
        if let Some(slot) = parts.get_mut(i) {
            *slot = Some(part);
        }
    }
    for part in parts {
        out.extend(
            part.ok_or_else(|| StorageError::Task("an encryption thread lost its part".into()))?,
        );
    }
    Ok(out)
}

type Job = Box<dyn FnOnce() + Send + 'static>;

/// The process's helper threads (one fewer than [`MAX_THREADS`], and than the cores),
/// started on first use; they wait on one queue of jobs for as long as the process runs.
/// `None` when there are none (one core) or they could not be started.
fn helpers() -> Option<&'static std::sync::mpsc::Sender<Job>> {
    static HELPERS: std::sync::OnceLock<Option<std::sync::mpsc::Sender<Job>>> =
        std::sync::OnceLock::new();
    HELPERS
        .get_or_init(|| {
            let count = crate::rt::cores().clamp(1, MAX_THREADS) - 1;
            if count == 0 {
                return None;
            }
            let (jobs, queue) = std::sync::mpsc::channel::<Job>();
            let queue = std::sync::Arc::new(std::sync::Mutex::new(queue));
            let mut started = 0;
            for i in 0..count {
                let queue = std::sync::Arc::clone(&queue);
                let spawned = std::thread::Builder::new()
                    .name(format!("bitcraps-crypto-{i}"))
                    .spawn(move || helper(&queue));
                if spawned.is_ok() {
                    started += 1;
                }
            }
            (started > 0).then_some(jobs)
        })
        .as_ref()
}

/// A helper thread: runs jobs until the queue is gone; a job that panics is its caller's
/// error (its result channel closes), not the helper's end.
fn helper(queue: &std::sync::Mutex<std::sync::mpsc::Receiver<Job>>) {
    loop {
        let job = {
            let Ok(queue) = queue.lock() else { return };
            queue.recv()
        };
        match job {
            Ok(job) => {
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
            }
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_keep_item_order_on_any_number_of_threads() -> Result<()> {
        let items: Vec<u32> = (0..1000).collect();
        for threads in [1, 2, 3, 4, 7, 2000] {
            let doubled = map(&items, threads, |x| Ok(x * 2))?;
            assert_eq!(doubled, items.iter().map(|x| x * 2).collect::<Vec<_>>());
        }
        assert!(map(&[] as &[u32], 4, |x| Ok(*x))?.is_empty());
        Ok(())
    }

    #[test]
    fn owned_results_keep_item_order_on_any_number_of_threads() -> Result<()> {
        for len in [0usize, 1, 2, 99, 100, 1000] {
            let items: Vec<String> = (0..len).map(|i| i.to_string()).collect();
            for threads in [1, 2, 3, 4, 7, 2000] {
                let back = map_static(items.clone(), threads, |s| s + "!")?;
                let expected: Vec<String> = items.iter().map(|s| format!("{s}!")).collect();
                assert_eq!(back, expected, "{len} items on {threads} threads");
            }
        }
        Ok(())
    }

    #[test]
    fn a_helper_that_panics_is_an_error_and_the_helpers_go_on() -> Result<()> {
        if helpers().is_none() {
            return Ok(());
        }
        // The last run goes to a helper; its panic is this call's error.
        let out = map_static((0..1000u32).collect(), 2, |x| {
            assert!(x != 999, "boom");
            x
        });
        assert!(matches!(out, Err(StorageError::Task(_))), "{out:?}");
        let again = map_static((0..1000u32).collect(), 2, |x| x + 1)?;
        assert_eq!(again, (1..=1000).collect::<Vec<_>>());
        Ok(())
    }

    #[test]
    fn the_first_error_in_item_order_wins() {
        let items: Vec<u32> = (0..1000).collect();
        let err = map(&items, 4, |x| {
            if *x == 900 || *x == 300 {
                Err(StorageError::Task(format!("item {x}")))
            } else {
                Ok(*x)
            }
        })
        .err()
        .map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("item 300")));
    }

    #[test]
    fn a_panicking_thread_is_an_error() {
        let items: Vec<u32> = (0..1000).collect();
        let out = map(&items, 2, |x| {
            assert!(*x != 999, "boom");
            Ok(*x)
        });
        assert!(matches!(out, Err(StorageError::Task(_))));
    }

    #[test]
    fn small_groups_stay_on_one_thread() {
        assert_eq!(threads_for(0), 1);
        assert_eq!(threads_for(PARALLEL_MIN - 1), 1);
        assert!(threads_for(10_000) <= MAX_THREADS);
        assert_eq!(open_threads_for(0), 1);
        assert_eq!(open_threads_for(OPEN_PARALLEL_MIN - 1), 1);
        assert_eq!(open_threads_for(100), 1, "a scan's usual page");
        assert!(open_threads_for(1_000) <= MAX_THREADS.min(crate::rt::cores().max(1)));
    }
}

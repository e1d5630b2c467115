//! Sealing a large group commit, and opening a page of records, on more than one core. The
//! writer thread waits for its group anyway, and a bulk load's caller waits for the writer,
//! so while a group of a thousand documents is sealed the machine's other cores would idle;
//! a scan's caller likewise waits while a page's records are opened. Small groups are
//! sealed on the writer thread alone: starting a thread costs tens of microseconds, sealing
//! a document a few.

use crate::error::{Result, StorageError};

/// Operations in a group below which it is sealed on the writer thread alone.
pub(crate) const PARALLEL_MIN: usize = 256;

/// Records in a page (a scan, a `get_many`) below which they are opened on the caller's
/// thread alone. Opening a record costs ~1 µs on the benchmark's machine (AES-256-GCM-SIV
/// derives two keys per message), so a page of 100 is ~100 µs of work, and a second thread
/// takes half of it for the few tens of microseconds of starting one.
pub(crate) const OPEN_PARALLEL_MIN: usize = 64;

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
        assert!(open_threads_for(100) <= MAX_THREADS.min(crate::rt::cores().max(1)));
    }
}

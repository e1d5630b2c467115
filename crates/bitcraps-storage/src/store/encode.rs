//! Encoding a large batch (compressing and hashing its documents) on more than one core.
//! A bulk load's caller waits for the encoding and then for the commit, one after the other,
//! and compressing is the larger part of that wait; split into contiguous parts on the
//! blocking pool, the batch is encoded on every core while its order and its first error
//! (the first bad item, in item order) stay what one thread would give.

use crate::error::Result;
use crate::rt::{cores, spawn_blocking};

/// Items per part at least: a part costs a blocking task's hand-off (a few µs), an item tens
/// of µs.
const MIN_PART: usize = 128;

/// Parts at most.
const MAX_PARTS: usize = 4;

/// How many parts `items` items are encoded in.
fn parts_for(items: usize) -> usize {
    cores().clamp(1, MAX_PARTS).min(items / MIN_PART).max(1)
}

/// `encode` applied to every item, in order, on blocking threads: a large batch in parts at
/// once. The first error in item order is returned.
pub(super) async fn on_pool<T, U, F>(items: Vec<T>, encode: F) -> Result<Vec<U>>
where
    T: Send + 'static,
    U: Send + 'static,
    F: Fn(T) -> Result<U> + Clone + Send + 'static,
{
    let parts = parts_for(items.len());
    let total = items.len();
    let per = total.div_ceil(parts).max(1);
    let mut rest = items.into_iter();
    let mut tasks = Vec::with_capacity(parts);
    loop {
        let part: Vec<T> = rest.by_ref().take(per).collect();
        if part.is_empty() {
            break;
        }
        let encode = encode.clone();
        // Spawned here, so every part runs while the first is awaited.
        tasks.push(spawn_blocking(move || {
            part.into_iter().map(&encode).collect::<Result<Vec<U>>>()
        }));
    }
    let mut out = Vec::with_capacity(total);
    for task in tasks {
        out.extend(task.await?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::StorageError;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn parts_keep_item_order_and_the_first_error_wins() -> Result<()> {
        let items: Vec<u32> = (0..5000).collect();
        let doubled = on_pool(items.clone(), |x| Ok(x * 2)).await?;
        assert_eq!(doubled, items.iter().map(|x| x * 2).collect::<Vec<_>>());
        let failing = |x: u32| {
            if x == 4900 || x == 1200 {
                Err(StorageError::Task(format!("item {x}")))
            } else {
                Ok(x)
            }
        };
        let err = on_pool(items, failing).await.err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("item 1200")));
        assert!(on_pool(Vec::<u32>::new(), Ok).await?.is_empty());
        Ok(())
    }

    #[test]
    fn small_batches_are_one_part() {
        assert_eq!(parts_for(0), 1);
        assert_eq!(parts_for(MIN_PART * 2 - 1), 1);
        assert!(parts_for(100_000) <= MAX_PARTS);
    }
}

//! Encoding a large batch (compressing and hashing its documents) on more than one core.
//! A bulk load's caller waits for the encoding and then for the commit, one after the other,
//! and compressing is the larger part of that wait; split into contiguous parts on the
//! blocking pool, the batch is encoded on every core while its order and its first error
//! (the first bad item, in item order) stay what one thread would give.
//!
//! [`Streamed`] goes one step further for `store_batch`: its documents are serialized on the
//! caller's thread (they are borrowed), and each part goes to the pool as soon as it is
//! serialized, so serializing the next part overlaps encoding this one instead of preceding
//! all of it.

use std::future::Future;
use std::pin::Pin;

use crate::error::{Result, StorageError};
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

/// Items per part of a [`Streamed`] encoding.
pub(super) const STREAM_PART: usize = MIN_PART;

type Part<U> = Pin<Box<dyn Future<Output = Result<Vec<U>>> + Send>>;

/// Parts handed to the pool one by one as the caller produces them (at most one per core in
/// flight: beyond that the cores are busy anyway, and the caller waits for the oldest), their
/// results gathered in order.
pub(super) struct Streamed<T, U, F> {
    encode: F,
    in_flight: std::collections::VecDeque<Part<U>>,
    done: Vec<U>,
    _items: std::marker::PhantomData<fn(T)>,
}

impl<T, U, F> Streamed<T, U, F>
where
    T: Send + 'static,
    U: Send + 'static,
    F: Fn(T) -> Result<U> + Clone + Send + 'static,
{
    pub(super) fn new(encode: F, items: usize) -> Self {
        Streamed {
            encode,
            in_flight: std::collections::VecDeque::new(),
            done: Vec::with_capacity(items),
            _items: std::marker::PhantomData,
        }
    }

    /// Starts encoding `part` (the items after every part pushed before). An error of an
    /// earlier part is returned here or by [`finish`](Self::finish), whichever sees it first.
    pub(super) async fn push(&mut self, part: Vec<T>) -> Result<()> {
        if part.is_empty() {
            return Ok(());
        }
        while self.in_flight.len() >= cores().max(1) {
            self.collect_oldest().await?;
        }
        let encode = self.encode.clone();
        self.in_flight.push_back(Box::pin(spawn_blocking(move || {
            part.into_iter().map(&encode).collect::<Result<Vec<U>>>()
        })));
        Ok(())
    }

    async fn collect_oldest(&mut self) -> Result<()> {
        if let Some(part) = self.in_flight.pop_front() {
            self.done.extend(part.await?);
        }
        Ok(())
    }

    /// Every item encoded, in order, or the first error in item order.
    pub(super) async fn finish(mut self) -> Result<Vec<U>> {
        while !self.in_flight.is_empty() {
            self.collect_oldest().await?;
        }
        Ok(self.done)
    }

    /// The producer failed at an item after every part pushed: the error to report is one
    /// among those parts (it comes first in item order), else `error`.
    pub(super) async fn fail(mut self, error: StorageError) -> StorageError {
        while !self.in_flight.is_empty() {
            if let Err(earlier) = self.collect_oldest().await {
                return earlier;
            }
        }
        error
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn streamed_parts_keep_item_order_and_the_first_error_wins() -> Result<()> {
        let parts = |items: Vec<u32>| -> Vec<Vec<u32>> {
            items.chunks(STREAM_PART).map(<[u32]>::to_vec).collect()
        };
        let items: Vec<u32> = (0..1000).collect();
        let mut streamed = Streamed::new(|x: u32| Ok(x * 2), items.len());
        for part in parts(items.clone()) {
            streamed.push(part).await?;
        }
        let doubled = streamed.finish().await?;
        assert_eq!(doubled, items.iter().map(|x| x * 2).collect::<Vec<_>>());
        // An encoding error in an earlier part beats a later one, and beats the producer's
        // own error at a later item.
        let failing = |x: u32| {
            if x == 900 || x == 300 {
                Err(StorageError::Task(format!("item {x}")))
            } else {
                Ok(x)
            }
        };
        let mut streamed = Streamed::new(failing, items.len());
        let mut first = None;
        for part in parts(items.clone()) {
            if let Err(e) = streamed.push(part).await {
                first = Some(e);
                break;
            }
        }
        let err = match first {
            Some(e) => e.to_string(),
            None => streamed
                .fail(StorageError::Task("producer".into()))
                .await
                .to_string(),
        };
        assert!(err.contains("item 300"), "{err}");
        // With no bad item among the parts pushed, the producer's error is the answer.
        let mut streamed = Streamed::new(|x: u32| Ok(x), 10);
        streamed.push((0..10).collect()).await?;
        let err = streamed.fail(StorageError::Task("producer".into())).await;
        assert!(err.to_string().contains("producer"), "{err}");
        Ok(())
    }

    #[test]
    fn small_batches_are_one_part() {
        assert_eq!(parts_for(0), 1);
        assert_eq!(parts_for(MIN_PART * 2 - 1), 1);
        assert!(parts_for(100_000) <= MAX_PARTS);
    }
}

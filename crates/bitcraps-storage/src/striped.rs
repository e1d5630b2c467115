//! Per-thread stripes: state that every read updates (statistics counters, the latency
//! histogram, access counts) kept in one copy per thread, each on cache lines of its own, so
//! readers on different cores never write the same line. A counter shared by every reader
//! moved its line between the cores on every read (the 2- and 4-thread reads scaled worse
//! than the peers', BENCHMARKS.md "Typed reads on more threads"). Totals are exact: a
//! snapshot adds the stripes up.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Stripes. Threads take them round-robin as they first touch one, so up to this many
/// threads (a Tokio runtime's workers) never share one.
pub(crate) const STRIPES: usize = 16;

/// Aligned to 128 bytes: x86 fetches lines in adjacent pairs, so 64 would still share.
#[repr(align(128))]
#[derive(Debug, Default)]
struct Padded<T>(T);

/// This thread's stripe.
pub(crate) fn stripe() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static STRIPE: usize = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
    }
    // While the thread's locals are torn down: any stripe is correct, only slower.
    STRIPE.try_with(|s| *s).unwrap_or(0)
}

/// One `T` per stripe.
#[derive(Debug)]
pub(crate) struct Striped<T>([Padded<T>; STRIPES]);

impl<T: Default> Default for Striped<T> {
    fn default() -> Self {
        Striped(std::array::from_fn(|_| Padded::default()))
    }
}

impl<T> Striped<T> {
    /// This thread's `T`.
    pub(crate) fn local(&self) -> &T {
        // `stripe()` is below STRIPES; the modulo says so to the compiler.
        &self.0[stripe() % STRIPES].0
    }

    /// Every stripe's `T`.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        self.0.iter().map(|p| &p.0)
    }
}

/// A counter added to on many threads: exact, each thread adding to its own stripe.
#[derive(Debug, Default)]
pub(crate) struct Counter(Striped<AtomicU64>);

impl Counter {
    pub(crate) fn add(&self, n: u64) {
        self.0.local().fetch_add(n, Ordering::Relaxed);
    }

    /// The total.
    pub(crate) fn get(&self) -> u64 {
        self.0
            .iter()
            .fold(0u64, |sum, c| sum.wrapping_add(c.load(Ordering::Relaxed)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_counter_adds_up_every_threads_stripe() {
        let c = std::sync::Arc::new(Counter::default());
        let threads: Vec<_> = (0..2 * STRIPES as u64)
            .map(|i| {
                let c = std::sync::Arc::clone(&c);
                std::thread::spawn(move || {
                    for _ in 0..100 {
                        c.add(i + 1);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("a counting thread panicked");
        }
        let n = 2 * STRIPES as u64;
        assert_eq!(c.get(), 100 * n * (n + 1) / 2);
    }

    #[test]
    fn stripes_are_lines_of_their_own() {
        assert_eq!(std::mem::align_of::<Padded<AtomicU64>>(), 128);
        assert_eq!(std::mem::size_of::<Striped<AtomicU64>>(), 128 * STRIPES);
    }
}

//! The in-process read cache: [`CacheConfig`].

use std::time::Duration;

/// The in-process (L1) read cache (TOML `[cache]`, environment `BITCRAPS_STORAGE_CACHE_*`).
///
/// The shared Redis tier has its own section, [`RedisConfig`](crate::RedisConfig).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct CacheConfig {
    /// Upper bound of the in-memory read cache, in MiB of memory: documents are cached in their
    /// stored (compressed) form and each entry is charged its measured overhead on top, so this
    /// bounds what the cache takes, not just document bytes. SQLite's own page caches get a
    /// quarter of it on top (at least 4 MiB, at most 32 MiB). `0` disables the cache.
    /// Default: 64.
    pub size_mb: usize,
    /// The share of [`size_mb`](Self::size_mb), in percent, that may hold documents decoded
    /// as the type [`retrieve_shared`](crate::PersistentStorageManager::retrieve_shared) read
    /// them as, so the most read are handed out without decompression or parsing; the rest
    /// holds stored forms. `0` keeps none decoded. The share is taken from the stored forms'
    /// room whether or not it is used, and a decoded document is charged several times its
    /// compressed form, so keep it small when the data does not fit in the cache: under a
    /// skewed workload a few percent hold the documents most reads go to. In the benchmark
    /// (200,000 documents, twice the cache's worth; zipf 0.99) 5 % served 61 % of the reads
    /// decoded for 16 % more misses than none, while 25 % served 73 % but raised the misses
    /// 2.6× and made reads slower than `retrieve`'s (BENCHMARKS.md). Default: 0, for a
    /// workload to opt into.
    pub typed_percent: u32,
    /// Interval of cache upkeep (deferred cache work; the in-memory cache evicts and expires
    /// as it goes, so there is none today), a background
    /// task (see [`MaintenanceConfig::background_tasks`](crate::MaintenanceConfig::background_tasks));
    /// every maintenance run does it too. Zero disables the scheduled run. Default: 5 min.
    pub upkeep_interval: Duration,
    /// Predictive prefetching: a run of reads in key order (or a listing) reads the next
    /// keys' documents into this cache ahead of the requests, and documents learned to be read
    /// together (a game and its players; by key templates, the children `game-7-p0`… of any
    /// `game-7` of a collection, before the game's read returns) are read with the one that
    /// missed. Prefetched entries are exactly as coherent as any other. Off when the cache is
    /// (`size_mb = 0`, read-only stores, PostgreSQL without the Redis tier). Default: off —
    /// turn it on where reads come in key order or in learnable groups (BENCHMARKS.md).
    pub prefetch: bool,
    /// Most documents one sequential readahead reads (the window starts at 4, doubles while
    /// read ahead documents are used, halves for each one wasted). Default: 32.
    pub prefetch_window: usize,
    /// The share of [`size_mb`](Self::size_mb), in percent, that prefetched documents not yet
    /// read may take: no prefetch starts beyond it, so speculation never takes more of the
    /// cache than this. Default: 10.
    pub prefetch_budget_percent: u32,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            size_mb: 64,
            typed_percent: 0,
            upkeep_interval: Duration::from_secs(300),
            prefetch: false,
            prefetch_window: 32,
            prefetch_budget_percent: 10,
        }
    }
}

impl CacheConfig {
    /// Sets [`size_mb`](Self::size_mb).
    #[must_use]
    pub fn size_mb(mut self, mib: usize) -> Self {
        self.size_mb = mib;
        self
    }

    /// Sets [`typed_percent`](Self::typed_percent).
    #[must_use]
    pub fn typed_percent(mut self, percent: u32) -> Self {
        self.typed_percent = percent;
        self
    }

    /// Sets [`upkeep_interval`](Self::upkeep_interval).
    #[must_use]
    pub fn upkeep_interval(mut self, interval: Duration) -> Self {
        self.upkeep_interval = interval;
        self
    }

    /// Sets [`prefetch`](Self::prefetch).
    #[must_use]
    pub fn prefetch(mut self, on: bool) -> Self {
        self.prefetch = on;
        self
    }

    /// Sets [`prefetch_window`](Self::prefetch_window).
    #[must_use]
    pub fn prefetch_window(mut self, documents: usize) -> Self {
        self.prefetch_window = documents;
        self
    }

    /// Sets [`prefetch_budget_percent`](Self::prefetch_budget_percent).
    #[must_use]
    pub fn prefetch_budget_percent(mut self, percent: u32) -> Self {
        self.prefetch_budget_percent = percent;
        self
    }

    /// The bytes of unread prefetched entries the cache may hold
    /// ([`prefetch_budget_percent`](Self::prefetch_budget_percent) of the capacity).
    pub(crate) fn prefetch_budget_bytes(&self) -> u64 {
        self.capacity_bytes() / 100 * u64::from(self.prefetch_budget_percent.min(100))
    }

    pub(crate) fn validate(&self) -> crate::Result<()> {
        if self.prefetch_budget_percent > 100 {
            return Err(crate::StorageError::Config(format!(
                "cache.prefetch_budget_percent is {}, a share of cache.size_mb: at most 100",
                self.prefetch_budget_percent
            )));
        }
        if self.typed_percent > 100 {
            return Err(crate::StorageError::Config(format!(
                "cache.typed_percent is {}, a share of cache.size_mb: at most 100",
                self.typed_percent
            )));
        }
        Ok(())
    }

    /// [`size_mb`](Self::size_mb) in bytes.
    pub(crate) fn capacity_bytes(&self) -> u64 {
        u64::try_from(self.size_mb)
            .unwrap_or(u64::MAX)
            .saturating_mul(1024 * 1024)
    }
}

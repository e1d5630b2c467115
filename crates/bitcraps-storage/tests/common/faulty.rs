//! A backend wrapper that injects faults: failed commits, a slow first commit, panics.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bitcraps_storage::StorageError;
use bitcraps_storage::backend::sqlite::SqliteBackend;
use bitcraps_storage::backend::{Backend, OpOutcome, WriteUnit};
use bitcraps_storage::{
    ConsistencyReport, DatabaseStatistics, ListOptions, ListPage, RecordMetadata,
};

/// Delegates to SQLite; can fail or slow down `apply` on demand.
pub struct Faulty {
    pub inner: SqliteBackend,
    pub fail_writes: AtomicBool,
    pub slow_first_apply: AtomicBool,
    pub panic_on_statistics: AtomicBool,
    pub applies: AtomicUsize,
}

impl Faulty {
    pub fn new(inner: SqliteBackend) -> Self {
        Faulty {
            inner,
            fail_writes: AtomicBool::new(false),
            slow_first_apply: AtomicBool::new(false),
            panic_on_statistics: AtomicBool::new(false),
            applies: AtomicUsize::new(0),
        }
    }
}

impl Backend for Faulty {
    fn apply(
        &self,
        units: &[WriteUnit],
    ) -> bitcraps_storage::Result<Vec<bitcraps_storage::Result<Vec<OpOutcome>>>> {
        if self.applies.fetch_add(1, Ordering::SeqCst) == 0
            && self.slow_first_apply.load(Ordering::SeqCst)
        {
            // Hold the writer so that the other writers queue up behind this commit.
            std::thread::sleep(Duration::from_millis(300));
        }
        if self.fail_writes.load(Ordering::SeqCst) {
            return Err(StorageError::Io {
                path: "injected".into(),
                source: std::io::Error::other("injected write failure"),
            });
        }
        self.inner.apply(units)
    }
    fn get(
        &self,
        c: &str,
        k: &str,
    ) -> bitcraps_storage::Result<Option<bitcraps_storage::backend::StoredBlob>> {
        self.inner.get(c, k)
    }
    fn dictionaries(
        &self,
    ) -> bitcraps_storage::Result<Vec<bitcraps_storage::backend::StoredDictionary>> {
        self.inner.dictionaries()
    }
    fn metadata(&self, c: &str, k: &str) -> bitcraps_storage::Result<Option<RecordMetadata>> {
        self.inner.metadata(c, k)
    }
    fn list(&self, c: &str, o: &ListOptions) -> bitcraps_storage::Result<ListPage> {
        self.inner.list(c, o)
    }
    fn collections(&self) -> bitcraps_storage::Result<Vec<String>> {
        self.inner.collections()
    }
    fn statistics(&self) -> bitcraps_storage::Result<DatabaseStatistics> {
        if self.panic_on_statistics.load(Ordering::SeqCst) {
            panic!("injected panic in statistics");
        }
        self.inner.statistics()
    }
    fn check(&self) -> bitcraps_storage::Result<ConsistencyReport> {
        self.inner.check()
    }
    fn snapshot(
        &self,
        dest: &std::path::Path,
    ) -> bitcraps_storage::Result<bitcraps_storage::backend::SnapshotInfo> {
        self.inner.snapshot(dest)
    }
    fn checkpoint(&self) -> bitcraps_storage::Result<()> {
        self.inner.checkpoint()
    }
    fn optimize(&self) -> bitcraps_storage::Result<()> {
        self.inner.optimize()
    }
    fn vacuum(&self) -> bitcraps_storage::Result<()> {
        self.inner.vacuum()
    }
    fn repair_references(
        &self,
    ) -> bitcraps_storage::Result<bitcraps_storage::backend::RepairOutcome> {
        self.inner.repair_references()
    }
    fn close(&self) -> bitcraps_storage::Result<()> {
        self.inner.close()
    }
}

//! Fault injection through the backend seam: the library's generic
//! [`FaultInjector`](bitcraps_storage::testing::FaultInjector) (feature `testing`) over a
//! fixture's SQLite database. Failures, panics and holds are injected per method and per call;
//! a hold is a gate the test opens once the condition it waits for holds, never a sleep.

use std::sync::Arc;

use bitcraps_storage::StorageConfig;
#[allow(unused_imports)]
pub use bitcraps_storage::testing::{Fault, FaultInjector, Gate, Method, When};

/// A fault injector over the fixture's SQLite database, opened directly.
pub fn faulty_sqlite(config: &StorageConfig) -> bitcraps_storage::Result<Arc<FaultInjector>> {
    Ok(Arc::new(FaultInjector::new(Arc::new(
        super::sqlite_backend(config)?,
    ))))
}

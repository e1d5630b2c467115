//! Test support (feature `testing`, off by default and not part of the stable API): the
//! in-memory backend, the fault-injecting wrapper, and opening a store over a backend built by
//! the caller. The crate's own integration tests turn the feature on through a dev-dependency
//! on the crate itself.

pub use super::fault::{Fault, FaultInjector, Gate, HOLD_LIMIT, Method, When};
pub use super::memory::{MemoryBackend, MemoryDatabase};

use std::sync::Arc;

use super::Backend;
use crate::PersistentStorageManager;
use crate::config::StorageConfig;
use crate::error::Result;

impl PersistentStorageManager {
    /// Opens a store over a backend built by the caller (tests inject faulty backends here).
    /// Starts the background tasks when enabled, which needs a Tokio runtime.
    pub fn with_backend(config: StorageConfig, backend: Arc<dyn Backend>) -> Result<Self> {
        PersistentStorageManager::open_with(config, backend)
    }
}

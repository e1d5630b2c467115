//! Test hooks (feature `testing`): points in the store's protocols where a test runs code of
//! its own, so races are driven by conditions instead of sleeps.

use std::sync::{Arc, Mutex, PoisonError};

use super::PersistentStorageManager;

type Hook = Arc<dyn Fn() + Send + Sync>;

/// The hooks a test installed.
#[derive(Default)]
pub(crate) struct Hooks {
    before_acknowledging: Mutex<Option<Hook>>,
    before_installing: Mutex<Option<Hook>>,
}

impl Hooks {
    /// Runs the hook installed with
    /// [`PersistentStorageManager::before_acknowledging`], if any (on the writer thread).
    pub(crate) fn before_acknowledging(&self) {
        run(&self.before_acknowledging);
    }

    /// Runs the hook installed with [`PersistentStorageManager::before_installing`], if any
    /// (on the writer thread).
    pub(crate) fn before_installing(&self) {
        run(&self.before_installing);
    }
}

fn run(slot: &Mutex<Option<Hook>>) {
    let hook = slot.lock().unwrap_or_else(PoisonError::into_inner).clone();
    if let Some(hook) = hook {
        hook();
    }
}

impl PersistentStorageManager {
    /// Runs `hook` on the writer thread after every group commit, once the database, the
    /// Redis tier and this process's cache have the group's effects and before any of its
    /// callers is answered (`testing` feature). `None` removes it.
    pub fn before_acknowledging(&self, hook: Option<Arc<dyn Fn() + Send + Sync>>) {
        *self
            .shared()
            .hooks
            .before_acknowledging
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = hook;
    }

    /// Runs `hook` on the writer thread after every group commit whose transaction
    /// committed, before the Redis tier and this process's cache take its effects
    /// (`testing` feature): the database has the group, nothing else has yet. `None`
    /// removes it.
    pub fn before_installing(&self, hook: Option<Arc<dyn Fn() + Send + Sync>>) {
        *self
            .shared()
            .hooks
            .before_installing
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = hook;
    }
}

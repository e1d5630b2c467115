//! The writer's poison: a panic anywhere in the writer thread (the backend included) is
//! caught at the top of the thread, recorded, and turned into [`StorageError::Poisoned`] for
//! every caller that was waiting and every later one — never a hang (fjall's poison dart is
//! the model). The in-process cache is emptied, since the panic may have come between a
//! commit and the cache update that follows it; reads go to the database from then on.

use std::panic::AssertUnwindSafe;
use std::sync::Mutex;

use tokio::sync::watch;

use crate::error::{Result, StorageError};
use crate::store::Shared;

/// How the writer thread ended, once it has.
pub(super) struct Poison {
    exit: watch::Sender<Option<Exit>>,
    reason: Mutex<Option<String>>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Exit {
    /// The queue closed and the thread finished.
    Clean,
    /// The thread panicked.
    Panicked,
}

impl Default for Poison {
    fn default() -> Self {
        Poison {
            exit: watch::Sender::new(None),
            reason: Mutex::new(None),
        }
    }
}

impl Poison {
    /// Runs the writer loop, catching a panic and recording it.
    pub(super) fn run(&self, shared: &Shared, body: impl FnOnce(&Shared)) {
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| body(shared)));
        let exit = match outcome {
            Ok(()) => Exit::Clean,
            Err(panic) => {
                let reason = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic without a message".to_owned());
                tracing::error!(%reason, "the writer thread panicked; the store is poisoned");
                shared.cache.invalidate_all();
                if let Ok(mut slot) = self.reason.lock() {
                    *slot = Some(format!("the writer thread panicked: {reason}"));
                }
                Exit::Panicked
            }
        };
        self.exit.send_replace(Some(exit));
    }

    /// `Err(Poisoned)` once the thread has panicked.
    pub(super) fn check(&self) -> Result<()> {
        match *self.exit.borrow() {
            Some(Exit::Panicked) => Err(self.error()),
            _ => Ok(()),
        }
    }

    /// Waits until the thread has ended (a reply was dropped unanswered, so it has or is
    /// about to), and returns why: `Poisoned`, or `Closed`.
    pub(super) async fn wait(&self) -> StorageError {
        let mut exit = self.exit.subscribe();
        let ended = exit.wait_for(Option::is_some).await.map(|e| *e);
        match ended {
            Ok(Some(Exit::Panicked)) => self.error(),
            _ => StorageError::Closed,
        }
    }

    fn error(&self) -> StorageError {
        let reason = self
            .reason
            .lock()
            .ok()
            .and_then(|r| r.clone())
            .unwrap_or_else(|| "the writer thread panicked".to_owned());
        StorageError::Poisoned { reason }
    }
}

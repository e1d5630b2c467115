//! Informational notes on stderr ("demo store: …", "more keys follow", summaries), which
//! `--quiet` silences. Errors and the recovery advice of a failed command are not notes:
//! they are always printed.

use std::sync::atomic::{AtomicBool, Ordering};

/// Set once from `--quiet`, before any command runs.
static QUIET: AtomicBool = AtomicBool::new(false);

/// Silences notes (and, through [`crate::progress::Ui::new`], progress bars) for this run.
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

/// Whether notes are silenced.
pub fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// `eprintln!` for a note: nothing with `--quiet`.
macro_rules! note {
    ($($arg:tt)*) => {
        if !$crate::notes::quiet() {
            eprintln!($($arg)*);
        }
    };
}
pub(crate) use note;

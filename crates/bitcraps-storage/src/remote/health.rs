//! Health of the Redis connection: a circuit breaker with exponential backoff, so a dead Redis
//! costs at most one timeout per backoff period instead of one per operation.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// First pause after a failure.
pub(crate) const MIN_BACKOFF: Duration = Duration::from_millis(50);
/// Longest pause between attempts.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(2);

#[derive(Debug)]
struct State {
    open_until: Option<Instant>,
    backoff: Duration,
}

/// A circuit breaker: closed (operations allowed) until a failure opens it for the current
/// backoff, which doubles with each consecutive failure and resets on success. When the
/// backoff has passed, one operation is let through as a probe (half-open) while the others
/// are still refused, so a dead Redis costs one timeout per backoff period, not one per
/// concurrent caller.
#[derive(Debug)]
pub(crate) struct Breaker {
    state: Mutex<State>,
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker {
            state: Mutex::new(State {
                open_until: None,
                backoff: MIN_BACKOFF,
            }),
        }
    }
}

impl Breaker {
    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        match self.state.lock() {
            Ok(mut g) => f(&mut g),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    /// Whether an operation may try Redis now (claiming the probe when half-open).
    pub(crate) fn allows(&self) -> bool {
        self.with(|s| match s.open_until {
            None => true,
            Some(t) => {
                let now = Instant::now();
                if now < t {
                    return false;
                }
                // The probe: others wait until it succeeds or another backoff passes.
                s.open_until = Some(now + s.backoff);
                true
            }
        })
    }

    /// An operation succeeded: close the breaker.
    pub(crate) fn success(&self) {
        self.with(|s| {
            s.open_until = None;
            s.backoff = MIN_BACKOFF;
        });
    }

    /// An operation failed: open the breaker for the current backoff, and double it.
    pub(crate) fn failure(&self) {
        self.with(|s| {
            s.open_until = Some(Instant::now() + s.backoff);
            s.backoff = (s.backoff * 2).min(MAX_BACKOFF);
        });
    }
}

/// Exponential backoff for reconnect loops.
#[derive(Debug)]
pub(crate) struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { next: MIN_BACKOFF }
    }
}

impl Backoff {
    /// The pause before the next attempt (doubling up to [`MAX_BACKOFF`]).
    pub(crate) fn next_pause(&mut self) -> Duration {
        let pause = self.next;
        self.next = (self.next * 2).min(MAX_BACKOFF);
        pause
    }

    /// An attempt succeeded.
    pub(crate) fn reset(&mut self) {
        self.next = MIN_BACKOFF;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breaker_opens_on_failure_and_closes_on_success() {
        let b = Breaker::default();
        assert!(b.allows());
        b.failure();
        assert!(!b.allows(), "open right after a failure");
        b.success();
        assert!(b.allows());
        assert!(b.allows(), "closed: everyone may try");
    }

    #[test]
    fn half_open_lets_one_probe_through() {
        let b = Breaker::default();
        b.failure();
        // Expire the open period without sleeping.
        b.with(|s| s.open_until = Some(Instant::now()));
        assert!(b.allows(), "the probe");
        assert!(!b.allows(), "everyone else waits for the probe");
        b.failure();
        assert!(!b.allows());
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let mut b = Backoff::default();
        assert_eq!(b.next_pause(), MIN_BACKOFF);
        assert_eq!(b.next_pause(), MIN_BACKOFF * 2);
        for _ in 0..20 {
            b.next_pause();
        }
        assert_eq!(b.next_pause(), MAX_BACKOFF);
        b.reset();
        assert_eq!(b.next_pause(), MIN_BACKOFF);
    }
}

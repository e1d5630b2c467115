//! Nonces for AES-256-GCM-SIV from a per-thread pool of the operating system generator's
//! bytes: one `getrandom` call of 480 bytes serves 40 nonces, where one call a nonce cost
//! ~0.31 µs on the benchmark's machine, as much as sealing a document.
//!
//! The bytes are the operating system's as before, each handed out once per process. A
//! process that forks hands the rest of its pool to the child too, so parent and child may
//! each seal a message under the same nonce: for AES-256-GCM-SIV that reveals only whether
//! the two messages and their bindings are equal (RFC 8452's nonce-misuse resistance,
//! `envelope.rs`), which is why only this suite takes its nonces here. XChaCha20-Poly1305,
//! which a repeated nonce would break, keeps one `getrandom` call per nonce.

use std::cell::RefCell;

use super::key::fill_random;
use crate::error::{Result, StorageError};

/// Bytes fetched at a time: 40 nonces of 12 bytes.
const POOL_LEN: usize = 480;

struct Pool {
    bytes: [u8; POOL_LEN],
    /// Bytes from the start already handed out.
    used: usize,
}

thread_local! {
    static POOL: RefCell<Pool> = const {
        RefCell::new(Pool {
            bytes: [0; POOL_LEN],
            used: POOL_LEN,
        })
    };
}

/// Fills `nonce` (at most [`POOL_LEN`] bytes) with random bytes from this thread's pool,
/// refilling it from the operating system when it runs out.
pub(crate) fn fill_siv_nonce(nonce: &mut [u8]) -> Result<()> {
    POOL.with_borrow_mut(|pool| {
        let end = pool.used.saturating_add(nonce.len());
        let (start, end) = if end > POOL_LEN {
            fill_random(&mut pool.bytes)?;
            (0, nonce.len())
        } else {
            (pool.used, end)
        };
        let fresh = pool.bytes.get_mut(start..end).ok_or_else(|| {
            StorageError::Task(format!("a nonce of {} bytes is too long", nonce.len()))
        })?;
        nonce.copy_from_slice(fresh);
        // Handed out once: the pool never holds a nonce already in use.
        fresh.fill(0);
        pool.used = end;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn nonces_are_distinct_across_refills() -> Result<()> {
        let mut seen = HashSet::new();
        for _ in 0..(3 * POOL_LEN / 12 + 7) {
            let mut nonce = [0u8; 12];
            fill_siv_nonce(&mut nonce)?;
            assert_ne!(nonce, [0; 12]);
            assert!(seen.insert(nonce), "nonce {nonce:?} handed out twice");
        }
        Ok(())
    }

    #[test]
    fn each_thread_has_its_own_pool() -> Result<()> {
        let theirs = std::thread::spawn(|| {
            let mut n = [0u8; 12];
            fill_siv_nonce(&mut n).map(|()| n)
        })
        .join()
        .map_err(|_| StorageError::Task("the thread panicked".into()))??;
        let mut ours = [0u8; 12];
        fill_siv_nonce(&mut ours)?;
        assert_ne!(ours, theirs);
        Ok(())
    }

    #[test]
    fn a_nonce_longer_than_the_pool_is_an_error() {
        let mut long = [0u8; POOL_LEN + 1];
        assert!(fill_siv_nonce(&mut long).is_err());
    }
}

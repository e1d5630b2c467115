//! Authentication of everything the Redis tier reads back: L2 entries and invalidation
//! messages carry a keyed blake3 MAC. Redis is outside the trust boundary, so whoever can
//! write to it must not be able to make a node serve a document the database does not hold.
//!
//! The key is derived from the store's secret (`meta.redis_secret`, created with the schema
//! and read by every node; `backend/identity.rs`) and the namespace. Each MAC covers a domain
//! tag and length-prefixed fields, so no field can be shifted into another:
//! - an entry: namespace, cache key (`collection` NUL `key`), the key's generation when it
//!   was filled, the fill time and the document;
//! - a message: namespace, the origin node and every key.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The blake3 `derive_key` context of the MAC key.
const KEY_CONTEXT: &str = "bitcraps-storage 2026-12 redis tier mac key v1";

/// A 32-byte MAC.
pub(crate) type Mac = [u8; 32];

/// The MAC key of one store and namespace.
#[derive(Clone)]
pub(crate) struct Authenticator {
    key: [u8; 32],
    namespace: String,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

fn field(hasher: &mut blake3::Hasher, bytes: &[u8]) {
    hasher.update(&u64::try_from(bytes.len()).unwrap_or(u64::MAX).to_be_bytes());
    hasher.update(bytes);
}

impl Authenticator {
    pub(crate) fn new(secret: &[u8; 32], namespace: &str) -> Self {
        let mut material = Vec::with_capacity(32 + namespace.len());
        material.extend_from_slice(secret);
        material.extend_from_slice(namespace.as_bytes());
        Authenticator {
            key: blake3::derive_key(KEY_CONTEXT, &material),
            namespace: namespace.to_owned(),
        }
    }

    fn hasher(&self, domain: &[u8]) -> blake3::Hasher {
        let mut hasher = blake3::Hasher::new_keyed(&self.key);
        field(&mut hasher, domain);
        field(&mut hasher, self.namespace.as_bytes());
        hasher
    }

    /// The MAC of an L2 entry.
    pub(crate) fn entry(
        &self,
        cache_key: &str,
        generation: &str,
        (filled_ms, expires_ms): (u64, i64),
        doc: &[u8],
    ) -> Mac {
        let mut hasher = self.hasher(b"entry");
        field(&mut hasher, cache_key.as_bytes());
        field(&mut hasher, generation.as_bytes());
        hasher.update(&filled_ms.to_be_bytes());
        hasher.update(&expires_ms.to_be_bytes());
        field(&mut hasher, doc);
        *hasher.finalize().as_bytes()
    }

    /// The MAC of an invalidation message.
    pub(crate) fn message(&self, origin: &str, keys: &[String]) -> Mac {
        let mut hasher = self.hasher(b"message");
        field(&mut hasher, origin.as_bytes());
        hasher.update(&u64::try_from(keys.len()).unwrap_or(u64::MAX).to_be_bytes());
        for key in keys {
            field(&mut hasher, key.as_bytes());
        }
        *hasher.finalize().as_bytes()
    }
}

/// Compares MACs in constant time (blake3's `Hash` equality is constant-time).
pub(crate) fn mac_eq(a: &Mac, b: &Mac) -> bool {
    blake3::Hash::from_bytes(*a) == blake3::Hash::from_bytes(*b)
}

/// Milliseconds since 1970 by this machine's clock.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or_default()
}

/// Lets a warning through at most once per interval, so a flood of hostile input cannot
/// flood the log as well (the counters still count every one).
#[derive(Debug, Default)]
pub(crate) struct LogLimit {
    last_ms: AtomicU64,
}

impl LogLimit {
    pub(crate) const INTERVAL: Duration = Duration::from_secs(60);

    /// Whether to log now.
    pub(crate) fn allow(&self) -> bool {
        let now = now_ms();
        let interval = u64::try_from(Self::INTERVAL.as_millis()).unwrap_or(u64::MAX);
        let last = self.last_ms.load(Ordering::Relaxed);
        (last == 0 || now.saturating_sub(last) >= interval)
            && self
                .last_ms
                .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_bind_every_field() {
        let a = Authenticator::new(&[1; 32], "ns");
        let base = a.entry("c\0k", "7", (5, 9), b"doc");
        assert!(mac_eq(&base, &a.entry("c\0k", "7", (5, 9), b"doc")));
        for other in [
            a.entry("c\0j", "7", (5, 9), b"doc"),
            a.entry("c\0k", "8", (5, 9), b"doc"),
            a.entry("c\0k", "7", (6, 9), b"doc"),
            a.entry("c\0k", "7", (5, 10), b"doc"),
            a.entry("c\0k", "7", (5, 9), b"dog"),
            Authenticator::new(&[2; 32], "ns").entry("c\0k", "7", (5, 9), b"doc"),
            Authenticator::new(&[1; 32], "other").entry("c\0k", "7", (5, 9), b"doc"),
        ] {
            assert!(!mac_eq(&base, &other));
        }
        let keys = vec!["a".to_owned(), "b".to_owned()];
        let joined = vec!["ab".to_owned()];
        assert!(!mac_eq(&a.message("n", &keys), &a.message("n", &joined)));
    }

    #[test]
    fn the_log_limit_lets_one_through_per_interval() {
        let limit = LogLimit::default();
        assert!(limit.allow());
        assert!(!limit.allow());
    }
}

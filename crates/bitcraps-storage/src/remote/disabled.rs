//! The stand-in for [`RemoteTier`] when the `redis` feature is off: it cannot be constructed,
//! so every method is unreachable and `Shared::remote` is always `None`.

use super::stats::RemoteCacheStatistics;
use super::{Lookup, Observed};

/// Uninhabited: no Redis tier in this build.
pub(crate) enum RemoteTier {}

impl RemoteTier {
    pub(crate) async fn lookup(&self, _cache_key: &str) -> Lookup {
        match *self {}
    }

    pub(crate) async fn fill(&self, _cache_key: &str, _observed: Observed, _raw: &[u8]) {
        match *self {}
    }

    pub(crate) fn invalidate_after_commit(&self, _keys: Vec<String>) {
        match *self {}
    }

    pub(crate) async fn statistics(&self) -> RemoteCacheStatistics {
        match *self {}
    }

    pub(crate) fn shutdown(&self) {
        match *self {}
    }
}

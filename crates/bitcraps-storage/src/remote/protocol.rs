//! The L2 coherence protocol: Redis key layout, the three Lua scripts, the entry format and the
//! invalidation message. Pure data and scripts; no I/O here.
//!
//! Per store (namespace `NS`), in one Redis database:
//! - `NS:epoch` — a random token, created (atomically, in [`LOOKUP`]) by the first lookup that
//!   finds it missing, with the generation TTL so abandoned namespaces disappear. A Redis
//!   restart (without persistence) or its expiry replaces it, so a fill prepared before can
//!   never land after; values do not depend on it.
//! - `NS:gen:<cache key>` — the key's generation: bumped by every committed write or delete,
//!   kept for [`GENERATION_TTL_FACTOR`] × the value TTL after the last write.
//! - `NS:val:<cache key>` — the cached document: blake3 (32 bytes) then the JSON bytes, with
//!   the value TTL. Only readers install it, and only through [`FILL`], which checks that
//!   epoch and generation are still what the reader saw *before* it read the database. The
//!   writer never installs values (two writers' post-commit steps can arrive out of order);
//!   it only bumps generations and deletes values ([`INVALIDATE`]).
//! - channel `NS:invalidate` — [`Message`]s naming the node that wrote and the keys.
//!
//! The cache key is `collection` NUL `key`, as in the in-process cache.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Generations outlive values by this factor, so a value can never outlive the generation it
/// was filled under (documented on `RedisConfig::cache_ttl`).
pub(crate) const GENERATION_TTL_FACTOR: u32 = 10;

/// Documents larger than this are not put in L2: one would take long enough to transfer to
/// trip `redis.timeout` (and the circuit breaker) for everyone.
pub(crate) const MAX_ENTRY_BYTES: usize = 1024 * 1024;

/// One invalidation script call covers at most this many keys (a large `store_batch` is
/// split, each part with its own deadline).
pub(crate) const INVALIDATE_CHUNK: usize = 512;

/// Length of the hash that prefixes a cached document.
const HASH_LEN: usize = 32;

/// Reads epoch (creating it when missing), generation and value in one round trip.
/// KEYS: epoch, gen, val. ARGV: a fresh epoch token to use if there is none, its TTL in ms.
/// Returns `{epoch, gen or "", val or nil}`.
pub(crate) const LOOKUP: &str = r"
local e = redis.call('GET', KEYS[1])
if not e then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  e = ARGV[1]
end
local g = redis.call('GET', KEYS[2]) or ''
return {e, g, redis.call('GET', KEYS[3])}
";

/// Installs a value only if epoch and generation are unchanged since the lookup.
/// KEYS: epoch, gen, val. ARGV: epoch seen, generation seen, entry, TTL in ms.
/// Returns 1 when installed, 0 when a write or a restart intervened.
pub(crate) const FILL: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] and (redis.call('GET', KEYS[2]) or '') == ARGV[2] then
  redis.call('SET', KEYS[3], ARGV[3], 'PX', ARGV[4])
  return 1
end
return 0
";

/// After a commit: for each key bump the generation and delete the value, then publish.
/// KEYS: gen1, val1, gen2, val2, ... ARGV: generation TTL in ms, channel, message.
///
/// Deviation from a plain `INCR`: the new generation is `max(old + 1, server time in µs)`.
/// With `INCR`, a generation that expired and was re-created would count up from 1 again and
/// could repeat a value a slow reader saw before the expiry (ABA), letting its stale fill
/// through; the server clock makes a re-created generation larger than any earlier one.
/// (Values below 2^53 are exact in Lua's doubles; µs since 1970 are ~2^51.)
/// `redis.replicate_commands()` is a no-op on Redis 5+ and lets 3.2–4 write after `TIME`.
pub(crate) const INVALIDATE: &str = r"
redis.replicate_commands()
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
for i = 1, #KEYS, 2 do
  local g = tonumber(redis.call('GET', KEYS[i]) or '0') or 0
  local n = now
  if n <= g then n = g + 1 end
  redis.call('SET', KEYS[i], string.format('%.0f', n), 'PX', ARGV[1])
  redis.call('DEL', KEYS[i + 1])
end
redis.call('PUBLISH', ARGV[2], ARGV[3])
return #KEYS / 2
";

/// The Redis names of one store.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    namespace: String,
}

impl Keys {
    pub(crate) fn new(namespace: &str) -> Self {
        Keys {
            namespace: namespace.to_owned(),
        }
    }

    pub(crate) fn epoch(&self) -> String {
        format!("{}:epoch", self.namespace)
    }

    pub(crate) fn generation(&self, cache_key: &str) -> String {
        format!("{}:gen:{cache_key}", self.namespace)
    }

    pub(crate) fn value(&self, cache_key: &str) -> String {
        format!("{}:val:{cache_key}", self.namespace)
    }

    pub(crate) fn channel(&self) -> String {
        format!("{}:invalidate", self.namespace)
    }
}

/// Encodes a verified document for L2: its blake3, then the bytes.
pub(crate) fn encode_entry(raw: &[u8]) -> Vec<u8> {
    let mut entry = Vec::with_capacity(HASH_LEN + raw.len());
    entry.extend_from_slice(blake3::hash(raw).as_bytes());
    entry.extend_from_slice(raw);
    entry
}

/// The document inside an L2 entry, or `None` when the entry is damaged (too short or the hash
/// does not match). Never panics on any input.
pub(crate) fn decode_entry(entry: &[u8]) -> Option<&[u8]> {
    let (hash, raw) = entry.split_at_checked(HASH_LEN)?;
    (blake3::hash(raw).as_bytes().as_slice() == hash).then_some(raw)
}

/// An invalidation announcement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Message {
    /// The node that committed the writes (its own messages are ignored).
    pub(crate) origin: String,
    /// The cache keys written or deleted.
    pub(crate) keys: Vec<String>,
}

impl Message {
    pub(crate) fn encode(&self) -> Vec<u8> {
        // Serializing strings to JSON cannot fail; an empty payload would only be ignored.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// `None` for anything that is not a message of this protocol.
    pub(crate) fn decode(payload: &[u8]) -> Option<Self> {
        serde_json::from_slice(payload).ok()
    }
}

/// A token unique to this process and call (node ids, epochs): blake3 of the time, the process
/// id and a counter, in hex. Not secret, only distinct.
pub(crate) fn unique_token() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = blake3::Hasher::new();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    hasher.update(&nanos.to_le_bytes());
    hasher.update(&std::process::id().to_le_bytes());
    hasher.update(&COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    let hex = hasher.finalize().to_hex();
    hex.as_str().get(..24).unwrap_or(hex.as_str()).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_verify_and_damage_is_a_miss() {
        let entry = encode_entry(br#"{"a":1}"#);
        assert_eq!(decode_entry(&entry), Some(&br#"{"a":1}"#[..]));
        let mut damaged = entry.clone();
        if let Some(last) = damaged.last_mut() {
            *last ^= 1;
        }
        assert_eq!(decode_entry(&damaged), None);
        assert_eq!(decode_entry(b"garbage"), None);
        assert_eq!(decode_entry(b""), None);
    }

    #[test]
    fn messages_round_trip_and_junk_is_ignored() {
        let m = Message {
            origin: "n1".into(),
            keys: vec!["games\0g-1".into()],
        };
        assert_eq!(Message::decode(&m.encode()), Some(m));
        assert_eq!(Message::decode(b"junk"), None);
    }

    #[test]
    fn names_are_namespaced_and_tokens_distinct() {
        let k = Keys::new("ns");
        assert_eq!(k.epoch(), "ns:epoch");
        assert_eq!(k.generation("c\0k"), "ns:gen:c\0k");
        assert_eq!(k.value("c\0k"), "ns:val:c\0k");
        assert_eq!(k.channel(), "ns:invalidate");
        assert_ne!(unique_token(), unique_token());
    }
}

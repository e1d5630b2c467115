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
//! - `NS:val:<cache key>` — the cached document, authenticated ([`encode_entry`]): a version
//!   byte, the fill time (ms, big-endian u64), when the record expires (ms since the epoch,
//!   big-endian i64, `i64::MAX` for never: a reader hides an entry past it, exactly as a
//!   database row), the generation it was filled under (a length
//!   byte and the digits), the MAC (32 bytes, `auth.rs`) and the JSON bytes, with the value
//!   TTL. A reader serves it only if the MAC verifies for this key, its generation is the
//!   key's current one and it is not older than the TTL ([`check_entry`]). Only readers install it, and only through [`FILL`], which checks that
//!   epoch and generation are still what the reader saw *before* it read the database. The
//!   writer never installs values (two writers' post-commit steps can arrive out of order);
//!   it only bumps generations and deletes values ([`INVALIDATE`]).
//! - channel `NS:invalidate` — [`Message`]s naming the node that wrote and the keys, with a
//!   MAC; unauthenticated ones are dropped.
//!
//! The cache key is `collection` NUL `key`, as in the in-process cache.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::auth::{Authenticator, Mac, mac_eq};

/// Generations outlive values by this factor, so a value can never outlive the generation it
/// was filled under (documented on `RedisConfig::cache_ttl`).
pub(crate) const GENERATION_TTL_FACTOR: u32 = 10;

/// Documents larger than this are not put in L2: one would take long enough to transfer to
/// trip `redis.timeout` (and the circuit breaker) for everyone.
pub(crate) const MAX_ENTRY_BYTES: usize = 1024 * 1024;

/// One invalidation script call covers at most this many keys (a large `store_batch` is
/// split, each part with its own deadline).
pub(crate) const INVALIDATE_CHUNK: usize = 512;

/// Length of an entry's MAC.
const MAC_LEN: usize = 32;

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

    /// The `SCAN MATCH` pattern of every value key (glob characters of the namespace escaped).
    pub(crate) fn value_pattern(&self) -> String {
        let mut pattern = String::with_capacity(self.namespace.len() + 8);
        for c in self.namespace.chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        pattern.push_str(":val:*");
        pattern
    }
}

/// First byte of an entry: the format version (0xB2 added the expiry; 0xB1 entries are
/// malformed to this build, a miss that the reader's fill replaces).
const ENTRY_VERSION: u8 = 0xB2;

/// The expiry field of a record that never expires.
const NEVER: i64 = i64::MAX;

/// Entries filled longer ago than the value TTL plus this slack (clock differences between
/// nodes) are rejected: a genuine one would have expired in Redis.
pub(crate) const ENTRY_AGE_SLACK_MS: u64 = 60_000;

/// Encodes a verified document for L2, authenticated for `cache_key` at `generation` (the
/// one the filling reader observed), filled at `filled_ms`.
pub(crate) fn encode_entry(
    auth: &Authenticator,
    cache_key: &str,
    generation: &str,
    filled_ms: u64,
    expires_ms: Option<i64>,
    raw: &[u8],
) -> Option<Vec<u8>> {
    let gen_len = u8::try_from(generation.len()).ok()?;
    let expires = expires_ms.unwrap_or(NEVER);
    let mac = auth.entry(cache_key, generation, (filled_ms, expires), raw);
    let mut entry = Vec::with_capacity(1 + 8 + 8 + 1 + generation.len() + MAC_LEN + raw.len());
    entry.push(ENTRY_VERSION);
    entry.extend_from_slice(&filled_ms.to_be_bytes());
    entry.extend_from_slice(&expires.to_be_bytes());
    entry.push(gen_len);
    entry.extend_from_slice(generation.as_bytes());
    entry.extend_from_slice(&mac);
    entry.extend_from_slice(raw);
    Some(entry)
}

/// What an L2 entry turned out to be.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum EntryCheck<'a> {
    /// Authentic, for this key at its current generation, and recent: the document, when
    /// the record expires (the caller hides it from then on), and when the entry was filled
    /// (milliseconds since the epoch: when its document was read from the database).
    Valid(&'a [u8], Option<i64>, u64),
    /// Not an entry of this format (damaged, or written by something else).
    Malformed,
    /// Well-formed but not to be served: the reason.
    Rejected(&'static str),
}

/// Checks an entry read under `cache_key` whose generation in Redis is `current_generation`.
/// Never panics on any input.
pub(crate) fn check_entry<'a>(
    auth: &Authenticator,
    cache_key: &str,
    current_generation: &str,
    now_ms: u64,
    max_age_ms: u64,
    entry: &'a [u8],
) -> EntryCheck<'a> {
    let Some(parsed) = parse_entry(entry) else {
        return EntryCheck::Malformed;
    };
    let (filled_ms, expires, generation, mac, raw) = parsed;
    if !mac_eq(
        &mac,
        &auth.entry(cache_key, generation, (filled_ms, expires), raw),
    ) {
        return EntryCheck::Rejected(
            "its MAC does not verify (forged, or copied from another key)",
        );
    }
    if generation != current_generation {
        return EntryCheck::Rejected("it was filled under an older generation of the key");
    }
    if now_ms.saturating_sub(filled_ms) > max_age_ms.saturating_add(ENTRY_AGE_SLACK_MS) {
        return EntryCheck::Rejected("it is older than the value TTL (replayed)");
    }
    EntryCheck::Valid(raw, Some(expires).filter(|e| *e != NEVER), filled_ms)
}

/// (fill time, expiry, generation, MAC, document), or `None`.
fn parse_entry(entry: &[u8]) -> Option<(u64, i64, &str, Mac, &[u8])> {
    let (&version, rest) = entry.split_first()?;
    if version != ENTRY_VERSION {
        return None;
    }
    let (filled, rest) = rest.split_first_chunk::<8>()?;
    let (expires, rest) = rest.split_first_chunk::<8>()?;
    let (&gen_len, rest) = rest.split_first()?;
    let (generation, rest) = rest.split_at_checked(usize::from(gen_len))?;
    let generation = std::str::from_utf8(generation).ok()?;
    let (mac, raw) = rest.split_first_chunk::<MAC_LEN>()?;
    Some((
        u64::from_be_bytes(*filled),
        i64::from_be_bytes(*expires),
        generation,
        *mac,
        raw,
    ))
}

/// An invalidation announcement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Message {
    /// The node that committed the writes (its own messages are ignored).
    pub(crate) origin: String,
    /// The cache keys written or deleted.
    pub(crate) keys: Vec<String>,
}

/// A message on the wire: the message and its MAC in hex.
#[derive(Serialize, Deserialize)]
struct Wire {
    origin: String,
    keys: Vec<String>,
    mac: String,
}

impl Message {
    pub(crate) fn encode(&self, auth: &Authenticator) -> Vec<u8> {
        let mac = blake3::Hash::from_bytes(auth.message(&self.origin, &self.keys));
        let wire = Wire {
            origin: self.origin.clone(),
            keys: self.keys.clone(),
            mac: mac.to_hex().to_string(),
        };
        // Serializing strings to JSON cannot fail; an empty payload would only be rejected.
        serde_json::to_vec(&wire).unwrap_or_default()
    }

    /// `None` for anything that is not an authentic message of this protocol and store.
    pub(crate) fn decode(auth: &Authenticator, payload: &[u8]) -> Option<Self> {
        let wire: Wire = serde_json::from_slice(payload).ok()?;
        let mac = blake3::Hash::from_hex(wire.mac.as_bytes()).ok()?;
        mac_eq(mac.as_bytes(), &auth.message(&wire.origin, &wire.keys)).then_some(Message {
            origin: wire.origin,
            keys: wire.keys,
        })
    }
}

/// The namespace of a store without a configured one: `bitcraps:` and 16 hex digits of blake3
/// of its store id, so every node of one database agrees whatever its URL text.
pub(crate) fn namespace_for(store_id: &str) -> String {
    let hash = blake3::hash(store_id.as_bytes()).to_hex();
    format!(
        "bitcraps:{}",
        hash.as_str().get(..16).unwrap_or(hash.as_str())
    )
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

    fn auth() -> Authenticator {
        Authenticator::new(&[9; 32], "ns")
    }

    fn entry(key: &str, generation: &str, filled_ms: u64, raw: &[u8]) -> Vec<u8> {
        encode_entry(&auth(), key, generation, filled_ms, None, raw).unwrap_or_default()
    }

    #[test]
    fn entries_verify_and_damage_is_a_miss() {
        fn check(e: &[u8]) -> EntryCheck<'_> {
            check_entry(&auth(), "c\0k", "7", 1_000, 600_000, e)
        }
        let good = entry("c\0k", "7", 1_000, br#"{"a":1}"#);
        assert_eq!(
            check(&good),
            EntryCheck::Valid(&br#"{"a":1}"#[..], None, 1_000)
        );
        let expiring = encode_entry(&auth(), "c\0k", "7", 1_000, Some(5_000), b"{}");
        assert_eq!(
            check(&expiring.unwrap_or_default()),
            EntryCheck::Valid(&b"{}"[..], Some(5_000), 1_000)
        );
        let mut damaged = good.clone();
        if let Some(last) = damaged.last_mut() {
            *last ^= 1;
        }
        assert!(matches!(check(&damaged), EntryCheck::Rejected(_)));
        for junk in [&b"garbage"[..], b"", &good[..12]] {
            assert_eq!(check(junk), EntryCheck::Malformed);
        }
    }

    /// What an attacker with Redis access can write: the old format (`blake3(doc) || doc`),
    /// another key's entry, an older generation's entry, or a very old one.
    #[test]
    fn hostile_entries_are_rejected() {
        let doc = br#"{"forged":true}"#;
        let mut old_format = blake3::hash(doc).as_bytes().to_vec();
        old_format.extend_from_slice(doc);
        fn check(e: &[u8]) -> EntryCheck<'_> {
            check_entry(&auth(), "c\0k", "7", 1_000_000, 600_000, e)
        }
        assert_eq!(check(&old_format), EntryCheck::Malformed);
        for hostile in [
            entry("c\0other", "7", 1_000_000, doc),
            entry("c\0k", "6", 1_000_000, doc),
            entry("c\0k", "7", 1, doc),
            encode_entry(
                &Authenticator::new(&[8; 32], "ns"),
                "c\0k",
                "7",
                1_000_000,
                None,
                doc,
            )
            .unwrap_or_default(),
            expiry_moved(),
        ] {
            assert!(
                matches!(check(&hostile), EntryCheck::Rejected(_)),
                "{hostile:?}"
            );
        }
    }

    /// An attacker who moves an entry's expiry later (to serve an expired record) breaks
    /// its MAC: the expiry is authenticated with the document.
    fn expiry_moved() -> Vec<u8> {
        let mut entry = encode_entry(
            &auth(),
            "c\0k",
            "7",
            1_000_000,
            Some(1_000),
            br#"{"seat":1}"#,
        )
        .unwrap_or_default();
        // The expiry's eight bytes follow the version byte and the fill time.
        if let Some(field) = entry.get_mut(9..17) {
            field.copy_from_slice(&i64::MAX.to_be_bytes());
        }
        entry
    }

    #[test]
    fn messages_round_trip_and_forgeries_are_dropped() {
        let m = Message {
            origin: "n1".into(),
            keys: vec!["games\0g-1".into()],
        };
        assert_eq!(
            Message::decode(&auth(), &m.encode(&auth())),
            Some(m.clone())
        );
        assert_eq!(Message::decode(&auth(), b"junk"), None);
        let unsigned = br#"{"origin":"n1","keys":["games\u0000g-1"]}"#;
        assert_eq!(Message::decode(&auth(), unsigned), None);
        let other = Authenticator::new(&[8; 32], "ns");
        assert_eq!(Message::decode(&auth(), &m.encode(&other)), None);
    }

    #[test]
    fn the_namespace_depends_on_the_store_id_only() {
        assert_eq!(namespace_for("a"), namespace_for("a"));
        assert_ne!(namespace_for("a"), namespace_for("b"));
        assert!(namespace_for("a").starts_with("bitcraps:"));
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

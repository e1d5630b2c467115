//! Counting this store's entries in Redis: how many values its namespace holds and their
//! bytes, for [`RemoteCacheStatistics`](super::RemoteCacheStatistics) and the
//! `bitcraps_storage_cache_entries`/`_cache_bytes{tier="l2"}` gauges.
//!
//! Redis keeps no per-prefix counts, so the census walks the namespace with `SCAN` in steps of
//! [`STEP`] keys, each step one script that also sums the values' lengths on the server (one
//! round trip per step, no value crosses the network). It runs when statistics are taken, is
//! bounded in steps and time, and is approximate while Redis rehashes (`SCAN` may then return
//! a key twice).

use std::time::{Duration, Instant};

use redis::{RedisResult, Script};

use super::client::Connection;
use super::protocol::Keys;

/// Keys examined per step.
const STEP: u32 = 1000;

/// At most this many steps (ten million keys): past it the census gives up.
const MAX_STEPS: u32 = 10_000;

/// One `SCAN` step: the next cursor, the keys found and the sum of their values' lengths.
const SCAN_STEP: &str = r"
local reply = redis.call('SCAN', ARGV[1], 'MATCH', ARGV[2], 'COUNT', ARGV[3])
local bytes = 0
for _, key in ipairs(reply[2]) do
  bytes = bytes + redis.call('STRLEN', key)
end
return {reply[1], #reply[2], bytes}
";

/// Entries and bytes of the namespace's values; `None` when the walk took longer than
/// `budget` or [`MAX_STEPS`].
pub(crate) async fn count(
    conn: &Connection,
    keys: &Keys,
    budget: Duration,
) -> RedisResult<Option<(u64, u64)>> {
    let script = Script::new(SCAN_STEP);
    let pattern = keys.value_pattern();
    let started = Instant::now();
    let mut cursor = String::from("0");
    let (mut entries, mut bytes) = (0u64, 0u64);
    let mut redis = conn.get().await?;
    for _ in 0..MAX_STEPS {
        let (next, found, size): (String, u64, u64) = script
            .arg(&cursor)
            .arg(&pattern)
            .arg(STEP)
            .invoke_async(&mut redis)
            .await?;
        entries = entries.saturating_add(found);
        bytes = bytes.saturating_add(size);
        if next == "0" {
            return Ok(Some((entries, bytes)));
        }
        if started.elapsed() > budget {
            return Ok(None);
        }
        cursor = next;
    }
    Ok(None)
}

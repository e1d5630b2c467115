//! Unit tests of the value cache: coherence, collisions, single-flight loads.

use std::sync::Arc;

use super::*;

fn v(key: &str, bytes: &[u8]) -> CachedValue {
    CachedValue::plain(key, bytes)
}

/// The cached document under `key`, decoded (counts a hit or miss like `get`).
fn raw(cache: &ValueCache, key: &str) -> Option<Vec<u8>> {
    cache
        .get(key, 0)
        .map(|c| c.decode(|| key.to_owned()).map(|r| r.into_owned()))
        .transpose()
        .ok()
        .flatten()
}

#[test]
fn an_entry_in_a_slot_is_found_only_by_its_own_key() {
    // A hash collision, staged: key b's slot holds key a's entry.
    let cache = ValueCache::new(1 << 20);
    let (a, b) = (cache_key("c", "a"), cache_key("c", "b"));
    cache.fill(cache.stripes.ticket(&b), v(&a, b"a's document"), &b);
    assert_eq!(raw(&cache, &b), None, "another key's entry is a miss");
    assert!(!cache.contains(&b, 0));
    assert_eq!(raw(&cache, &a), None, "a's own slot is empty");
    cache.committed(&b, Some(v(&b, b"b's document")));
    assert_eq!(raw(&cache, &b), Some(b"b's document".to_vec()));
    assert_eq!(cache.statistics().misses, 2);
}

#[test]
fn a_discarded_entry_is_gone_and_older_fills_lose() {
    let cache = ValueCache::new(1 << 20);
    let key = cache_key("c", "k");
    let ticket = cache.stripes.ticket(&key);
    cache.committed(&key, Some(v(&key, b"undecodable")));
    cache.discard(&key);
    assert_eq!(raw(&cache, &key), None);
    cache.fill(ticket, v(&key, b"read before the discard"), &key);
    assert_eq!(raw(&cache, &key), None);
    cache.fill(cache.stripes.ticket(&key), v(&key, b"fresh"), &key);
    assert_eq!(raw(&cache, &key), Some(b"fresh".to_vec()));
}

#[test]
fn fill_after_racing_write_is_dropped() {
    let cache = ValueCache::new(1 << 20);
    let key = cache_key("c", "k");
    let ticket = cache.stripes.ticket(&key);
    // A write commits between the reader's database read and its fill.
    cache.committed(&key, Some(v(&key, b"new")));
    cache.fill(ticket, v(&key, b"old"), &key);
    assert_eq!(raw(&cache, &key), Some(b"new".to_vec()));
    assert_eq!(cache.statistics().raced_fills, 1);
    // A delete also invalidates, and a stale fill cannot resurrect the value.
    let ticket = cache.stripes.ticket(&key);
    cache.committed(&key, None);
    cache.fill(ticket, v(&key, b"new"), &key);
    assert_eq!(raw(&cache, &key), None);
    let ticket = cache.stripes.ticket(&key);
    cache.fill(ticket, v(&key, b"fresh"), &key);
    assert_eq!(raw(&cache, &key), Some(b"fresh".to_vec()));
    let stats = cache.statistics();
    assert_eq!((stats.hits, stats.misses), (2, 1));
}

#[test]
fn remote_invalidation_defeats_fills_and_untrusted_cache_is_bypassed() {
    let cache = ValueCache::new(1 << 20);
    let key = cache_key("c", "k");
    cache.committed(&key, Some(v(&key, b"v1")));
    let ticket = cache.stripes.ticket(&key);
    cache.invalidate(&key);
    assert_eq!(
        raw(&cache, &key),
        None,
        "another node's write drops the entry"
    );
    cache.fill(ticket, v(&key, b"v1"), &key);
    assert_eq!(
        raw(&cache, &key),
        None,
        "a fill from before the invalidation loses"
    );
    cache.committed(&key, Some(v(&key, b"v2")));
    cache.set_trusted(false);
    assert_eq!(raw(&cache, &key), None, "untrusted: not read");
    assert!(!cache.contains(&key, 0));
    let ticket = cache.stripes.ticket(&key);
    cache.invalidate_all();
    cache.set_trusted(true);
    assert_eq!(
        raw(&cache, &key),
        None,
        "flushed before being trusted again"
    );
    cache.fill(ticket, v(&key, b"old"), &key);
    assert_eq!(
        raw(&cache, &key),
        None,
        "a fill from before the flush loses"
    );
}

#[test]
fn a_write_is_not_installed_over_a_later_remote_invalidation() {
    let cache = ValueCache::new(1 << 20);
    let key = cache_key("c", "k");
    let mark = cache.remote_mark();
    // While this node commits, another node commits the same key and its message lands.
    cache.invalidate(&key);
    cache.committed_since(&key, Some(v(&key, b"mine")), mark);
    assert_eq!(
        raw(&cache, &key),
        None,
        "maybe older than the other node's write"
    );
    let mark = cache.remote_mark();
    cache.committed_since(&key, Some(v(&key, b"mine")), mark);
    assert_eq!(raw(&cache, &key), Some(b"mine".to_vec()));
}

#[test]
fn loads_are_shared_within_one_generation_only() {
    let cache = ValueCache::new(0);
    let key = cache_key("c", "k");
    let (ticket, first, joined) = cache.join_load(&key);
    assert!(!joined);
    let (_, second, joined) = cache.join_load(&key);
    assert!(joined && Arc::ptr_eq(&first, &second));
    // A commit in between: a later reader must not get a value read before it.
    cache.committed(&key, None);
    let (later, third, joined) = cache.join_load(&key);
    assert!(!joined && !Arc::ptr_eq(&first, &third));
    assert_ne!(later.generation, ticket.generation);
    cache.finish_load(&key, ticket, &first);
    cache.finish_load(&key, later, &third);
    let (_, fourth, joined) = cache.join_load(&key);
    assert!(!joined && !Arc::ptr_eq(&third, &fourth));
    assert_eq!(cache.statistics().coalesced, 1);
}

#[test]
fn disabled_cache_holds_nothing() {
    let cache = ValueCache::new(0);
    cache.committed("a", Some(v("a", b"x")));
    assert_eq!(raw(&cache, "a"), None);
}

#[test]
fn an_entry_past_its_expiry_is_a_miss() {
    let cache = ValueCache::new(1 << 20);
    let key = cache_key("lobbies", "seat-1");
    cache.committed(&key, Some(v(&key, b"seat").expiring(Some(1_000))));
    assert!(cache.contains(&key, 999));
    assert!(cache.get(&key, 999).is_some(), "live until its expiry");
    assert!(!cache.contains(&key, 1_000));
    assert!(
        cache.get(&key, 1_000).is_none(),
        "a miss from its expiry on"
    );
    assert!(cache.get(&key, 5_000).is_none());
}

/// The typed tier (issue #15): a decoded value set on an entry is held and charged by the
/// typed tier, lives only as long as its entry is the key's current one, and a hold never
/// brings back an entry a write replaced in between.
#[test]
fn typed_values_ride_on_their_entry_and_are_charged() {
    let cache = ValueCache::new(1 << 20);
    assert!(cache.keeps_typed());
    let key = cache_key("c", "k");
    let doc = vec![b'x'; 500];
    cache.committed(&key, Some(v(&key, &doc)));
    let entry = cache.get(&key, 0).expect("cached");
    assert!(entry.typed::<String>().is_none());
    assert!(entry.set_typed(Arc::new(String::from("decoded"))));
    assert!(!entry.set_typed(Arc::new(7u32)), "the first type stays");
    cache.hold_typed(&key, &entry);
    let stats = cache.statistics();
    assert_eq!(stats.typed_entries, 1);
    assert_eq!(
        stats.typed_bytes,
        (500 * TYPED_BYTES_PER_JSON_BYTE + TYPED_FIXED_CHARGE) as u64
    );
    let hot = cache.get(&key, 0).and_then(|e| e.typed::<String>());
    assert_eq!(hot.as_deref().map(String::as_str), Some("decoded"));
    assert!(cache.get(&key, 0).and_then(|e| e.typed::<u32>()).is_none());

    // A write replaces the entry: the new one holds nothing decoded, the tier lets the old
    // one go (and its value with it), and holding the old entry again is refused.
    cache.committed(&key, Some(v(&key, b"new")));
    cache.run_pending_tasks();
    assert_eq!(cache.statistics().typed_entries, 0);
    assert!(entry.typed::<String>().is_none(), "released with its entry");
    assert!(entry.set_typed(Arc::new(String::from("stale"))));
    cache.hold_typed(&key, &entry);
    assert!(
        entry.typed::<String>().is_none(),
        "a replaced entry is not held"
    );
    let current = cache.get(&key, 0).expect("cached");
    assert!(current.typed::<String>().is_none());
    assert_eq!(
        current.decode(|| key.clone()).ok().as_deref(),
        Some(&b"new"[..])
    );
    assert_eq!(cache.statistics().typed_entries, 0);
}

/// A cache whose one entry held decoded in the typed tier was then evicted by twenty times
/// what the byte cache holds; the cache and that entry.
fn evict_a_held_entry() -> (ValueCache, CachedValue) {
    let cache = ValueCache::new(1 << 20);
    let key = cache_key("c", "k");
    cache.committed(&key, Some(v(&key, &[b'x'; 500])));
    let entry = cache.get(&key, 0).expect("cached");
    assert!(entry.set_typed(Arc::new(String::from("decoded"))));
    cache.hold_typed(&key, &entry);
    assert_eq!(cache.statistics().typed_entries, 1);
    // Twenty times what the byte cache holds, each read twice (so as hot as the entry,
    // which is not read again: a lookup would mark it read).
    for i in 0..20_000 {
        let other = cache_key("c", &format!("o{i}"));
        cache.committed(&other, Some(v(&other, &[b'y'; 500])));
        let _ = (cache.get(&other, 0), cache.get(&other, 0));
    }
    assert!(cache.get(&key, 0).is_none(), "the entry was never evicted");
    (cache, entry)
}

/// Regression: the typed tier held a reference to each entry it kept decoded, so an entry
/// evicted from the cache of stored forms stayed alive, decoded, until the tier let it go —
/// memory the byte cache no longer counted, for a value no read could reach. The tier now
/// names its entries without holding them, and an entry leaving the cache drops its value.
#[test]
fn an_evicted_entry_takes_its_decoded_value_with_it() {
    let (_cache, entry) = evict_a_held_entry();
    assert!(
        entry.typed::<String>().is_none(),
        "an evicted entry kept its decoded value"
    );
}

/// The typed tier's budget: entries past it lose their decoded value, never their place in
/// the cache of stored forms.
#[test]
fn the_typed_budget_bounds_decoded_values() {
    // 1 MiB, a quarter for decoded values: room for about 250 documents of 500 bytes.
    let cache = ValueCache::new(1 << 20);
    for i in 0..2000 {
        let key = cache_key("c", &format!("k{i}"));
        cache.committed(&key, Some(v(&key, &[b'x'; 500])));
        let entry = cache.get(&key, 0).expect("cached");
        assert!(entry.set_typed(Arc::new(i)));
        cache.hold_typed(&key, &entry);
    }
    let stats = cache.statistics();
    assert!(stats.typed_bytes <= (1 << 20) / 4, "{stats:?}");
    assert!(stats.typed_entries > 0, "{stats:?}");
    let decoded = (0..2000)
        .filter(|i| {
            cache
                .get(&cache_key("c", &format!("k{i}")), 0)
                .is_some_and(|e| e.typed::<i32>().is_some())
        })
        .count();
    assert!(
        decoded <= 300,
        "{decoded} entries still hold a decoded value"
    );
    assert!(stats.weighted_bytes <= 1 << 20, "{stats:?}");
}

/// The maximum age (the Redis tier's `l1_max_age`) with no TTL in the cache itself: each
/// entry carries the instant it stops serving reads, stamped at install.
#[test]
fn an_entry_past_the_maximum_age_is_a_miss() {
    let key = cache_key("c", "k");
    let aged = ValueCache::with_max_age(1 << 20, 25, Some(Duration::ZERO));
    aged.committed(&key, Some(v(&key, b"v1")));
    assert!(!aged.contains(&key, 0));
    assert_eq!(raw(&aged, &key), None, "older than a zero maximum age");
    assert_eq!(aged.statistics().entry_count, 0, "removed when found stale");
    aged.fill(aged.ticket(&key), v(&key, b"v1"), &key);
    assert_eq!(raw(&aged, &key), None, "fills are stamped too");

    let young = ValueCache::with_max_age(1 << 20, 25, Some(Duration::from_secs(3600)));
    young.committed(&key, Some(v(&key, b"v1")));
    assert_eq!(raw(&young, &key), Some(b"v1".to_vec()));
}

/// A prefetched entry that leaves the cache unread is waste, whatever removes it: a write, an
/// invalidation, a flush, its maximum age, or eviction.
#[test]
fn a_prefetched_entry_removed_unread_is_wasted() {
    let prefetch = |cache: &ValueCache, key: &str| {
        assert!(cache.fill_prefetched(cache.ticket(key), v(key, b"doc"), key, 1));
    };
    let cache = ValueCache::new(1 << 20);
    let keys: Vec<String> = (0..4).map(|i| cache_key("c", &format!("k{i}"))).collect();
    for key in &keys {
        prefetch(&cache, key);
    }
    cache.committed(&keys[0], Some(v(&keys[0], b"written")));
    cache.invalidate(&keys[1]);
    assert!(cache.get(&keys[2], 0).is_some(), "read: used, not wasted");
    cache.invalidate_all();
    let counts = cache.ledger().counts();
    assert_eq!((counts.issued, counts.used, counts.wasted), (4, 1, 3));
    assert_eq!(cache.ledger().outstanding_bytes(), 0);

    let aged = ValueCache::with_max_age(1 << 20, 25, Some(Duration::ZERO));
    prefetch(&aged, &keys[0]);
    assert!(aged.get(&keys[0], 0).is_none());
    assert_eq!(aged.ledger().counts().wasted, 1, "expired unread");

    // Evicted: a cache with room for a few dozen entries, then many more writes. The
    // prefetched entry is larger than any written one, so it cannot take the room the
    // writes left in the cache's hot part: it is admitted cold, and evicted cold.
    let small = ValueCache::new(64 * 1024);
    let write = |i: usize| {
        let key = cache_key("c", &format!("w{i}"));
        small.committed(&key, Some(v(&key, &[b'x'; 1000])));
    };
    (0..200).for_each(write);
    assert!(small.fill_prefetched(
        small.ticket(&keys[0]),
        v(&keys[0], &[b'x'; 1100]),
        &keys[0],
        1
    ));
    (200..400).for_each(write);
    assert!(!small.contains(&keys[0], 0));
    assert_eq!(small.ledger().counts().wasted, 1, "evicted unread");
    assert_eq!(small.ledger().outstanding_bytes(), 0);
}

/// The capacity bounds what entries are charged, the overhead included.
#[test]
fn the_capacity_bounds_the_charged_bytes() {
    let cache = ValueCache::new(1 << 20);
    for i in 0..10_000 {
        let key = cache_key("c", &format!("k{i:05}"));
        cache.committed(&key, Some(v(&key, &[b'x'; 150])));
    }
    let stats = cache.statistics();
    // quick_cache may go over by less than one entry.
    let charge = 150 + "c\0k00000".len() as u64 + ENTRY_OVERHEAD as u64;
    assert!(
        stats.weighted_bytes <= (1 << 20) / 4 * 3 + charge,
        "{stats:?}"
    );
    assert!(stats.entry_count > 0, "{stats:?}");
    assert_eq!(
        stats.weighted_bytes,
        stats.entry_count * charge,
        "{stats:?}"
    );
}

/// A compressed entry of `key` holding `doc` (zstd, as a write caches it).
fn compressed(key: &str, doc: &[u8]) -> CachedValue {
    let pipeline = crate::value::Pipeline {
        codec: crate::codec::Codec::Zstd,
        level: 3,
        max_value_size: 1 << 20,
        chunk_threshold: 0,
        keyframe_interval: 0,
    };
    let encoded = pipeline
        .encode_raw("c", "k", doc.to_vec())
        .expect("encodes");
    let value = CachedValue::from_encoded(key, &encoded, None);
    assert!(value.is_compressed());
    value
}

fn json(n: usize) -> Vec<u8> {
    format!(
        r#"{{"n":{n},"notes":"{}"}}"#,
        "seven out, line away ".repeat(20)
    )
    .into_bytes()
}

#[test]
fn a_promoted_entry_serves_its_json_until_a_write_replaces_it() {
    let cache = ValueCache::new(1 << 20);
    let key = cache_key("c", "k");
    let doc = DocKey::of(&key);
    cache.committed(&key, Some(compressed(&key, &json(1))));
    let entry = cache.get(&key, 0).expect("cached");
    assert!(cache.promote(&doc, &entry, &json(1)));
    let hot = cache.get(&key, 0).expect("cached");
    assert!(!hot.is_compressed(), "re-stored decompressed");
    assert_eq!(raw(&cache, &key), Some(json(1)));
    let stats = cache.statistics();
    assert_eq!(stats.promoted_bytes, charge(&hot));
    assert_eq!(stats.entry_count, 1);
    // A promoted entry is not promoted again, and a stale entry (replaced) is not either.
    assert!(!cache.promote(&doc, &hot, &json(1)));
    assert!(!cache.promote(&doc, &entry, &json(1)));
    assert_eq!(cache.statistics().promoted_bytes, charge(&hot));
    cache.committed(&key, Some(compressed(&key, &json(2))));
    assert_eq!(raw(&cache, &key), Some(json(2)));
    assert_eq!(cache.statistics().promoted_bytes, 0, "its bytes went back");
    let entry = cache.get(&key, 0).expect("cached");
    assert!(cache.promote(&doc, &entry, &json(2)));
    cache.invalidate(&key);
    assert_eq!(raw(&cache, &key), None);
    assert_eq!(cache.statistics().promoted_bytes, 0);
}

#[test]
fn a_promotion_racing_a_write_keeps_the_write() {
    let cache = ValueCache::new(1 << 20);
    let key = cache_key("c", "k");
    cache.committed(&key, Some(compressed(&key, &json(1))));
    let old = cache.get(&key, 0).expect("cached");
    // The write commits between the reader's hit and its promotion.
    cache.committed(&key, Some(compressed(&key, &json(2))));
    assert!(!cache.promote(&DocKey::of(&key), &old, &json(1)));
    assert_eq!(raw(&cache, &key), Some(json(2)));
    assert_eq!(cache.statistics().promoted_bytes, 0);
}

#[test]
fn promoted_entries_stay_within_their_share_of_the_cache() {
    let capacity = 1 << 20;
    let cache = ValueCache::with_max_age(capacity, 0, None);
    let keys: Vec<String> = (0..400).map(|i| cache_key("c", &format!("k{i}"))).collect();
    let mut promoted = 0;
    for (i, key) in keys.iter().enumerate() {
        cache.committed(key, Some(compressed(key, &json(i))));
        let entry = cache.get(key, 0).expect("cached");
        promoted += usize::from(cache.promote(&DocKey::of(key), &entry, &json(i)));
        let stats = cache.statistics();
        assert!(
            stats.promoted_bytes <= capacity / PROMOTED_SHARE,
            "{stats:?}"
        );
        assert!(stats.weighted_bytes <= capacity, "{stats:?}");
    }
    assert!(promoted > 10, "{promoted} promoted");
    assert!(promoted < keys.len(), "the budget ran out");
    // Every document still reads back right, promoted or not.
    for (i, key) in keys.iter().enumerate() {
        if let Some(doc) = raw(&cache, key) {
            assert_eq!(doc, json(i));
        }
    }
    cache.invalidate_all();
    assert_eq!(cache.statistics().promoted_bytes, 0);
}

/// Regression: an entry evicted from the cache of stored forms dropped its decoded value but
/// left its hold in the typed tier, so the statistics went on counting a decoded value no
/// entry held (`typed_entries`, `typed_bytes`, and `weighted_bytes` through them) and the
/// hold took the tier's budget until the tier's own CLOCK let it go.
#[test]
fn an_evicted_entry_leaves_the_typed_tier() {
    let (cache, _entry) = evict_a_held_entry();
    let stats = cache.statistics();
    assert_eq!((stats.typed_entries, stats.typed_bytes), (0, 0));
}

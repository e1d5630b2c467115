//! Unit tests of the per-thread fronts of the typed tier (`front.rs`): what they serve,
//! how it is counted, and that an entry that left the cache is never served again.

use std::sync::Arc;

use super::*;

/// A cache holding `key`'s entry decoded as `value`, noted in this thread's front, as a
/// typed read through the cache leaves it. The test keeps the value alive, so only the
/// front's own checks can stop it from being served.
fn held(key: &str, value: &str) -> (ValueCache, CachedValue, Arc<String>) {
    let cache = ValueCache::new(1 << 20);
    cache.committed(key, Some(CachedValue::plain(key, b"doc")));
    let entry = cache.get(key, 0).expect("cached");
    let value = Arc::new(value.to_owned());
    assert!(entry.set_typed(Arc::clone(&value)));
    cache.hold_typed(key, &entry);
    cache.note_front(&DocKey::of(key), cache.front_epoch(), &entry, &value);
    (cache, entry, value)
}

fn front(cache: &ValueCache, key: &str) -> Option<Arc<String>> {
    cache.front_typed::<String>(&DocKey::of(key), cache.front_epoch(), 0)
}

#[test]
fn a_front_serves_the_held_value_counted_as_a_typed_hit() {
    let key = cache_key("c", "k");
    let (cache, _entry, value) = held(&key, "decoded");
    let before = cache.statistics();
    let hot = front(&cache, &key).expect("served by the front");
    assert!(Arc::ptr_eq(&hot, &value));
    let after = cache.statistics();
    assert_eq!(after.hits, before.hits + 1);
    assert_eq!(after.typed_hits, before.typed_hits + 1);
    assert_eq!(after.misses, before.misses);
    assert!(
        cache
            .front_typed::<u32>(&DocKey::of(&key), cache.front_epoch(), 0)
            .is_none(),
        "another type is read through the cache"
    );
    assert!(front(&cache, &cache_key("c", "other")).is_none());
    // One hit in REFRESH goes through the cache, so its policies see the key read.
    let rounds = 2 * front::REFRESH;
    let served = (0..rounds)
        .filter(|_| front(&cache, &key).is_some())
        .count();
    assert_eq!(served, usize::try_from(rounds - 2).unwrap_or(0));
}

/// Each way an entry stops being its key's current one: the front serves it no more,
/// although its decoded value is still alive (the test holds it).
#[test]
fn a_front_never_serves_an_entry_that_left_the_cache() {
    let key = cache_key("c", "k");
    let cases: [(&str, fn(&ValueCache, &str)); 6] = [
        ("a write", |c, k| {
            c.committed(k, Some(CachedValue::plain(k, b"new")));
        }),
        ("a delete", |c, k| c.committed(k, None)),
        ("another node's write", |c, k| c.invalidate(k)),
        ("a flush of the whole cache", |c, _| c.invalidate_all()),
        ("an untrusted cache", |c, _| c.set_trusted(false)),
        ("an eviction", |c, _| {
            for i in 0..20_000 {
                let other = cache_key("c", &format!("o{i}"));
                c.committed(&other, Some(CachedValue::plain(&other, &[b'y'; 500])));
                let _ = (c.get(&other, 0), c.get(&other, 0));
            }
        }),
    ];
    for (what, change) in cases {
        let (cache, _entry, value) = held(&key, "old");
        assert!(front(&cache, &key).is_some(), "{what}: not served before");
        change(&cache, &key);
        assert!(
            front(&cache, &key).is_none(),
            "{what}: the old value served"
        );
        drop(value);
    }
}

/// The tier let the value go and nothing else holds it: the front's handle is weak, so it
/// neither keeps the value alive nor serves it.
#[test]
fn a_front_keeps_no_value_the_tier_let_go() {
    let key = cache_key("c", "k");
    let (cache, entry, value) = held(&key, "decoded");
    let weak = Arc::downgrade(&value);
    drop(value);
    entry.clear_typed();
    assert!(weak.upgrade().is_none(), "the front kept the value alive");
    assert!(front(&cache, &key).is_none());
}

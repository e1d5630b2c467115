//! The typed tier's memory charge is honest: a decoded value held beside a cache entry is
//! charged `TYPED_BYTES_PER_JSON_BYTE` per byte of its JSON plus `TYPED_FIXED_CHARGE`, and that
//! must cover what the
//! decoded value holds — its own size, the capacity of every string and vector it owns, and a
//! 16-byte allocator header per heap allocation (glibc's chunk header) — for documents full of
//! small strings, the costliest shape per byte of JSON.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::mem::size_of;

use bitcraps_storage::{TYPED_BYTES_PER_JSON_BYTE, TYPED_FIXED_CHARGE};
use common::Game;

const HEADER: usize = 16;

fn string(s: &String) -> usize {
    if s.capacity() == 0 {
        0
    } else {
        s.capacity() + HEADER
    }
}

fn vec<T>(v: &Vec<T>) -> usize {
    if v.capacity() == 0 {
        0
    } else {
        v.capacity() * size_of::<T>() + HEADER
    }
}

/// Bytes an `Arc<Game>` holds: the Arc's allocation (counts and the struct) and the heap.
fn held(g: &Game) -> usize {
    2 * size_of::<usize>()
        + size_of::<Game>()
        + HEADER
        + string(&g.id)
        + string(&g.notes)
        + vec(&g.players)
        + g.players.iter().map(string).sum::<usize>()
        + vec(&g.rolls)
}

#[test]
fn typed_values_are_charged_what_they_hold() {
    let mut worst = 0.0f64;
    for n in 0..64u32 {
        let json = serde_json::to_vec(&common::game(&format!("game-{n}"), n)).unwrap();
        let decoded: Game = serde_json::from_slice(&json).unwrap();
        let cost = held(&decoded);
        worst = worst.max(cost as f64 / json.len() as f64);
        assert!(
            cost <= json.len() * TYPED_BYTES_PER_JSON_BYTE + TYPED_FIXED_CHARGE,
            "game {n}: {cost} bytes held for {} bytes of JSON",
            json.len()
        );
    }
    // Not wildly above what is held either: a cache that overcharges holds fewer documents
    // than it could.
    assert!(worst > 0.5, "{worst}");
}

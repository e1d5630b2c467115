//! Micro-benchmarks of the value pipeline: serialize → hash → compress, and back.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use bitcraps_storage::{Codec, Pipeline};
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;

fn document() -> serde_json::Value {
    json!({
        "id": "game-0000001234", "table": 17, "state": "point_on", "point": 6, "shooter": "alice",
        "players": (0..4).map(|p| json!({
            "id": format!("player-{p:08x}"), "name": format!("bob-{p}"), "balance": 12_345 * p,
            "bets": [{"kind": "pass_line", "amount": 25, "odds": 2, "settled": false},
                     {"kind": "place_6", "amount": 30, "odds": null, "settled": true}]
        })).collect::<Vec<_>>(),
        "rolls": [[3, 4], [6, 6], [2, 5], [1, 1], [4, 2]],
        "created_at": 1_795_000_123_456u64,
        "settings": {"min_bet": 10, "max_bet": 5000, "odds_multiple": 3, "field_pays_triple_on_12": true}
    })
}

fn pipeline(c: &mut Criterion) {
    let doc = document();
    for codec in Codec::ALL {
        let p = Pipeline {
            codec,
            level: 3,
            max_value_size: 1 << 20,
        };
        c.bench_function(&format!("encode/{codec}"), |b| {
            b.iter(|| p.encode("games", "g", &doc).unwrap())
        });
        let encoded = p.encode("games", "g", &doc).unwrap();
        c.bench_function(&format!("decode/{codec}"), |b| {
            b.iter(|| {
                let raw = encoded
                    .codec
                    .decompress(&encoded.stored, encoded.raw_len(), "g")
                    .unwrap();
                let back: serde_json::Value = serde_json::from_slice(&raw).unwrap();
                back
            })
        });
    }
}

criterion_group!(benches, pipeline);
criterion_main!(benches);

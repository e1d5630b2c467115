//! Micro-benchmarks of the value pipeline on one ~1 KiB game document, per codec:
//! `encode` = serialize → hash → compress (the library's public `Pipeline`), and
//! `decode` = decompress → verify the blake3 hash → deserialize into the typed struct (the
//! steps of a cache-missing `retrieve`). Without the per-collection zstd dictionary, which
//! is not public API.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

#[path = "../src/docs.rs"]
#[allow(dead_code)]
mod docs;

use std::hint::black_box;

use bitcraps_storage::{Codec, Pipeline};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn pipeline(c: &mut Criterion) {
    let lobby = docs::lobby();
    let doc = (0..)
        .map(docs::document)
        .find(|d| *d != lobby)
        .expect("some document is a game");
    let json_len = serde_json::to_vec(&doc).unwrap().len();
    let mut group = c.benchmark_group("pipeline");
    group.throughput(Throughput::Bytes(json_len as u64));
    for codec in Codec::ALL {
        let p = Pipeline {
            codec,
            level: 3,
            max_value_size: 1 << 20,
        };
        group.bench_function(format!("encode/{codec}"), |b| {
            b.iter(|| p.encode("games", "g", black_box(&doc)).unwrap())
        });
        let encoded = p.encode("games", "g", &doc).unwrap();
        group.bench_function(format!("decode/{codec}"), |b| {
            b.iter(|| {
                let raw = encoded
                    .codec
                    .decompress(black_box(&encoded.stored), encoded.raw_len(), "g")
                    .unwrap();
                assert_eq!(blake3::hash(&raw).as_bytes(), &encoded.hash);
                let back: docs::Game = serde_json::from_slice(&raw).unwrap();
                back
            })
        });
        eprintln!(
            "{codec}: {json_len} JSON bytes -> {} stored ({})",
            encoded.stored.len(),
            encoded.codec
        );
    }
    group.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);

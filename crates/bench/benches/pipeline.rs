//! Micro-benchmarks of the value pipeline on one ~1 KiB game document, per codec:
//! `encode` = serialize → hash → compress (the library's public `Pipeline`), and
//! `decode` = decompress → verify the blake3 hash → deserialize into the typed struct (the
//! steps of a cache-missing `retrieve`). Without the per-collection zstd dictionary, which
//! is not public API; `dictionary/*` measures zstd with a dictionary trained the way the
//! library trains one (same size, from 1,000 documents of the benchmark). `deserialize` is
//! serde_json alone: the floor of any store's typed read in the benchmark.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

#[path = "../src/docs.rs"]
#[allow(dead_code)]
mod docs;

use std::hint::black_box;

use bitcraps_storage::Codec;
use bitcraps_storage::testing::Pipeline;
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
            chunk_threshold: 0,
            keyframe_interval: 0,
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
    group.bench_function("deserialize", |b| {
        let raw = serde_json::to_vec(&doc).unwrap();
        b.iter(|| serde_json::from_slice::<docs::Game>(black_box(&raw)).unwrap())
    });
    // Candidate parsers for the typed read path, into the same `T: DeserializeOwned`. The
    // values must be the ones serde_json gives. simd-json parses in place, so its row
    // includes the copy of the document a read would need (the cache holds shared bytes).
    let raw = serde_json::to_vec(&doc).unwrap();
    assert_eq!(sonic_rs::from_slice::<docs::Game>(&raw).unwrap(), doc);
    assert_eq!(
        simd_json::from_slice::<docs::Game>(&mut raw.clone()).unwrap(),
        doc
    );
    // What the library does (`value::deserialize`): one UTF-8 check of the whole document,
    // then serde_json on the `str`, which then skips its check of every string and key.
    group.bench_function("deserialize/utf8-once", |b| {
        b.iter(|| {
            let text = std::str::from_utf8(black_box(&raw)).unwrap();
            serde_json::from_str::<docs::Game>(text).unwrap()
        })
    });
    group.bench_function("deserialize/sonic-rs", |b| {
        b.iter(|| sonic_rs::from_slice::<docs::Game>(black_box(&raw)).unwrap())
    });
    group.bench_function("deserialize/simd-json", |b| {
        b.iter(|| {
            let mut copy = black_box(&raw).clone();
            simd_json::from_slice::<docs::Game>(&mut copy).unwrap()
        })
    });
    let samples: Vec<Vec<u8>> = (0..1000u64)
        .map(|i| serde_json::to_vec(&docs::document(i)).unwrap())
        .collect();
    let dict = zstd::dict::from_samples(&samples, 16 * 1024).unwrap();
    let raw = serde_json::to_vec(&doc).unwrap();
    let mut compressor = zstd::bulk::Compressor::with_dictionary(3, &dict).unwrap();
    let stored = compressor.compress(&raw).unwrap();
    eprintln!(
        "zstd with a dictionary: {json_len} JSON bytes -> {} stored",
        stored.len()
    );
    let mut decompressor = zstd::bulk::Decompressor::with_dictionary(&dict).unwrap();
    group.bench_function("dictionary/decompress", |b| {
        b.iter(|| {
            decompressor
                .decompress(black_box(&stored), raw.len())
                .unwrap()
        })
    });
    group.bench_function("dictionary/decompress+deserialize", |b| {
        b.iter(|| {
            let back = decompressor
                .decompress(black_box(&stored), raw.len())
                .unwrap();
            serde_json::from_slice::<docs::Game>(&back).unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);

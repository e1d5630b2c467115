//! The operations of each workload, generated before the clock starts, and the logical bytes
//! they leave behind.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Result;

use crate::docs::{Game, Rng, document};
use crate::stores::{Op, Worker};
use crate::zipf::Zipf;

/// Key of bulk document `i`.
pub fn bulk_key(i: usize) -> String {
    format!("g-{i:08}")
}

/// The live documents' JSON sizes by key: what the footprint is divided by.
#[derive(Default)]
pub struct Live(HashMap<String, usize>);

impl Live {
    pub fn note(&mut self, key: &str, doc: &Game) -> Result<()> {
        self.0
            .insert(key.to_owned(), serde_json::to_vec(doc)?.len());
        Ok(())
    }

    pub fn bytes(&self) -> usize {
        self.0.values().sum()
    }
}

/// Zipfian picks over the bulk keys, with ranks scattered over the key space (as YCSB's
/// scrambled zipfian) so the hot keys are not neighbours.
pub struct Picker {
    zipf: Zipf,
    n: usize,
}

impl Picker {
    pub fn new(n: usize) -> Self {
        Picker {
            zipf: Zipf::new(n, 0.99),
            n: n.max(1),
        }
    }

    pub fn key(&self, rng: &mut Rng) -> String {
        // 2^31 - 1 is prime, so this is a permutation of 0..n whenever n is not a multiple of it.
        let rank = u128::try_from(self.zipf.sample(rng)).unwrap_or(0);
        let n = u128::try_from(self.n).unwrap_or(1);
        bulk_key(usize::try_from(rank * 2_147_483_647 % n).unwrap_or(0))
    }
}

/// `writers` workers, each storing `per_writer` distinct new documents.
pub fn puts(writers: usize, per_writer: usize, live: &mut Live) -> Result<Vec<Worker>> {
    (0..writers)
        .map(|t| {
            let ops = (0..per_writer)
                .map(|i| {
                    let key = format!("w-{t}-{i:06}");
                    let doc = document(1_000_000_000 + (t * 1_000_000 + i) as u64);
                    live.note(&key, &doc)?;
                    Ok(Op::Put(key, Box::new(doc)))
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(Arc::new(ops))
        })
        .collect()
}

/// `threads` workers sharing `total` zipfian reads.
pub fn reads(picker: &Picker, threads: usize, total: usize, seed: u64) -> Vec<Worker> {
    (0..threads)
        .map(|t| {
            let mut rng = Rng(seed + t as u64);
            Arc::new(
                (0..total / threads)
                    .map(|_| Op::Get(picker.key(&mut rng)))
                    .collect(),
            )
        })
        .collect()
}

/// `threads` workers sharing `total` operations: 95% zipfian reads, 5% durable updates of
/// zipfian keys.
pub fn mixed(
    picker: &Picker,
    threads: usize,
    total: usize,
    live: &mut Live,
) -> Result<Vec<Worker>> {
    (0..threads)
        .map(|t| {
            let mut rng = Rng(0xABC + t as u64);
            let ops = (0..total / threads)
                .map(|j| {
                    let key = picker.key(&mut rng);
                    if rng.below(100) < 5 {
                        let doc = document(2_000_000_000 + (t * 1_000_000 + j) as u64);
                        live.note(&key, &doc)?;
                        Ok(Op::Put(key, Box::new(doc)))
                    } else {
                        Ok(Op::Get(key))
                    }
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(Arc::new(ops))
        })
        .collect()
}

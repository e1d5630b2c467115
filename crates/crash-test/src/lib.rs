//! Shared by the crash writer and the crash test: the document written under each key, the
//! transfers between accounts and their check, and the reproducible random numbers.

pub mod ledger;

use serde_json::{Value, json};

/// The key written by `task` as its `i`-th write in `round`.
pub fn key(round: u32, task: u32, i: u64) -> String {
    format!("r{round}-t{task}-{i:06}")
}

/// The document stored under [`key`]; every fourth one is identical lobby content, so dedup
/// reference counts are exercised by the crash too.
pub fn document(round: u32, task: u32, i: u64) -> Value {
    if i.is_multiple_of(4) {
        json!({"lobby": "default", "min_bet": 10, "seats": 8})
    } else {
        json!({
            "round": round, "task": task, "i": i,
            "bets": (0..(i % 9)).map(|b| json!({"kind": "pass", "amount": b * 5})).collect::<Vec<_>>(),
            "notes": "dice are rolled, bets settled".repeat((i % 5) as usize + 1),
        })
    }
}

/// Large game logs overwritten in place (stored in chunks): their keys.
pub const LOGS: [&str; 2] = ["log-0", "log-1"];

/// Version `i` of round `round` of the large log `key`: a ~100–300 KiB game log that grows by
/// one roll per version, so consecutive versions share all their chunks but the last.
pub fn large_log(key: &str, round: u32, i: u64) -> Value {
    let rolls: Vec<Value> = (0..1000 + i + u64::from(round) * 50)
        .map(|n| json!({"n": n, "dice": [n % 6 + 1, (n * 7) % 6 + 1], "log": key, "note": "point is on"}))
        .collect();
    json!({"log": key, "round": round, "version": i, "rolls": rolls})
}

/// xorshift64*: reproducible from a printed seed (which must not be 0).
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

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

//! Shared by the crash writer and the crash test: the document written under each key.

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

//! Transfers between accounts: what the crash writer's transfer tasks write, and the check
//! the crash test runs after every kill.
//!
//! Each transfer is one `apply`: the two accounts' new balances, expecting the versions read,
//! and a `transfers/<id>` record of what it moved, expecting that id to be absent. So a
//! transfer is applied entirely or not at all, and at most once; the check verifies that from
//! the store's contents alone, plus the transfers the writer acknowledged.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// The accounts' collection.
pub const ACCOUNTS: &str = "accounts";
/// The transfer records' collection.
pub const TRANSFERS: &str = "transfers";
/// How many accounts there are.
pub const ACCOUNT_COUNT: u32 = 16;
/// Every account's balance before the first transfer.
pub const INITIAL_BALANCE: i64 = 1_000;

/// The key of account `n`.
pub fn account(n: u32) -> String {
    format!("a{n:02}")
}

/// The id (key in [`TRANSFERS`]) of transfer task `task`'s `i`-th transfer in `round`.
pub fn transfer_id(round: u32, task: u32, i: u64) -> String {
    format!("r{round}-x{task}-{i:06}")
}

/// Every account with its initial balance.
pub fn initial_balances() -> BTreeMap<String, i64> {
    (0..ACCOUNT_COUNT)
        .map(|n| (account(n), INITIAL_BALANCE))
        .collect()
}

/// An account record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// Its balance (may go negative: the test is about conservation, not credit).
    pub balance: i64,
}

/// A transfer record: what one transfer moved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    /// The account debited.
    pub from: String,
    /// The account credited.
    pub to: String,
    /// How much.
    pub amount: i64,
}

impl Transfer {
    /// The writer's acknowledgement line for transfer `id`. It ends in `end` so that a line
    /// cut short by the kill is never read as a different amount.
    pub fn ack_line(&self, id: &str) -> String {
        format!("xfer {id} {} {} {} end", self.from, self.to, self.amount)
    }

    /// Parses an [`ack_line`](Self::ack_line) (`None` for anything else, or a cut line).
    pub fn parse_ack(line: &str) -> Option<(String, Transfer)> {
        let mut fields = line.split(' ');
        let (tag, id, from, to, amount, end) = (
            fields.next()?,
            fields.next()?,
            fields.next()?,
            fields.next()?,
            fields.next()?,
            fields.next()?,
        );
        if tag != "xfer" || end != "end" || fields.next().is_some() {
            return None;
        }
        let transfer = Transfer {
            from: from.to_owned(),
            to: to.to_owned(),
            amount: amount.parse().ok()?,
        };
        Some((id.to_owned(), transfer))
    }
}

/// What the check found wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// The sum of all balances changed: money was created or destroyed.
    TotalChanged {
        /// The sum of the initial balances.
        expected: i64,
        /// The sum found.
        found: i64,
    },
    /// An account is missing, or one that never existed appeared.
    Accounts {
        /// Accounts expected and absent.
        missing: Vec<String>,
        /// Accounts present and never created.
        unknown: Vec<String>,
    },
    /// The writer acknowledged a transfer whose record is absent: it was lost.
    NotApplied {
        /// The transfer.
        id: String,
    },
    /// A transfer's record differs from what the writer acknowledged.
    Altered {
        /// The transfer.
        id: String,
        /// What was acknowledged.
        acknowledged: Transfer,
        /// What the record says.
        found: Transfer,
    },
    /// An account's balance is not its initial balance plus the effect of the transfer
    /// records present: a transfer applied twice, half applied, or applied without its
    /// record.
    Balance {
        /// The account.
        account: String,
        /// Initial balance plus the recorded transfers' effects.
        expected: i64,
        /// The balance found.
        found: i64,
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::TotalChanged { expected, found } => {
                write!(f, "the balances sum to {found}, not {expected}")
            }
            Violation::Accounts { missing, unknown } => {
                write!(f, "accounts missing {missing:?}, unknown {unknown:?}")
            }
            Violation::NotApplied { id } => {
                write!(f, "acknowledged transfer {id} has no record")
            }
            Violation::Altered {
                id,
                acknowledged,
                found,
            } => write!(
                f,
                "transfer {id} was acknowledged as {acknowledged:?}, its record is {found:?}"
            ),
            Violation::Balance {
                account,
                expected,
                found,
            } => write!(
                f,
                "account {account} holds {found}; its initial balance and the recorded \
                 transfers give {expected}"
            ),
        }
    }
}

/// Checks the store's `balances` and transfer `records` against the initial balances and
/// the `acknowledged` transfers: the total is conserved, every acknowledged transfer is
/// applied (its record exists, as acknowledged), and every balance is its initial balance
/// plus exactly the effects of the records present — so no transfer is applied twice or in
/// part. Empty when all holds.
pub fn check(
    balances: &BTreeMap<String, i64>,
    records: &BTreeMap<String, Transfer>,
    acknowledged: &BTreeMap<String, Transfer>,
) -> Vec<Violation> {
    let initial = initial_balances();
    let mut violations = Vec::new();
    let expected: i64 = initial.values().sum();
    let found: i64 = balances.values().sum();
    if found != expected {
        violations.push(Violation::TotalChanged { expected, found });
    }
    let missing: Vec<String> = initial
        .keys()
        .filter(|a| !balances.contains_key(*a))
        .cloned()
        .collect();
    let unknown: Vec<String> = balances
        .keys()
        .filter(|a| !initial.contains_key(*a))
        .cloned()
        .collect();
    if !missing.is_empty() || !unknown.is_empty() {
        violations.push(Violation::Accounts { missing, unknown });
    }
    for (id, acked) in acknowledged {
        match records.get(id) {
            None => violations.push(Violation::NotApplied { id: id.clone() }),
            Some(found) if found != acked => violations.push(Violation::Altered {
                id: id.clone(),
                acknowledged: acked.clone(),
                found: found.clone(),
            }),
            Some(_) => {}
        }
    }
    let mut want = initial;
    for t in records.values() {
        *want.entry(t.from.clone()).or_default() -= t.amount;
        *want.entry(t.to.clone()).or_default() += t.amount;
    }
    for (account, expected) in want {
        let found = balances.get(&account).copied().unwrap_or(0);
        if found != expected {
            violations.push(Violation::Balance {
                account,
                expected,
                found,
            });
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(from: u32, to: u32, amount: i64) -> Transfer {
        Transfer {
            from: account(from),
            to: account(to),
            amount,
        }
    }

    /// Two transfers, both applied and acknowledged.
    fn state() -> (
        BTreeMap<String, i64>,
        BTreeMap<String, Transfer>,
        BTreeMap<String, Transfer>,
    ) {
        let records: BTreeMap<String, Transfer> = [
            (transfer_id(0, 0, 0), t(0, 1, 30)),
            (transfer_id(0, 1, 0), t(1, 2, 50)),
        ]
        .into_iter()
        .collect();
        let mut balances = initial_balances();
        for r in records.values() {
            *balances.entry(r.from.clone()).or_default() -= r.amount;
            *balances.entry(r.to.clone()).or_default() += r.amount;
        }
        (balances, records.clone(), records)
    }

    #[test]
    fn a_consistent_state_passes() {
        let (balances, records, acked) = state();
        assert_eq!(check(&balances, &records, &acked), vec![]);
        // A transfer applied but not acknowledged (the kill came first) is fine too.
        assert_eq!(check(&balances, &records, &BTreeMap::new()), vec![]);
    }

    #[test]
    fn created_money_is_reported() {
        let (mut balances, records, acked) = state();
        *balances.entry(account(3)).or_default() += 7;
        let v = check(&balances, &records, &acked);
        assert!(
            v.contains(&Violation::TotalChanged {
                expected: 16_000,
                found: 16_007
            }),
            "{v:?}"
        );
    }

    #[test]
    fn a_transfer_applied_twice_is_reported() {
        // The balances moved twice, the record exists once: the total is conserved.
        let (mut balances, records, acked) = state();
        *balances.entry(account(0)).or_default() -= 30;
        *balances.entry(account(1)).or_default() += 30;
        let v = check(&balances, &records, &acked);
        assert_eq!(
            v,
            vec![
                Violation::Balance {
                    account: account(0),
                    expected: 970,
                    found: 940
                },
                Violation::Balance {
                    account: account(1),
                    expected: 980,
                    found: 1_010
                },
            ]
        );
    }

    #[test]
    fn a_lost_or_altered_acknowledged_transfer_is_reported() {
        let (balances, mut records, acked) = state();
        let lost = transfer_id(0, 1, 0);
        let removed = records.remove(&lost);
        let v = check(&balances, &records, &acked);
        assert!(
            v.contains(&Violation::NotApplied { id: lost.clone() }),
            "{v:?}"
        );
        records.insert(lost.clone(), t(1, 2, 5));
        let v = check(&balances, &records, &acked);
        assert!(
            v.iter()
                .any(|x| matches!(x, Violation::Altered { id, found, .. }
                if *id == lost && found.amount == 5)),
            "{v:?}"
        );
        assert!(removed.is_some());
    }

    #[test]
    fn a_missing_account_is_reported() {
        let (mut balances, records, acked) = state();
        balances.remove(&account(9));
        balances.insert("zz".to_owned(), INITIAL_BALANCE);
        let v = check(&balances, &records, &acked);
        assert!(
            v.contains(&Violation::Accounts {
                missing: vec![account(9)],
                unknown: vec!["zz".to_owned()]
            }),
            "{v:?}"
        );
    }

    #[test]
    fn ack_lines_round_trip_and_cut_lines_are_ignored() {
        let transfer = t(4, 5, 42);
        let line = transfer.ack_line("r1-x2-000003");
        assert_eq!(line, "xfer r1-x2-000003 a04 a05 42 end");
        assert_eq!(
            Transfer::parse_ack(&line),
            Some(("r1-x2-000003".to_owned(), transfer))
        );
        assert_eq!(Transfer::parse_ack("xfer r1-x2-000003 a04 a05 4"), None);
        assert_eq!(Transfer::parse_ack("put r1-t2-000003"), None);
    }
}

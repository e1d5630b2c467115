//! The house bank and the demo's chip invariant.
//!
//! The house bank is the `bank` collection: the vault (`bank/house`) and one tray per table
//! (`bank/tray-tNN`, the house's chips at that table). Every chip a player holds came from
//! their table's tray (a new player's stake, a top-up, a payout) or went to it (a bet), in
//! the same atomic `apply` as the player's balance; each game starts by bringing the tray
//! back to its float from the vault, in one `apply` too. Each apply expects the versions it
//! read, so the sum of all player balances plus the bank never changes. The report checks it
//! after play and in the restored backup.
//!
//! Why trays: with one bank record every settlement of every table would be a write of the
//! same key, and at most one of them could commit per group commit — the demo ran twice as
//! long, with three conflicts for every settlement. Tables meet at the vault once a game.

use anyhow::{Context, Result};
use bitcraps_storage::{Expect, ListOptions, PersistentStorageManager, StorageError};
use serde::{Deserialize, Serialize};

/// The house bank's collection.
pub const BANK: &str = "bank";

/// The vault's key in [`BANK`].
pub const VAULT: &str = "house";

/// The vault's balance when the demo creates it.
pub const OPENING_BANK: i64 = 10_000_000;

/// What a table's tray holds at the start of each game.
pub const TRAY_FLOAT: i64 = 20_000;

/// The key in [`BANK`] of table `table`'s tray.
pub fn tray(table: u32) -> String {
    format!("tray-t{table:02}")
}

/// A record of the house bank: the vault or a table's tray.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bank {
    /// Chips held by the house.
    pub balance: i64,
}

/// The only field of a player the invariant needs (other fields are ignored).
#[derive(Deserialize)]
struct Balance {
    balance: i64,
}

/// Chips counted in a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Holdings {
    /// Players counted.
    pub players: u64,
    /// Sum of their balances.
    pub player_chips: i64,
    /// The house bank's balance: the vault and every table's tray.
    pub bank: i64,
}

impl Holdings {
    /// Player balances plus the bank.
    pub fn total(&self) -> i64 {
        self.player_chips.saturating_add(self.bank)
    }
}

/// The invariant's verdict: the holdings found against the total when play began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Invariant {
    /// Player balances plus the bank before play.
    pub opening: i64,
    /// What was counted.
    pub found: Holdings,
}

impl Invariant {
    /// Compares `found` with the `opening` total.
    pub fn check(opening: i64, found: Holdings) -> Self {
        Invariant { opening, found }
    }

    /// Whether no chip was created or destroyed.
    pub fn held(&self) -> bool {
        self.found.total() == self.opening
    }

    /// One report line: `held: …` or `BROKEN: …`.
    pub fn describe(&self) -> String {
        let f = &self.found;
        let sums = format!(
            "{} players {} + house bank {} = {}",
            f.players,
            f.player_chips,
            f.bank,
            f.total()
        );
        if self.held() {
            format!("held: {sums} = opening total")
        } else {
            format!(
                "BROKEN: {sums}, opening total {} ({:+} chips)",
                self.opening,
                f.total().saturating_sub(self.opening)
            )
        }
    }
}

/// Creates the vault unless the store already has one, and returns the opening total
/// (player balances plus the bank) that play must conserve.
pub async fn open(storage: &PersistentStorageManager) -> Result<i64> {
    let opening = Bank {
        balance: OPENING_BANK,
    };
    match storage
        .store_if(BANK, VAULT, &opening, Expect::Absent)
        .await
    {
        Ok(_) | Err(StorageError::Conflict { .. }) => {}
        Err(e) => return Err(e).context("opening the house bank"),
    }
    Ok(count(storage).await?.total())
}

/// Counts every player's balance and the bank in `storage`.
pub async fn count(storage: &PersistentStorageManager) -> Result<Holdings> {
    let (players, player_chips) = sum(storage, "players").await?;
    let (_, bank) = sum(storage, BANK).await?;
    Ok(Holdings {
        players,
        player_chips,
        bank,
    })
}

/// The number of records in `collection` and the sum of their `balance`s.
async fn sum(storage: &PersistentStorageManager, collection: &str) -> Result<(u64, i64)> {
    let (mut records, mut chips) = (0u64, 0i64);
    let mut options = ListOptions::default().limit(1000);
    loop {
        let page = storage
            .scan::<Balance>(collection, options.clone())
            .await
            .with_context(|| format!("reading the balances in {collection}"))?;
        for (_, record) in &page.items {
            records += 1;
            chips = chips.saturating_add(record.balance);
        }
        match page.next_after {
            Some(after) => options = options.after(&after),
            None => break,
        }
    }
    Ok((records, chips))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holdings(balances: &[i64], bank: i64) -> Holdings {
        Holdings {
            players: u64::try_from(balances.len()).unwrap_or(u64::MAX),
            player_chips: balances.iter().sum(),
            bank,
        }
    }

    #[test]
    fn conserved_chips_hold() {
        // Three players started with 1,000 each from a 10,000 bank; play moved chips around.
        let opening = 10_000;
        let inv = Invariant::check(opening, holdings(&[1_250, 400, 2_000], 6_350));
        assert!(inv.held());
        assert_eq!(
            inv.describe(),
            "held: 3 players 3650 + house bank 6350 = 10000 = opening total"
        );
    }

    #[test]
    fn a_created_or_destroyed_chip_breaks_it() {
        let opening = 10_000;
        // A payout credited to the player but never debited from the bank.
        let created = Invariant::check(opening, holdings(&[1_250, 400, 2_020], 6_350));
        assert!(!created.held());
        assert_eq!(
            created.describe(),
            "BROKEN: 3 players 3670 + house bank 6350 = 10020, opening total 10000 (+20 chips)"
        );
        // A stake taken from the player that never reached the bank.
        let destroyed = Invariant::check(opening, holdings(&[1_250, 395, 2_000], 6_350));
        assert!(!destroyed.held());
        assert!(
            destroyed.describe().ends_with("(-5 chips)"),
            "{destroyed:?}"
        );
    }
}

//! What the demo stores — players, games, bets, rolls, lobby seats, archived games — and the
//! (simplified) craps rules that drive them.

use serde::{Deserialize, Serialize};

/// House rules shown on every open seat; every seat listing is the same document, which is
/// what content-addressed deduplication is for.
pub const HOUSE_RULES: &str = "Pass line and don't pass pay even money; don't pass bars 12. \
    Field pays even money on 3, 4, 9, 10 and 11, double on 2 and 12. Minimum bet 5, maximum \
    500. Dice are rolled by the shooter; a seven-out passes the dice to the left.";

/// A player's account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Player {
    /// Key in `players`.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Chips.
    pub balance: i64,
    /// Games joined.
    pub games_played: u32,
    /// Bets won.
    pub bets_won: u32,
    /// Bets lost.
    pub bets_lost: u32,
}

impl Player {
    /// A new player with the starting balance.
    pub fn new(id: String) -> Self {
        let name = format!("player {id}");
        Player {
            id,
            name,
            balance: 1_000,
            games_played: 0,
            bets_won: 0,
            bets_lost: 0,
        }
    }
}

/// A game at a table, while it is played.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Game {
    /// Key in `games` (and in `archive` once finished).
    pub id: String,
    /// The table (demo task) it is played at.
    pub table: u32,
    /// Player ids, in seat order.
    pub players: Vec<String>,
    /// Seat of the shooter.
    pub shooter: usize,
    /// The point, once established.
    pub point: Option<u8>,
    /// Rolls so far.
    pub rolls: u32,
    /// Line bets waiting for a decision (keys in `bets`).
    pub open_bets: Vec<String>,
    /// Chips bet so far.
    pub wagered: i64,
    /// Chips paid back so far (stakes included).
    pub paid_out: i64,
}

/// The kinds of bet the demo's players make.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BetKind {
    /// Wins on a natural or a made point.
    PassLine,
    /// The opposite of the pass line; 12 on the come-out is a push.
    DontPass,
    /// A one-roll bet on 2, 3, 4, 9, 10, 11 or 12.
    Field,
}

/// Where a bet stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BetStatus {
    /// Waiting for a decision.
    Open,
    /// Paid.
    Won,
    /// Taken by the house.
    Lost,
    /// Stake returned.
    Push,
}

/// A bet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bet {
    /// Key in `bets`.
    pub id: String,
    /// The game.
    pub game: String,
    /// The player.
    pub player: String,
    /// What was bet on.
    pub kind: BetKind,
    /// Stake.
    pub amount: i64,
    /// Where it stands.
    pub status: BetStatus,
    /// Paid back on settlement (stake included).
    pub payout: i64,
    /// Roll number it was placed before.
    pub placed_at_roll: u32,
    /// Roll number that settled it.
    pub settled_at_roll: Option<u32>,
}

/// What a roll decided for the line bets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Decision {
    /// 7 or 11 on the come-out.
    Natural,
    /// 2, 3 or 12 on the come-out.
    Craps(u8),
    /// The point was rolled again.
    PointMade,
    /// A 7 before the point.
    SevenOut,
}

/// One roll of the dice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Roll {
    /// The game.
    pub game: String,
    /// 1-based roll number within the game.
    pub number: u32,
    /// Who rolled.
    pub shooter: String,
    /// The two dice.
    pub dice: [u8; 2],
    /// The point before the roll.
    pub point_before: Option<u8>,
    /// The point after the roll.
    pub point_after: Option<u8>,
    /// What it decided, if anything.
    pub decision: Option<Decision>,
}

/// An open or closed seat as advertised in the lobby. Identical across tables.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeatListing {
    /// `"open"` or `"closed"`.
    pub status: &'static str,
    /// Smallest bet.
    pub min_bet: i64,
    /// Largest bet.
    pub max_bet: i64,
    /// The house rules.
    pub rules: &'static str,
}

/// A finished game with its whole history (large and repetitive: compresses well).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArchivedGame {
    /// The game as it ended.
    pub game: Game,
    /// Every roll.
    pub rolls: Vec<Roll>,
}

/// The point and decision after rolling `total` with `point` established (or not).
pub fn resolve(point: Option<u8>, total: u8) -> (Option<u8>, Option<Decision>) {
    match (point, total) {
        (None, 7 | 11) => (None, Some(Decision::Natural)),
        (None, 2 | 3 | 12) => (None, Some(Decision::Craps(total))),
        (None, n) => (Some(n), None),
        (Some(_), 7) => (None, Some(Decision::SevenOut)),
        (Some(p), n) if n == p => (None, Some(Decision::PointMade)),
        (Some(p), _) => (Some(p), None),
    }
}

/// How a bet ends after a roll of `total` that decided `decision`: `None` while it stays
/// open, else its status and payout (stake included).
pub fn settle(
    kind: BetKind,
    amount: i64,
    total: u8,
    decision: Option<Decision>,
) -> Option<(BetStatus, i64)> {
    let won = Some((BetStatus::Won, amount * 2));
    let lost = Some((BetStatus::Lost, 0));
    match (kind, decision) {
        (BetKind::Field, _) => match total {
            2 | 12 => Some((BetStatus::Won, amount * 3)),
            3 | 4 | 9 | 10 | 11 => won,
            _ => lost,
        },
        (_, None) => None,
        (BetKind::PassLine, Some(Decision::Natural | Decision::PointMade)) => won,
        (BetKind::PassLine, Some(Decision::Craps(_) | Decision::SevenOut)) => lost,
        (BetKind::DontPass, Some(Decision::Natural | Decision::PointMade)) => lost,
        (BetKind::DontPass, Some(Decision::Craps(12))) => Some((BetStatus::Push, amount)),
        (BetKind::DontPass, Some(Decision::Craps(_) | Decision::SevenOut)) => won,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn come_out_and_point_rolls() {
        assert_eq!(resolve(None, 7), (None, Some(Decision::Natural)));
        assert_eq!(resolve(None, 12), (None, Some(Decision::Craps(12))));
        assert_eq!(resolve(None, 6), (Some(6), None));
        assert_eq!(resolve(Some(6), 8), (Some(6), None));
        assert_eq!(resolve(Some(6), 6), (None, Some(Decision::PointMade)));
        assert_eq!(resolve(Some(6), 7), (None, Some(Decision::SevenOut)));
    }

    #[test]
    fn settlement() {
        let pass = BetKind::PassLine;
        let dont = BetKind::DontPass;
        assert_eq!(settle(pass, 10, 8, None), None);
        assert_eq!(
            settle(pass, 10, 7, Some(Decision::Natural)),
            Some((BetStatus::Won, 20))
        );
        assert_eq!(
            settle(dont, 10, 7, Some(Decision::SevenOut)),
            Some((BetStatus::Won, 20))
        );
        assert_eq!(
            settle(dont, 10, 12, Some(Decision::Craps(12))),
            Some((BetStatus::Push, 10))
        );
        assert_eq!(
            settle(dont, 10, 3, Some(Decision::Craps(3))),
            Some((BetStatus::Won, 20))
        );
        assert_eq!(
            settle(BetKind::Field, 10, 12, None),
            Some((BetStatus::Won, 30))
        );
        assert_eq!(
            settle(BetKind::Field, 10, 4, None),
            Some((BetStatus::Won, 20))
        );
        assert_eq!(
            settle(BetKind::Field, 10, 7, None),
            Some((BetStatus::Lost, 0))
        );
    }
}

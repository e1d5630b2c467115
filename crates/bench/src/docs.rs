//! BitCraps-like documents of about 1 KiB of JSON; a share are identical lobby records.

use serde::{Deserialize, Serialize};

/// A bet on the table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bet {
    pub kind: String,
    pub amount: u64,
    pub odds: Option<u32>,
    pub settled: bool,
}

/// A player at a table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Player {
    pub id: String,
    pub name: String,
    pub balance: u64,
    pub bets: Vec<Bet>,
}

/// A game record (or, for lobby documents, the default table).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Game {
    pub id: String,
    pub table: u32,
    pub state: String,
    pub point: Option<u8>,
    pub shooter: String,
    pub players: Vec<Player>,
    pub rolls: Vec<[u8; 2]>,
    pub created_at: u64,
    pub settings: Settings,
}

/// Table settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    pub min_bet: u64,
    pub max_bet: u64,
    pub odds_multiple: u32,
    pub field_pays_triple_on_12: bool,
}

/// splitmix64: a deterministic generator so every store gets the same documents.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    pub fn unit(&mut self) -> f64 {
        #[expect(clippy::cast_precision_loss, reason = "53 random bits into an f64")]
        let x = (self.next() >> 11) as f64;
        x / (1u64 << 53) as f64
    }
}

const NAMES: [&str; 8] = [
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi",
];
const KINDS: [&str; 6] = [
    "pass_line",
    "dont_pass",
    "come",
    "field",
    "place_6",
    "hard_8",
];

fn pick<'a>(items: &[&'a str], rng: &mut Rng) -> &'a str {
    let i = usize::try_from(rng.below(items.len() as u64)).unwrap_or(0);
    items.get(i).copied().unwrap_or("x")
}

/// The shared lobby document (identical across keys: dedup material).
pub fn lobby() -> Game {
    Game {
        id: "lobby".into(),
        table: 0,
        state: "waiting_for_players".into(),
        point: None,
        shooter: String::new(),
        players: Vec::new(),
        rolls: Vec::new(),
        created_at: 0,
        settings: Settings {
            min_bet: 10,
            max_bet: 5000,
            odds_multiple: 3,
            field_pays_triple_on_12: true,
        },
    }
}

/// Document number `i`: 20% lobby records, the rest distinct games of about 1 KiB.
pub fn document(i: u64) -> Game {
    let mut rng = Rng(i.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ 0xB17C_4A95);
    if rng.below(5) == 0 {
        return lobby();
    }
    let players = (0..2 + rng.below(3))
        .map(|p| Player {
            id: format!("player-{:08x}", rng.next() & 0xffff_ffff),
            name: format!("{}-{p}", pick(&NAMES, &mut rng)),
            balance: rng.below(100_000),
            bets: (0..1 + rng.below(3))
                .map(|_| Bet {
                    kind: pick(&KINDS, &mut rng).to_owned(),
                    amount: 5 * (1 + rng.below(200)),
                    odds: (rng.below(2) == 0).then(|| u32::try_from(rng.below(5)).unwrap_or(0)),
                    settled: rng.below(3) == 0,
                })
                .collect(),
        })
        .collect();
    let die = |rng: &mut Rng| u8::try_from(1 + rng.below(6)).unwrap_or(1);
    Game {
        id: format!("game-{i:010}"),
        table: u32::try_from(rng.below(64)).unwrap_or(0),
        state: ["come_out", "point_on", "settling"][usize::try_from(rng.below(3)).unwrap_or(0)]
            .to_owned(),
        point: [None, Some(4), Some(5), Some(6), Some(8), Some(9), Some(10)]
            [usize::try_from(rng.below(7)).unwrap_or(0)],
        shooter: pick(&NAMES, &mut rng).to_owned(),
        players,
        rolls: (0..rng.below(12))
            .map(|_| [die(&mut rng), die(&mut rng)])
            .collect(),
        created_at: 1_795_000_000_000 + rng.below(10_000_000),
        settings: Settings {
            min_bet: 10,
            max_bet: 5000,
            odds_multiple: 3,
            field_pays_triple_on_12: true,
        },
    }
}

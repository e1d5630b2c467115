//! One simulated craps table: a task that plays games one after another, keeping all game
//! state in the store (reading it back each roll, as a stateless game server would).

use anyhow::{Context, Result};
use bitcraps_storage::{ListOptions, PersistentStorageManager};
use indicatif::ProgressBar;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::latency::Samples;
use super::model::{
    ArchivedGame, Bet, BetKind, BetStatus, Decision, Game, HOUSE_RULES, Player, Roll, SeatListing,
    resolve, settle,
};

/// Players known to one table; players come back for later games.
const PLAYER_POOL: u32 = 24;
/// Seats at a table; the ones not taken are advertised in the lobby.
const SEATS: usize = 8;

/// Latencies of the calls one table made.
#[derive(Debug, Default, Clone)]
pub struct Latencies {
    /// `store`.
    pub store: Samples,
    /// `store_batch`.
    pub store_batch: Samples,
    /// `retrieve`.
    pub retrieve: Samples,
    /// `delete`.
    pub delete: Samples,
}

/// What one table (or, merged, all tables) did.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    /// Call latencies.
    pub latencies: Latencies,
    /// Records written (each record of a batch counts).
    pub records_written: u64,
    /// Games finished and archived.
    pub games: u64,
    /// Dice rolls.
    pub rolls: u64,
    /// Bets placed.
    pub bets: u64,
}

impl Outcome {
    /// Adds another table's outcome.
    pub fn merge(&mut self, other: Outcome) {
        let l = other.latencies;
        self.latencies.store.merge(l.store);
        self.latencies.store_batch.merge(l.store_batch);
        self.latencies.retrieve.merge(l.retrieve);
        self.latencies.delete.merge(l.delete);
        self.records_written += other.records_written;
        self.games += other.games;
        self.rolls += other.rolls;
        self.bets += other.bets;
    }
}

/// A table task.
pub struct Table {
    id: u32,
    storage: PersistentStorageManager,
    rng: StdRng,
    bar: ProgressBar,
    budget: u64,
    next_game: u32,
    out: Outcome,
}

impl Table {
    /// A table that plays whole games until it has written `budget` records.
    pub fn new(
        id: u32,
        seed: u64,
        storage: PersistentStorageManager,
        bar: ProgressBar,
        budget: u64,
    ) -> Self {
        Table {
            id,
            storage,
            rng: StdRng::seed_from_u64(seed.wrapping_add(u64::from(id))),
            bar,
            budget,
            next_game: 0,
            out: Outcome::default(),
        }
    }

    /// Plays until the budget is spent.
    pub async fn run(mut self) -> Result<Outcome> {
        while self.out.records_written < self.budget {
            self.play_game()
                .await
                .with_context(|| format!("table {}", self.id))?;
        }
        Ok(self.out)
    }

    async fn play_game(&mut self) -> Result<()> {
        let gid = format!("t{:02}-g{:05}", self.id, self.next_game);
        self.next_game += 1;

        // Players join: returning players are read back, new ones are created.
        let wanted = self.rng.random_range(2..=6usize);
        let mut ids: Vec<String> = Vec::with_capacity(wanted);
        while ids.len() < wanted {
            let id = format!(
                "t{:02}-p{:03}",
                self.id,
                self.rng.random_range(0..PLAYER_POOL)
            );
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        let mut players = Vec::with_capacity(ids.len());
        for id in &ids {
            let mut player = self
                .get::<Player>("players", id)
                .await?
                .unwrap_or_else(|| Player::new(id.clone()));
            player.games_played += 1;
            if player.balance < 100 {
                player.balance += 1_000;
            }
            players.push(player);
        }
        self.put_batch("players", &keyed(&players, |p| p.id.clone()))
            .await?;

        let game = Game {
            id: gid.clone(),
            table: self.id,
            players: ids,
            shooter: 0,
            point: None,
            rolls: 0,
            open_bets: Vec::new(),
            wagered: 0,
            paid_out: 0,
        };
        self.put("games", &gid, &game).await?;
        self.advertise_seats(&gid, game.players.len(), "open")
            .await?;

        let rolls = self.rng.random_range(8..=20u32);
        for _ in 0..rolls {
            self.roll(&gid).await?;
        }
        self.finish(&gid).await
    }

    /// One roll: bets placed, dice rolled, bets settled, balances and game updated.
    async fn roll(&mut self, gid: &str) -> Result<()> {
        let mut game: Game = self.get("games", gid).await?.context("the game vanished")?;
        let mut players = Vec::with_capacity(game.players.len());
        for id in &game.players {
            players.push(
                self.get::<Player>("players", id)
                    .await?
                    .with_context(|| format!("player {id} vanished"))?,
            );
        }
        let number = game.rolls + 1;

        let mut placed = Vec::new();
        for player in &mut players {
            if self.rng.random_bool(0.6) {
                placed.push(self.place(&mut game, player, BetKind::Field, number));
            }
            if game.point.is_none() && self.rng.random_bool(0.8) {
                let kind = if self.rng.random_bool(0.85) {
                    BetKind::PassLine
                } else {
                    BetKind::DontPass
                };
                placed.push(self.place(&mut game, player, kind, number));
            }
        }
        self.put_batch("bets", &keyed(&placed, |b| b.id.clone()))
            .await?;
        let mut waiting = Vec::with_capacity(game.open_bets.len());
        for id in &game.open_bets {
            waiting.push(
                self.get::<Bet>("bets", id)
                    .await?
                    .with_context(|| format!("bet {id} vanished"))?,
            );
        }

        let (a, b) = (
            self.rng.random_range(1..=6u8),
            self.rng.random_range(1..=6u8),
        );
        let (dice, total) = ([a, b], a + b);
        let (point_after, decision) = resolve(game.point, total);
        let shooter = game.players.get(game.shooter).cloned().unwrap_or_default();
        let roll = Roll {
            game: gid.to_owned(),
            number,
            shooter,
            dice,
            point_before: game.point,
            point_after,
            decision,
        };
        self.put("rolls", &format!("{gid}/r{number:03}"), &roll)
            .await?;

        let mut settled = Vec::new();
        let mut still_open = Vec::new();
        for mut bet in waiting.into_iter().chain(placed) {
            let Some((status, payout)) = settle(bet.kind, bet.amount, total, decision) else {
                still_open.push(bet.id);
                continue;
            };
            bet.status = status;
            bet.payout = payout;
            bet.settled_at_roll = Some(number);
            game.paid_out += payout;
            if let Some(player) = players.iter_mut().find(|p| p.id == bet.player) {
                player.balance += payout;
                match status {
                    BetStatus::Won => player.bets_won += 1,
                    BetStatus::Lost => player.bets_lost += 1,
                    BetStatus::Open | BetStatus::Push => {}
                }
            }
            settled.push(bet);
        }
        self.put_batch("bets", &keyed(&settled, |b| b.id.clone()))
            .await?;
        self.put_batch("players", &keyed(&players, |p| p.id.clone()))
            .await?;

        game.open_bets = still_open;
        game.point = point_after;
        game.rolls = number;
        if decision == Some(Decision::SevenOut) && !game.players.is_empty() {
            game.shooter = (game.shooter + 1) % game.players.len();
        }
        self.put("games", gid, &game).await?;
        self.out.rolls += 1;
        Ok(())
    }

    fn place(&mut self, game: &mut Game, player: &mut Player, kind: BetKind, roll: u32) -> Bet {
        let amount = 5 * self.rng.random_range(1..=10i64);
        player.balance -= amount;
        game.wagered += amount;
        self.out.bets += 1;
        Bet {
            id: format!("{}/r{roll:03}/{}/{kind:?}", game.id, player.id),
            game: game.id.clone(),
            player: player.id.clone(),
            kind,
            amount,
            status: BetStatus::Open,
            payout: 0,
            placed_at_roll: roll,
            settled_at_roll: None,
        }
    }

    /// Archives the game with its rolls, removes it from the live games, closes its seats.
    async fn finish(&mut self, gid: &str) -> Result<()> {
        let game: Game = self.get("games", gid).await?.context("the game vanished")?;
        let page = self
            .storage
            .list("rolls", ListOptions::default().prefix(&format!("{gid}/")))
            .await?;
        let mut rolls = Vec::with_capacity(page.keys.len());
        for key in &page.keys {
            rolls.extend(self.get::<Roll>("rolls", key).await?);
        }
        let seated = game.players.len();
        self.put("archive", gid, &ArchivedGame { game, rolls })
            .await?;
        self.remove("games", gid).await?;
        self.advertise_seats(gid, seated, "closed").await?;
        self.out.games += 1;
        Ok(())
    }

    /// The same listing for every free seat of every table: deduplicated to one blob.
    async fn advertise_seats(
        &mut self,
        gid: &str,
        seated: usize,
        status: &'static str,
    ) -> Result<()> {
        let listing = SeatListing {
            status,
            min_bet: 5,
            max_bet: 500,
            rules: HOUSE_RULES,
        };
        let seats: Vec<(String, &SeatListing)> = (seated..SEATS)
            .map(|seat| (format!("{gid}/seat-{seat}"), &listing))
            .collect();
        self.put_batch("lobby", &seats).await
    }

    async fn get<T: DeserializeOwned>(&mut self, c: &str, k: &str) -> Result<Option<T>> {
        self.out
            .latencies
            .retrieve
            .time(self.storage.retrieve::<T>(c, k))
            .await
            .with_context(|| format!("reading {c}/{k}"))
    }

    async fn put<T: Serialize + Sync>(&mut self, c: &str, k: &str, value: &T) -> Result<()> {
        self.out
            .latencies
            .store
            .time(self.storage.store(c, k, value))
            .await
            .with_context(|| format!("writing {c}/{k}"))?;
        self.wrote(1);
        Ok(())
    }

    async fn put_batch<T: Serialize + Sync>(
        &mut self,
        c: &str,
        items: &[(String, T)],
    ) -> Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        self.out
            .latencies
            .store_batch
            .time(self.storage.store_batch(c, items))
            .await
            .with_context(|| format!("writing a batch of {} records to {c}", items.len()))?;
        self.wrote(items.len());
        Ok(())
    }

    async fn remove(&mut self, c: &str, k: &str) -> Result<bool> {
        self.out
            .latencies
            .delete
            .time(self.storage.delete(c, k))
            .await
            .with_context(|| format!("deleting {c}/{k}"))
    }

    fn wrote(&mut self, records: usize) {
        let n = u64::try_from(records).unwrap_or(u64::MAX);
        self.out.records_written += n;
        self.bar.inc(n);
    }
}

fn keyed<T: Clone>(items: &[T], key: impl Fn(&T) -> String) -> Vec<(String, T)> {
    items.iter().map(|item| (key(item), item.clone())).collect()
}

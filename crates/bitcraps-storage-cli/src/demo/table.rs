//! One simulated craps table: a task that plays games one after another, keeping all game
//! state in the store (reading it back each roll, as a stateless game server would).

use std::collections::BTreeMap;

use crate::progress::Bar;
use anyhow::{Context, Result};
use bitcraps_storage::{
    Expect, ListOptions, PersistentStorageManager, StorageError, Version, WriteBatch,
};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::latency::Samples;
use super::ledger::{BANK, Bank, TRAY_FLOAT, VAULT, tray};
use super::model::{
    ArchivedGame, Bet, BetKind, BetStatus, Decision, Game, HOUSE_RULES, Player, Roll, SeatListing,
    resolve, settle,
};

/// Players known to one table; players come back for later games.
const PLAYER_POOL: u32 = 24;
/// Seats at a table; the ones not taken are advertised in the lobby.
const SEATS: usize = 8;
/// Chips the house gives a player who comes back with fewer than 100.
const TOP_UP: i64 = 1_000;
/// Moves of chips that conflict this often in a row give up (every table shares the vault,
/// so a few conflicts are normal; this many would mean something is wrong).
const MAX_ATTEMPTS: u32 = 1_000;

/// Latencies of the calls one table made.
#[derive(Debug, Default, Clone)]
pub struct Latencies {
    /// `store`.
    pub store: Samples,
    /// `store_batch`.
    pub store_batch: Samples,
    /// `retrieve`.
    pub retrieve: Samples,
    /// `retrieve_versioned`.
    pub retrieve_versioned: Samples,
    /// `apply`.
    pub apply: Samples,
    /// `update`.
    pub update: Samples,
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
    /// Applies that found a balance, a tray or the vault changed since it was read (nothing
    /// written; read again and retried).
    pub conflicts: u64,
}

impl Outcome {
    /// Adds another table's outcome.
    pub fn merge(&mut self, other: Outcome) {
        let l = other.latencies;
        self.latencies.store.merge(l.store);
        self.latencies.store_batch.merge(l.store_batch);
        self.latencies.retrieve.merge(l.retrieve);
        self.latencies
            .retrieve_versioned
            .merge(l.retrieve_versioned);
        self.latencies.apply.merge(l.apply);
        self.latencies.update.merge(l.update);
        self.latencies.delete.merge(l.delete);
        self.records_written += other.records_written;
        self.games += other.games;
        self.rolls += other.rolls;
        self.bets += other.bets;
        self.conflicts += other.conflicts;
    }
}

/// A table task.
pub struct Table {
    id: u32,
    storage: PersistentStorageManager,
    rng: StdRng,
    bar: Bar,
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
        bar: Bar,
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

        self.refill_tray().await?;
        // Players join: returning players are read back, new ones are created with chips
        // from the table's tray, which also tops up players who are nearly broke.
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
        self.with_tray(&ids, &[], |found, tray| {
            found
                .into_iter()
                .zip(&ids)
                .map(|(player, id)| {
                    let mut player = player.unwrap_or_else(|| {
                        let new = Player::new(id.clone());
                        tray.balance -= new.balance;
                        new
                    });
                    player.games_played += 1;
                    if player.balance < 100 {
                        player.balance += TOP_UP;
                        tray.balance -= TOP_UP;
                    }
                    Ok(player)
                })
                .collect()
        })
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

    /// One roll: bets placed, dice rolled, bets settled — the new and settled bets, the
    /// players' balances and the table's tray in one `apply` — and the game updated.
    async fn roll(&mut self, gid: &str) -> Result<()> {
        let game: Game = self.get("games", gid).await?.context("the game vanished")?;
        let number = game.rolls + 1;

        // The players' choices are drawn once: a settlement retried after a conflict settles
        // the same bets against the balances read again.
        let mut placed = Vec::new();
        for player in &game.players {
            if self.rng.random_bool(0.6) {
                placed.push(self.place(&game, player, BetKind::Field, number));
            }
            if game.point.is_none() && self.rng.random_bool(0.8) {
                let kind = if self.rng.random_bool(0.85) {
                    BetKind::PassLine
                } else {
                    BetKind::DontPass
                };
                placed.push(self.place(&game, player, kind, number));
            }
        }
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

        // What changes: stakes go from the players to the tray, payouts come back.
        let mut moves = Moves::default();
        for bet in &placed {
            moves.add(&bet.player, -bet.amount, None);
        }
        let new_ids: Vec<String> = placed.iter().map(|b| b.id.clone()).collect();
        let mut written = Vec::new();
        let mut still_open = Vec::new();
        for mut bet in waiting.into_iter().chain(placed) {
            let Some((status, payout)) = settle(bet.kind, bet.amount, total, decision) else {
                still_open.push(bet.id.clone());
                if new_ids.contains(&bet.id) {
                    written.push(bet);
                }
                continue;
            };
            bet.status = status;
            bet.payout = payout;
            bet.settled_at_roll = Some(number);
            moves.add(&bet.player, payout, Some(status));
            written.push(bet);
        }
        self.with_tray(&game.players, &written, |found, tray| {
            let players = found
                .into_iter()
                .zip(&game.players)
                .map(|(p, id)| p.with_context(|| format!("player {id} vanished")))
                .collect::<Result<Vec<_>>>()?;
            Ok(moves.apply(players, tray))
        })
        .await?;

        let seven_out = decision == Some(Decision::SevenOut);
        let (wagered, paid_out) = (moves.wagered, moves.paid_out);
        let updated = self
            .change_game(gid, |old| {
                let mut game = old?;
                game.open_bets.clone_from(&still_open);
                game.point = point_after;
                game.rolls = number;
                if seven_out && !game.players.is_empty() {
                    game.shooter = (game.shooter + 1) % game.players.len();
                }
                game.wagered += wagered;
                game.paid_out += paid_out;
                Some(game)
            })
            .await?;
        updated.context("the game vanished")?;
        self.out.rolls += 1;
        Ok(())
    }

    fn place(&mut self, game: &Game, player: &str, kind: BetKind, roll: u32) -> Bet {
        let amount = 5 * self.rng.random_range(1..=10i64);
        self.out.bets += 1;
        Bet {
            id: format!("{}/r{roll:03}/{player}/{kind:?}", game.id),
            game: game.id.clone(),
            player: player.to_owned(),
            kind,
            amount,
            status: BetStatus::Open,
            payout: 0,
            placed_at_roll: roll,
            settled_at_roll: None,
        }
    }

    /// Brings the table's tray back to its float: the vault covers what it lacks or takes
    /// what it won, in one `apply` expecting both versions read (another table at the vault
    /// meanwhile is a conflict: read again, retry).
    async fn refill_tray(&mut self) -> Result<()> {
        let key = tray(self.id);
        for _ in 0..MAX_ATTEMPTS {
            let (mut vault, v_vault) = self
                .get_versioned::<Bank>(BANK, VAULT)
                .await?
                .context("the vault vanished")?;
            let found = self.get_versioned::<Bank>(BANK, &key).await?;
            let (mut tray, expect) = match found {
                Some((tray, v)) => (tray, Expect::Version(v)),
                None => (Bank { balance: 0 }, Expect::Absent),
            };
            vault.balance -= TRAY_FLOAT - tray.balance;
            tray.balance = TRAY_FLOAT;
            let mut batch = WriteBatch::new();
            batch.expect(BANK, VAULT, Expect::Version(v_vault));
            batch.expect(BANK, &key, expect);
            batch.store(BANK, VAULT, &vault)?;
            batch.store(BANK, &key, &tray)?;
            if self.try_apply(batch, 2).await? {
                return Ok(());
            }
        }
        anyhow::bail!("gave up refilling the tray after {MAX_ATTEMPTS} conflicts")
    }

    /// Applies `batch` of `records` writes: `false` (and counted) on a conflict.
    async fn try_apply(&mut self, batch: WriteBatch, records: usize) -> Result<bool> {
        match self
            .out
            .latencies
            .apply
            .time(self.storage.apply(batch))
            .await
        {
            Ok(_) => {
                self.wrote(records);
                Ok(true)
            }
            Err(StorageError::Conflict { .. }) => {
                self.out.conflicts += 1;
                Ok(false)
            }
            Err(e) => Err(e).context("moving chips"),
        }
    }

    /// Reads the players `ids` (`None` for one that does not exist) and the table's tray with
    /// their versions, lets `change` decide the players' new state and the tray's, and writes
    /// them with `bets` in one `apply` that expects exactly the versions read: a change to
    /// any of them meanwhile makes it a conflict, and then everything is read again and
    /// `change` called again, so no chip is ever created or lost.
    async fn with_tray<F>(&mut self, ids: &[String], bets: &[Bet], mut change: F) -> Result<()>
    where
        F: FnMut(Vec<Option<Player>>, &mut Bank) -> Result<Vec<Player>>,
    {
        let mut base = WriteBatch::new();
        for bet in bets {
            base.store("bets", &bet.id, bet)?;
        }
        let key = tray(self.id);
        for _ in 0..MAX_ATTEMPTS {
            let mut batch = base.clone();
            let mut found = Vec::with_capacity(ids.len());
            for id in ids {
                let read = self.get_versioned::<Player>("players", id).await?;
                let expect = read
                    .as_ref()
                    .map_or(Expect::Absent, |(_, v)| Expect::Version(*v));
                batch.expect("players", id, expect);
                found.push(read.map(|(p, _)| p));
            }
            let (mut tray, version) = self
                .get_versioned::<Bank>(BANK, &key)
                .await?
                .context("the table's tray vanished")?;
            batch.expect(BANK, &key, Expect::Version(version));
            let players = change(found, &mut tray)?;
            for player in &players {
                batch.store("players", &player.id, player)?;
            }
            batch.store(BANK, &key, &tray)?;
            if self
                .try_apply(batch, bets.len() + players.len() + 1)
                .await?
            {
                return Ok(());
            }
        }
        anyhow::bail!("gave up settling with the tray after {MAX_ATTEMPTS} conflicts")
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

    async fn get_versioned<T: DeserializeOwned>(
        &mut self,
        c: &str,
        k: &str,
    ) -> Result<Option<(T, Version)>> {
        self.out
            .latencies
            .retrieve_versioned
            .time(self.storage.retrieve_versioned::<T>(c, k))
            .await
            .with_context(|| format!("reading {c}/{k} with its version"))
    }

    async fn change_game<F>(&mut self, gid: &str, f: F) -> Result<Option<Game>>
    where
        F: FnMut(Option<Game>) -> Option<Game>,
    {
        let game = self
            .out
            .latencies
            .update
            .time(self.storage.update("games", gid, f))
            .await
            .with_context(|| format!("updating games/{gid}"))?;
        self.wrote(1);
        Ok(game)
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

/// The chips one roll moves between each player and the tray, and the players' tallies.
#[derive(Debug, Default)]
struct Moves {
    /// Player id → (chips, bets won, bets lost).
    players: BTreeMap<String, (i64, u32, u32)>,
    wagered: i64,
    paid_out: i64,
}

impl Moves {
    /// `chips` to the player (negative: a stake to the tray), and how a settled bet ended.
    fn add(&mut self, player: &str, chips: i64, settled: Option<BetStatus>) {
        let entry = self.players.entry(player.to_owned()).or_default();
        entry.0 += chips;
        if chips < 0 {
            self.wagered -= chips;
        } else {
            self.paid_out += chips;
        }
        match settled {
            Some(BetStatus::Won) => entry.1 += 1,
            Some(BetStatus::Lost) => entry.2 += 1,
            Some(BetStatus::Open | BetStatus::Push) | None => {}
        }
    }

    /// The players and the tray after the moves: whatever a player gains the tray loses.
    fn apply(&self, mut players: Vec<Player>, tray: &mut Bank) -> Vec<Player> {
        for player in &mut players {
            if let Some((chips, won, lost)) = self.players.get(&player.id) {
                player.balance += chips;
                tray.balance -= chips;
                player.bets_won += won;
                player.bets_lost += lost;
            }
        }
        players
    }
}

//! Crash test: a child process writes from several tasks and reports acknowledgements; it is
//! killed with SIGKILL at random moments, several times. After each kill every acknowledged
//! value is present and intact, every acknowledged delete is absent, `integrity_check` is ok
//! and no blob is orphaned or missing.
//!
//! The child also runs transfers between accounts (`ledger`): after each kill the sum of the
//! balances is conserved, every acknowledged transfer is applied as acknowledged, and every
//! balance is its initial balance plus exactly the transfers recorded (none applied twice or
//! in part).
//!
//! Two large game logs (stored in chunks) are overwritten again and again: after each kill
//! each holds its last acknowledged version or one that was in flight, byte for byte, and
//! the deep check verifies every chunk with exact chunk reference counts.
//!
//! And the change log, written in the same transaction as the records: after each kill its
//! seqs are dense, every acknowledged put, delete and transfer is in it, nothing is in it that
//! the writer did not issue, and replaying it gives exactly the records the store holds (a
//! change without its write, or a write without its change, would break that).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bitcraps_storage::{
    ChangeKind, Expect, ListOptions, PersistentStorageManager, StorageConfig, WriteBatch,
};
use bitcraps_storage_crash_test::ledger::{
    self, ACCOUNTS, Account, TRANSFERS, Transfer, initial_balances,
};
use bitcraps_storage_crash_test::{Rng, document, large_log};
use serde::de::DeserializeOwned;
use serde_json::Value;

const ROUNDS: u32 = 6;

/// A version of a large log: (round, version).
type LogVersion = (u32, u64);
/// A large log's last acknowledged version and the versions in flight since.
type LogState = (Option<LogVersion>, Vec<LogVersion>);

type BoxError = Box<dyn std::error::Error>;

/// Every record of `collection`, paged.
async fn all<T: DeserializeOwned>(
    storage: &PersistentStorageManager,
    collection: &str,
) -> Result<BTreeMap<String, T>, BoxError> {
    let mut records = BTreeMap::new();
    let mut options = ListOptions::default().limit(1000);
    loop {
        let page = storage.scan::<T>(collection, options.clone()).await?;
        records.extend(page.items);
        match page.next_after {
            Some(after) => options = options.after(&after),
            None => return Ok(records),
        }
    }
}

/// What the writer said about the `crash` collection, over every round.
#[derive(Default)]
struct Said {
    /// Keys a store or delete was issued for (`try`, `intent`).
    issued: BTreeSet<String>,
    /// Keys whose store was acknowledged.
    put: BTreeSet<String>,
    /// Keys whose delete was acknowledged.
    deleted: BTreeSet<String>,
}

/// The change log against the acknowledgements and the records (see the module comment).
async fn check_change_log(
    storage: &PersistentStorageManager,
    round: u32,
    said: &Said,
    transfers: &BTreeMap<String, Transfer>,
) -> Result<(), BoxError> {
    let mut log = Vec::new();
    loop {
        let after = log.last().map_or(0, |c: &bitcraps_storage::Change| c.seq);
        let page = storage.changes_since(after, 10_000).await?;
        if page.is_empty() {
            break;
        }
        log.extend(page);
    }
    for (i, c) in log.iter().enumerate() {
        assert_eq!(
            c.seq,
            i as u64 + 1,
            "round {round}: the log's seqs are dense"
        );
    }
    assert_eq!(storage.change_head().await?, log.len() as u64);
    // Replayed: the keys whose last change is a put are exactly the records held.
    let mut last: BTreeMap<(&str, &str), ChangeKind> = BTreeMap::new();
    let mut logged: BTreeSet<(&str, &str, ChangeKind)> = BTreeSet::new();
    for c in &log {
        last.insert((&c.collection, &c.key), c.kind);
        logged.insert((&c.collection, &c.key, c.kind));
        if c.collection == "crash" {
            assert!(
                said.issued.contains(&c.key),
                "round {round}: the log holds {} {}, which the writer never issued",
                c.kind,
                c.key
            );
        }
    }
    for collection in ["crash", ACCOUNTS, TRANSFERS, "logs"] {
        let held: BTreeSet<String> = all::<Value>(storage, collection)
            .await?
            .into_keys()
            .collect();
        let replayed: BTreeSet<String> = last
            .iter()
            .filter(|((c, _), kind)| *c == collection && **kind == ChangeKind::Put)
            .map(|((_, k), _)| (*k).to_owned())
            .collect();
        assert!(
            held == replayed,
            "round {round}: replaying the log of {collection} does not give its records: \
             {} held, {} replayed",
            held.len(),
            replayed.len()
        );
    }
    for key in &said.put {
        assert!(
            logged.contains(&("crash", key.as_str(), ChangeKind::Put)),
            "round {round}: acknowledged put of {key} is not in the log"
        );
    }
    for key in &said.deleted {
        assert!(
            logged.contains(&("crash", key.as_str(), ChangeKind::Delete)),
            "round {round}: acknowledged delete of {key} is not in the log"
        );
    }
    for id in transfers.keys() {
        assert!(
            logged.contains(&(TRANSFERS, id.as_str(), ChangeKind::Put)),
            "round {round}: acknowledged transfer {id} is not in the log"
        );
    }
    eprintln!("round {round}: change log of {} changes checked", log.len());
    Ok(())
}

/// Parses `r{round}-t{task}-{i}` back into its parts.
fn parts(key: &str) -> Option<(u32, u32, u64)> {
    let mut it = key.split('-');
    let r = it.next()?.strip_prefix('r')?.parse().ok()?;
    let t = it.next()?.strip_prefix('t')?.parse().ok()?;
    let i = it.next()?.parse().ok()?;
    Some((r, t, i))
}

#[test]
fn acknowledged_writes_survive_sigkill() -> Result<(), BoxError> {
    let seed = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| u64::from(d.subsec_nanos()) ^ d.as_secs().rotate_left(32))
                .unwrap_or(1)
                | 1
        });
    eprintln!("crash schedule seed: CRASH_SEED={seed}");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir()?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let storage =
            PersistentStorageManager::open(StorageConfig::with_data_path(dir.path())).await?;
        let mut batch = WriteBatch::new();
        for (key, balance) in initial_balances() {
            batch.store(ACCOUNTS, &key, &Account { balance })?;
            batch.expect(ACCOUNTS, &key, Expect::Absent);
        }
        storage.apply(batch).await?;
        storage.close().await?;
        Ok::<_, BoxError>(())
    })?;
    // Transfer id -> what the writer acknowledged it moved.
    let mut transfers: BTreeMap<String, Transfer> = BTreeMap::new();

    // key -> acknowledged state: Some(document) present, None deleted.
    let mut expected: BTreeMap<String, Option<Value>> = BTreeMap::new();
    let mut uncertain: BTreeSet<String> = BTreeSet::new();
    let mut total_acks = 0usize;
    // Large log -> its last acknowledged version and the versions in flight since, as
    // (round, version): what it may hold after a kill.
    let mut logs: BTreeMap<String, LogState> = BTreeMap::new();
    let mut log_acks = 0usize;
    let mut said = Said::default();

    for round in 0..ROUNDS {
        let mut child = Command::new(env!("CARGO_BIN_EXE_crash-writer"))
            .arg(dir.path())
            .arg(round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .collect::<Vec<String>>()
        });
        // Kill at a random moment, after the child has had time to open the store and write.
        let delay = 200 + rng.next_u64() % 600;
        std::thread::sleep(Duration::from_millis(delay));
        if let Some(status) = child.try_wait()? {
            return Err(format!("round {round}: the writer stopped by itself ({status})").into());
        }
        child.kill()?; // SIGKILL on Unix
        child.wait()?;
        let lines = reader.join().map_err(|_| "reader thread panicked")?;
        total_acks += lines.len();
        eprintln!(
            "round {round}: killed after {delay} ms, {} lines",
            lines.len()
        );
        for line in lines {
            if let Some((id, transfer)) = Transfer::parse_ack(&line) {
                transfers.insert(id, transfer);
                continue;
            }
            let Some((what, key)) = line.split_once(' ') else {
                continue; // a line cut by the kill
            };
            match what {
                "log" | "logintent" => {
                    let (log, i) = key.split_once(' ').ok_or("bad log line")?;
                    let Ok(i) = i.parse::<u64>() else {
                        continue; // a line cut by the kill
                    };
                    let (acked, in_flight) = logs.entry(log.to_owned()).or_default();
                    if what == "log" {
                        log_acks += 1;
                        *acked = Some((round, i));
                        in_flight.clear();
                    } else {
                        in_flight.push((round, i));
                    }
                }
                "try" => {
                    said.issued.insert(key.to_owned());
                }
                "put" => {
                    let (r, t, i) = parts(key).ok_or("bad key")?;
                    expected.insert(key.to_owned(), Some(document(r, t, i)));
                    said.put.insert(key.to_owned());
                }
                "intent" => {
                    uncertain.insert(key.to_owned());
                    said.issued.insert(key.to_owned());
                }
                "del" => {
                    uncertain.remove(key);
                    expected.insert(key.to_owned(), None);
                    said.deleted.insert(key.to_owned());
                }
                _ => {}
            }
        }

        rt.block_on(async {
            let storage =
                PersistentStorageManager::open(StorageConfig::with_data_path(dir.path())).await?;
            for (key, want) in &expected {
                if uncertain.contains(key) {
                    continue;
                }
                let got: Option<Value> = storage.retrieve("crash", key).await?;
                assert_eq!(
                    &got, want,
                    "round {round}: acknowledged state of {key} lost"
                );
            }
            for (log, (acked, in_flight)) in &logs {
                let got: Option<Value> = storage.retrieve("logs", log).await?;
                let allowed: Vec<(u32, u64)> = acked.iter().chain(in_flight).copied().collect();
                let ok = match &got {
                    // Absent only while no version was acknowledged.
                    None => acked.is_none(),
                    Some(g) => allowed.iter().any(|(r, i)| large_log(log, *r, *i) == *g),
                };
                assert!(
                    ok,
                    "round {round}: {log} holds neither its acknowledged version nor one in \
                     flight ({allowed:?})"
                );
            }
            let report = storage.check_consistency_deep().await?;
            assert!(report.is_ok(), "round {round}: {report:?}");
            check_change_log(&storage, round, &said, &transfers).await?;
            let balances: BTreeMap<String, i64> = all::<Account>(&storage, ACCOUNTS)
                .await?
                .into_iter()
                .map(|(key, a)| (key, a.balance))
                .collect();
            let records = all::<Transfer>(&storage, TRANSFERS).await?;
            let violations = ledger::check(&balances, &records, &transfers);
            let listed: Vec<String> = violations.iter().map(ToString::to_string).collect();
            assert!(
                violations.is_empty(),
                "round {round}: transfers broken:\n{}",
                listed.join("\n")
            );
            eprintln!(
                "round {round}: {} transfers recorded, {} acknowledged so far, total conserved",
                records.len(),
                transfers.len()
            );
            storage.close().await?;
            Ok::<_, BoxError>(())
        })?;
    }
    assert!(
        total_acks > 0,
        "the writer never acknowledged anything; the test proved nothing"
    );
    assert!(
        log_acks > 0,
        "the writer never acknowledged a large log; the chunk checks proved nothing"
    );
    assert!(
        !transfers.is_empty(),
        "the writer never acknowledged a transfer; the transfer checks proved nothing"
    );
    Ok(())
}

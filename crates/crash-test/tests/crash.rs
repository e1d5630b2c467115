//! Crash test: a child process writes from several tasks and reports acknowledgements; it is
//! killed with SIGKILL at random moments, several times. After each kill every acknowledged
//! value is present and intact, every acknowledged delete is absent, `integrity_check` is ok
//! and no blob is orphaned or missing.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bitcraps_storage::{PersistentStorageManager, StorageConfig};
use bitcraps_storage_crash_test::document;
use serde_json::Value;

const ROUNDS: u32 = 6;

/// xorshift64*: a reproducible schedule from a printed seed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
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
fn acknowledged_writes_survive_sigkill() -> Result<(), Box<dyn std::error::Error>> {
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

    // key -> acknowledged state: Some(document) present, None deleted.
    let mut expected: BTreeMap<String, Option<Value>> = BTreeMap::new();
    let mut uncertain: BTreeSet<String> = BTreeSet::new();
    let mut total_acks = 0usize;

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
        let delay = 200 + rng.next() % 600;
        std::thread::sleep(Duration::from_millis(delay));
        child.kill()?; // SIGKILL on Unix
        child.wait()?;
        let lines = reader.join().map_err(|_| "reader thread panicked")?;
        total_acks += lines.len();
        eprintln!(
            "round {round}: killed after {delay} ms, {} lines",
            lines.len()
        );
        for line in lines {
            let Some((what, key)) = line.split_once(' ') else {
                continue; // a line cut by the kill
            };
            match what {
                "put" => {
                    let (r, t, i) = parts(key).ok_or("bad key")?;
                    expected.insert(key.to_owned(), Some(document(r, t, i)));
                }
                "intent" => {
                    uncertain.insert(key.to_owned());
                }
                "del" => {
                    uncertain.remove(key);
                    expected.insert(key.to_owned(), None);
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
            let report = storage.check_consistency().await?;
            assert!(report.is_ok(), "round {round}: {report:?}");
            storage.close().await?;
            Ok::<_, Box<dyn std::error::Error>>(())
        })?;
    }
    assert!(
        total_acks > 0,
        "the writer never acknowledged anything; the test proved nothing"
    );
    Ok(())
}

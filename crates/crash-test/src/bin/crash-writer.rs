//! Writes forever from several tasks and prints each acknowledgement, until it is killed.
//! Usage: crash-writer DATA_DIR ROUND
//!
//! Lines: `try KEY` before a store is issued; `put KEY` after it is acknowledged;
//! `intent KEY` before a delete is issued;
//! `del KEY` after it is acknowledged; `xfer ID FROM TO AMOUNT end` after a transfer between
//! two accounts (see `ledger`) is acknowledged; `logintent KEY I` before version `I` of a
//! large log is stored and `log KEY I` after it is acknowledged. The accounts must exist.

use std::io::Write;
use std::sync::{Arc, Mutex};

use bitcraps_storage::{Expect, PersistentStorageManager, StorageConfig, StorageError, WriteBatch};
use bitcraps_storage_crash_test::ledger::{
    ACCOUNT_COUNT, ACCOUNTS, Account, TRANSFERS, Transfer, account, transfer_id,
};
use bitcraps_storage_crash_test::{LOGS, Rng, document, key, large_log};

const TASKS: u32 = 6;
const TRANSFER_TASKS: u32 = 4;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn say(out: &Mutex<std::io::Stdout>, line: &str) {
    if let Ok(mut out) = out.lock() {
        // A failed print only loses an acknowledgement the test then does not check.
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), BoxError> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().ok_or("usage: crash-writer DATA_DIR ROUND")?;
    let round: u32 = args.next().ok_or("missing ROUND")?.parse()?;
    let storage = PersistentStorageManager::open(StorageConfig::with_data_path(dir)).await?;
    let out = Arc::new(Mutex::new(std::io::stdout()));
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let (storage, out) = (storage.clone(), Arc::clone(&out));
        tasks.push(tokio::spawn(async move {
            for i in 0.. {
                let k = key(round, task, i);
                say(&out, &format!("try {k}"));
                storage
                    .store("crash", &k, &document(round, task, i))
                    .await?;
                say(&out, &format!("put {k}"));
                if i % 7 == 6 {
                    let victim = key(round, task, i - 3);
                    say(&out, &format!("intent {victim}"));
                    storage.delete("crash", &victim).await?;
                    say(&out, &format!("del {victim}"));
                }
            }
            Ok::<_, BoxError>(())
        }));
    }
    // Large documents overwritten again and again (chunks shared between versions).
    for log in LOGS {
        let (storage, out) = (storage.clone(), Arc::clone(&out));
        tasks.push(tokio::spawn(async move {
            for i in 0.. {
                say(&out, &format!("logintent {log} {i}"));
                storage
                    .store("logs", log, &large_log(log, round, i))
                    .await?;
                say(&out, &format!("log {log} {i}"));
            }
            Ok::<_, BoxError>(())
        }));
    }
    for task in 0..TRANSFER_TASKS {
        let (storage, out) = (storage.clone(), Arc::clone(&out));
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng((u64::from(round) << 32 | u64::from(task)) * 2 + 1);
            for i in 0.. {
                let id = transfer_id(round, task, i);
                let from = rng.below(u64::from(ACCOUNT_COUNT));
                let to =
                    (from + 1 + rng.below(u64::from(ACCOUNT_COUNT - 1))) % u64::from(ACCOUNT_COUNT);
                let transfer = Transfer {
                    from: account(u32::try_from(from)?),
                    to: account(u32::try_from(to)?),
                    amount: i64::try_from(1 + rng.below(100))?,
                };
                transfer_once(&storage, &id, &transfer).await?;
                say(&out, &transfer.ack_line(&id));
            }
            Ok::<_, BoxError>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// Moves `transfer.amount` in one `apply` that expects both balances at the versions read and
/// no record under `id` yet, and writes that record; reads again and retries on a conflict.
async fn transfer_once(
    storage: &PersistentStorageManager,
    id: &str,
    transfer: &Transfer,
) -> Result<(), BoxError> {
    loop {
        let (from, v_from) = storage
            .retrieve_versioned::<Account>(ACCOUNTS, &transfer.from)
            .await?
            .ok_or("an account is missing")?;
        let (to, v_to) = storage
            .retrieve_versioned::<Account>(ACCOUNTS, &transfer.to)
            .await?
            .ok_or("an account is missing")?;
        let mut batch = WriteBatch::new();
        batch.expect(ACCOUNTS, &transfer.from, Expect::Version(v_from));
        batch.expect(ACCOUNTS, &transfer.to, Expect::Version(v_to));
        batch.expect(TRANSFERS, id, Expect::Absent);
        let debited = Account {
            balance: from.balance - transfer.amount,
        };
        let credited = Account {
            balance: to.balance + transfer.amount,
        };
        batch.store(ACCOUNTS, &transfer.from, &debited)?;
        batch.store(ACCOUNTS, &transfer.to, &credited)?;
        batch.store(TRANSFERS, id, transfer)?;
        match storage.apply(batch).await {
            Ok(_) => return Ok(()),
            // Only this task writes this id: a record there already would be a store bug.
            Err(StorageError::Conflict { collection, .. }) if collection == TRANSFERS => {
                return Err(format!("transfer {id} was already recorded").into());
            }
            Err(StorageError::Conflict { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

//! Writes forever from several tasks and prints each acknowledgement, until it is killed.
//! Usage: crash-writer DATA_DIR ROUND
//!
//! Lines: `put KEY` after a store is acknowledged; `intent KEY` before a delete is issued;
//! `del KEY` after it is acknowledged.

use std::io::Write;
use std::sync::{Arc, Mutex};

use bitcraps_storage::{PersistentStorageManager, StorageConfig};
use bitcraps_storage_crash_test::{document, key};

const TASKS: u32 = 6;

fn say(out: &Mutex<std::io::Stdout>, line: &str) {
    if let Ok(mut out) = out.lock() {
        // A failed print only loses an acknowledgement the test then does not check.
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
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
            Ok::<_, bitcraps_storage::StorageError>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

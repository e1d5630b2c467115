//! Benchmarks bitcraps-storage against rusqlite, redb, sled and fjall on the same documents,
//! durability and thread counts. Each store runs in its own child process (so peak RSS is its
//! own), several times; the table shows medians, the spread (min–max), and our ratio.
//!
//! ```text
//! cargo run --release -p bitcraps-storage-bench -- [--quick] [--runs N] [--stores a,b]
//!     [--markdown FILE]
//! ```
//!
//! `--child NAME` (hidden) runs every workload on one store and prints its measurements as
//! JSON; the parent re-executes itself with it once per store and run.

mod docs;
mod report;
mod stores;
mod workloads;
mod zipf;

use std::process::Command;

use anyhow::{Context, Result, bail};

use workloads::{Measured, Scale};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    if let Some(pos) = args.iter().position(|a| a == "--child") {
        let name = args.get(pos + 1).context("--child needs a store name")?;
        let measured = workloads::run(name, Scale::new(quick))?;
        println!("{}", serde_json::to_string(&measured)?);
        return Ok(());
    }
    let runs: usize = match args.iter().position(|a| a == "--runs") {
        Some(p) => args.get(p + 1).context("--runs needs a number")?.parse()?,
        None => 3,
    };
    let markdown = args
        .iter()
        .position(|a| a == "--markdown")
        .and_then(|p| args.get(p + 1).cloned());
    let only: Vec<&str> = match args.iter().position(|a| a == "--stores") {
        Some(p) => args
            .get(p + 1)
            .context("--stores needs a list")?
            .split(',')
            .collect(),
        None => stores::ALL.to_vec(),
    };
    let exe = std::env::current_exe()?;
    let mut results: Vec<(String, Vec<Measured>)> =
        only.iter().map(|s| (s.to_string(), Vec::new())).collect();
    for run in 0..runs {
        for (name, samples) in &mut results {
            eprintln!("run {}/{runs}: {name}", run + 1);
            let mut cmd = Command::new(&exe);
            cmd.arg("--child").arg(name.as_str());
            if quick {
                cmd.arg("--quick");
            }
            let out = cmd.output()?;
            if !out.status.success() {
                bail!("{name} failed: {}", String::from_utf8_lossy(&out.stderr));
            }
            samples.push(serde_json::from_slice(&out.stdout)?);
        }
    }
    let table = report::render(&results, quick, runs);
    println!("{table}");
    if let Some(path) = markdown {
        std::fs::write(&path, report::markdown(&results, quick, runs))?;
        eprintln!("wrote {path}");
    }
    Ok(())
}

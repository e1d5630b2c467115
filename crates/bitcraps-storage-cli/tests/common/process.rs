//! A long-running invocation of the binary (`demo`, `serve-metrics`) that serves `/metrics`:
//! started in the scratch directory, its metrics address read from stderr, killed when the
//! test ends however it ends.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use super::Scratch;

/// Generous: only a stuck process runs into it.
pub const DEADLINE: Duration = Duration::from_secs(120);

/// Kills the process when dropped.
pub struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the binary with `--data <scratch>/data` and `args` (which must make it serve
/// metrics), and returns it with the `HOST:PORT` it serves `/metrics` on.
pub fn serving(s: &Scratch, args: &[&str]) -> (Running, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bitcraps-storage"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("BITCRAPS_STORAGE_") {
            cmd.env_remove(name);
        }
    }
    let child = cmd
        .env_remove("RUST_LOG")
        .current_dir(s.dir.path())
        .arg("--data")
        .arg(s.path("data"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the process");
    let mut running = Running(child);
    let stderr = running.0.stderr.take().expect("stderr is piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let addr = loop {
        let line = rx
            .recv_timeout(DEADLINE)
            .expect("the process names its metrics address");
        if let Some(rest) = line.strip_prefix("serving metrics on http://") {
            break rest.trim_end_matches("/metrics").to_owned();
        }
    };
    (running, addr)
}

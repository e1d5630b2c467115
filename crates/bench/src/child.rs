//! One child process under a time limit: a child that hangs (sled's has been seen spinning
//! forever under real-time priority) is killed when the limit passes and reported as timed
//! out, so the parent records the run as missing and goes on with the others.

use std::io::Read;
use std::process::{Child, Command, Output, Stdio};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};
use wait_timeout::ChildExt;

/// How a child ended.
#[derive(Debug)]
pub enum Ended {
    /// It exited (successfully or not) within the limit.
    Exited(Output),
    /// It was still running when the limit passed, and was killed; what it had written to
    /// stderr (where it was).
    TimedOut { stderr: Vec<u8> },
}

/// The last `lines` lines of `bytes`, as text.
pub fn tail(bytes: &[u8], lines: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The default limit per child: generous for the mode, so only a hung child reaches it. A
/// full-size run of every workload takes one to two minutes per store (README: ~7 minutes a
/// run of every store), the quick sizes seconds; ten times that and more, for a loaded
/// machine and the PostgreSQL stores.
pub fn default_timeout(quick: bool, one_phase: bool) -> Duration {
    let secs = match (quick, one_phase) {
        (false, false) => 1200,
        (false, true) => 600,
        (true, false) => 300,
        (true, true) => 150,
    };
    Duration::from_secs(secs)
}

/// Everything a pipe carries until it closes, read on its own thread (a child that fills a
/// pipe nobody reads would block and look hung).
fn drain(pipe: Option<impl Read + Send + 'static>) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            // A read error ends the capture; what was read is kept.
            let _ = pipe.read_to_end(&mut bytes);
        }
        bytes
    })
}

/// Runs `cmd` with its output captured; kills it if it has not exited after `limit`. The
/// child's temporary files go to a directory of the parent's (`TMPDIR`), removed when the
/// child has ended: a killed child runs none of its own cleanup, and a full-size run leaves
/// hundreds of MiB.
pub fn run(cmd: &mut Command, limit: Duration) -> Result<Ended> {
    let scratch = tempfile::tempdir().context("creating a child's temporary directory")?;
    let mut child: Child = cmd
        .env("TMPDIR", scratch.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting a child")?;
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let status = child.wait_timeout(limit).context("waiting for a child")?;
    let Some(status) = status else {
        child.kill().context("killing a child that timed out")?;
        child.wait().context("reaping a child that timed out")?;
        // The pipes closed with the child: the readers end.
        let _ = stdout.join();
        let stderr = stderr.join().unwrap_or_default();
        drop(scratch);
        return Ok(Ended::TimedOut { stderr });
    };
    let joined = |h: JoinHandle<Vec<u8>>| h.join().unwrap_or_default();
    Ok(Ended::Exited(Output {
        status,
        stdout: joined(stdout),
        stderr: joined(stderr),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hung_child_is_killed_and_reported_as_timed_out() -> Result<()> {
        // A real process that would run for ten minutes, given one second.
        let mut cmd = Command::new("sleep");
        cmd.arg("600");
        let ended = run(&mut cmd, Duration::from_secs(1))?;
        assert!(matches!(ended, Ended::TimedOut { .. }), "{ended:?}");
        Ok(())
    }

    #[test]
    fn a_killed_childs_temporary_files_are_removed_and_its_stderr_kept() -> Result<()> {
        // The child writes a file under its TMPDIR and says where, then hangs (`exec`: a
        // grandchild would hold the pipes open after the kill, as no benchmark child does).
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            "echo \"${TMPDIR:?}\" >&2; head -c 4096 /dev/zero > \"$TMPDIR/left\"; exec sleep 600",
        ]);
        let Ended::TimedOut { stderr, .. } = run(&mut cmd, Duration::from_secs(1))? else {
            anyhow::bail!("a hung child exited");
        };
        let dir = tail(&stderr, 1);
        assert!(!dir.is_empty(), "the child's stderr was lost");
        assert!(
            !std::path::Path::new(&dir).exists(),
            "the killed child's temporary directory {dir} is left behind"
        );
        Ok(())
    }

    #[test]
    fn a_child_that_exits_in_time_gives_its_output() -> Result<()> {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo out; echo err >&2; exit 3"]);
        let Ended::Exited(out) = run(&mut cmd, Duration::from_secs(600))? else {
            anyhow::bail!("a child that exits at once timed out");
        };
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(out.stdout, b"out\n");
        assert_eq!(out.stderr, b"err\n");
        Ok(())
    }
}

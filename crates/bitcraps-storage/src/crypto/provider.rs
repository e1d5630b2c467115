//! Where the master key comes from: [`KeyProvider`] (for applications: a vault client, a
//! KMS) and [`KeySource`], the sources operators configure: a key file, an environment
//! variable, a command whose standard output is the key.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use zeroize::Zeroizing;

use super::MasterKey;
use crate::error::{Result, StorageError};

/// Gives the store its master key. Called once per open; the key is kept in memory
/// (zeroized on drop) while the store is open.
pub trait KeyProvider: Send + Sync {
    /// The master key, or [`StorageError::KeySource`] saying why it cannot be had.
    fn master_key(&self) -> Result<MasterKey>;

    /// Where the key comes from, for messages (`key file /etc/bitcraps.key`); never the key.
    fn describe(&self) -> String;
}

/// The key sources of the configuration's `key` section.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeySource {
    /// A file holding 64 hex characters (`key.file`, `--key-file`).
    File(PathBuf),
    /// An environment variable holding 64 hex characters (`key.env` names it).
    Env(String),
    /// A shell command (`sh -c`) whose standard output is 64 hex characters, as
    /// `RESTIC_PASSWORD_COMMAND` (`key.command`); its standard error goes to ours.
    Command(String),
}

impl KeySource {
    fn failed(&self, reason: impl Into<String>) -> StorageError {
        StorageError::KeySource {
            source_name: self.describe(),
            reason: reason.into(),
        }
    }

    fn parse(&self, text: &str) -> Result<MasterKey> {
        MasterKey::from_hex(text).map_err(|reason| self.failed(reason))
    }
}

impl KeyProvider for KeySource {
    fn master_key(&self) -> Result<MasterKey> {
        match self {
            KeySource::File(path) => {
                let text = std::fs::read_to_string(path)
                    .map(Zeroizing::new)
                    .map_err(|e| self.failed(e.to_string()))?;
                self.parse(&text)
            }
            KeySource::Env(name) => {
                let text = std::env::var(name)
                    .map(Zeroizing::new)
                    .map_err(|e| self.failed(e.to_string()))?;
                self.parse(&text)
            }
            KeySource::Command(command) => {
                let output = Command::new("sh")
                    .arg("-c")
                    .arg(command)
                    .stdin(Stdio::null())
                    .stderr(Stdio::inherit())
                    .output()
                    .map_err(|e| self.failed(format!("cannot run it: {e}")))?;
                let stdout = Zeroizing::new(output.stdout);
                if !output.status.success() {
                    return Err(self.failed(format!("it {}", output.status)));
                }
                let text = std::str::from_utf8(&stdout)
                    .map_err(|_| self.failed("its output is not text"))?;
                self.parse(text)
            }
        }
    }

    fn describe(&self) -> String {
        match self {
            KeySource::File(path) => format!("key file {}", path.display()),
            KeySource::Env(name) => format!("environment variable {name}"),
            KeySource::Command(command) => format!("key command {command:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_source_reads_a_key_or_says_why_not() -> Result<()> {
        let key = MasterKey::generate()?;
        let dir = tempfile::tempdir().map_err(|e| StorageError::io("tempdir", e))?;
        let file = dir.path().join("key");
        std::fs::write(&file, format!("{}\n", key.to_hex().as_str()))
            .map_err(|e| StorageError::io(&file, e))?;
        assert_eq!(KeySource::File(file).master_key()?.bytes(), key.bytes());
        let command = format!("printf {}", key.to_hex().as_str());
        assert_eq!(
            KeySource::Command(command).master_key()?.bytes(),
            key.bytes()
        );
        let err = KeySource::Command("echo oops >&2; exit 3".into())
            .master_key()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert_eq!(
            err,
            "cannot get the key from key command \"echo oops >&2; exit 3\": it exit status: 3"
        );
        let err = KeySource::Env("BITCRAPS_TEST_UNSET_KEY_VARIABLE".into())
            .master_key()
            .err();
        assert!(
            matches!(&err, Some(StorageError::KeySource { source_name, .. })
                if source_name == "environment variable BITCRAPS_TEST_UNSET_KEY_VARIABLE"),
            "{err:?}"
        );
        let missing = dir.path().join("absent");
        assert!(matches!(
            KeySource::File(missing).master_key(),
            Err(StorageError::KeySource { .. })
        ));
        Ok(())
    }
}

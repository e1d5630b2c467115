//! Encryption at rest: [`KeyConfig`], where the master key comes from.

use std::path::PathBuf;
use std::sync::Arc;

use crate::crypto::{KeyProvider, KeySource};
use crate::error::{Result, StorageError};

/// The master key's source (TOML `[key]`, environment `BITCRAPS_STORAGE_KEY_*`). At most one
/// of the four may be set. None: the store is plaintext, and an encrypted store is refused
/// with [`StorageError::KeyMissing`]. Set: the store is encrypted (a new store becomes
/// encrypted at its first open; a plaintext store with data is refused with
/// [`StorageError::NotEncrypted`]).
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct KeyConfig {
    /// A file holding the key as 64 hex characters (`bitcraps-storage key generate`
    /// writes one). The CLI's `--key-file`. Default: none.
    pub file: Option<PathBuf>,
    /// The name of an environment variable holding the key as 64 hex characters.
    /// Default: none.
    pub env: Option<String>,
    /// A shell command whose standard output is the key as 64 hex characters (a vault or
    /// KMS client). Default: none.
    pub command: Option<String>,
    /// The application's own provider. Default: none.
    pub provider: Option<Arc<dyn KeyProvider>>,
}

impl std::fmt::Debug for KeyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("KeyConfig");
        d.field("file", &self.file)
            .field("env", &self.env)
            .field("command", &self.command);
        // Shown only when set: it is the application's, and has no CLI setting.
        if let Some(p) = &self.provider {
            d.field("provider", &p.describe());
        }
        d.finish_non_exhaustive()
    }
}

impl PartialEq for KeyConfig {
    fn eq(&self, other: &Self) -> bool {
        self.file == other.file
            && self.env == other.env
            && self.command == other.command
            && match (&self.provider, &other.provider) {
                (None, None) => true,
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                _ => false,
            }
    }
}

impl KeyConfig {
    /// Sets [`file`](Self::file).
    #[must_use]
    pub fn file(mut self, path: impl Into<PathBuf>) -> Self {
        self.file = Some(path.into());
        self
    }

    /// Sets [`env`](Self::env).
    #[must_use]
    pub fn env(mut self, variable: impl Into<String>) -> Self {
        self.env = Some(variable.into());
        self
    }

    /// Sets [`command`](Self::command).
    #[must_use]
    pub fn command(mut self, command: impl Into<String>) -> Self {
        self.command = Some(command.into());
        self
    }

    /// Sets [`provider`](Self::provider).
    #[must_use]
    pub fn provider(mut self, provider: Arc<dyn KeyProvider>) -> Self {
        self.provider = Some(provider);
        self
    }

    /// Whether a key source is configured.
    pub fn is_set(&self) -> bool {
        self.file.is_some()
            || self.env.is_some()
            || self.command.is_some()
            || self.provider.is_some()
    }

    pub(crate) fn validate(&self) -> Result<()> {
        let set = [
            self.file.is_some(),
            self.env.is_some(),
            self.command.is_some(),
            self.provider.is_some(),
        ];
        if set.iter().filter(|s| **s).count() > 1 {
            return Err(StorageError::Config(
                "more than one key source is set (key.file, key.env, key.command, \
                 key.provider): choose one"
                    .into(),
            ));
        }
        Ok(())
    }

    /// The configured provider, if any.
    pub(crate) fn resolve(&self) -> Result<Option<Arc<dyn KeyProvider>>> {
        self.validate()?;
        Ok(if let Some(p) = &self.provider {
            Some(Arc::clone(p))
        } else if let Some(path) = &self.file {
            Some(Arc::new(KeySource::File(path.clone())))
        } else if let Some(name) = &self.env {
            Some(Arc::new(KeySource::Env(name.clone())))
        } else {
            self.command
                .as_ref()
                .map(|c| Arc::new(KeySource::Command(c.clone())) as Arc<dyn KeyProvider>)
        })
    }
}

//! Settings: defaults < TOML file < `BITCRAPS_STORAGE_*` environment < flags, merged into a
//! [`StorageConfig`].
//!
//! Every layer is a [`Layer`] of optional values. The store's location (`data_path` and
//! `database_url`) is one setting: it is taken whole from the highest layer that names either,
//! so `--data` on the command line is never overridden by a URL from the environment.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use bitcraps_storage::{Codec, Durability, StorageConfig};
use serde::Deserialize;

use crate::exit::CliError;

/// Prefix of every environment variable read here.
pub const ENV_PREFIX: &str = "BITCRAPS_STORAGE_";

/// One source of settings; `None` means "not set here".
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Layer {
    data_path: Option<PathBuf>,
    database_url: Option<String>,
    cache_size_mb: Option<usize>,
    max_connections: Option<usize>,
    enable_compression: Option<bool>,
    compression_level: Option<i32>,
    codec: Option<String>,
    enable_deduplication: Option<bool>,
    backup_retention_days: Option<u32>,
    maintenance_interval_hours: Option<u32>,
    durability: Option<String>,
    max_value_size: Option<usize>,
    max_batch_requests: Option<usize>,
    /// Seconds.
    access_flush_interval: Option<f64>,
    /// Seconds.
    connection_timeout: Option<f64>,
}

/// The merged result.
#[derive(Debug, Clone)]
pub struct Settings {
    /// What to open.
    pub config: StorageConfig,
    /// Whether `--data` or `--url` was given on the command line (the demo uses a temporary
    /// directory otherwise).
    pub location_from_flags: bool,
}

impl Layer {
    /// The command-line layer.
    pub fn from_flags(data: Option<PathBuf>, url: Option<String>) -> Self {
        Layer {
            data_path: data,
            database_url: url,
            ..Layer::default()
        }
    }

    /// The layer of a TOML file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        toml::from_str(&text)
            .map_err(|e| CliError::Usage(format!("config file {}: {e}", path.display())).into())
    }

    /// The layer of the environment, read through `var` (so tests can pass a map).
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let get = |suffix: &str| var(&format!("{ENV_PREFIX}{suffix}"));
        let mut layer = Layer {
            data_path: get("DATA").map(PathBuf::from),
            database_url: get("URL"),
            codec: get("CODEC"),
            durability: get("DURABILITY"),
            ..Layer::default()
        };
        macro_rules! parse_env {
            ($($field:ident: $name:literal),* $(,)?) => {$(
                layer.$field = get($name).map(|v| parse_value(&v, $name)).transpose()?;
            )*};
        }
        parse_env!(
            cache_size_mb: "CACHE_SIZE_MB",
            max_connections: "MAX_CONNECTIONS",
            compression_level: "COMPRESSION_LEVEL",
            backup_retention_days: "BACKUP_RETENTION_DAYS",
            maintenance_interval_hours: "MAINTENANCE_INTERVAL_HOURS",
            max_value_size: "MAX_VALUE_SIZE",
            max_batch_requests: "MAX_BATCH_REQUESTS",
            access_flush_interval: "ACCESS_FLUSH_INTERVAL",
            connection_timeout: "CONNECTION_TIMEOUT",
        );
        layer.enable_compression = get("ENABLE_COMPRESSION")
            .map(|v| parse_bool(&v, "ENABLE_COMPRESSION"))
            .transpose()?;
        layer.enable_deduplication = get("ENABLE_DEDUPLICATION")
            .map(|v| parse_bool(&v, "ENABLE_DEDUPLICATION"))
            .transpose()?;
        Ok(layer)
    }

    /// `self` over `lower`: every value set here wins.
    pub fn over(self, lower: Layer) -> Layer {
        let names_location = self.data_path.is_some() || self.database_url.is_some();
        let (data_path, database_url) = if names_location {
            (self.data_path, self.database_url)
        } else {
            (lower.data_path, lower.database_url)
        };
        Layer {
            data_path,
            database_url,
            cache_size_mb: self.cache_size_mb.or(lower.cache_size_mb),
            max_connections: self.max_connections.or(lower.max_connections),
            enable_compression: self.enable_compression.or(lower.enable_compression),
            compression_level: self.compression_level.or(lower.compression_level),
            codec: self.codec.or(lower.codec),
            enable_deduplication: self.enable_deduplication.or(lower.enable_deduplication),
            backup_retention_days: self.backup_retention_days.or(lower.backup_retention_days),
            maintenance_interval_hours: self
                .maintenance_interval_hours
                .or(lower.maintenance_interval_hours),
            durability: self.durability.or(lower.durability),
            max_value_size: self.max_value_size.or(lower.max_value_size),
            max_batch_requests: self.max_batch_requests.or(lower.max_batch_requests),
            access_flush_interval: self.access_flush_interval.or(lower.access_flush_interval),
            connection_timeout: self.connection_timeout.or(lower.connection_timeout),
        }
    }

    /// Applies the layer to the defaults and validates the result.
    pub fn into_config(self) -> Result<StorageConfig> {
        let mut config = match &self.database_url {
            Some(url) => StorageConfig::from_url(url).map_err(usage)?,
            None => StorageConfig::default(),
        };
        if let Some(v) = self.data_path {
            config.data_path = v;
        }
        macro_rules! copy {
            ($($field:ident),*) => {$( if let Some(v) = self.$field { config.$field = v; } )*};
        }
        copy!(
            cache_size_mb,
            max_connections,
            enable_compression,
            compression_level,
            enable_deduplication,
            backup_retention_days,
            maintenance_interval_hours,
            max_value_size,
            max_batch_requests
        );
        if let Some(v) = self.codec {
            config.codec = Codec::from_str(&v).map_err(usage)?;
        }
        if let Some(v) = self.durability {
            config.durability = Durability::from_str(&v).map_err(usage)?;
        }
        if let Some(v) = self.access_flush_interval {
            config.access_flush_interval = seconds(v, "access_flush_interval")?;
        }
        if let Some(v) = self.connection_timeout {
            config.connection_timeout = seconds(v, "connection_timeout")?;
        }
        config.validate().map_err(usage)?;
        Ok(config)
    }
}

impl Settings {
    /// Merges flags over the environment over the file (if any) over the defaults.
    pub fn load(
        flags: Layer,
        config_file: Option<&Path>,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Self> {
        let location_from_flags = flags.data_path.is_some() || flags.database_url.is_some();
        let file = config_file.map(Layer::from_file).transpose()?;
        let merged = flags
            .over(Layer::from_env(var)?)
            .over(file.unwrap_or_default());
        Ok(Settings {
            config: merged.into_config()?,
            location_from_flags,
        })
    }
}

fn usage(e: impl std::fmt::Display) -> anyhow::Error {
    CliError::Usage(e.to_string()).into()
}

fn parse_value<T: FromStr>(value: &str, name: &str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    value
        .trim()
        .parse()
        .map_err(|e| usage(format!("{ENV_PREFIX}{name}={value:?}: {e}")))
}

fn parse_bool(value: &str, name: &str) -> Result<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(usage(format!(
            "{ENV_PREFIX}{name}={value:?}: expected true or false"
        ))),
    }
}

fn seconds(value: f64, field: &str) -> Result<Duration> {
    Duration::try_from_secs_f64(value)
        .map_err(|e| usage(anyhow!("{field} = {value}: not a number of seconds ({e})")))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (format!("{ENV_PREFIX}{k}"), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn defaults_without_any_source() -> Result<()> {
        let s = Settings::load(Layer::default(), None, env(&[]))?;
        assert_eq!(s.config, StorageConfig::default());
        assert!(!s.location_from_flags);
        Ok(())
    }

    #[test]
    fn env_over_file_and_flags_over_env() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "data_path = \"from-file\"\ncodec = \"gzip\"\ncache_size_mb = 7\nconnection_timeout = 1.5\n",
        )?;
        let s = Settings::load(
            Layer::default(),
            Some(&file),
            env(&[("CODEC", "lz4"), ("DATA", "from-env")]),
        )?;
        assert_eq!(s.config.codec, Codec::Lz4);
        assert_eq!(s.config.data_path, PathBuf::from("from-env"));
        assert_eq!(s.config.cache_size_mb, 7);
        assert_eq!(s.config.connection_timeout, Duration::from_millis(1500));

        let s = Settings::load(
            Layer::from_flags(Some("from-flag".into()), None),
            Some(&file),
            env(&[("URL", "sqlite://env/x.db")]),
        )?;
        assert_eq!(s.config.data_path, PathBuf::from("from-flag"));
        assert_eq!(
            s.config.database_url, None,
            "the flag names the location whole"
        );
        assert!(s.location_from_flags);
        Ok(())
    }

    #[test]
    fn url_sets_the_data_directory() -> Result<()> {
        let s = Settings::load(Layer::default(), None, env(&[("URL", "sqlite://a/b.db")]))?;
        assert_eq!(s.config.data_path, PathBuf::from("a"));
        assert_eq!(s.config.database_url.as_deref(), Some("sqlite://a/b.db"));
        Ok(())
    }

    #[test]
    fn bad_values_are_usage_errors() {
        for (k, v) in [
            ("CACHE_SIZE_MB", "lots"),
            ("CODEC", "brotli"),
            ("ENABLE_COMPRESSION", "maybe"),
            ("CONNECTION_TIMEOUT", "-1"),
            ("MAX_CONNECTIONS", "0"),
            ("URL", "mysql://x"),
        ] {
            let err = Settings::load(Layer::default(), None, env(&[(k, v)])).err();
            let usage = err
                .as_ref()
                .and_then(|e| e.downcast_ref::<CliError>())
                .is_some_and(|e| matches!(e, CliError::Usage(_)));
            assert!(usage, "{k}={v}: {err:?}");
        }
    }

    #[test]
    fn unknown_file_keys_are_rejected() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "cache_size = 1\n")?;
        let err = Settings::load(Layer::default(), Some(&file), env(&[])).err();
        assert!(
            err.is_some_and(|e| e.to_string().contains("unknown field")),
            "typo'd keys must not be ignored"
        );
        Ok(())
    }
}

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

/// Declares [`Layer`] and the code that reads, merges and applies its plain fields, so that a
/// new `StorageConfig` field is one line here. Numbers parse with `FromStr`, flags accept
/// true/false/1/0/yes/no/on/off, durations are seconds (fractions allowed), texts are taken
/// as they are.
macro_rules! layer {
    (
        numbers { $($n:ident: $nt:ty),* $(,)? }
        flags { $($b:ident),* $(,)? }
        seconds { $($d:ident),* $(,)? }
        texts { $($t:ident),* $(,)? }
    ) => {
        /// One source of settings; `None` means "not set here".
        #[derive(Debug, Default, Clone, PartialEq, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct Layer {
            data_path: Option<PathBuf>,
            database_url: Option<String>,
            backup_dir: Option<PathBuf>,
            codec: Option<String>,
            durability: Option<String>,
            $($n: Option<$nt>,)*
            $($b: Option<bool>,)*
            $($d: Option<f64>,)*
            $($t: Option<String>,)*
        }

        impl Layer {
            fn read_plain_env(&mut self, get: &dyn Fn(&str) -> Option<String>) -> Result<()> {
                $(self.$n = env_field(get, stringify!($n), parse_value)?;)*
                $(self.$b = env_field(get, stringify!($b), parse_bool)?;)*
                $(self.$d = env_field(get, stringify!($d), parse_value)?;)*
                $(self.$t = env_field(get, stringify!($t), parse_value)?;)*
                Ok(())
            }

            fn fill_plain_from(&mut self, lower: &Layer) {
                $(self.$n = self.$n.or(lower.$n);)*
                $(self.$b = self.$b.or(lower.$b);)*
                $(self.$d = self.$d.or(lower.$d);)*
                $(self.$t = self.$t.take().or_else(|| lower.$t.clone());)*
            }

            fn apply_plain(&self, config: &mut StorageConfig) -> Result<()> {
                $(if let Some(v) = self.$n { config.$n = v; })*
                $(if let Some(v) = self.$b { config.$b = v; })*
                $(if let Some(v) = self.$d { config.$d = seconds(v, stringify!($d))?; })*
                $(if let Some(v) = &self.$t { config.$t = Some(v.clone()); })*
                Ok(())
            }
        }
    };
}

layer! {
    numbers {
        cache_size_mb: usize,
        max_connections: usize,
        compression_level: i32,
        dictionary_training_samples: usize,
        backup_retention_days: u32,
        backup_keep_last: u32,
        backup_keep_daily: u32,
        backup_keep_weekly: u32,
        backup_keep_monthly: u32,
        vacuum_free_percent: u32,
        maintenance_interval_hours: u32,
        max_value_size: usize,
        max_batch_requests: usize,
    }
    flags {
        enable_compression,
        enable_dictionaries,
        enable_deduplication,
        backup_on_maintenance,
        enable_background_tasks,
    }
    seconds {
        statistics_interval,
        cache_upkeep_interval,
        access_flush_interval,
        connection_timeout,
        redis_timeout,
        remote_cache_ttl,
    }
    texts {
        read_replica_url,
        redis_url,
        redis_namespace,
    }
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
        let get = |name: &str| var(&format!("{ENV_PREFIX}{name}"));
        let mut layer = Layer {
            data_path: get("DATA").map(PathBuf::from),
            database_url: get("URL"),
            backup_dir: get("BACKUP_DIR").map(PathBuf::from),
            codec: get("CODEC"),
            durability: get("DURABILITY"),
            ..Layer::default()
        };
        layer.read_plain_env(&get)?;
        Ok(layer)
    }

    /// `self` over `lower`: every value set here wins.
    pub fn over(mut self, lower: Layer) -> Layer {
        let names_location = self.data_path.is_some() || self.database_url.is_some();
        if !names_location {
            self.data_path = lower.data_path.clone();
            self.database_url = lower.database_url.clone();
        }
        self.backup_dir = self.backup_dir.or_else(|| lower.backup_dir.clone());
        self.codec = self.codec.or_else(|| lower.codec.clone());
        self.durability = self.durability.or_else(|| lower.durability.clone());
        self.fill_plain_from(&lower);
        self
    }

    /// Applies the layer to the defaults and validates the result.
    pub fn into_config(self) -> Result<StorageConfig> {
        let mut config = match &self.database_url {
            Some(url) => StorageConfig::from_url(url).map_err(usage)?,
            None => StorageConfig::default(),
        };
        if let Some(v) = &self.data_path {
            config.data_path.clone_from(v);
        }
        if let Some(v) = &self.backup_dir {
            config.backup_dir = Some(v.clone());
        }
        self.apply_plain(&mut config)?;
        if let Some(v) = &self.codec {
            config.codec = Codec::from_str(v).map_err(usage)?;
        }
        if let Some(v) = &self.durability {
            config.durability = Durability::from_str(v).map_err(usage)?;
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

/// Reads `BITCRAPS_STORAGE_<FIELD>` for a field and parses it.
fn env_field<T>(
    get: &dyn Fn(&str) -> Option<String>,
    field: &str,
    parse: fn(&str, &str) -> Result<T>,
) -> Result<Option<T>> {
    let name = field.to_ascii_uppercase();
    get(&name).map(|v| parse(&v, &name)).transpose()
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
    fn every_kind_of_field_reads_from_env_and_file() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "backup_dir = \"bk\"\nbackup_keep_last = 9\nstatistics_interval = 2\nenable_dictionaries = false\n",
        )?;
        let s = Settings::load(
            Layer::default(),
            Some(&file),
            env(&[
                ("ENABLE_BACKGROUND_TASKS", "off"),
                ("CACHE_UPKEEP_INTERVAL", "0.25"),
                ("DURABILITY", "normal"),
                ("BACKUP_KEEP_LAST", "4"),
            ]),
        )?;
        assert_eq!(s.config.backup_dir, Some(PathBuf::from("bk")));
        assert_eq!(s.config.backup_keep_last, 4);
        assert_eq!(s.config.statistics_interval, Duration::from_secs(2));
        assert_eq!(s.config.cache_upkeep_interval, Duration::from_millis(250));
        assert!(!s.config.enable_dictionaries);
        assert!(!s.config.enable_background_tasks);
        assert_eq!(s.config.durability, Durability::Normal);
        Ok(())
    }

    #[test]
    fn scale_out_settings_read_from_env_and_file() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "redis_url = \"redis://file:6379\"\nredis_namespace = \"ns\"\nremote_cache_ttl = 30\n",
        )?;
        let s = Settings::load(
            Layer::default(),
            Some(&file),
            env(&[
                ("REDIS_URL", "redis://env:6379"),
                ("READ_REPLICA_URL", "postgres://replica/db"),
                ("REDIS_TIMEOUT", "0.5"),
            ]),
        )?;
        assert_eq!(s.config.redis_url.as_deref(), Some("redis://env:6379"));
        assert_eq!(s.config.redis_namespace.as_deref(), Some("ns"));
        assert_eq!(
            s.config.read_replica_url.as_deref(),
            Some("postgres://replica/db")
        );
        assert_eq!(s.config.redis_timeout, Duration::from_millis(500));
        assert_eq!(s.config.remote_cache_ttl, Duration::from_secs(30));
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

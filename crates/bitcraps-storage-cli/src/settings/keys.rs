//! Every setting the CLI reads: [`KEYS`], one per field of every [`StorageConfig`] section,
//! and how a raw value (from a flag, the environment or the TOML file) becomes that field.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Result;
use bitcraps_storage::{Codec, Durability, StorageConfig};

use super::{ENV_PREFIX, usage};

/// One setting: `[section] field` in TOML, `BITCRAPS_STORAGE_<SECTION>_<FIELD>` in the
/// environment.
#[derive(Debug)]
pub struct Key {
    /// The TOML table, which is the name of the `StorageConfig` section.
    pub section: &'static str,
    /// The key inside the table, which is the section's field name (retention rules excepted:
    /// see [`Key::config_path`]).
    pub field: &'static str,
    /// The `StorageConfig` field it sets, as a path (`cache.size_mb`).
    #[cfg_attr(
        not(test),
        allow(
            dead_code,
            reason = "read by the test that compares it with StorageConfig"
        )
    )]
    pub config_path: &'static str,
    /// The command-line flag that sets it too, if any.
    pub flag: Option<&'static str>,
    kind: Kind,
}

/// The type of a setting and the field it sets.
#[derive(Debug)]
enum Kind {
    Path(fn(&mut StorageConfig) -> &mut PathBuf),
    OptionalPath(fn(&mut StorageConfig) -> &mut Option<PathBuf>),
    OptionalText(fn(&mut StorageConfig) -> &mut Option<String>),
    Usize(fn(&mut StorageConfig) -> &mut usize),
    U64(fn(&mut StorageConfig) -> &mut u64),
    U32(fn(&mut StorageConfig) -> &mut u32),
    I32(fn(&mut StorageConfig) -> &mut i32),
    Bool(fn(&mut StorageConfig) -> &mut bool),
    OptionalBool(fn(&mut StorageConfig) -> &mut Option<bool>),
    OptionalBytes(fn(&mut StorageConfig) -> &mut Option<u64>),
    Seconds(fn(&mut StorageConfig) -> &mut Duration),
    Codec(fn(&mut StorageConfig) -> &mut Codec),
    Durability(fn(&mut StorageConfig) -> &mut Durability),
}

const fn key(section: &'static str, field: &'static str, path: &'static str, kind: Kind) -> Key {
    Key {
        section,
        field,
        config_path: path,
        flag: None,
        kind,
    }
}

const fn with_flag(mut key: Key, flag: &'static str) -> Key {
    key.flag = Some(flag);
    key
}

/// The TOML key of the database URL, which selects the backend before anything else applies.
pub const DATABASE_URL: &str = "database.url";
/// The TOML key of the data directory.
pub const DATA_PATH: &str = "database.data_path";
/// The TOML key of the master key's file.
pub const KEY_FILE: &str = "key.file";

/// A [`Key`] for `section.field`, setting `config.section.field` (or, with `= path`,
/// `config.section.path`).
macro_rules! key {
    ($section:ident . $field:ident => $kind:ident) => {
        key!($section.$field = $field => $kind)
    };
    ($section:ident . $field:ident = $($path:ident).+ => $kind:ident) => {
        key(
            stringify!($section),
            stringify!($field),
            concat!(stringify!($section), $(".", stringify!($path)),+),
            Kind::$kind(|c| &mut c.$section.$($path).+),
        )
    };
}

/// Every setting, section by section in the order of `StorageConfig`. docs/configuration.md
/// has one row per entry (a test compares them, and this list with `StorageConfig`).
pub static KEYS: &[Key] = &[
    with_flag(key!(database.data_path => Path), "--data"),
    with_flag(key!(database.url => OptionalText), "--url"),
    key!(database.read_replica_url => OptionalText),
    key!(database.max_connections => Usize),
    key!(database.connection_timeout => Seconds),
    with_flag(key!(database.read_only => Bool), "--read-only"),
    key!(cache.size_mb => Usize),
    key!(cache.typed_percent => U32),
    key!(cache.upkeep_interval => Seconds),
    key!(cache.prefetch => Bool),
    key!(cache.prefetch_window => Usize),
    key!(cache.prefetch_budget_percent => U32),
    key!(compression.enabled => Bool),
    key!(compression.codec => Codec),
    key!(compression.level => I32),
    key!(compression.dictionaries => Bool),
    key!(compression.dictionary_training_samples => Usize),
    key!(compression.deduplication => Bool),
    key!(compression.chunk_threshold => Usize),
    key!(compression.keyframe_interval => U32),
    key!(write.durability => Durability),
    key!(write.max_value_size => Usize),
    key!(write.max_batch_requests => Usize),
    key!(write.access_flush_interval => Seconds),
    key!(write.update_max_attempts => U32),
    key!(backup.dir => OptionalPath),
    key!(backup.on_maintenance => OptionalBool),
    key!(backup.max_total_bytes => OptionalBytes),
    // The retention rules are one `RetentionPolicy` in the library; here they are spelled
    // flat, so the old variable names (BITCRAPS_STORAGE_BACKUP_KEEP_LAST, ...) still work.
    key!(backup.retention_days = retention.within_days => U32),
    key!(backup.keep_last = retention.keep_last => U32),
    key!(backup.keep_daily = retention.keep_daily => U32),
    key!(backup.keep_weekly = retention.keep_weekly => U32),
    key!(backup.keep_monthly = retention.keep_monthly => U32),
    key!(maintenance.background_tasks => Bool),
    key!(maintenance.interval_hours => U32),
    key!(maintenance.statistics_interval => Seconds),
    key!(maintenance.vacuum_free_percent => U32),
    key!(maintenance.scrub_interval => Seconds),
    key!(maintenance.expiry_sweep_interval => Seconds),
    key!(maintenance.scrub_bytes_per_run => U64),
    key!(maintenance.reencrypt_bytes_per_run => U64),
    key!(maintenance.change_retention => Seconds),
    key!(maintenance.change_poll_interval => Seconds),
    key!(redis.url => OptionalText),
    key!(redis.timeout => Seconds),
    key!(redis.namespace => OptionalText),
    key!(redis.cache_ttl => Seconds),
    key!(redis.l1_max_age => Seconds),
    key!(redis.tls_ca_file => OptionalPath),
    key!(metrics.max_collection_labels => Usize),
    key!(metrics.trace_keys => Bool),
    with_flag(key!(key.file => OptionalPath), "--key-file"),
    key!(key.env => OptionalText),
    key!(key.command => OptionalText),
];

/// Settings whose name changed when the configuration was split into sections:
/// (old top-level TOML key, old environment suffix, new TOML key). An old name is an error
/// that names the new one, never silently ignored.
pub const RENAMED: &[(&str, &str, &str)] = &[
    ("data_path", "DATA", "database.data_path"),
    ("database_url", "URL", "database.url"),
    (
        "read_replica_url",
        "READ_REPLICA_URL",
        "database.read_replica_url",
    ),
    (
        "max_connections",
        "MAX_CONNECTIONS",
        "database.max_connections",
    ),
    (
        "connection_timeout",
        "CONNECTION_TIMEOUT",
        "database.connection_timeout",
    ),
    ("cache_size_mb", "CACHE_SIZE_MB", "cache.size_mb"),
    (
        "cache_upkeep_interval",
        "CACHE_UPKEEP_INTERVAL",
        "cache.upkeep_interval",
    ),
    (
        "enable_compression",
        "ENABLE_COMPRESSION",
        "compression.enabled",
    ),
    ("codec", "CODEC", "compression.codec"),
    (
        "compression_level",
        "COMPRESSION_LEVEL",
        "compression.level",
    ),
    (
        "enable_dictionaries",
        "ENABLE_DICTIONARIES",
        "compression.dictionaries",
    ),
    (
        "dictionary_training_samples",
        "DICTIONARY_TRAINING_SAMPLES",
        "compression.dictionary_training_samples",
    ),
    (
        "enable_deduplication",
        "ENABLE_DEDUPLICATION",
        "compression.deduplication",
    ),
    ("durability", "DURABILITY", "write.durability"),
    ("max_value_size", "MAX_VALUE_SIZE", "write.max_value_size"),
    (
        "max_batch_requests",
        "MAX_BATCH_REQUESTS",
        "write.max_batch_requests",
    ),
    (
        "access_flush_interval",
        "ACCESS_FLUSH_INTERVAL",
        "write.access_flush_interval",
    ),
    ("backup_dir", "BACKUP_DIR", "backup.dir"),
    (
        "backup_on_maintenance",
        "BACKUP_ON_MAINTENANCE",
        "backup.on_maintenance",
    ),
    (
        "backup_retention_days",
        "BACKUP_RETENTION_DAYS",
        "backup.retention_days",
    ),
    ("backup_keep_last", "BACKUP_KEEP_LAST", "backup.keep_last"),
    (
        "backup_keep_daily",
        "BACKUP_KEEP_DAILY",
        "backup.keep_daily",
    ),
    (
        "backup_keep_weekly",
        "BACKUP_KEEP_WEEKLY",
        "backup.keep_weekly",
    ),
    (
        "backup_keep_monthly",
        "BACKUP_KEEP_MONTHLY",
        "backup.keep_monthly",
    ),
    (
        "enable_background_tasks",
        "ENABLE_BACKGROUND_TASKS",
        "maintenance.background_tasks",
    ),
    (
        "maintenance_interval_hours",
        "MAINTENANCE_INTERVAL_HOURS",
        "maintenance.interval_hours",
    ),
    (
        "statistics_interval",
        "STATISTICS_INTERVAL",
        "maintenance.statistics_interval",
    ),
    (
        "vacuum_free_percent",
        "VACUUM_FREE_PERCENT",
        "maintenance.vacuum_free_percent",
    ),
    ("redis_url", "REDIS_URL", "redis.url"),
    ("redis_timeout", "REDIS_TIMEOUT", "redis.timeout"),
    ("redis_namespace", "REDIS_NAMESPACE", "redis.namespace"),
    ("remote_cache_ttl", "REMOTE_CACHE_TTL", "redis.cache_ttl"),
];

/// The names of the sections, in order.
pub fn sections() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = KEYS.iter().map(|k| k.section).collect();
    names.dedup();
    names
}

/// The key named `section.field`, if there is one.
pub fn find(name: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.name() == name)
}

/// A value as it arrived, before it is checked against the setting's type.
#[derive(Debug, Clone, PartialEq)]
pub enum Raw {
    /// From the environment or a flag.
    Text(String),
    /// A path from a flag (kept as a path: it need not be UTF-8).
    Path(PathBuf),
    /// From the TOML file.
    Toml(toml::Value),
}

impl Key {
    /// The TOML key, `section.field` (valid TOML as a dotted key at the top level, or `field`
    /// under `[section]`).
    pub fn name(&self) -> String {
        format!("{}.{}", self.section, self.field)
    }

    /// The environment variable, `BITCRAPS_STORAGE_<SECTION>_<FIELD>`.
    pub fn env_var(&self) -> String {
        format!("{ENV_PREFIX}{}", self.env_suffix())
    }

    /// The environment variable without its prefix.
    pub fn env_suffix(&self) -> String {
        format!("{}_{}", self.section, self.field).to_ascii_uppercase()
    }

    /// The flat spelling of the environment variable without its prefix, where it differs
    /// from [`env_suffix`](Self::env_suffix): `BITCRAPS_STORAGE_<FIELD>` with the field's
    /// name in the flat configuration of earlier releases (`DATA_PATH`, `MAX_CONNECTIONS`,
    /// `ENABLE_COMPRESSION`, ...), or, for a setting that release did not have, its field
    /// name alone when no other setting shares it (`UPDATE_MAX_ATTEMPTS`, `TRACE_KEYS`). The
    /// `key` section has none: its fields alone (`FILE`, `ENV`, `COMMAND`) would name
    /// nothing, and `BITCRAPS_STORAGE_KEY_FILE` is the variable the documentation gives.
    pub fn flat_env_suffix(&self) -> Option<String> {
        if self.section == "key" {
            return None;
        }
        let name = self.name();
        let flat = match RENAMED.iter().find(|(_, _, new)| *new == name) {
            Some((old, _, _)) => old.to_ascii_uppercase(),
            None if KEYS.iter().filter(|k| k.field == self.field).count() == 1 => {
                self.field.to_ascii_uppercase()
            }
            None => return None,
        };
        (flat != self.env_suffix()).then_some(flat)
    }

    /// Every environment variable that sets this key: the sectioned one, then the flat one.
    pub fn env_vars(&self) -> Vec<String> {
        let mut names = vec![self.env_var()];
        names.extend(self.flat_env_suffix().map(|s| format!("{ENV_PREFIX}{s}")));
        names
    }

    /// The type, as docs/configuration.md spells it.
    #[cfg_attr(
        not(test),
        allow(
            dead_code,
            reason = "read by the test that checks docs/configuration.md"
        )
    )]
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            Kind::Path(_) | Kind::OptionalPath(_) => "path",
            Kind::OptionalText(_) => "string",
            Kind::Usize(_) | Kind::U64(_) | Kind::U32(_) | Kind::I32(_) => "integer",
            Kind::Bool(_) | Kind::OptionalBool(_) => "boolean",
            Kind::OptionalBytes(_) => "size",
            Kind::Seconds(_) => "seconds",
            Kind::Codec(_) => "codec",
            Kind::Durability(_) => "durability",
        }
    }

    /// Sets the field `raw` describes; `origin` names where `raw` came from, for errors.
    pub fn apply(&self, config: &mut StorageConfig, raw: &Raw, origin: &str) -> Result<()> {
        match self.kind {
            Kind::Path(field) => *field(config) = path(raw, origin)?,
            Kind::OptionalPath(field) => *field(config) = Some(path(raw, origin)?),
            Kind::OptionalText(field) => *field(config) = Some(text(raw, origin)?),
            Kind::Usize(field) => *field(config) = integer(raw, origin)?,
            Kind::U64(field) => *field(config) = integer(raw, origin)?,
            Kind::U32(field) => *field(config) = integer(raw, origin)?,
            Kind::I32(field) => *field(config) = integer(raw, origin)?,
            Kind::Bool(field) => *field(config) = boolean(raw, origin)?,
            Kind::OptionalBool(field) => *field(config) = Some(boolean(raw, origin)?),
            Kind::OptionalBytes(field) => *field(config) = Some(size(raw, origin)?),
            Kind::Seconds(field) => *field(config) = seconds(raw, origin)?,
            Kind::Codec(field) => *field(config) = parsed(raw, origin)?,
            Kind::Durability(field) => *field(config) = parsed(raw, origin)?,
        }
        Ok(())
    }

    /// The text of a string-valued setting (the database URL, read before anything else).
    pub fn text(&self, raw: &Raw, origin: &str) -> Result<String> {
        text(raw, origin)
    }
}

fn invalid(raw: &Raw, origin: &str, problem: impl std::fmt::Display) -> anyhow::Error {
    match raw {
        Raw::Text(v) => usage(format!("{origin}={v:?}: {problem}")),
        Raw::Path(v) => usage(format!("{origin} {}: {problem}", v.display())),
        Raw::Toml(v) => usage(format!("{origin} = {v}: {problem}")),
    }
}

fn text(raw: &Raw, origin: &str) -> Result<String> {
    match raw {
        Raw::Text(v) | Raw::Toml(toml::Value::String(v)) => Ok(v.clone()),
        Raw::Path(p) => p
            .to_str()
            .map(str::to_owned)
            .ok_or_else(|| invalid(raw, origin, "not valid UTF-8")),
        Raw::Toml(_) => Err(invalid(raw, origin, "expected a string")),
    }
}

fn path(raw: &Raw, origin: &str) -> Result<PathBuf> {
    match raw {
        Raw::Path(p) => Ok(p.clone()),
        _ => text(raw, origin).map(PathBuf::from),
    }
}

fn integer<T>(raw: &Raw, origin: &str) -> Result<T>
where
    T: FromStr + TryFrom<i64>,
    <T as FromStr>::Err: std::fmt::Display,
    <T as TryFrom<i64>>::Error: std::fmt::Display,
{
    match raw {
        Raw::Toml(toml::Value::Integer(i)) => T::try_from(*i).map_err(|e| invalid(raw, origin, e)),
        Raw::Toml(_) => Err(invalid(raw, origin, "expected an integer")),
        _ => text(raw, origin)?
            .trim()
            .parse()
            .map_err(|e| invalid(raw, origin, e)),
    }
}

fn boolean(raw: &Raw, origin: &str) -> Result<bool> {
    match raw {
        Raw::Toml(toml::Value::Boolean(b)) => Ok(*b),
        Raw::Toml(_) => Err(invalid(raw, origin, "expected true or false")),
        _ => match text(raw, origin)?.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(true),
            "0" | "false" | "no" | "off" => Ok(false),
            _ => Err(invalid(raw, origin, "expected true or false")),
        },
    }
}

/// A number of bytes, or a size with a unit: `"500MB"` (powers of 1000: KB, MB, GB, TB, or
/// the bare K, M, G, T), `"2 GiB"` (powers of 1024: KiB, MiB, GiB, TiB).
fn size(raw: &Raw, origin: &str) -> Result<u64> {
    match raw {
        Raw::Toml(toml::Value::Integer(i)) => {
            u64::try_from(*i).map_err(|e| invalid(raw, origin, e))
        }
        Raw::Toml(toml::Value::String(_)) | Raw::Text(_) | Raw::Path(_) => {
            let text = text(raw, origin)?;
            parse_size::parse_size(text.trim())
                .map_err(|e| invalid(raw, origin, format!("expected bytes or a size ({e})")))
        }
        Raw::Toml(_) => Err(invalid(raw, origin, "expected a number of bytes or a size")),
    }
}

/// Seconds, fractions allowed, or a duration with units (`"10s"`, `"500ms"`, `"1h 30m"`).
fn seconds(raw: &Raw, origin: &str) -> Result<Duration> {
    let value = match raw {
        // Exact for every whole number of seconds below 2^53, far beyond any setting.
        Raw::Toml(toml::Value::Integer(i)) => *i as f64,
        Raw::Toml(toml::Value::Float(f)) => *f,
        Raw::Toml(toml::Value::String(_)) | Raw::Text(_) | Raw::Path(_) => {
            let text = text(raw, origin)?;
            let text = text.trim();
            match text.parse::<f64>() {
                Ok(seconds) => seconds,
                Err(_) => {
                    return humantime::parse_duration(text).map_err(|e| {
                        invalid(raw, origin, format!("expected seconds or a duration ({e})"))
                    });
                }
            }
        }
        Raw::Toml(_) => return Err(invalid(raw, origin, "expected a number of seconds")),
    };
    Duration::try_from_secs_f64(value)
        .map_err(|e| invalid(raw, origin, format!("not a number of seconds ({e})")))
}

fn parsed<T>(raw: &Raw, origin: &str) -> Result<T>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    text(raw, origin)?
        .trim()
        .parse()
        .map_err(|e| invalid(raw, origin, e))
}

//! Settings: defaults < TOML file < `BITCRAPS_STORAGE_*` environment < flags, merged into a
//! [`StorageConfig`].
//!
//! Every setting is one [`Key`](keys::Key) of [`KEYS`]: a field of a
//! `StorageConfig` section, written `[section] field = value` in the TOML file and
//! `BITCRAPS_STORAGE_<SECTION>_<FIELD>` in the environment (`[cache] size_mb = 64` is
//! `BITCRAPS_STORAGE_CACHE_SIZE_MB=64`). docs/configuration.md lists them all; a test keeps
//! that table, this list and the library's sections in step.
//!
//! Every layer is a [`Layer`] of raw values, checked as it is read (so a bad value is an error
//! even where a higher layer overrides it) and applied when the layers are merged. The store's
//! location (`database.data_path` and `database.url`) is one setting: it is taken whole from
//! the highest layer that names either, so `--data` on the command line is never overridden by
//! a URL from the environment.

mod keys;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use bitcraps_storage::StorageConfig;

use self::keys::{DATA_PATH, DATABASE_URL, KEY_FILE, KEYS, RENAMED, Raw};
use crate::exit::CliError;

/// Prefix of every environment variable read here.
pub const ENV_PREFIX: &str = "BITCRAPS_STORAGE_";

/// Fails (a usage error, exit 2) on a `BITCRAPS_STORAGE_*` variable among `names` that is no
/// setting, as an unknown TOML key does: a misspelt variable is never silently ignored.
/// Renamed variables pass here; [`Layer::from_env`] names their new names.
pub fn check_variables(names: impl IntoIterator<Item = std::ffi::OsString>) -> Result<()> {
    for name in names {
        let name = name.to_string_lossy();
        let Some(suffix) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let known = suffix == "CONFIG"
            || KEYS.iter().any(|k| {
                k.env_suffix() == suffix || k.flat_env_suffix().is_some_and(|f| f == suffix)
            })
            || RENAMED.iter().any(|(_, old, _)| *old == suffix);
        if !known {
            return Err(usage(format!(
                "unknown environment variable {name}: no setting has this name \
                 (see docs/configuration.md)"
            )));
        }
    }
    Ok(())
}

/// One source of settings: the values it sets, by TOML key (`cache.size_mb`).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Layer {
    values: BTreeMap<String, Setting>,
}

/// A value and where it came from (for error messages).
#[derive(Debug, Clone, PartialEq)]
struct Setting {
    raw: Raw,
    origin: String,
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
        let mut layer = Layer::default();
        if let Some(data) = data {
            layer.set(DATA_PATH, Raw::Path(data), "--data".into());
        }
        if let Some(url) = url {
            layer.set(DATABASE_URL, Raw::Text(url), "--url".into());
        }
        layer
    }

    /// Adds `--key-file` (the master key's file, `key.file`) to the command-line layer.
    pub fn with_key_file(mut self, key_file: Option<PathBuf>) -> Self {
        if let Some(path) = key_file {
            self.set(KEY_FILE, Raw::Path(path), "--key-file".into());
        }
        self
    }

    /// The layer of a TOML file: a table per section, e.g. `[cache] size_mb = 64`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = match std::fs::read_to_string(path) {
            // A missing file is a mistake in the invocation (exit 2), not an I/O failure.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(usage(format!(
                    "config file {} does not exist",
                    path.display()
                )));
            }
            read => read.with_context(|| format!("cannot read config file {}", path.display()))?,
        };
        let in_file = |message: String| usage(format!("config file {}: {message}", path.display()));
        let table: toml::Table = toml::from_str(&text).map_err(|e| in_file(e.to_string()))?;
        let sections = keys::sections();
        let mut layer = Layer::default();
        for (name, value) in table {
            if !sections.contains(&name.as_str()) {
                let moved = RENAMED.iter().find(|(old, _, _)| *old == name);
                return Err(in_file(match moved {
                    Some((_, _, new)) => format!(
                        "unknown field `{name}`: it is now `{new}` (`{}` under `[{}]`)",
                        field_of(new),
                        section_of(new),
                    ),
                    None => format!(
                        "unknown field `{name}`, expected a section: {}",
                        sections.join(", ")
                    ),
                }));
            }
            let toml::Value::Table(fields) = value else {
                return Err(in_file(format!("`{name}` must be a table (`[{name}]`)")));
            };
            for (field, value) in fields {
                let full = format!("{name}.{field}");
                let Some(key) = keys::find(&full) else {
                    let expected: Vec<&str> = KEYS
                        .iter()
                        .filter(|k| k.section == name)
                        .map(|k| k.field)
                        .collect();
                    return Err(in_file(format!(
                        "unknown field `{field}` in `[{name}]`, expected one of: {}",
                        expected.join(", ")
                    )));
                };
                let origin = format!("config file {}: {full}", path.display());
                layer.check_and_set(key, Raw::Toml(value), origin)?;
            }
        }
        Ok(layer)
    }

    /// The layer of the environment, read through `var` (so tests can pass a map).
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Self> {
        for (_, old, new) in RENAMED {
            let Some(key) = keys::find(new) else { continue };
            let accepted = key.env_vars().contains(&format!("{ENV_PREFIX}{old}"));
            if !accepted && var(&format!("{ENV_PREFIX}{old}")).is_some() {
                return Err(usage(format!(
                    "{ENV_PREFIX}{old} was renamed: set {} instead",
                    key.env_vars().join(" or ")
                )));
            }
        }
        let mut layer = Layer::default();
        for key in KEYS {
            // The sectioned and the flat name set the same key; both set, they must agree.
            let mut set: Option<(String, String)> = None;
            for name in key.env_vars() {
                let Some(value) = var(&name) else { continue };
                match &set {
                    Some((first, v)) if *v != value => {
                        return Err(usage(format!(
                            "{first}={v:?} and {name}={value:?} set the same setting ({}) \
                             to different values: set one of them",
                            key.name()
                        )));
                    }
                    Some(_) => {}
                    None => {
                        layer.check_and_set(key, Raw::Text(value.clone()), name.clone())?;
                        set = Some((name, value));
                    }
                }
            }
        }
        Ok(layer)
    }

    fn set(&mut self, name: &str, raw: Raw, origin: String) {
        self.values.insert(name.to_owned(), Setting { raw, origin });
    }

    /// Checks `raw` against the key's type now, so the error names its source, then keeps it.
    fn check_and_set(&mut self, key: &keys::Key, raw: Raw, origin: String) -> Result<()> {
        key.apply(&mut StorageConfig::default(), &raw, &origin)?;
        self.set(&key.name(), raw, origin);
        Ok(())
    }

    fn names_location(&self) -> bool {
        self.values.contains_key(DATA_PATH) || self.values.contains_key(DATABASE_URL)
    }

    /// `self` over `lower`: every value set here wins, and the location is taken whole from
    /// whichever of the two names one.
    pub fn over(mut self, lower: Layer) -> Layer {
        let names_location = self.names_location();
        for (name, setting) in lower.values {
            if names_location && (name == DATA_PATH || name == DATABASE_URL) {
                continue;
            }
            self.values.entry(name).or_insert(setting);
        }
        self
    }

    /// Applies the layer to the defaults and validates the result.
    pub fn into_config(self) -> Result<StorageConfig> {
        let mut config = match self.values.get(DATABASE_URL) {
            Some(url) => {
                let key = keys::find(DATABASE_URL).context("the database URL setting")?;
                let url = key.text(&url.raw, &url.origin)?;
                StorageConfig::from_url(&url).map_err(usage)?
            }
            None => StorageConfig::default(),
        };
        for key in KEYS {
            if let Some(setting) = self.values.get(&key.name()) {
                key.apply(&mut config, &setting.raw, &setting.origin)?;
            }
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
        let location_from_flags = flags.names_location();
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

/// The settings part of `--help`: where settings come from, and every key by section.
pub fn help() -> String {
    let mut text = String::from(
        "Settings (highest precedence first):
  1. flags: --data DIR or --url URL
  2. environment: BITCRAPS_STORAGE_<SECTION>_<FIELD>, e.g. BITCRAPS_STORAGE_CACHE_SIZE_MB=128,
     BITCRAPS_STORAGE_COMPRESSION_CODEC=lz4, BITCRAPS_STORAGE_WRITE_DURABILITY=normal,
     BITCRAPS_STORAGE_DATABASE_CONNECTION_TIMEOUT=10s (durations: seconds, or with units);
     or the flat BITCRAPS_STORAGE_<FIELD>: BITCRAPS_STORAGE_DATA_PATH, _DATABASE_URL,
     _MAX_CONNECTIONS, _CODEC, _DURABILITY, ... (docs/configuration.md lists both names)
  3. the TOML file given by --config FILE (or BITCRAPS_STORAGE_CONFIG), one table per section:
     [cache] size_mb = 128
  4. defaults (data directory ./bitcraps-data)
  The store's location (data directory or URL) is taken whole from the highest layer that
  names one, so --data always beats a URL from the environment or the file.
  Sections and their fields (docs/configuration.md has types, defaults and meanings):
",
    );
    for section in keys::sections() {
        let fields: Vec<&str> = KEYS
            .iter()
            .filter(|k| k.section == section)
            .map(|k| k.field)
            .collect();
        text.push_str(&format!("    [{section}] {}\n", fields.join(", ")));
    }
    text
}

fn section_of(name: &str) -> &str {
    name.split_once('.').map_or(name, |(section, _)| section)
}

fn field_of(name: &str) -> &str {
    name.split_once('.').map_or(name, |(_, field)| field)
}

fn usage(e: impl std::fmt::Display) -> anyhow::Error {
    CliError::Usage(e.to_string()).into()
}

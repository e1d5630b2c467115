use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use bitcraps_storage::{Codec, Durability};

use super::*;

fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (format!("{ENV_PREFIX}{k}"), (*v).to_owned()))
        .collect();
    move |k| map.get(k).cloned()
}

fn is_usage(err: Option<&anyhow::Error>) -> bool {
    err.and_then(|e| e.downcast_ref::<CliError>())
        .is_some_and(|e| matches!(e, CliError::Usage(_)))
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
        "[database]\ndata_path = \"from-file\"\nconnection_timeout = 1.5\n\
         [compression]\ncodec = \"gzip\"\n[cache]\nsize_mb = 7\n",
    )?;
    let s = Settings::load(
        Layer::default(),
        Some(&file),
        env(&[
            ("COMPRESSION_CODEC", "lz4"),
            ("DATABASE_DATA_PATH", "from-env"),
        ]),
    )?;
    assert_eq!(s.config.compression.codec, Codec::Lz4);
    assert_eq!(s.config.database.data_path, PathBuf::from("from-env"));
    assert_eq!(s.config.cache.size_mb, 7);
    assert_eq!(
        s.config.database.connection_timeout,
        Duration::from_millis(1500)
    );

    let s = Settings::load(
        Layer::from_flags(Some("from-flag".into()), None),
        Some(&file),
        env(&[("DATABASE_URL", "sqlite://env/x.db")]),
    )?;
    assert_eq!(s.config.database.data_path, PathBuf::from("from-flag"));
    assert_eq!(
        s.config.database.url, None,
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
        "[backup]\ndir = \"bk\"\nkeep_last = 9\n\
         [maintenance]\nstatistics_interval = 2\n\
         [compression]\ndictionaries = false\n",
    )?;
    let s = Settings::load(
        Layer::default(),
        Some(&file),
        env(&[
            ("MAINTENANCE_BACKGROUND_TASKS", "off"),
            ("CACHE_UPKEEP_INTERVAL", "0.25"),
            ("WRITE_DURABILITY", "normal"),
            ("BACKUP_KEEP_LAST", "4"),
        ]),
    )?;
    assert_eq!(s.config.backup.dir, Some(PathBuf::from("bk")));
    assert_eq!(s.config.backup.retention.keep_last, 4);
    assert_eq!(
        s.config.maintenance.statistics_interval,
        Duration::from_secs(2)
    );
    assert_eq!(s.config.cache.upkeep_interval, Duration::from_millis(250));
    assert!(!s.config.compression.dictionaries);
    assert!(!s.config.maintenance.background_tasks);
    assert_eq!(s.config.write.durability, Durability::Normal);
    Ok(())
}

#[test]
fn scale_out_settings_read_from_env_and_file() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("c.toml");
    std::fs::write(
        &file,
        "[redis]\nurl = \"redis://file:6379\"\nnamespace = \"ns\"\ncache_ttl = 30\n",
    )?;
    let s = Settings::load(
        Layer::default(),
        Some(&file),
        env(&[
            ("REDIS_URL", "redis://env:6379"),
            ("DATABASE_READ_REPLICA_URL", "postgres://replica/db"),
            ("REDIS_TIMEOUT", "0.5"),
        ]),
    )?;
    assert_eq!(s.config.redis.url.as_deref(), Some("redis://env:6379"));
    assert_eq!(s.config.redis.namespace.as_deref(), Some("ns"));
    assert_eq!(
        s.config.database.read_replica_url.as_deref(),
        Some("postgres://replica/db")
    );
    assert_eq!(s.config.redis.timeout, Duration::from_millis(500));
    assert_eq!(s.config.redis.cache_ttl, Duration::from_secs(30));
    Ok(())
}

#[test]
fn url_sets_the_data_directory() -> Result<()> {
    let s = Settings::load(
        Layer::default(),
        None,
        env(&[("DATABASE_URL", "sqlite://a/b.db")]),
    )?;
    assert_eq!(s.config.database.data_path, PathBuf::from("a"));
    assert_eq!(s.config.database.url.as_deref(), Some("sqlite://a/b.db"));
    Ok(())
}

#[test]
fn bad_values_are_usage_errors() {
    for (k, v) in [
        ("CACHE_SIZE_MB", "lots"),
        ("COMPRESSION_CODEC", "brotli"),
        ("COMPRESSION_ENABLED", "maybe"),
        ("DATABASE_CONNECTION_TIMEOUT", "-1"),
        ("DATABASE_MAX_CONNECTIONS", "0"),
        ("DATABASE_URL", "mysql://x"),
    ] {
        let err = Settings::load(Layer::default(), None, env(&[(k, v)])).err();
        assert!(is_usage(err.as_ref()), "{k}={v}: {err:?}");
    }
}

#[test]
fn bad_file_values_are_usage_errors() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("c.toml");
    for text in [
        "[cache]\nsize_mb = \"lots\"\n",
        "[cache]\nsize_mb = -1\n",
        "[compression]\nenabled = \"yes\"\n",
        "[write]\ndurability = \"off\"\n",
        "cache = 1\n",
    ] {
        std::fs::write(&file, text)?;
        let err = Settings::load(Layer::default(), Some(&file), env(&[])).err();
        assert!(is_usage(err.as_ref()), "{text:?}: {err:?}");
    }
    Ok(())
}

#[test]
fn unknown_file_keys_are_rejected() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("c.toml");
    for text in [
        "cache_size = 1\n",
        "[cache]\nsize = 1\n",
        "[caches]\nsize_mb = 1\n",
    ] {
        std::fs::write(&file, text)?;
        let err = Settings::load(Layer::default(), Some(&file), env(&[])).err();
        assert!(
            err.is_some_and(|e| e.to_string().contains("unknown field")),
            "typo'd keys must not be ignored: {text:?}"
        );
    }
    Ok(())
}

#[test]
fn old_flat_file_keys_name_their_new_key() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("c.toml");
    for (old, _, new) in RENAMED {
        std::fs::write(&file, format!("{old} = 1\n"))?;
        let err = Settings::load(Layer::default(), Some(&file), env(&[])).err();
        let message = err.as_ref().map(ToString::to_string).unwrap_or_default();
        assert!(is_usage(err.as_ref()), "{old}: {err:?}");
        assert!(
            message.contains(&format!("`{new}`")),
            "{old}: the error names {new}: {message}"
        );
        assert!(keys::find(new).is_some(), "{new} is a key");
    }
    Ok(())
}

#[test]
fn renamed_variables_name_their_new_variable_and_kept_ones_still_work() -> Result<()> {
    let mut refused = Vec::new();
    for (_, old, new) in RENAMED {
        let key = keys::find(new).context("a renamed setting names a key")?;
        let result = Layer::from_env(env(&[(old, "1")]));
        if key.env_vars().contains(&format!("{ENV_PREFIX}{old}")) {
            // Read as the setting: "1" may be a bad value for it, never a renamed name.
            let message = result.err().map(|e| e.to_string()).unwrap_or_default();
            assert!(
                message.is_empty() || message.starts_with(&format!("{ENV_PREFIX}{old}=\"1\"")),
                "{old} still names {new}: {message}"
            );
        } else {
            let message = result.err().map(|e| e.to_string()).unwrap_or_default();
            assert!(
                message.contains(&key.env_var()),
                "{old}: the error names {}: {message}",
                key.env_var()
            );
            refused.push(*old);
        }
    }
    // Only the two old names that were not the field's name: DATA (now DATA_PATH) and URL
    // (now DATABASE_URL), which would be ambiguous beside redis.url.
    assert_eq!(refused, ["DATA", "URL"]);
    let s = Settings::load(
        Layer::default(),
        None,
        env(&[("CACHE_SIZE_MB", "9"), ("BACKUP_RETENTION_DAYS", "2")]),
    )?;
    assert_eq!(s.config.cache.size_mb, 9);
    assert_eq!(s.config.backup.retention.within_days, 2);
    Ok(())
}

/// Issue #17: every setting can be set as `BITCRAPS_STORAGE_<FIELD>` too, DATA_PATH and
/// DATABASE_URL included; both names set the same field, and disagreeing values are refused.
#[test]
fn every_setting_has_a_flat_variable_too() -> Result<()> {
    let s = Settings::load(
        Layer::default(),
        None,
        env(&[
            ("DATA_PATH", "/srv/flat"),
            ("MAX_CONNECTIONS", "7"),
            ("ENABLE_COMPRESSION", "false"),
            ("CODEC", "lz4"),
            ("DURABILITY", "normal"),
            ("UPDATE_MAX_ATTEMPTS", "5"),
            ("TRACE_KEYS", "true"),
            ("REMOTE_CACHE_TTL", "30s"),
        ]),
    )?;
    assert_eq!(
        s.config.database.data_path,
        std::path::PathBuf::from("/srv/flat")
    );
    assert_eq!(s.config.database.max_connections, 7);
    assert!(!s.config.compression.enabled);
    assert_eq!(s.config.compression.codec, Codec::Lz4);
    assert_eq!(s.config.write.durability, Durability::Normal);
    assert_eq!(s.config.write.update_max_attempts, 5);
    assert!(s.config.metrics.trace_keys);
    assert_eq!(s.config.redis.cache_ttl, Duration::from_secs(30));
    let s = Settings::load(
        Layer::default(),
        None,
        env(&[("DATABASE_URL", "sqlite:///srv/x.db")]),
    )?;
    assert_eq!(s.config.database.url.as_deref(), Some("sqlite:///srv/x.db"));

    // Both spellings, agreeing: fine; disagreeing: a usage error naming both.
    let both = [("CODEC", "lz4"), ("COMPRESSION_CODEC", "lz4")];
    assert_eq!(
        Settings::load(Layer::default(), None, env(&both))?
            .config
            .compression
            .codec,
        Codec::Lz4
    );
    let err = Settings::load(
        Layer::default(),
        None,
        env(&[("CODEC", "lz4"), ("COMPRESSION_CODEC", "zstd")]),
    )
    .err();
    assert!(is_usage(err.as_ref()), "{err:?}");
    let message = err.map(|e| e.to_string()).unwrap_or_default();
    assert!(
        message.contains("BITCRAPS_STORAGE_CODEC") && message.contains("COMPRESSION_CODEC"),
        "{message}"
    );

    // Every name, sectioned or flat, sets exactly one key, and none is the config file's.
    let mut owner = BTreeMap::new();
    for key in KEYS {
        for name in key.env_vars() {
            assert_ne!(name, format!("{ENV_PREFIX}CONFIG"));
            if let Some(other) = owner.insert(name.clone(), key.name()) {
                panic!("{name} sets both {other} and {}", key.name());
            }
        }
    }
    assert!(
        KEYS.iter()
            .filter(|k| k.flat_env_suffix().is_some())
            .count()
            >= 20,
        "most settings have a distinct flat name"
    );
    Ok(())
}

#[test]
fn dotted_keys_at_the_top_level_are_the_same_setting() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("c.toml");
    std::fs::write(&file, "cache.size_mb = 3\nwrite.durability = \"normal\"\n")?;
    let s = Settings::load(Layer::default(), Some(&file), env(&[]))?;
    assert_eq!(s.config.cache.size_mb, 3);
    assert_eq!(s.config.write.durability, Durability::Normal);
    Ok(())
}

/// The leaf fields of `StorageConfig`, as paths (`cache.size_mb`), read from its pretty
/// `Debug` output: the one description of every field, including ones added later, that the
/// library gives without a test-only API.
fn config_fields() -> BTreeSet<String> {
    let text = format!("{:#?}", StorageConfig::default());
    let mut path: Vec<String> = Vec::new();
    let mut leaves = BTreeSet::new();
    for line in text.lines() {
        let indent = line.len() - line.trim_start().len();
        let depth = indent / 4;
        let Some((name, rest)) = line.trim_start().split_once(": ") else {
            continue;
        };
        if depth == 0
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            continue;
        }
        path.truncate(depth - 1);
        if rest.ends_with('{') {
            path.push(name.to_owned());
        } else {
            let mut full = path.clone();
            full.push(name.to_owned());
            leaves.insert(full.join("."));
        }
    }
    leaves
}

#[test]
fn every_config_field_is_a_setting() {
    let fields = config_fields();
    assert!(fields.contains("cache.size_mb"), "{fields:?}");
    assert!(fields.contains("backup.retention.keep_last"), "{fields:?}");
    let settings: BTreeSet<String> = KEYS.iter().map(|k| k.config_path.to_owned()).collect();
    assert_eq!(
        fields, settings,
        "every field of every StorageConfig section has exactly one setting"
    );
    let names: BTreeSet<String> = KEYS.iter().map(keys::Key::name).collect();
    assert_eq!(names.len(), KEYS.len(), "no TOML key twice");
}

/// The rows of the settings table in docs/configuration.md: TOML key → the other cells.
fn documented() -> BTreeMap<String, Vec<String>> {
    let doc = include_str!("../../../../docs/configuration.md");
    let mut rows = BTreeMap::new();
    for line in doc.lines() {
        let cells: Vec<String> = line
            .trim()
            .trim_matches('|')
            .split('|')
            .map(|c| c.trim().to_owned())
            .collect();
        let Some(key) = cells
            .first()
            .and_then(|c| c.strip_prefix('`'))
            .and_then(|c| c.strip_suffix('`'))
        else {
            continue;
        };
        if key.contains('.') {
            rows.insert(key.to_owned(), cells.clone());
        }
    }
    rows
}

#[test]
fn the_documented_table_lists_every_setting_as_it_is() {
    let rows = documented();
    let documented: BTreeSet<&String> = rows.keys().collect();
    let names: Vec<String> = KEYS.iter().map(keys::Key::name).collect();
    let settings: BTreeSet<&String> = names.iter().collect();
    assert_eq!(
        documented, settings,
        "docs/configuration.md has one row per setting"
    );
    for key in KEYS {
        let Some(cells) = rows.get(&key.name()) else {
            continue;
        };
        let cell = |i: usize| cells.get(i).map_or("", String::as_str);
        let names: Vec<String> = key.env_vars().iter().map(|n| format!("`{n}`")).collect();
        assert_eq!(cell(1), names.join(" or "), "{}", key.name());
        let flag = key.flag.map(|f| format!("`{f}`")).unwrap_or_default();
        assert_eq!(cell(2), flag, "{}: flag", key.name());
        assert_eq!(cell(3), key.type_name(), "{}: type", key.name());
        assert!(!cell(4).is_empty(), "{}: default", key.name());
        assert!(!cell(5).is_empty(), "{}: meaning", key.name());
    }
}

#[test]
fn help_lists_every_setting() {
    let help = help();
    for section in keys::sections() {
        let fields: Vec<&str> = KEYS
            .iter()
            .filter(|k| k.section == section)
            .map(|k| k.field)
            .collect();
        assert!(
            help.contains(&format!("[{section}] {}", fields.join(", "))),
            "{section}"
        );
    }
}

#[test]
fn durations_accept_units_in_the_file_and_the_environment() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("c.toml");
    std::fs::write(
        &file,
        "[maintenance]\nstatistics_interval = \"10s\"\nscrub_interval = \"1h 30m\"\n\
         [redis]\ntimeout = \"250ms\"\n",
    )?;
    let s = Settings::load(
        Layer::default(),
        Some(&file),
        env(&[("CACHE_UPKEEP_INTERVAL", "2m")]),
    )?;
    let m = &s.config.maintenance;
    assert_eq!(m.statistics_interval, Duration::from_secs(10));
    assert_eq!(m.scrub_interval, Duration::from_secs(5400));
    assert_eq!(s.config.redis.timeout, Duration::from_millis(250));
    assert_eq!(s.config.cache.upkeep_interval, Duration::from_secs(120));
    let bad = Settings::load(
        Layer::default(),
        None,
        env(&[("CACHE_UPKEEP_INTERVAL", "10 parsecs")]),
    );
    assert!(
        is_usage(bad.as_ref().err()),
        "a bad duration is a usage error"
    );
    Ok(())
}

#[test]
fn a_missing_config_file_is_a_usage_error() {
    let missing = Settings::load(
        Layer::default(),
        Some(std::path::Path::new("/nonexistent/bitcraps.toml")),
        env(&[]),
    );
    assert!(is_usage(missing.as_ref().err()), "exit 2, not 1");
}

#[test]
fn unknown_variables_are_usage_errors_and_known_ones_pass() {
    let names = |list: &[&str]| {
        list.iter()
            .map(std::ffi::OsString::from)
            .collect::<Vec<_>>()
    };
    let known = names(&[
        "BITCRAPS_STORAGE_CACHE_SIZE_MB",
        "BITCRAPS_STORAGE_DATABASE_READ_ONLY",
        "BITCRAPS_STORAGE_CONFIG",
        "BITCRAPS_STORAGE_DATA",
        "BITCRAPS_TEST_POSTGRES_URL",
        "PATH",
    ]);
    assert!(check_variables(known).is_ok());
    let misspelt = check_variables(names(&["BITCRAPS_STORAGE_CACHE_SIZE"]));
    assert!(is_usage(misspelt.as_ref().err()));
    assert!(
        misspelt
            .err()
            .is_some_and(|e| e.to_string().contains("BITCRAPS_STORAGE_CACHE_SIZE"))
    );
}

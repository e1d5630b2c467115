//! Settings precedence: flags > BITCRAPS_STORAGE_* environment > --config file > defaults.

use crate::common;

use common::Scratch;
use predicates::prelude::*;

/// A document zstd, lz4 and gzip all shrink, so its codec shows in `info`.
fn compressible() -> String {
    format!(
        r#"{{"rules":"{}"}}"#,
        "pass line pays even money; ".repeat(200)
    )
}

#[expect(clippy::expect_used, reason = "test helper")]
fn codec_of(s: &Scratch, data: &str) -> String {
    let out = s
        .cli_at(&s.path(data))
        .args(["info", "c", "k", "--json"])
        .assert()
        .success();
    let info: serde_json::Value =
        serde_json::from_slice(&out.get_output().stdout).expect("info JSON");
    info["codec"].as_str().unwrap_or_default().to_owned()
}

#[test]
fn location_precedence() {
    let s = Scratch::new();
    let config = s.path("settings.toml");
    std::fs::write(&config, "[database]\ndata_path = \"from-file\"\n").expect("write config");

    // Defaults: ./bitcraps-data under the working directory.
    s.bare().args(["put", "c", "k", "1"]).assert().success();
    assert!(s.path("bitcraps-data/bitcraps.db").exists());

    // The file beats the defaults.
    s.bare()
        .arg("--config")
        .arg(&config)
        .args(["put", "c", "k", "2"])
        .assert()
        .success();
    assert!(s.path("from-file/bitcraps.db").exists());

    // The environment beats the file (the config file named through the environment too).
    s.bare()
        .env("BITCRAPS_STORAGE_CONFIG", &config)
        .env("BITCRAPS_STORAGE_DATABASE_DATA_PATH", "from-env")
        .args(["put", "c", "k", "3"])
        .assert()
        .success();
    assert!(s.path("from-env/bitcraps.db").exists());

    // The flag beats the environment, even a URL there.
    s.bare()
        .env(
            "BITCRAPS_STORAGE_DATABASE_URL",
            "sqlite://from-env-url/x.db",
        )
        .args(["--data", "from-flag", "put", "c", "k", "4"])
        .assert()
        .success();
    assert!(s.path("from-flag/bitcraps.db").exists());
    assert!(!s.path("from-env-url").exists());

    // A URL from the environment, with no flag.
    s.bare()
        .env(
            "BITCRAPS_STORAGE_DATABASE_URL",
            "sqlite://from-env-url/x.db",
        )
        .args(["put", "c", "k", "5"])
        .assert()
        .success();
    assert!(s.path("from-env-url/x.db").exists());

    // Each store got exactly its own write.
    for (data, value) in [
        ("bitcraps-data", "1"),
        ("from-file", "2"),
        ("from-env", "3"),
        ("from-flag", "4"),
    ] {
        s.cli_at(&s.path(data))
            .args(["get", "c", "k"])
            .assert()
            .success()
            .stdout(format!("{value}\n"));
    }
}

#[test]
fn codec_precedence() {
    let s = Scratch::new();
    let config = s.path("settings.toml");
    std::fs::write(&config, "[compression]\ncodec = \"gzip\"\nlevel = 6\n").expect("write config");
    let doc = compressible();

    s.cli_at(&s.path("default"))
        .args(["put", "c", "k", &doc])
        .assert()
        .success();
    assert_eq!(codec_of(&s, "default"), "zstd");

    s.cli_at(&s.path("file"))
        .arg("--config")
        .arg(&config)
        .args(["put", "c", "k", &doc])
        .assert()
        .success();
    assert_eq!(codec_of(&s, "file"), "gzip");

    s.cli_at(&s.path("env"))
        .arg("--config")
        .arg(&config)
        .env("BITCRAPS_STORAGE_COMPRESSION_CODEC", "lz4")
        .args(["put", "c", "k", &doc])
        .assert()
        .success();
    assert_eq!(codec_of(&s, "env"), "lz4");

    s.cli_at(&s.path("off"))
        .env("BITCRAPS_STORAGE_COMPRESSION_ENABLED", "false")
        .args(["put", "c", "k", &doc])
        .assert()
        .success();
    assert_eq!(codec_of(&s, "off"), "none");
}

#[test]
fn bad_settings_are_usage_errors() {
    let s = Scratch::new();
    s.cli()
        .env("BITCRAPS_STORAGE_CACHE_SIZE_MB", "lots")
        .arg("stats")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("BITCRAPS_STORAGE_CACHE_SIZE_MB"));
    let config = s.path("bad.toml");
    std::fs::write(&config, "cache_size = 1\n").expect("write config");
    s.cli()
        .arg("--config")
        .arg(&config)
        .arg("stats")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("unknown field"));
    // A flat key of earlier releases names its new place.
    std::fs::write(&config, "cache_size_mb = 1\n").expect("write config");
    s.cli()
        .arg("--config")
        .arg(&config)
        .arg("stats")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("`cache.size_mb`"));
    // So does a renamed variable: it is never silently ignored.
    s.bare()
        .env("BITCRAPS_STORAGE_DATA", "old-name")
        .arg("stats")
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "BITCRAPS_STORAGE_DATABASE_DATA_PATH",
        ));
    assert!(!s.path("old-name").exists());
    // A misspelt variable is an error, as an unknown TOML key is (issue #17).
    s.cli()
        .env("BITCRAPS_STORAGE_CACHE_SIZE", "1")
        .arg("stats")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("BITCRAPS_STORAGE_CACHE_SIZE"));
    // A missing --config file is a mistake in the invocation, like a bad key (issue #17).
    s.cli()
        .arg("--config")
        .arg(s.path("missing.toml"))
        .arg("stats")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("does not exist"));
    s.bare()
        .args(["--url", "mysql://localhost/x", "stats"])
        .assert()
        .code(2);
}

#[test]
fn help_documents_settings_and_exit_codes() {
    let s = Scratch::new();
    s.bare()
        .arg("--help")
        .assert()
        .success()
        .stdout(predicate::str::contains("BITCRAPS_STORAGE_CACHE_SIZE_MB"))
        .stdout(predicate::str::contains("Exit codes:"))
        .stdout(predicate::str::contains("3  not found"));
}

//! The CLI's integration tests, as one test binary: one module per file of this directory
//! (listed alphabetically below), sharing `tests/common/`. One binary instead of one per
//! file: `common` is compiled once and the CLI's dependencies are linked once (CI time; see
//! `.ci/run`). Every test runs the real binary in a child process, so tests share no
//! process-wide state.
//!
//! A new test file goes here as `tests/it/NAME.rs`, with `use crate::common;` where a
//! standalone test file would have `mod common;`, and a `mod NAME;` line below.

#[path = "../common/mod.rs"]
mod common;

mod backup_cycle;
mod backup_hostile_ids;
mod backup_kill;
mod backup_prune;
mod collections;
mod completions;
mod conditional;
mod conventions;
mod demo;
mod encryption_enable_kill;
mod encryption_keys;
mod export_import;
mod hostile_input;
mod import_large;
mod invalid_input;
mod list_formats;
mod logs_plain;
mod maintenance_damaged;
mod metrics_endpoint;
mod migrate;
mod migrate_chunked;
mod migrate_lifecycle;
mod migrate_postgres;
mod missing_key;
mod no_store;
mod put_bytes;
mod quiet;
mod quota;
mod read_only;
mod records;
mod restore_postgres;
mod secrets_and_modes;
mod settings_precedence;
mod stats_json;
mod stats_prometheus;
mod ttl;
mod watch;

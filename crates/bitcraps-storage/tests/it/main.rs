//! The library's integration tests, as one test binary: one module per file of this
//! directory (listed alphabetically below), sharing `tests/common/`. One binary instead of
//! one per file: `common` is compiled once and the library and its dependencies are linked
//! once (CI time; see `.ci/run`).
//!
//! A new test file goes here as `tests/it/NAME.rs`, with `use crate::common;` where a
//! standalone test file would have `mod common;`, and a `mod NAME;` line below. Tests that
//! change process-wide state (a global tracing subscriber or metrics recorder, the
//! `testing::force_xchacha` / `testing::seal_documents_v1` switches, environment variables,
//! the umask) would disturb the other tests of this process: they stay in their own binary,
//! a file directly under `tests/` (`spans.rs`, `metrics_dashboard.rs`, ...).

// First, and with `#[macro_use]`: the suites' macros (`conformance_suite!`, ...) are then in
// scope in every module below.
#[macro_use]
#[path = "../common/mod.rs"]
mod common;

mod background;
mod backup_damage;
mod backup_hostile;
mod backup_online;
mod backup_restore_into;
mod backup_retention;
mod backup_schema15;
mod chunk_damage;
mod chunk_refs_pages;
mod chunk_repair;
mod cooperative_reads;
mod delta_base;
mod delta_identical_rewrite;
mod encrypted_conformance;
mod encrypted_memory_conformance;
mod encrypted_miss_at_once;
mod encryption_backups;
mod encryption_enable;
mod encryption_fail_closed;
mod encryption_keys_backends;
mod encryption_preseal;
mod encryption_reencrypt;
mod encryption_rotate_shred;
mod encryption_scan_pages;
mod encryption_sentinel;
mod encryption_shred_race;
mod encryption_tamper;
mod error_count;
mod expiry_backup;
mod feed_prune_race;
mod feed_reconnect;
mod feed_restore;
mod feed_watch_install;
mod full_disk;
mod inline_delta_damage;
mod inline_deltas;
mod keyframe_cache;
mod maintenance;
mod maintenance_damaged_page;
mod maintenance_flipped_byte;
mod memory_conformance;
mod model;
mod model_chunks;
mod pg_backend;
mod pg_backup;
mod pg_bulk_copy;
mod pg_chunk_nodes;
mod pg_concurrency;
mod pg_conformance;
mod pg_encrypted_conformance;
mod pg_group_write;
mod pg_maintenance;
mod pg_redis_conformance;
mod pg_redis_encryption;
mod pg_tls;
mod pg_tls_off;
mod pg_two_node_expiry;
mod pg_two_node_feed;
mod pg_two_node_quota;
mod pg_two_node_shred;
mod pg_two_node_updates;
mod prefetch_co_access;
mod prefetch_race;
mod prefetch_sequential;
mod prefetch_template;
mod read_at_once_busy;
mod read_miss_at_once;
mod read_only;
mod redis_conformance;
mod redis_l1_coherence;
mod redis_l1_lifetime;
mod redis_read_through;
mod redis_restart;
mod redis_security;
mod redis_stampede;
mod redis_tls;
mod redis_two_nodes;
mod schema13_upgrade;
mod schema14_odd_log;
mod schema14_upgrade;
mod schema15_odd_log;
mod schema15_upgrade;
mod schema_fixtures;
mod sqlite_conformance;
mod sqlite_specific;
mod statistics_overflow;
mod store_json;
mod store_json_appends;
mod store_json_typed_read;
mod typed_memory;
mod typed_tier;
mod versions_backup;
mod wal_outside_apply;
mod writer_faults;

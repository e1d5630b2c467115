//! Command-line arguments (clap derive). Parsing only: what each command does lives in
//! `commands/`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Shown after the options in `--help`, after the settings ([`crate::settings::help`]): the
/// exit codes.
const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  success
  1  error (I/O, database, corruption, store locked by another process, ...; migrate: a
     non-empty target, or the copy differs from the source; demo --data: a store that
     already holds records, without --force)
  2  usage or configuration error (bad arguments, settings, config file or URL; a write
     through --read-only)
  3  not found (get, info, or delete without --force, of a missing key; get, list, info,
     stats, export, backup list or backup verify on a data directory that holds no store,
     which they never create)
  4  invalid input (malformed JSON, not UTF-8, nested more than 127 levels deep, invalid
     collection or key, value too large); a write that would take a collection over a
     quota (nothing written)
  5  conflict (put or delete with --if-version or --if-absent whose condition did not hold;
     nothing was written)

Logging goes to stderr, filtered by RUST_LOG (default: warn).";

/// Inspect and operate a bitcraps-storage store from the command line.
#[derive(Debug, Parser)]
#[command(
    name = "bitcraps-storage",
    version,
    about,
    after_help = format!("{}\n{EXIT_CODES_HELP}", crate::settings::help())
)]
pub struct Cli {
    /// Data directory holding bitcraps.db [default: ./bitcraps-data]
    #[arg(long, global = true, value_name = "DIR", conflicts_with = "url")]
    pub data: Option<PathBuf>,

    /// Database URL, e.g. sqlite://./data/bitcraps.db
    #[arg(long, global = true, value_name = "URL")]
    pub url: Option<String>,

    /// TOML settings file, one table per StorageConfig section (see docs/configuration.md)
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        env = "BITCRAPS_STORAGE_CONFIG",
        hide_env_values = true
    )]
    pub config: Option<PathBuf>,

    /// Open the store for reading only: an embedded store is opened without its writer lock,
    /// so it can be inspected while another process (a server, `demo`) writes it; writes are
    /// refused (exit 2). For get, list, info, stats, export, collections, backup create and
    /// serve-metrics
    #[arg(long, global = true)]
    pub read_only: bool,

    /// File holding the store's master key (64 hex characters; `key generate` makes one):
    /// the store is encrypted at rest. Also BITCRAPS_STORAGE_KEY_FILE (key.file)
    #[arg(long, global = true, value_name = "FILE")]
    pub key_file: Option<PathBuf>,

    /// Print no progress bars and no notes on stderr (errors are still printed)
    #[arg(short, long, global = true)]
    pub quiet: bool,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands. Each has its own file under `commands/`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Store a JSON document (from the argument, or stdin when it is absent or "-")
    Put(PutArgs),
    /// Print a JSON document
    Get(GetArgs),
    /// Delete a record
    Delete(DeleteArgs),
    /// List keys of a collection, one per line (control characters escaped)
    List(ListArgs),
    /// Show a record's metadata
    Info(InfoArgs),
    /// List the collections that hold records, one per line
    Collections(CollectionsArgs),
    /// Show the store's statistics
    Stats(StatsArgs),
    /// Set, clear and show collection quotas (kept in the store; a write past a hard limit
    /// fails with exit 4 and writes nothing)
    #[command(subcommand)]
    Quota(QuotaCommand),
    /// Set, clear and show the default TTL of collections (kept in the store, so every node
    /// and process applies it)
    #[command(subcommand)]
    Ttl(TtlCommand),
    /// Write records as JSON Lines: {"collection":..,"key":..,"value":..}
    Export(ExportArgs),
    /// Read records from JSON Lines (as written by export) and store them in batches
    Import(ImportArgs),
    /// Run maintenance now: flush, repair references, optimize, vacuum, checkpoint, backup
    Maintenance(MaintenanceArgs),
    /// Create, list, verify and restore backups
    #[command(subcommand)]
    Backup(BackupCommand),
    /// Encryption at rest: generate a master key, rotate it, crypto-shred a collection
    #[command(subcommand)]
    Key(KeyCommand),
    /// Simulate BitCraps tables against a fresh store and report throughput, latency and savings
    Demo(DemoArgs),
    /// Copy every record from one store into another (e.g. SQLite to PostgreSQL) and verify
    /// the copy
    Migrate(MigrateArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell), e.g.
    /// `bitcraps-storage completions bash > /etc/bash_completion.d/bitcraps-storage`
    Completions {
        /// The shell
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Serve the store's metrics at http://ADDR/metrics (Prometheus text format) until
    /// interrupted; opens the store read-only (beside the server that writes it), and
    /// refreshes the gauges on every scrape
    ServeMetrics(ServeMetricsArgs),
    /// Print the changes of a collection as they commit, one JSON object per line (seq,
    /// collection, key, kind, version, at), until interrupted; opens the store read-only, so
    /// it runs beside the processes that write it
    Watch(WatchArgs),
}

/// A collection and a key.
#[derive(Debug, Args)]
pub struct RecordRef {
    /// Collection name
    pub collection: String,
    /// Key within the collection
    pub key: String,
}

/// `put`
#[derive(Debug, Args)]
pub struct PutArgs {
    #[command(flatten)]
    pub record: RecordRef,
    /// The JSON document; read from stdin when absent or "-"
    pub json: Option<std::ffi::OsString>,
    #[command(flatten)]
    pub condition: Condition,
    /// Print the record's new version (a number) on stdout
    #[arg(long)]
    pub print_version: bool,
    /// Expire the record this long after the write (e.g. 30s, 10m, 1h 30m); without it, the
    /// collection's default TTL applies (see `ttl show`), if it has one
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub ttl: Option<std::time::Duration>,
}

impl Condition {
    /// The library's condition.
    pub fn expect(&self) -> bitcraps_storage::Expect {
        use bitcraps_storage::{Expect, Version};
        match (self.if_version, self.if_absent) {
            (Some(v), _) => Expect::Version(Version::new(v)),
            (None, true) => Expect::Absent,
            (None, false) => Expect::Any,
        }
    }
}

/// The condition of a conditional `put` or `delete` (exit 5 when it does not hold).
#[derive(Debug, Args)]
pub struct Condition {
    /// Write only if the record is at exactly this version (see `info`); exit 5 otherwise
    #[arg(long, value_name = "V", conflicts_with = "if_absent")]
    pub if_version: Option<u64>,
    /// Write only if the record does not exist; exit 5 otherwise
    #[arg(long)]
    pub if_absent: bool,
}

/// `get`
#[derive(Debug, Args)]
pub struct GetArgs {
    #[command(flatten)]
    pub record: RecordRef,
    /// Pretty-print the document
    #[arg(long)]
    pub pretty: bool,
}

/// `delete`
#[derive(Debug, Args)]
pub struct DeleteArgs {
    #[command(flatten)]
    pub record: RecordRef,
    /// Succeed (exit 0) when the record does not exist
    #[arg(short, long)]
    pub force: bool,
    #[command(flatten)]
    pub condition: Condition,
}

/// `list`
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Collection name
    pub collection: String,
    /// Only keys starting with this prefix
    #[arg(long, value_name = "P")]
    pub prefix: Option<String>,
    /// At most this many keys [default: all]
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Only keys after this one (continue a previous listing)
    #[arg(long, value_name = "K")]
    pub after: Option<String>,
    /// End each key with a NUL byte instead of a line break and print it exactly as stored
    /// (for `xargs -0`: keys with line breaks survive)
    #[arg(short = '0', long = "null", conflicts_with = "json")]
    pub null: bool,
    /// Print one JSON array of the keys, exactly as stored
    #[arg(long)]
    pub json: bool,
}

/// `info`
#[derive(Debug, Args)]
pub struct InfoArgs {
    #[command(flatten)]
    pub record: RecordRef,
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

/// `collections`
#[derive(Debug, Args)]
pub struct CollectionsArgs {
    /// Print a JSON array instead of one name per line
    #[arg(long)]
    pub json: bool,
}

/// `quota …`
#[derive(Debug, Subcommand)]
pub enum QuotaCommand {
    /// Limit COLLECTION's records and/or logical JSON bytes (the serialized documents as
    /// written, before dedup and compression; expired records do not count)
    Set {
        /// Collection name
        collection: String,
        /// The most records
        #[arg(long, value_name = "N", required_unless_present = "max_bytes")]
        max_records: Option<u64>,
        /// The most bytes of JSON, e.g. 1048576, 500KB, 64MiB, 2GB
        #[arg(long, value_name = "SIZE", value_parser = parse_size)]
        max_bytes: Option<u64>,
        /// Warn (log, statistic, metric) from this percentage of a limit on
        #[arg(long, value_name = "P", default_value_t = bitcraps_storage::DEFAULT_SOFT_PERCENT,
              value_parser = clap::value_parser!(u8).range(1..=100))]
        soft_percent: u8,
    },
    /// Remove COLLECTION's quota
    Clear {
        /// Collection name
        collection: String,
    },
    /// Show every quota with the collection's current usage
    Show {
        /// Print JSON: {collection: {"quota": …, "usage": …}}
        #[arg(long)]
        json: bool,
    },
}

/// A size in bytes: a number, optionally followed by B, KB, MB, GB (powers of 1000) or KiB,
/// MiB, GiB (powers of 1024), case-insensitive, with or without a space.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size (e.g. 1048576, 500KB, 64MiB)"))?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        other => {
            return Err(format!(
                "unknown size unit {other:?} (B, KB, MB, GB, KiB, MiB, GiB)"
            ));
        }
    };
    n.checked_mul(factor)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// `ttl …`
#[derive(Debug, Subcommand)]
pub enum TtlCommand {
    /// Records of COLLECTION written from now on without a TTL of their own expire this long
    /// after they are written (records already written keep their expiry)
    Set {
        /// Collection name
        collection: String,
        /// The TTL, e.g. 30s, 10m, 1h 30m
        #[arg(value_parser = humantime::parse_duration)]
        ttl: std::time::Duration,
    },
    /// Remove COLLECTION's default TTL: later writes do not expire unless they say so
    Clear {
        /// Collection name
        collection: String,
    },
    /// Show every collection's default TTL
    Show {
        /// Print a JSON object {collection: milliseconds}
        #[arg(long)]
        json: bool,
    },
}

/// `stats`
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Print JSON instead of a table (the same as --format json)
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
    /// Output format: a table, the whole statistics structure as JSON, or the Prometheus text
    /// exposition format (for node_exporter's textfile collector)
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub format: Option<StatsFormat>,
}

/// `stats --format`
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StatsFormat {
    /// A table
    Table,
    /// JSON
    Json,
    /// Prometheus text exposition format
    Prometheus,
}

/// `serve-metrics`
#[derive(Debug, Args)]
pub struct ServeMetricsArgs {
    /// Address to serve /metrics on (port 0 picks a free port; the address is printed on
    /// stderr)
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9464")]
    pub metrics_addr: std::net::SocketAddr,
}

/// `watch`
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Collection name
    pub collection: String,
    /// Only keys that start with this prefix
    #[arg(long, value_name = "PREFIX", default_value = "")]
    pub prefix: String,
    /// Start after this seq of the change log (0: from the oldest change retained); without
    /// it, only changes committed from now on
    #[arg(long, value_name = "SEQ")]
    pub since: Option<u64>,
}

/// `maintenance`
#[derive(Debug, Args)]
pub struct MaintenanceArgs {
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

/// `key …`
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Print a new random master key (64 hex characters) for a key file, e.g.
    /// `bitcraps-storage key generate > /etc/bitcraps.key && chmod 600 /etc/bitcraps.key`
    Generate,
    /// Encrypt a plaintext store in place with the key of --key-file: resumable (run it
    /// again after an interruption), with a progress bar, verified at the end; until it
    /// finishes the store opens only for this
    Enable,
    /// Re-wrap every data key under a new master key, in one transaction; afterwards only
    /// the new key opens the store (the current one comes from --key-file). Backups taken
    /// before still need the old key
    Rotate {
        /// File holding the new master key (64 hex characters)
        #[arg(long, value_name = "FILE")]
        new_key_file: PathBuf,
    },
    /// Give a collection a new data key: new writes are sealed under it, older blobs stay
    /// readable under theirs
    RotateData {
        /// The collection
        collection: String,
    },
    /// Seal every blob still under an older data key (after rotate-data) again under its
    /// collection's current key, now, in budgeted steps (maintenance does one step per run)
    Reencrypt,
    /// Crypto-shred a collection: destroy its data key, records, blobs and dictionaries.
    /// Its reads then fail; other collections are untouched. Backups taken before still
    /// hold it under the master key of their time (see docs/configuration.md)
    Shred {
        /// The collection
        collection: String,
        /// Confirm: this cannot be undone
        #[arg(long)]
        yes: bool,
    },
}

/// `backup …`
#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Take a consistent backup of the store now
    Create {
        /// Print the manifest as JSON
        #[arg(long)]
        json: bool,
    },
    /// List backups, newest first
    List {
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Check a backup end to end: checksum, decompression, integrity, counts
    Verify {
        /// The backup id (see `backup list`)
        id: String,
        /// Print the verification report as JSON
        #[arg(long)]
        json: bool,
    },
    /// Apply the retention rules (backup.keep_* and backup.retention_days) now, without taking
    /// a backup: delete the complete backups no rule keeps
    Prune {
        /// Only say what would be deleted
        #[arg(long)]
        dry_run: bool,
        /// Print what was kept and deleted as JSON ({"kept": [...], "deleted": [...]})
        #[arg(long)]
        json: bool,
    },
    /// Restore a backup into a new directory or an empty PostgreSQL schema (verified first;
    /// never over the live store)
    Restore {
        /// The backup id (see `backup list`)
        id: String,
        /// The new data directory (must not exist or be empty), or a postgres://… URL whose
        /// schema holds no records
        #[arg(long, value_name = "DIR|URL")]
        to: std::path::PathBuf,
        /// Print the restore report as JSON
        #[arg(long)]
        json: bool,
    },
}

/// `export`
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Only this collection [default: every collection]
    #[arg(long, value_name = "C")]
    pub collection: Option<String>,
    /// Write to this file instead of stdout
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Confirm that the export of an encrypted store (opened with a key) writes its
    /// documents in plaintext; refused without it (exit 2)
    #[arg(long)]
    pub plaintext: bool,
}

/// `import`
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// JSON Lines file; stdin when absent or "-"
    pub file: Option<PathBuf>,
    /// Records per atomic batch
    #[arg(long, value_name = "N", default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..))]
    pub batch_size: u32,
}

/// `demo`
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Records to write (approximately; whole rounds are played)
    #[arg(long, value_name = "N", default_value_t = 50_000)]
    pub records: u64,
    /// Concurrent table tasks
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub tasks: u32,
    /// Seed of the dice and the players' choices
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Keep the temporary data directory (ignored with --data/--url)
    #[arg(long)]
    pub keep: bool,
    /// Play into the --data/--url store even when it already holds records (the demo's
    /// writes replace records under the keys it uses)
    #[arg(long)]
    pub force: bool,
    /// Serve the demo's metrics at http://ADDR/metrics while it plays (port 0 picks a free
    /// port; the address is printed on stderr)
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Print the report as JSON (the library's statistics and consistency report included)
    #[arg(long)]
    pub json: bool,
    /// TTL of lobby seat listings (the lobby's default TTL); when at most 10 s, the demo
    /// waits for the last listing to expire before its closing sweep and report
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = humantime::parse_duration)]
    pub lobby_ttl: std::time::Duration,
    /// TTL of roll records (the rolls' default TTL; a finished game keeps its rolls in its
    /// archive record)
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = humantime::parse_duration)]
    pub roll_ttl: std::time::Duration,
}

/// `migrate`
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The store to copy from: sqlite://PATH, postgres://…, or a data directory (must exist)
    #[arg(long, value_name = "URL|DIR")]
    pub from: String,
    /// The store to copy into: sqlite://PATH, postgres://…, or a data directory (must hold no
    /// records unless --allow-nonempty)
    #[arg(long, value_name = "URL|DIR")]
    pub to: String,
    /// Records per atomic batch (and per page read from the source)
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub batch_size: u32,
    /// Copy into a target that already holds records (e.g. to resume an interrupted
    /// migration); records with the same collection and key are replaced, and the
    /// verification still requires the target to equal the source
    #[arg(long)]
    pub allow_nonempty: bool,
    /// Copy nothing: only compare the target with the source (e.g. after an earlier
    /// migration), with the same summary and exit code
    #[arg(long, conflicts_with = "allow_nonempty")]
    pub verify_only: bool,
    /// Print the verification summary as JSON: {"collections": [...], "mismatches": N,
    /// "first_mismatches": [...]}
    #[arg(long)]
    pub json: bool,
    /// The target's master key file, when it differs from the source's --key-file (e.g.
    /// to encrypt a plaintext store by copying it); documents are sealed under the target's
    /// keys and never written in plaintext on the way
    #[arg(long, value_name = "FILE")]
    pub to_key_file: Option<PathBuf>,
    /// The global `--data`, shadowed so that `migrate --help` lists only what migrate accepts
    /// (clap does not propagate a global argument to a subcommand that defines its own):
    /// given here, it is refused as a usage error.
    #[arg(long, hide = true)]
    pub data: Option<PathBuf>,
    /// The global `--url`, shadowed and refused like `data`.
    #[arg(long, hide = true)]
    pub url: Option<String>,
    /// The global `--read-only`, shadowed and refused like `data`: migrate writes its target.
    #[arg(long, hide = true)]
    pub read_only: bool,
}

impl MigrateArgs {
    /// The global option given to `migrate` that it does not accept, if any.
    pub fn refused_option(&self) -> Option<&'static str> {
        if self.data.is_some() {
            Some("--data")
        } else if self.url.is_some() {
            Some("--url")
        } else if self.read_only {
            Some("--read-only")
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_take_decimal_and_binary_units() {
        assert_eq!(parse_size("1048576"), Ok(1_048_576));
        assert_eq!(parse_size("500KB"), Ok(500_000));
        assert_eq!(parse_size("64 MiB"), Ok(64 << 20));
        assert_eq!(parse_size("2gb"), Ok(2_000_000_000));
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("99999999999999GiB").is_err(), "overflow");
    }
}

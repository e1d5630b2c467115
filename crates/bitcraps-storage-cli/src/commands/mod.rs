//! One file per command. Each takes the open store (the demo opens its own) and returns
//! `anyhow::Result`; [`run`] opens the store, dispatches and always closes it.
//!
//! Adding a command: a variant in `cli::Command`, a file here, an arm in [`dispatch`].

mod backup;
mod collections;
mod delete;
mod export;
mod get;
mod import;
mod info;
mod key;
mod list;
mod maintenance;
mod migrate;
mod put;
pub(crate) mod quota;
mod serve_metrics;
mod stats;
mod ttl;
mod watch;

use anyhow::{Context, Result};
use bitcraps_storage::BackendTarget;
use bitcraps_storage::{PersistentStorageManager, StorageConfig};

use crate::cli::{BackupCommand, Cli, Command, KeyCommand, QuotaCommand, TtlCommand};
use crate::exit::CliError;
use crate::progress::Ui;
use crate::settings::{Layer, Settings};

pub use migrate::MigrationRow;

/// Runs the parsed command line.
pub async fn run(cli: Cli, ui: &Ui) -> Result<()> {
    if let Command::Completions { shell } = cli.command {
        // Needs no settings and no store.
        let mut out = Vec::new();
        clap_complete::generate(
            shell,
            &mut <Cli as clap::CommandFactory>::command(),
            "bitcraps-storage",
            &mut out,
        );
        return print(&String::from_utf8_lossy(&out));
    }
    if let Command::Key(KeyCommand::Generate) = cli.command {
        // Needs no settings and no store.
        return key::generate();
    }
    if let Command::Key(KeyCommand::Shred { yes: false, .. }) = cli.command {
        return Err(CliError::Usage(
            "key shred destroys the collection's key and records for good; pass --yes".into(),
        )
        .into());
    }
    crate::settings::check_variables(std::env::vars_os().map(|(name, _)| name))?;
    let mut settings = Settings::load(
        Layer::from_flags(cli.data, cli.url).with_key_file(cli.key_file.clone()),
        cli.config.as_deref(),
        |name| std::env::var(name).ok(),
    )?;
    // serve-metrics and watch run beside the server that owns the store: always read-only
    // (no writer lock; the store's other processes keep writing).
    if cli.read_only || matches!(cli.command, Command::ServeMetrics(_) | Command::Watch(_)) {
        settings.config.database.read_only = true;
    }
    if let Command::Demo(args) = &cli.command {
        return crate::demo::run(&settings, args, ui).await;
    }
    if let Command::Migrate(args) = &cli.command {
        let refused = match args.refused_option() {
            Some(option) => Some(option),
            None if cli.read_only => Some("--read-only"),
            None if settings.location_from_flags => Some("--data or --url"),
            None => None,
        };
        if let Some(option) = refused {
            return Err(CliError::Usage(format!(
                "migrate does not take {option}: it reads the store named by --from and \
                 writes the one named by --to"
            ))
            .into());
        }
        return migrate::run(args, cli.config.as_deref(), cli.key_file.clone(), ui).await;
    }
    if let Command::Key(KeyCommand::Enable) = &cli.command {
        // Opens the store itself: a plaintext store opened with a key is otherwise refused.
        require_store(&settings.config)?;
        return key::enable(settings.config, ui).await;
    }
    if let Command::Export(args) = &cli.command
        && settings.config.key.is_set()
        && !args.plaintext
    {
        // Everything else that leaves an encrypted store is ciphertext.
        return Err(CliError::Usage(
            "the store is encrypted and export writes its documents in plaintext; pass \
             --plaintext to confirm"
                .into(),
        )
        .into());
    }
    if reads_only(&cli.command) || settings.config.database.read_only {
        require_store(&settings.config)?;
    }
    let storage = open(settings.config).await?;
    let result = dispatch(&storage, cli.command, ui).await;
    let closed = storage.close().await.context("closing the store");
    result.and(closed)
}

/// Opens the store, naming its location if that fails.
pub async fn open(config: StorageConfig) -> Result<PersistentStorageManager> {
    let location = describe(&config);
    tracing::debug!(%location, "opening the store");
    PersistentStorageManager::open(config)
        .await
        .with_context(|| format!("cannot open the store at {location}"))
}

/// Whether the command only reads the store (so it must not create one).
fn reads_only(command: &Command) -> bool {
    matches!(
        command,
        Command::Get(_)
            | Command::List(_)
            | Command::Info(_)
            | Command::Collections(_)
            | Command::Stats(_)
            | Command::Export(_)
            | Command::ServeMetrics(_)
            | Command::Watch(_)
            | Command::Ttl(TtlCommand::Show { .. })
            | Command::Quota(QuotaCommand::Show { .. })
            | Command::Backup(BackupCommand::List { .. } | BackupCommand::Verify { .. })
    )
}

/// Fails with "no store" (exit 3) when the configuration names an embedded store whose
/// database file does not exist, before anything is opened: opening would create the data
/// directory and an empty store. A PostgreSQL URL names a server, not a directory, and is not
/// checked here.
fn require_store(config: &StorageConfig) -> Result<()> {
    let Ok(BackendTarget::Sqlite { path }) = config.target() else {
        return Ok(());
    };
    match std::fs::symlink_metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(CliError::NoStore { database: path }.into())
        }
        // Anything else (present, or unreadable) is for `open` to report.
        _ => Ok(()),
    }
}

/// The database file a configuration selects, for messages.
pub fn describe(config: &StorageConfig) -> String {
    // Every CLI message that names a store goes through here, and so through the library's
    // one redaction function: a password in a URL never reaches the terminal or a log.
    match config.target() {
        Ok(BackendTarget::Sqlite { path }) => path.display().to_string(),
        _ => config.database.url.as_deref().map_or_else(
            || config.database.data_path.display().to_string(),
            bitcraps_storage::redact_url,
        ),
    }
}

async fn dispatch(storage: &PersistentStorageManager, command: Command, ui: &Ui) -> Result<()> {
    match command {
        Command::Put(args) => put::run(storage, &args).await,
        Command::Get(args) => get::run(storage, &args).await,
        Command::Delete(args) => delete::run(storage, &args).await,
        Command::List(args) => list::run(storage, &args).await,
        Command::Info(args) => info::run(storage, &args).await,
        Command::Collections(args) => collections::run(storage, &args).await,
        Command::Stats(args) => stats::run(storage, &args).await,
        Command::Ttl(command) => ttl::run(storage, command).await,
        Command::Quota(command) => quota::run(storage, command).await,
        Command::Export(args) => export::run(storage, &args, ui).await,
        Command::Import(args) => import::run(storage, &args, ui).await,
        Command::Maintenance(args) => maintenance::run(storage, &args, ui).await,
        Command::Backup(command) => backup::run(storage, command, ui).await,
        Command::ServeMetrics(args) => serve_metrics::run(storage, &args).await,
        Command::Watch(args) => watch::run(storage, &args).await,
        Command::Key(KeyCommand::Rotate { new_key_file }) => {
            key::rotate(storage, new_key_file).await
        }
        Command::Key(KeyCommand::RotateData { collection }) => {
            key::rotate_data(storage, &collection).await
        }
        Command::Key(KeyCommand::Reencrypt) => key::reencrypt(storage).await,
        Command::Key(KeyCommand::Shred { collection, yes }) => {
            key::shred(storage, &collection, yes).await
        }
        // Handled by `run` before the store is opened.
        Command::Demo(_)
        | Command::Migrate(_)
        | Command::Completions { .. }
        | Command::Key(KeyCommand::Generate | KeyCommand::Enable) => Ok(()),
    }
}

/// Writes `text` to stdout at once.
pub fn print(text: &str) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .context("writing to stdout")
}

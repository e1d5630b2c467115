//! `bitcraps-storage`: the command-line tool over the `bitcraps-storage` library.
//!
//! A thin binary: it parses arguments ([`cli`]), merges settings ([`settings`]), runs one
//! command per invocation ([`commands`], [`demo`]) and renders the results ([`render`],
//! [`json`], [`progress`]). Each invocation opens the store, which takes the database's
//! exclusive lock, and closes it before exiting.
//!
//! Exit codes ([`exit`]): 0 success, 1 error, 2 usage or configuration error, 3 not found,
//! 4 invalid input.

mod cli;
mod commands;
mod demo;
mod document;
mod exit;
mod exporter;
mod json;
mod jsonl;
mod notes;
mod progress;
mod render;
mod settings;

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use tracing_subscriber::EnvFilter;

use crate::cli::Cli;
use crate::progress::Ui;

fn main() -> ExitCode {
    let cli = Cli::parse();
    notes::set_quiet(cli.quiet);
    let ui = Ui::new();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .with_writer(ui.log_writer())
        // No escape sequences in a log file or a pipe.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .and_then(|runtime| runtime.block_on(commands::run(cli, &ui)));
    match result {
        Ok(()) => ExitCode::from(exit::OK),
        Err(e) if exit::is_broken_pipe(&e) => ExitCode::from(exit::OK),
        Err(e) => {
            ui.suspend(|| eprintln!("error: {e:#}"));
            ExitCode::from(exit::code(&e))
        }
    }
}
